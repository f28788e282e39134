#!/usr/bin/env python
"""Render a folder of multitrack MIDI files into per-source stems (see asteroid_frugal/midi_render.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asteroid_frugal.midi_render import main  # noqa: E402
from asteroid_frugal.utils import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli(main)
