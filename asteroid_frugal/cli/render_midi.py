"""Render multitrack MIDI files into per-source stems with FluidSynth (extra data for stage 1).

    local/render_midi.py MIDI_DIR OUT_DIR [--soundfont A.sf2 [B.sf2 ...]] [--jobs 4] [--max_seconds 240]
        [--sample_rate 44100] [--format wav|flac]

Writes ``OUT_DIR/<song>[__<soundfont>]/<source>.<wav|flac>`` and ``OUT_DIR/render_report.json``
(see :mod:`asteroid_frugal.midi_render`); then use OUT_DIR as an extra root (``--extra_roots``).
Every option is a key of conf.yml's ``midi_render`` section.
"""
import argparse
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from ..midi_render import REPORT, RenderOptions, render_midi_dir
from ..utils import FrugalError
from .common import add_config_args, config_from_args, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="--format: wav (32-bit float) or flac (24-bit); defaults: conf.yml's "
                                            "midi_render section")
    parser.add_argument("midi_dir", help="folder of .mid/.midi/.kar files (searched recursively)")
    parser.add_argument("out_dir", help="corpus folder to write (resumable)")
    add_config_args(parser, "render_midi")
    parser.add_argument("--soundfont", action="extend", nargs="+", default=None, metavar="SF2",
                        help="sets midi_render.soundfonts to these .sf2/.sf3 files (repeatable); several = "
                             "each song rendered once per soundfont")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.soundfont is not None:     # a list-valued key: the files become one override
        args.overrides.append(f"midi_render.soundfonts={json.dumps(args.soundfont)}")
    opts = RenderOptions.from_conf(config_from_args(args)["midi_render"])
    report = render_midi_dir(args.midi_dir, args.out_dir, opts)
    if report["rendered"] == 0 and report["already_rendered"] == 0:
        raise FrugalError(f"{args.midi_dir}: no song could be rendered (see {Path(args.out_dir) / REPORT})")
    return report


def cli() -> None:
    """Entry point (local/render_midi.py, python -m asteroid_frugal.cli.render_midi)."""
    run(main)


if __name__ == "__main__":
    cli()
