#!/usr/bin/env python
"""The GPU check: what the paper's model does on this machine's GPU, in one table (benchmarks/gpu_check.sh).

    bash benchmarks/gpu_check.sh                  # < 8 min on one GPU; a CPU fallback (tiny sizes) elsewhere
    .venv/bin/python benchmarks/bench_gpu.py --steps 5 --song_seconds 60

Measures, with the paper's model (conf.yml: N=500, L=220, 4 x 500 BLSTM) at the paper's batch
(``training.batch_size`` excerpts of ``shaping.excerpt_seconds``):

* training steps per second (forward, SI-SNR loss, backward, gradient clipping, Adam) in float32
  and in bf16-mixed (autocast, as Lightning's ``precision: bf16-mixed``), peak GPU memory, and
  the FLOP rate achieved (3 x the forward multiply-adds counted by bench_roofline.py);
* whether cuDNN runs the LSTM: ``torch.backends.cudnn.enabled`` and a profiler trace of one step,
  which must show ``aten::_cudnn_rnn`` and cuDNN's RNN kernels (on CPU: which LSTM kernel ran);
* the separation real-time factor of the paper model (``inference.separate_long``, float32, the
  configured chunks, at ``evaluation.batch_chunks`` and at 16 chunks per pass);
* the fast BSS Eval (``bsseval_fast``) of ``--bss_seconds`` of two stereo sources on the GPU
  against the CPU (time, and the largest difference between the two results, dB).

Without a GPU it runs the same code on the CPU at tiny sizes (a 32-filter model, 1 s excerpts) and
says so in its first line: a check that the script works, not a measurement of anything.
"""
import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# kernel / operator names that show which LSTM implementation ran
CUDNN_MARKS = ("cudnn", "rnn_", "lstm_elementwise", "elemwisernn", "persist")


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, reps: int) -> float:
    """Mean seconds of ``fn()`` over ``reps`` calls (synchronised)."""
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / reps


def training_step(model, loss_fn, opt, mix, targets, precision: str, device: str, clip: float):
    import torch

    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            est = model(mix)
        loss, _ = loss_fn(est.float(), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)   # training.gradient_clipping
        opt.step()
    return step


