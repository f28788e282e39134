#!/usr/bin/env python
"""Rebuild docs/generalisation.md from the held-out-soundfont runs' own files.

    .venv/bin/python docs/make_generalisation.py exp/heldout_timgm6mb exp/heldout_fluidr3 [--main exp]
    .venv/bin/python docs/make_generalisation.py --voices exp/heldout_voices_a exp/heldout_voices_b \
        --baseline exp/singer_additive [--voices_variants exp/<variant>_a ...] --real exp exp/singer_additive

Each positional argument is the ``--exp_dir`` of one direction, run as egs/demo/README.md says.
``--main`` adds the main job's models (trained and tested on both soundfonts) for comparison.
``--voices`` (the held-out-voice directions, with ``--baseline``; ``--voices_variants``: other settings
or other ``training.seed`` runs, averaged over seeds) and ``--real`` (models scored on
the real excerpt shipped with stempeg) write their own sections; without directions, only those
sections of the existing page are replaced.
What the page holds and where each figure comes from: :mod:`asteroid_frugal.reports.docs_generalisation`.
"""
import argparse
from pathlib import Path

from asteroid_frugal.cli.common import run
from asteroid_frugal.reports.docs_generalisation import REAL_TITLE, VOICES_TITLE, page, real_section, \
    replace_section, voices_section
from asteroid_frugal.utils import write_text_atomic

DOCS = Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directions", nargs="*", help="exp_dir of each held-out-soundfont run")
    parser.add_argument("--main", default=None, help="exp_dir of the main job (both soundfonts), for comparison")
    parser.add_argument("--variants", nargs="+", default=[],
                        help="exp_dirs of variants tried (other settings, same held-out soundfont), each against "
                             "the direction that holds out the same soundfont")
    parser.add_argument("--note", default=None, help="a paragraph under the variants' table (what they show)")
    parser.add_argument("--voices", nargs="+", default=[], help="exp_dir of each held-out-voice run (vocals)")
    parser.add_argument("--baseline", default=None,
                        help="exp_dir of the vocals model the held-out-voice runs are compared with")
    parser.add_argument("--voices_variants", nargs="+", default=[],
                        help="exp_dirs of the other held-out-voice runs (other settings or another training.seed, "
                             "the speakers of one --voices direction); runs differing only in training.seed are "
                             "averaged over seeds")
    parser.add_argument("--voices_note", default=None, help="a paragraph under the held-out-voice tables")
    parser.add_argument("--real", nargs="+", default=[], help="exp_dirs whose models are scored on the real excerpt")
    parser.add_argument("--before", default=None, help="a sentence under the real-excerpt table (earlier figures)")
    parser.add_argument("--out", default=str(DOCS / "generalisation.md"))
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.directions or args.voices or args.real):
        parser.error("give held-out-soundfont directions, --voices or --real")
    text = page(args.directions, args.main, args.variants, args.note) if args.directions else Path(args.out).read_text()
    if args.voices:
        text = replace_section(text, VOICES_TITLE, voices_section(args.voices, args.baseline, args.voices_variants,
                                                                  args.voices_note))
    if args.real:
        text = replace_section(text, REAL_TITLE, real_section(args.real, args.before))
    write_text_atomic(args.out, text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run(main)
