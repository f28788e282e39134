#!/usr/bin/env python
"""What a stage-2 manifest contains (songs, hours, silence). Options: --help."""
from asteroid_frugal.cli.data_report import cli

if __name__ == "__main__":
    cli()
