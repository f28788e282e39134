"""Stage 2: training-set shaping: database fraction, excerpt length, equal total audio... -> manifests.

    local/shape_trainset.py --exp_dir exp/vocals --set data.target=vocals --set shaping.excerpt_seconds=10

Writes ``<exp_dir>/data/{train,valid,test}.csv``, ``shaping.json`` and ``conf.yml`` (see
:mod:`asteroid_frugal.data.shaping`), then prints the training manifest's report.
"""
import argparse
from pathlib import Path
from typing import Optional, Sequence

from ..data.shaping import shape
from ..reports.data import format_report, manifest_report
from .common import add_config_args, config_from_args, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, "shape_trainset")
    parser.add_argument("--exp_dir", required=True, help="experiment folder (manifests go to <exp_dir>/data)")
    parser.add_argument("--no_report", action="store_true", help="do not print the manifest report")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    conf = config_from_args(args)
    summary = shape(conf, args.exp_dir)
    if not args.no_report:
        print(format_report(manifest_report(Path(args.exp_dir) / "data" / "train.csv", summary["target"],
                                            float(conf["shaping"]["silence_db"]))))
    return summary


def cli() -> None:
    """Entry point (local/shape_trainset.py, python -m asteroid_frugal.cli.shape_trainset)."""
    run(main)


if __name__ == "__main__":
    cli()