def bench_training(conf, device: str, batch: int, seconds: float, steps: int, precision: str) -> dict:
    import torch

    from asteroid_frugal.model import build_model
    from asteroid_frugal.system import make_loss, make_optimizer

    torch.manual_seed(0)
    sr = int(conf["data"]["sample_rate"])
    n = int(seconds * sr)
    model = build_model(conf).to(device).train()
    mix = torch.randn(batch, 2, n, device=device) * 0.1
    targets = torch.randn(batch, 2, 2, n, device=device) * 0.1
    step = training_step(model, make_loss(conf), make_optimizer(model, conf), mix, targets, precision, device,
                         conf["training"]["gradient_clipping"])
    step()   # warm-up (cuDNN plans, allocator)
    step()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    dt = timed(step, device, steps)
    out = dict(step_s=dt, steps_per_s=1 / dt, audio_per_s=batch * seconds / dt,
               gpu_mb=torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else float("nan"))
    del model, mix, targets
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def lstm_kernels(conf, device: str, batch: int, seconds: float) -> dict:
    """Which LSTM implementation one training step ran: operator and kernel names from the profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from asteroid_frugal.model import build_model
    from asteroid_frugal.system import make_loss, make_optimizer

    model = build_model(conf).to(device).train()
    n = int(seconds * int(conf["data"]["sample_rate"]))
    mix = torch.randn(batch, 2, n, device=device) * 0.1
    targets = torch.randn(batch, 2, 2, n, device=device) * 0.1
    step = training_step(model, make_loss(conf), make_optimizer(model, conf), mix, targets, "32-true", device,
                         conf["training"]["gradient_clipping"])
    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        sync(device)
    names = [ev.key for ev in prof.key_averages()]
    ops = sorted({k for k in names if "rnn" in k.lower() or "lstm" in k.lower()})
    kernels = sorted({k for k in names if any(m in k.lower() for m in CUDNN_MARKS) and not k.startswith("aten::")})
    return dict(cudnn_enabled=bool(torch.backends.cudnn.enabled),
                cudnn_version=torch.backends.cudnn.version() if device == "cuda" else None,
                cudnn_rnn_op="aten::_cudnn_rnn" in names, lstm_ops=ops, kernels=kernels)


def bench_separation(conf, device: str, song_seconds: float, batch_chunks: int) -> float:
    """Real-time factor (wall seconds per second of audio) of separating one song, float32."""
    import torch

    from asteroid_frugal.inference import chunking, separate_long
    from asteroid_frugal.model import build_model

    model = build_model(conf).to(device).eval()
    opts = chunking(conf)
    mix = torch.randn(2, int(song_seconds * int(conf["data"]["sample_rate"]))) * 0.1

    def run():
        separate_long(model, mix, opts["chunk_seconds"], opts["overlap_seconds"], batch_chunks, device=device)
    run()   # warm-up
    return timed(run, device, 1) / song_seconds


def bench_bss(seconds: float, device: str) -> dict:
    """Fast BSS Eval of two stereo sources: seconds on ``device`` and on the CPU, largest difference (dB)."""
    import numpy as np

    from asteroid_frugal.bsseval_fast import evaluate
    from asteroid_frugal.runtime import torch_threads

    rng = np.random.default_rng(0)
    n = int(seconds * 44100)
    refs = rng.standard_normal((2, n, 2))
    ests = refs + 0.3 * rng.standard_normal((2, n, 2)) + 0.2 * refs[::-1]
    out = {}
    for where in dict.fromkeys([device, "cpu"]):
        with torch_threads(1 if where == "cpu" else None):   # evaluation.bss_threads' shipped value on CPU
            evaluate(refs[:, :44100 * 2], ests[:, :44100 * 2], device=where)   # warm-up
            start = time.perf_counter()
            result = np.stack(evaluate(refs, ests, device=where))
            sync(where)
            out[where] = (time.perf_counter() - start, result)
    diff = float(np.nanmax(np.abs(out[device][1] - out["cpu"][1]))) if device != "cpu" else 0.0
    return dict(seconds={k: v[0] for k, v in out.items()}, max_diff_db=diff)


def roofline_flops_per_step(conf, batch: int, seconds: float) -> float:
    """Training FLOPs of one step: 3 x (2 x forward multiply-adds), from bench_roofline's count."""
    from bench_roofline import model_macs_per_segment

    from asteroid_frugal.model import build_model

    sr, L = int(conf["data"]["sample_rate"]), int(conf["filterbank"]["kernel_size"])
    stride = int(conf["filterbank"]["stride"] or L)
    macs = sum(model_macs_per_segment(build_model(conf)).values())
    return 3 * 2 * macs * (sr / stride) * seconds * batch


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="timed training steps per precision (GPU 10, CPU 2)")
    p.add_argument("--song_seconds", type=float, default=None, help="song separated for the RTF (GPU 240, CPU 4)")
    p.add_argument("--bss_seconds", type=float, default=None, help="audio of the BSS Eval comparison (GPU 240, CPU 4)")
    p.add_argument("--cpu", action="store_true", help="the CPU fallback even where a GPU is present")
    args = p.parse_args(argv)
    import torch

    from asteroid_frugal.config import load_config
    from asteroid_frugal.utils import cpu_name

    gpu = torch.cuda.is_available() and not args.cpu
    device = "cuda" if gpu else "cpu"
    if gpu:
        conf = load_config()   # the paper's model and batch
        steps, song_s, bss_s = args.steps or 10, args.song_seconds or 240, args.bss_seconds or 240
        print(f"GPU check on {torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda}, "
              f"cuDNN {torch.backends.cudnn.version()}); host {cpu_name()}")
    else:
        conf = load_config(overrides=["filterbank.n_filters=32", "masker.hidden_size=32", "masker.n_layers=2",
                                      "training.batch_size=1", "shaping.excerpt_seconds=1",
                                      "evaluation.chunk_seconds=2", "evaluation.overlap_seconds=0.5"])
        steps, song_s, bss_s = args.steps or 2, args.song_seconds or 4, args.bss_seconds or 4
        print(f"no GPU: CPU fallback at tiny sizes (N=32, 2 x 32 BLSTM, batch 1 x 1 s): checks that the script runs, "
              f"measures nothing of the paper model; host {cpu_name()}, torch {torch.__version__}")
    batch, seconds = int(conf["training"]["batch_size"]), float(conf["shaping"]["excerpt_seconds"])
    fb, mk = conf["filterbank"], conf["masker"]
    model_txt = (f"N={fb['n_filters']}, L={fb['kernel_size']}, {mk['n_layers']} x {mk['hidden_size']} "
                 f"{'B' if mk['bidirectional'] else ''}LSTM")
    flops = roofline_flops_per_step(conf, batch, seconds)
    rows = []
    precisions = ["32-true", "bf16-mixed"] if (gpu and torch.cuda.is_bf16_supported()) or not gpu else ["32-true"]
    for precision in precisions:
        r = bench_training(conf, device, batch, seconds, steps, precision)
        rows.append((f"training step, {precision}, batch {batch} x {seconds:g} s ({model_txt})",
                     f"{r['steps_per_s']:.3g} steps/s ({r['step_s']:.3g} s/step, {r['audio_per_s']:.0f} s of audio/s, "
                     f"{flops * r['steps_per_s'] / 1e12:.3g} TFLOP/s achieved"
                     + (f", peak GPU memory {r['gpu_mb'] / 1024:.2f} GiB)" if gpu else ")")))
    k = lstm_kernels(conf, device, batch, seconds)
    rows.append(("torch.backends.cudnn.enabled", str(k["cudnn_enabled"]) + (f" (cuDNN {k['cudnn_version']})" if gpu else "")))
    if gpu:
        verdict = "yes" if k["cudnn_rnn_op"] and k["kernels"] else "NO"
        rows.append(("LSTM runs on cuDNN (profiler: aten::_cudnn_rnn + cuDNN kernels)",
                     f"{verdict}; kernels: {', '.join(x[:60] for x in k['kernels'][:4]) or 'none'}"))
    else:
        rows.append(("LSTM implementation (profiler, CPU)", ", ".join(k["lstm_ops"]) or "none seen"))
    ev_batch = int(conf["evaluation"]["batch_chunks"])
    for bc in dict.fromkeys([ev_batch, 16 if gpu else ev_batch]):
        rtf = bench_separation(conf, device, song_s, bc)
        rows.append((f"separation RTF, float32, {song_s:g} s song, {conf['evaluation']['chunk_seconds']:g} s chunks x {bc}",
                     f"{rtf:.4g} ({1 / rtf:.0f}x real time)"))
    b = bench_bss(bss_s, device)
    cpu_s = b["seconds"]["cpu"]
    if gpu:
        rows.append((f"fast BSS Eval, 2 stereo sources x {bss_s:g} s: GPU / CPU (1 thread)",
                     f"{b['seconds']['cuda']:.2f} s / {cpu_s:.2f} s = {cpu_s / b['seconds']['cuda']:.1f}x; "
                     f"largest difference {b['max_diff_db']:.2g} dB"))
    else:
        rows.append((f"fast BSS Eval, 2 stereo sources x {bss_s:g} s, CPU (1 thread)", f"{cpu_s:.2f} s (no GPU to compare)"))
    rows.append(("FLOPs per training step (3 x forward, bench_roofline's count)", f"{flops / 1e12:.4g} TFLOP"))
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | value |\n|{'-' * (width + 2)}|---|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench_roofline beside this file
    from asteroid_frugal.cli.common import setup_process

    setup_process(sys.argv[1:])   # the threading policy, set as every command sets it
    main()
