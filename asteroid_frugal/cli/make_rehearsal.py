"""A MUSDB18-shaped rehearsal set: 150 songs, ~10 h, .stem.mp4 (or MUSDB18-HQ wav folders).

    local/make_rehearsal.py /data/rehearsal                          # 150 songs as MUSDB18 (.stem.mp4)
    local/make_rehearsal.py /data/rehearsal_hq --hq                  # the MUSDB18-HQ layout
    local/make_rehearsal.py /tmp/tiny --songs 4 --length_scale 0.01  # 4 songs of 1-4 s
    local/make_rehearsal.py /data/rehearsal --subset 6               # 6 of the 150 songs, the longest first
    ./run.sh --musdb_root /data/rehearsal ...                        # then the recipe as on MUSDB18

Re-running completes an interrupted set (finished songs are kept). See
:mod:`asteroid_frugal.data.rehearsal` and docs/scale.md.
"""
import argparse
from typing import Optional, Sequence

from ..data.rehearsal import make_rehearsal
from .common import add_config_args, config_from_args, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder of the set (created; a re-run completes it)")
    add_config_args(parser, "make_rehearsal")   # --songs, --length_scale, --jobs, --subset (rehearsal.*)
    parser.add_argument("--hq", action="store_true", help="MUSDB18-HQ layout (<song>/<stem>.wav), not .stem.mp4")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.hq:
        args.overrides.append("rehearsal.format=hq")
    summary = make_rehearsal(config_from_args(args), args.out, progress=not args.no_progress)
    print(f"{args.out}: {summary['songs']} songs ({summary['hours']:.2f} h of audio, {summary['layout']}), "
          f"{summary['written_this_run']} written in {summary['seconds_this_run']:.0f} s")
    return summary


def cli() -> None:
    """Entry point (local/make_rehearsal.py, python -m asteroid_frugal.cli.make_rehearsal)."""
    run(main)


if __name__ == "__main__":
    cli()
