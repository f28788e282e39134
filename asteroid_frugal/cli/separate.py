"""Separate songs into stems with trained target-vs-rest models.

    asteroid-frugal-separate song.mp3 album/ --models exp/vocals --out stems
    asteroid-frugal-separate album/ --models vocals=exp/vocals drums=exp/drums bass=exp/bass --out stems
    python -m asteroid_frugal.cli.separate song.wav --models exp/vocals_causal --out live --stream

One model gives its target and the rest of the mix (``accompaniment`` for vocals, ``no_drums``,
``no_bass``); several give each target, ``other`` (or ``rest``) and, with vocals, ``accompaniment``.
Each song's stems go to ``OUT/<song>/<stem>.<ext>`` with ``separation.json`` (see
:mod:`asteroid_frugal.separate`); ``--report`` also writes ``OUT/index.html``, a page to listen to
every song of OUT (:mod:`asteroid_frugal.reports.listening`). Exit status: 0, 1 when a file failed,
2 on a bad command line.
"""
import argparse
import sys
from typing import Optional, Sequence

from ..separate import MANIFEST, limit_heap, separate_files
from .common import add_config_args, config_from_args, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asteroid-frugal-separate", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="choices:\n"
               "  --format wav|flac|mp3 (mp3: ffmpeg, --mp3_bitrate 320k); --subtype PCM_16|PCM_24|FLOAT (FLOAT: wav\n"
               "      only, never clips)\n"
               "  --filename TEMPLATE under OUT: {track}, {stem}, {ext}, {input_ext} (default {track}/{stem}.{ext})\n"
               "  --stems vocals,accompaniment: write only these (models none of them needs are not run)\n"
               "  --clip rescale|clamp|none: samples beyond full scale (rescale: one factor per song, logged)\n"
               "  --precision auto|float32|bfloat16|float16|int8 (int8: CPU only; auto: int8 on the CPU,\n"
               "      else bfloat16 where the device runs it natively and a probe stays within\n"
               "      separate.min_snr_db of float32)\n"
               "  --stream_precision float32|bfloat16|int8; --device auto|cpu|cuda|cuda:1\n"
               "defaults: conf.yml's separate, evaluation (device, chunking) and streaming sections")
    parser.add_argument("inputs", nargs="+", help="audio files or folders (wav, flac, ogg, mp3, m4a/mp4, ...)")
    parser.add_argument("--models", nargs="+", required=True, metavar="[TARGET=]PATH",
                        help="best_model.pth, experiment or publish folder per target, e.g. "
                             "vocals=exp/vocals drums=exp/drums bass=exp/bass")
    parser.add_argument("--out", required=True, help="output folder: OUT/<song>/<stem>.<ext> (--filename)")
    parser.add_argument("--overwrite", action="store_true",
                        help="separate again songs whose stems exist (made by any models or settings)")
    parser.add_argument("--stream", action="store_true",
                        help="run one causal model block by block as if live (asteroid_frugal/streaming.py); "
                             "logs latency and real-time factor")
    parser.add_argument("--report", action="store_true",
                        help="write OUT/index.html, a page to listen to every song of OUT (players, spectrograms, "
                             "models and settings; works offline): --set separate.report=true")
    add_config_args(parser, "separate")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Separate every input; exits 1 when a file failed (each one named on its own ``error:`` line)."""
    args = build_parser().parse_args(argv)
    if args.report:
        args.overrides.append("separate.report=true")
    conf = config_from_args(args)
    limit_heap(conf["separate"]["mmap_threshold_mb"])   # a process setting, as the threads: made here
    summary = separate_files(conf, args.inputs, args.models, args.out, overwrite=args.overwrite, stream=args.stream)
    if conf["separate"]["report"]:
        from ..reports.listening import write_separation_page   # imported only here: 31 MB of RSS otherwise

        write_separation_page(args.out, args.inputs, MANIFEST)   # from the song folders on disk
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
