"""Export a trained FrugalTasNet for deployment: ONNX or TorchScript, offline or streaming.

    asteroid-frugal-export --model exp/vocals --format onnx --out vocals.onnx
    asteroid-frugal-export --model exp/vocals_causal --format onnx --streaming --out step.onnx
    asteroid-frugal-export --model exp/vocals_causal --format torchscript --streaming --out step.pt
    asteroid-frugal-export --model exp/vocals_causal --format onnx --streaming --int8 --out step8.onnx

The file is checked against PyTorch when written (see :mod:`asteroid_frugal.export`).
"""
import argparse
from pathlib import Path
from typing import Optional, Sequence

from ..export import FORMATS, export_checked
from .common import add_config_args, config_from_args, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asteroid-frugal-export", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, metavar="EXP_OR_FILE",
                        help="best_model.pth, or an experiment or publish folder holding one")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="file to write (.onnx, .pt)")
    parser.add_argument("--streaming", action="store_true",
                        help="export the streaming step (causal models): LSTM states as inputs/outputs")
    parser.add_argument("--int8", action="store_true",
                        help="ONNX: int8 weights (onnxruntime dynamic quantisation; faster, not equal to PyTorch)")
    add_config_args(parser, "export")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Path:
    args = build_parser().parse_args(argv)
    config_from_args(args)   # the runtime section (--threads) only: the export has no other knob
    return export_checked(args.model, args.format, args.out, streaming=args.streaming, int8=args.int8)


def cli() -> None:
    """Console-script entry point (``asteroid-frugal-export``, ``python -m asteroid_frugal.cli.export``)."""
    run(main)


if __name__ == "__main__":
    cli()
