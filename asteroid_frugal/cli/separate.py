"""Separate songs into stems with trained target-vs-rest models.

    asteroid-frugal-separate song.mp3 album/ --models exp/vocals --out stems
    asteroid-frugal-separate album/ --models vocals=exp/vocals drums=exp/drums bass=exp/bass --out stems
    python -m asteroid_frugal.cli.separate song.wav --models exp/vocals_causal --out live --stream

One model gives its target and the rest of the mix (``accompaniment`` for vocals, ``no_drums``,
``no_bass``); several give each target, ``other`` (or ``rest``) and, with vocals, ``accompaniment``.
Each song's stems go to ``OUT/<song>/<stem>.<ext>`` with ``separation.json`` (see
:mod:`asteroid_frugal.separate`). Exit status: 0, 1 when a file failed, 2 on a bad command line.
"""
import argparse
import sys
from typing import Optional, Sequence

from ..separate import separate_files
from .common import add_config_args, config_from_args, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asteroid-frugal-separate", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="choices:\n"
               "  --format wav|flac; --subtype PCM_16|PCM_24|FLOAT (FLOAT: wav only, never clips)\n"
               "  --precision auto|float32|bfloat16|float16 (auto: bfloat16 where the device runs it\n"
               "      natively and a probe stays within separate.min_snr_db of float32)\n"
               "  --stream_precision float32|bfloat16|int8; --device auto|cpu|cuda|cuda:1\n"
               "defaults: conf.yml's separate, evaluation (device, chunking) and streaming sections")
    parser.add_argument("inputs", nargs="+", help="audio files or folders (wav, flac, ogg, mp3, m4a/mp4, ...)")
    parser.add_argument("--models", nargs="+", required=True, metavar="[TARGET=]PATH",
                        help="best_model.pth, experiment or publish folder per target, e.g. "
                             "vocals=exp/vocals drums=exp/drums bass=exp/bass")
    parser.add_argument("--out", required=True, help="output folder: OUT/<song>/<stem>.<ext>")
    parser.add_argument("--overwrite", action="store_true",
                        help="separate again songs whose stems exist (made by any models or settings)")
    parser.add_argument("--stream", action="store_true",
                        help="run one causal model block by block as if live (asteroid_frugal/streaming.py); "
                             "logs latency and real-time factor")
    add_config_args(parser, "separate")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Separate every input; exits 1 when a file failed (each one named on its own ``error:`` line)."""
    args = build_parser().parse_args(argv)
    summary = separate_files(config_from_args(args), args.inputs, args.models, args.out,
                             overwrite=args.overwrite, stream=args.stream)
    if summary["failed"]:
        print(f"error: {len(summary['failed'])} of {summary['files']} file(s) failed: "
              f"{', '.join(map(str, summary['failed']))}", file=sys.stderr)
        sys.exit(1)
    return summary


def cli() -> None:
    """Console-script entry point (``asteroid-frugal-separate``, ``python -m asteroid_frugal.cli.separate``)."""
    run(main)


if __name__ == "__main__":
    cli()
