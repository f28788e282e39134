#!/usr/bin/env python
"""Stage 0 of run.sh: data preparation (MUSDB18 / MUSDB18-HQ or the built-in corpus). Options: --help."""
from asteroid_frugal.cli.prepare_data import cli

if __name__ == "__main__":
    cli()
