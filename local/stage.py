#!/usr/bin/env python
"""The recipe's stage entry points (the Asteroid convention): each ``local/<name>.py`` below is a
link to this file, and runs its module's ``main`` through ``run_cli`` (one-line errors, exit 2).

The package is importable without touching ``sys.path``: run.sh exports ``PYTHONPATH`` and
local/setup_env.sh installs it editable.
"""
import importlib
import sys
from pathlib import Path

STAGES = {                       # local/<name>.py -> module whose main() it runs
    "prepare_data": "asteroid_frugal.data.musdb_prep",    # stage 0: MUSDB18(-HQ) or the built-in corpus
    "prepare_extra": "asteroid_frugal.data.extra",        # stage 1: extra stems (and MIDI renderings)
    "render_midi": "asteroid_frugal.midi_render",         # MIDI -> stems, on its own
    "shape_trainset": "asteroid_frugal.data.shaping",     # stage 2: training-set shaping
    "data_report": "asteroid_frugal.data.report",         # stage 2's manifest report, on its own
    "train": "asteroid_frugal.train",                     # stage 3
    "evaluate": "asteroid_frugal.evaluate",               # stage 4
    "publish": "asteroid_frugal.publish",                 # stage 5
    "run_egs": "asteroid_frugal.sweep",                   # every variant of an egs/ experiment
}

if __name__ == "__main__":
    name = Path(sys.argv[0]).stem
    if name not in STAGES:
        sys.exit(f"{sys.argv[0]}: not a stage entry point (one of: {', '.join(f'local/{n}.py' for n in STAGES)})")
    from asteroid_frugal.utils import run_cli

    run_cli(importlib.import_module(STAGES[name]).main)
