#!/usr/bin/env python
"""Stage 1: decode and index the extra stem folders (data.extra_roots)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asteroid_frugal.data.extra import main  # noqa: E402
from asteroid_frugal.utils import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli(main)
