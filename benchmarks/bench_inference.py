#!/usr/bin/env python
"""Inference benchmark: real-time factor and peak memory of separating 1, 4 and 10-minute
songs with the paper's model (conf.yml's, ``build_model(load_config())``), chunked and batched
(``separate_long``) against the same model over the whole song in one pass.

    .venv/bin/python benchmarks/bench_inference.py                     # CPU, 1 thread
    .venv/bin/python benchmarks/bench_inference.py --device cuda --threads 8
    .venv/bin/python benchmarks/bench_inference.py --minutes 1 --modes onepass chunked
    .venv/bin/python benchmarks/bench_inference.py --profile         # where the time goes

Every measurement runs in its own process, so peak memory is that run's alone:
``peak RSS`` is the process's maximum resident size (``ru_maxrss``), ``inference``
the part above what the model and the input song already held (on CUDA: the peak
of ``torch.cuda.max_memory_allocated``). RTF = processing time / song duration
(lower is faster); CPU RTF uses the process's CPU time instead, steadier than wall
time on a shared machine (with one thread, CPU time ~ wall time when the core is free). A one-pass run whose memory, extrapolated linearly from the
shorter song, would not fit in the available RAM is skipped and reported so.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODES = ("onepass", "chunked", "chunked-bf16")


def synthetic_song(seconds: float, sample_rate: int, seed: int = 0):
    """A stereo song-like signal (harmonic tones, pulses and noise), generated block-wise in float32."""
    import numpy as np

    n = int(seconds * sample_rate)
    out = np.empty((2, n), dtype=np.float32)
    rng = np.random.default_rng(seed)
    block = sample_rate * 10
    for start in range(0, n, block):
        t = np.arange(start, min(n, start + block), dtype=np.float64) / sample_rate
        f0 = 110.0 * 2 ** (np.floor(t / 2) % 12 / 12)  # a note every 2 s
        tonal = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3))
        pulse = np.exp(-40 * (t % 0.5)) * rng.standard_normal(t.shape)
        noise = 0.05 * rng.standard_normal((2, t.size))
        out[:, start:start + t.size] = (0.2 * tonal + 0.3 * pulse + noise).astype(np.float32)
    return out


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def worker(args) -> dict:
    """One measurement in this process: prints a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    import asteroid_frugal  # noqa: F401
    from asteroid_frugal.config import load_config
    from asteroid_frugal.inference import separate_long
    from asteroid_frugal.model import build_model

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build_model(load_config()).eval().to(device)
    sr = int(model.sample_rate)
    song = torch.from_numpy(synthetic_song(args.minutes * 60, sr))
    warm = song[:, : sr * 2]
    with torch.no_grad():  # warm-up (kernel selection, allocator)
        model(warm[None].to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated()
    base = rss_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    if args.mode == "onepass":
        with torch.no_grad():
            out = model(song[None].to(device))[0].cpu()
    else:
        out = separate_long(model, song, args.chunk_seconds, args.overlap_seconds, args.batch_chunks,
                            device=device, precision="bfloat16" if args.mode.endswith("bf16") else "float32")
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = dict(mode=args.mode, minutes=args.minutes, device=str(device), threads=args.threads,
                  seconds=seconds, rtf=seconds / (args.minutes * 60), cpu_seconds=cpu_seconds,
                  cpu_rtf=cpu_seconds / (args.minutes * 60), peak_rss_mb=peak,
                  inference_mb=peak - base, output_mb=out.numel() * 4 / 2 ** 20)
    if device.type == "cuda":
        result["gpu_inference_mb"] = (torch.cuda.max_memory_allocated() - base_gpu) / 2 ** 20
    if args.mode != "onepass" and args.check_minutes and args.minutes <= args.check_minutes:
        with torch.no_grad():  # how close chunked is to one pass (same process, small songs only)
            ref = model(song[None].to(device))[0].cpu()
        result["snr_vs_onepass_db"] = float(10 * torch.log10(ref.pow(2).sum() / (out - ref).pow(2).sum()))
    print(json.dumps(result), flush=True)
    return result


def profile_worker(args) -> dict:
    """Where inference time goes: the model's 4 BLSTM layers on one 30 s chunk's frames, run as
    ``batch_chunks`` sequences one after the other (one pass) or as one batch (chunked), fp32 and
    bf16, and the share of a whole-model forward spent in the LSTM (torch.profiler)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    from asteroid_frugal.config import load_config
    from asteroid_frugal.model import build_model

    torch.manual_seed(0)
    model = build_model(load_config()).eval()
    frames = int(args.chunk_seconds * model.sample_rate / model.kernel_size)
    x = torch.randn(args.batch_chunks, frames, 500)
    out = dict(frames=frames, batch=args.batch_chunks)
    for dtype in ("float32", "bfloat16"):
        auto = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16")

        def lstm(inp):
            y = inp
            for block in model.masker.blocks:
                y = block(y)[0]
            return y

        with torch.no_grad(), auto:
            lstm(x[:1, :200])  # warm-up
            t = time.perf_counter()
            for i in range(args.batch_chunks):
                lstm(x[i:i + 1])
            out[f"sequential_{dtype}_s"] = time.perf_counter() - t
            t = time.perf_counter()
            lstm(x)
            out[f"batched_{dtype}_s"] = time.perf_counter() - t
    song = torch.from_numpy(synthetic_song(args.chunk_seconds, int(model.sample_rate)))[None]
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model(song)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    rnn = sum(e.self_cpu_time_total for e in prof.key_averages() if "rnn" in e.key or "lstm" in e.key)
    out["lstm_share_of_forward"] = rnn / total
    print(json.dumps(out), flush=True)
    return out


def print_profile(p: dict) -> None:
    print(f"\nwhere the time goes ({p['frames']} frames per chunk, {p['batch']} chunks): "
          f"the 4 BLSTM layers take {p['lstm_share_of_forward'] * 100:.0f}% of a forward pass (torch.profiler)")
    print("| LSTM stack, precision | chunks one by one (s) | chunks as one batch (s) | batching gain |")
    print("| --- | ---: | ---: | ---: |")
    for dtype in ("float32", "bfloat16"):
        a, b = p[f"sequential_{dtype}_s"], p[f"batched_{dtype}_s"]
        print(f"| {dtype} | {a:.2f} | {b:.2f} | {a / b:.2f}x |")


def available_mb() -> float:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) / 1024


def run_one(args, mode: str, minutes: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--mode", mode, "--minutes", str(minutes),
           "--device", args.device, "--threads", str(args.threads), "--chunk_seconds", str(args.chunk_seconds),
           "--overlap_seconds", str(args.overlap_seconds), "--batch_chunks", str(args.batch_chunks),
           "--check_minutes", str(args.check_minutes)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(mode=mode, minutes=minutes, skipped=f"failed (exit {proc.returncode}): {tail}")
    return json.loads(lines[-1])


def main(argv=None):
    from asteroid_frugal.inference import chunking

    shipped = chunking()   # conf.yml's evaluation.chunk_seconds, overlap_seconds, batch_chunks
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 4, 10])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--chunk_seconds", type=float, default=shipped["chunk_seconds"])
    parser.add_argument("--overlap_seconds", type=float, default=shipped["overlap_seconds"])
    parser.add_argument("--batch_chunks", type=int, default=shipped["batch_chunks"])
    parser.add_argument("--check_minutes", type=float, default=1.0,
                        help="songs up to this length also compare chunked output with one pass (SNR)")
    parser.add_argument("--json", default=None, help="also write all results to this JSON file")
    parser.add_argument("--profile", action="store_true",
                        help="only print where the time goes (LSTM share, batching gain in fp32 and bf16)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="chunked", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profile:
        print(f"FrugalTasNet, paper configuration (conf.yml), CPU, {args.threads} thread(s)")
        print_profile(profile_worker(args))
        return
    if args.worker:
        args.minutes = args.minutes[0]
        worker(args)
        return

    print(f"FrugalTasNet, paper configuration (conf.yml) on {args.device}, {args.threads} thread(s); chunks of "
          f"{args.chunk_seconds:g} s, overlap {args.overlap_seconds:g} s, {args.batch_chunks} per batch", flush=True)
    results = []
    for minutes in sorted(args.minutes):
        for mode in args.modes:
            if mode == "onepass":
                prior = [r for r in results if r["mode"] == "onepass" and "inference_mb" in r]
                if prior:
                    need = prior[-1]["inference_mb"] * minutes / prior[-1]["minutes"]
                    if need > 0.7 * available_mb():
                        results.append(dict(mode=mode, minutes=minutes, skipped=(
                            f"needs about {need / 1024:.1f} GB (linear in length), "
                            f"{available_mb() / 1024:.1f} GB available")))
                        print(f"  {minutes:g} min {mode}: skipped ({results[-1]['skipped']})", flush=True)
                        continue
            result = run_one(args, mode, minutes)
            results.append(result)
            print(f"  {minutes:g} min {mode}: " + (result.get("skipped") or
                  f"{result['seconds']:.1f} s, RTF {result['rtf']:.3f} (CPU {result['cpu_rtf']:.3f}), peak RSS {result['peak_rss_mb']:.0f} MB "
                  f"(+{result['inference_mb']:.0f} MB)"), flush=True)
    print_table(results)
    if args.json:
        from asteroid_frugal.utils import write_json_atomic

        write_json_atomic(args.json, dict(args=vars(args), results=results))


def print_table(results):
    rows = ["| song | mode | wall (s) | RTF | CPU RTF | speed-up vs one pass (wall / CPU) | peak RSS (MB) "
            "| inference memory (MB) | SNR vs one pass (dB) |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        if "skipped" in r:
            rows.append(f"| {r['minutes']:g} min | {r['mode']} | skipped: {r['skipped']} | | | | | | |")
            continue
        one = next((o for o in results if o["mode"] == "onepass" and o["minutes"] == r["minutes"]
                    and "rtf" in o), None)
        speed = f"{one['rtf'] / r['rtf']:.2f}x / {one['cpu_rtf'] / r['cpu_rtf']:.2f}x" if one else "n/a"
        mem = f"{r['inference_mb']:.0f}" + (f" (GPU {r['gpu_inference_mb']:.0f})" if "gpu_inference_mb" in r else "")
        snr = f"{r['snr_vs_onepass_db']:.1f}" if "snr_vs_onepass_db" in r else ""
        rows.append(f"| {r['minutes']:g} min | {r['mode']} | {r['seconds']:.1f} | {r['rtf']:.3f} "
                    f"| {r['cpu_rtf']:.3f} | {speed} "
                    f"| {r['peak_rss_mb']:.0f} | {mem} | {snr} |")
    print("\n".join(rows))


if __name__ == "__main__":
    from asteroid_frugal.cli.common import setup_process

    setup_process(sys.argv[1:])   # the threading policy, set as every command sets it
    main()
