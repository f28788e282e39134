"""Stage 3: training: one target-vs-rest FrugalTasNet per experiment, resumable.

    local/train.py --exp_dir exp/vocals --set data.target=vocals                # train, or resume
    local/train.py --exp_dir exp/vocals --set data.target=vocals --retrain      # start over

What the experiment folder holds: :mod:`asteroid_frugal.train`.
"""
import argparse
from typing import Any, Dict, Optional, Sequence

from ..train import train
from .common import add_config_args, config_from_args, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, "train")
    parser.add_argument("--exp_dir", required=True, help="experiment directory (exp/<tag>)")
    parser.add_argument("--retrain", action="store_true", help="discard checkpoints and train from scratch")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    return train(config_from_args(args), args.exp_dir, retrain=args.retrain)


def cli() -> None:
    """Entry point (local/train.py, python -m asteroid_frugal.cli.train)."""
    run(main)


if __name__ == "__main__":
    cli()
