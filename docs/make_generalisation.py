#!/usr/bin/env python
"""Rebuild docs/generalisation.md from the held-out-soundfont runs' own files.

    .venv/bin/python docs/make_generalisation.py exp/heldout_timgm6mb exp/heldout_fluidr3 [--main exp]

Each positional argument is the ``--exp_dir`` of one direction, run as egs/demo/README.md says.
``--main`` adds the main job's models (trained and tested on both soundfonts) for comparison.
What the page holds and where each figure comes from: :mod:`asteroid_frugal.reports.docs_generalisation`.
"""
import argparse
from pathlib import Path

from asteroid_frugal.cli.common import run
from asteroid_frugal.reports.docs_generalisation import page
from asteroid_frugal.utils import write_text_atomic

DOCS = Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directions", nargs="+", help="exp_dir of each held-out-soundfont run")
    parser.add_argument("--main", default=None, help="exp_dir of the main job (both soundfonts), for comparison")
    parser.add_argument("--variants", nargs="+", default=[],
                        help="exp_dirs of variants tried (other settings, same held-out soundfont), each against "
                             "the direction that holds out the same soundfont")
    parser.add_argument("--note", default=None, help="a paragraph under the variants' table (what they show)")
    parser.add_argument("--out", default=str(DOCS / "generalisation.md"))
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    write_text_atomic(args.out, page(args.directions, args.main, args.variants, args.note))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run(main)
