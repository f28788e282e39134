#!/usr/bin/env python
"""Stage 5: publish folder (Asteroid model file + Hugging Face model card) for exp/<tag>."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asteroid_frugal.publish import main  # noqa: E402
from asteroid_frugal.utils import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli(main)
