"""Real-time streaming speed: real-time factor and per-block compute time of a causal FrugalTasNet.

    .venv/bin/python benchmarks/bench_streaming.py                        # paper size, 1 thread
    .venv/bin/python benchmarks/bench_streaming.py --seconds 5 --blocks 256 --sizes 500 256 128
    .venv/bin/python benchmarks/bench_streaming.py --profile              # where the time goes

Stereo 44.1 kHz audio (``bench_inference.synthetic_song``) is fed block by block to
``StreamingSeparator`` as a live host would; each ``process`` call is timed. For each
variant and block size: RTF = total compute time / audio duration (lower is faster; < 1
keeps up), the median and 99th percentile of the per-block compute time, and the share of
blocks that took longer than their own duration (each one an audible drop-out in a live
host without extra buffering). The same figures from the thread's CPU time (``cpu``) are
printed beside the wall-clock ones: on a shared, loaded machine the wall clock also counts
the time other processes hold the core, the CPU time much less so (cache contention still
counts), so it is the better estimate of a quiet machine there. Target: RTF <= 0.25 at 256-sample blocks with
the 99th percentile below the block duration (5.8 ms).

Variants, measured side by side in one run, the shipped one first:
``float32`` (shipped: oneDNN off for calls of < 16 segments), ``float32-onednn`` (oneDNN for
every call: PyTorch's default), ``bfloat16`` and ``int8`` weights (``StreamingSeparator``'s
``precision``), ``onnxruntime`` and ``onnxruntime-int8`` (the exported streaming step,
``asteroid_frugal.export``, float or ``--int8``, one onnxruntime thread). ``--sizes`` adds
smaller models (LSTM width and filters ``N``, 4 layers) in float32, int8 and
onnxruntime-int8 at the first block size. Random weights (speed does not depend
on them). The first ``--warmup`` blocks are not counted.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

VARIANTS = ("float32", "float32-onednn", "bfloat16", "int8", "onnxruntime", "onnxruntime-int8")


def causal_model(size: int):
    import torch

    from asteroid_frugal.config import load_config
    from asteroid_frugal.model import build_model

    torch.manual_seed(0)
    conf = load_config(overlays=[REPO / "egs/realtime/conf.yml"],
                       overrides=[f"filterbank.n_filters={size}", f"masker.hidden_size={size}", "masker.n_layers=4"])
    return build_model(conf).eval()


def make_streamer(model, variant: str, tmpdir: str):
    from asteroid_frugal.streaming import StreamingSeparator

    if variant == "float32-onednn":
        return StreamingSeparator(model, mkldnn_min_frames=1)
    if variant.startswith("onnxruntime"):
        from asteroid_frugal.export import OnnxStreamingSeparator, export

        int8 = variant.endswith("int8")
        path = export(model, "onnx", Path(tmpdir) / f"step{model.n_filters}{'-int8' if int8 else ''}.onnx",
                      streaming=True, int8=int8)
        return OnnxStreamingSeparator.for_model(path, model)
    return StreamingSeparator(model, precision=variant)


def measure(streamer, song, block: int, warmup: int) -> dict:
    import numpy as np

    streamer.reset()
    times, cpu_times = [], []
    for start in range(0, song.shape[1] - block + 1, block):
        piece = song[:, start:start + block]
        t, c = time.perf_counter(), time.thread_time()
        streamer.process(piece)
        times.append(time.perf_counter() - t)
        cpu_times.append(time.thread_time() - c)
    ms, cpu = np.asarray(times[warmup:]) * 1e3, np.asarray(cpu_times[warmup:]) * 1e3
    block_ms = block / 44100 * 1e3
    return dict(block=block, block_ms=block_ms, blocks=len(ms), rtf=float(ms.sum() / (len(ms) * block_ms)),
                median_ms=float(np.median(ms)), p99_ms=float(np.percentile(ms, 99)),
                late=float(np.mean(ms > block_ms)), cpu_rtf=float(cpu.sum() / (len(cpu) * block_ms)),
                cpu_median_ms=float(np.median(cpu)), cpu_p99_ms=float(np.percentile(cpu, 99)))


def profile(song, block: int, variant: str) -> None:
    """Share of a streaming call's time in the LSTM (torch.profiler), 200 blocks."""
    import torch
    from torch.profiler import ProfilerActivity, profile as tprofile

    model = causal_model(500)
    with tempfile.TemporaryDirectory() as tmp:
        streamer = make_streamer(model, variant, tmp)
        measure(streamer, song[:, :block * 20], block, 0)
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            measure(streamer, song[:, :block * 200], block, 0)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"where the time goes ({variant}, blocks of {block}, 200 calls): self CPU time by operator")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]:
        print(f"  {e.self_cpu_time_total / total * 100:5.1f}%  {e.key}")
    lstm = sum(e.self_cpu_time_total for e in events if "lstm" in e.key.lower() or "rnn" in e.key.lower()
               or "quantized" in e.key.lower() or "addmm" in e.key or "linear" in e.key.lower())
    print(f"  LSTM and linear layers (matrix products): {lstm / total * 100:.0f}% of the call")
    del torch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio streamed per measurement")
    parser.add_argument("--blocks", type=int, nargs="+", default=[256, 512, 1024, 4096])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--sizes", type=int, nargs="*", default=[384, 256, 192, 128],
                        help="smaller models (N = LSTM width) measured at the first block size")
    parser.add_argument("--size", type=int, default=500, help="the main model's N = LSTM width (paper: 500)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10, help="blocks not counted at the start")
    parser.add_argument("--profile", action="store_true", help="only: where the time goes at the first block size")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from bench_inference import synthetic_song

    from asteroid_frugal.utils import cpu_name

    song = torch.from_numpy(synthetic_song(args.seconds + 1, 44100))
    print(f"causal FrugalTasNet, stereo 44.1 kHz, {args.threads} thread(s), {args.seconds:g} s streamed per "
          f"row; {cpu_name()}; load average {os.getloadavg()[0]:.1f} at start", flush=True)
    if args.profile:
        for variant in ("float32", "int8"):
            profile(song, args.blocks[0], variant)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = causal_model(args.size)
        for variant in args.variants:
            streamer = make_streamer(model, variant, tmp)
            for block in args.blocks:
                r = dict(size=args.size, variant=variant, **measure(streamer, song, block, args.warmup))
                rows.append(r)
                print(_row(r), flush=True)
        for size in args.sizes:
            model = causal_model(size)
            for variant in ("float32", "int8", "onnxruntime-int8"):
                r = dict(size=size, variant=variant,
                         **measure(make_streamer(model, variant, tmp), song, args.blocks[0], args.warmup))
                rows.append(r)
                print(_row(r), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print_table(rows)
    if args.json:
        from asteroid_frugal.utils import write_json_atomic

        write_json_atomic(args.json, dict(args=vars(args), cpu=cpu_name(), rows=rows))


def _row(r) -> str:
    return (f"  N={r['size']} {r['variant']:<15} block {r['block']:>4}: RTF {r['rtf']:.3f}, median "
            f"{r['median_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms (block {r['block_ms']:.1f} ms), late {r['late']:.1%}; "
            f"CPU time: RTF {r['cpu_rtf']:.3f}, median {r['cpu_median_ms']:.2f} ms, p99 {r['cpu_p99_ms']:.2f} ms")


def print_table(rows) -> None:
    base = {r["block"]: r for r in rows if r["size"] == rows[0]["size"] and r["variant"] == "float32"}
    print("| model (N = LSTM width) | variant | block (ms) | RTF wall / CPU | speed-up vs shipped float32 (CPU) "
          "| per block wall median / p99 (ms) | per block CPU median / p99 (ms) | blocks late (wall) "
          "| target met (wall / CPU) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        ref = base.get(r["block"])
        speed = f"{ref['cpu_rtf'] / r['cpu_rtf']:.2f}x" if ref else "n/a"
        met = "-"
        if r["block"] == 256:
            met = " / ".join("yes" if r[f"{p}rtf"] <= 0.25 and r[f"{p}p99_ms"] < r["block_ms"] else "no"
                             for p in ("", "cpu_"))
        print(f"| {'paper, ' if r['size'] == 500 else ''}N={r['size']} | {r['variant']} | {r['block']} "
              f"({r['block_ms']:.1f}) | {r['rtf']:.3f} / {r['cpu_rtf']:.3f} | {speed} "
              f"| {r['median_ms']:.2f} / {r['p99_ms']:.2f} | {r['cpu_median_ms']:.2f} / {r['cpu_p99_ms']:.2f} "
              f"| {r['late']:.1%} | {met} |")


if __name__ == "__main__":
    from asteroid_frugal.cli.common import setup_process

    setup_process(sys.argv[1:])   # the threading policy, set as every command sets it
    main()
