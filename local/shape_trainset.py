#!/usr/bin/env python
"""Stage 2: training-set shaping -> <exp_dir>/data/{train,valid,test}.csv + shaping.json."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asteroid_frugal.data.shaping import main  # noqa: E402
from asteroid_frugal.utils import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli(main)
