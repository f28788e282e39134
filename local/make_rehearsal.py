#!/usr/bin/env python
"""A MUSDB18-shaped rehearsal set (150 songs, ~10 h, .stem.mp4 or --hq wav folders). Options: --help."""
from asteroid_frugal.cli.make_rehearsal import cli

if __name__ == "__main__":
    cli()
