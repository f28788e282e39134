"""Report on stage-2 manifests: songs, excerpts, hours, hours per source, silent target share.

    local/data_report.py exp/vocals/data/train.csv          # target and silence level: shaping.json's

See :mod:`asteroid_frugal.reports.data`.
"""
import argparse
from typing import Optional, Sequence

from ..reports.data import format_report, manifest_report
from .common import run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="+", help="manifest CSV files (e.g. exp/vocals/data/train.csv)")
    parser.add_argument("--target", default=None, help="default: from shaping.json beside the manifest")
    parser.add_argument("--silence_db", type=float, default=None,
                        help="default: the shaping.silence_db the manifest was shaped with")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    reports = [manifest_report(m, args.target, args.silence_db) for m in args.manifests]
    for rep in reports:
        print(format_report(rep))
    return {"reports": reports}


def cli() -> None:
    """Entry point (local/data_report.py, python -m asteroid_frugal.cli.data_report)."""
    run(main)


if __name__ == "__main__":
    cli()
