#!/usr/bin/env python
"""Report on stage-2 manifests: songs, excerpts, hours, hours per source, silent target share."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asteroid_frugal.data.report import main  # noqa: E402
from asteroid_frugal.utils import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli(main)
