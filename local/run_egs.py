#!/usr/bin/env python
"""Sweeps of run.sh (--egs): every variant of an egs/<experiment> x seeds, then its table. Options: --help."""
from asteroid_frugal.cli.run_egs import cli

if __name__ == "__main__":
    cli()
