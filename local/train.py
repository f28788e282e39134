#!/usr/bin/env python
"""Stage 3 of run.sh: training (resumes from the last checkpoint; --retrain starts over). Options: --help."""
from asteroid_frugal.cli.train import cli

if __name__ == "__main__":
    cli()
