"""Stage 5: publish folder (model file + model card) for one experiment.

    local/publish.py --exp_dir exp/vocals                    # -> exp/vocals/publish
    local/publish.py --exp_dir exp/vocals --out hub/vocals --license mit

The folder's contents: :mod:`asteroid_frugal.publish`; the card's license: conf.yml's publish.license.
"""
import argparse
from pathlib import Path
from typing import Optional, Sequence

from ..publish import publish
from .common import add_config_args, config_from_args, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, "publish")
    parser.add_argument("--exp_dir", required=True, help="experiment folder (exp/<tag>)")
    parser.add_argument("--out", default=None, help="publish folder (default: <exp_dir>/publish)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Path:
    args = build_parser().parse_args(argv)
    return publish(args.exp_dir, config_from_args(args), args.out)


def cli() -> None:
    """Entry point (local/publish.py, python -m asteroid_frugal.cli.publish)."""
    run(main)


if __name__ == "__main__":
    cli()
