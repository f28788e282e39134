#!/usr/bin/env python
"""Stage 0: prepare MUSDB18 / MUSDB18-HQ, or generate and prepare the built-in corpus."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asteroid_frugal.data.musdb_prep import main  # noqa: E402
from asteroid_frugal.utils import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli(main)
