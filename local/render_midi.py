#!/usr/bin/env python
"""MIDI -> stems with FluidSynth (extra data for stage 1). Options: --help."""
from asteroid_frugal.cli.render_midi import cli

if __name__ == "__main__":
    cli()
