#!/usr/bin/env python
"""Stage 4 of run.sh: evaluation ({1} per target, {4} with --combined). Options: --help."""
from asteroid_frugal.cli.evaluate import cli

if __name__ == "__main__":
    cli()
