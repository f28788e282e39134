"""Stage 4: evaluation: score target-vs-rest models as the paper and SiSEC do.

    local/evaluate.py --exp_dir exp/vocals                                              # {1}
    local/evaluate.py --combined exp/vocals exp/drums exp/bass --exp_dir exp/combined   # {4}

Results go to ``<exp_dir>/results/`` (see :mod:`asteroid_frugal.evaluate`).
"""
import argparse
from typing import Optional, Sequence

from ..evaluate import evaluate
from .common import add_config_args, config_from_args, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="--backend: museval (reference) or fast; --device: auto, cpu, cuda, "
                                            "cuda:1 (defaults: conf.yml's evaluation section)")
    add_config_args(parser, "evaluate")
    parser.add_argument("--exp_dir", required=True, help="experiment (exp/<tag>); results go to <exp_dir>/results")
    parser.add_argument("--combined", nargs=3, metavar=("VOCALS_EXP", "DRUMS_EXP", "BASS_EXP"),
                        help="{4}: the vocals, drums and bass experiments scored together")
    parser.add_argument("--no_sisnr", action="store_true", help="skip the SI-SNR test of the excerpts")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    return evaluate(config_from_args(args), args.exp_dir, combined=args.combined, sisnr=not args.no_sisnr)


def cli() -> None:
    """Entry point (local/evaluate.py, python -m asteroid_frugal.cli.evaluate)."""
    run(main)


if __name__ == "__main__":
    cli()
