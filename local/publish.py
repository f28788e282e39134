#!/usr/bin/env python
"""Stage 5 of run.sh: publish folder (model file + model card) of one experiment. Options: --help."""
from asteroid_frugal.cli.publish import cli

if __name__ == "__main__":
    cli()
