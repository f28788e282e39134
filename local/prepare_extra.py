#!/usr/bin/env python
"""Stage 1 of run.sh: extra data (stem folders, Slakh2100, rendered MIDI). Options: --help."""
from asteroid_frugal.cli.prepare_extra import cli

if __name__ == "__main__":
    cli()
