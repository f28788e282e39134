#!/usr/bin/env python
"""Write docs/realtime.md: causal (real-time) models next to a bidirectional one, from the runs' own files.

    .venv/bin/python docs/make_realtime.py exp/realtime_demo/vocals_blstm exp/realtime_demo/vocals_causal

The first experiment is the reference (the paper's bidirectional model); every other one is
compared with it, on the same data. What the page holds and where each figure comes from:
:mod:`asteroid_frugal.reports.docs_realtime`. ``egs/realtime/compare.sh`` trains and scores the
runs, then calls this script.
"""
import argparse
from pathlib import Path

from asteroid_frugal.cli.common import run
from asteroid_frugal.reports.docs_realtime import make
from asteroid_frugal.utils import FrugalError

DOCS = Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+", help="reference (bidirectional) experiment first, then causal ones")
    parser.add_argument("--out", default=str(DOCS / "realtime.md"))
    parser.add_argument("--stream_precisions", nargs="*", default=["int8"],
                        help="also stream each causal run's test excerpts with these weight precisions "
                             "(float32 streamed = offline; default: int8, the fast CPU path)")
    parser.add_argument("--block", type=int, default=None,
                        help="block size of the streamed rows (samples; default: the run's streaming.block)")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if len(args.experiments) < 2:
        raise FrugalError("give the reference experiment and at least one causal experiment")
    print(make(args.experiments, Path(args.out), args.stream_precisions, args.block), end="")


if __name__ == "__main__":
    run(main)
