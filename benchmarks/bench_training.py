#!/usr/bin/env python
"""Training throughput of FrugalTasNet (paper configuration) against Asteroid's stock LSTMTasNet.

Prints, for each model: seconds per training step (forward + backward + Adam) on a batch of
stereo excerpts, stereo audio seconds processed per second, peak RSS (each model measured in
its own subprocess), the model's FLOPs per audio second, and the share of this machine's
measured matrix-product rate (float32 GEMM) that the training step achieves.

The stock model runs stereo as two mono passes (it is mono only), at the closest settings:
500 filters, kernel 220, stride 220, 4 x 500 BLSTM, no dropout.

    .venv/bin/python benchmarks/bench_training.py [--batch 2 --seconds 5 --steps 3 --device cpu]
"""
import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def frugal_flops_per_frame(n_filters=500, kernel=220, channels=2, hidden=500, layers=4, n_src=2, bidir=True):
    """Forward FLOPs (2 per multiply-add) for one segment of ``kernel`` samples."""
    d = 2 if bidir else 1
    enc = 2 * 2 * channels * kernel * n_filters
    lstm = 0
    for i in range(layers):
        n_in = n_filters if i == 0 else d * hidden
        lstm += d * 2 * 4 * hidden * (n_in + hidden)
    mask = 2 * d * hidden * n_src * n_filters
    dec = 2 * n_filters * channels * kernel * n_src
    return enc + lstm + mask + dec


def stock_flops_per_frame(**kw):
    """Stock model: mono, so one pass per channel."""
    return 2 * frugal_flops_per_frame(channels=1, **kw)


def gemm_rate(device: str, n: int = 1024, reps: int = 20) -> float:
    """Measured float32 matrix-product rate (FLOP/s) with the current thread settings."""
    import torch

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def child(which: str, batch: int, seconds: float, steps: int, device: str, precision: str) -> dict:
    import torch

    from asteroid.models import LSTMTasNet
    from asteroid_frugal.losses import TargetRestSISNRLoss
    from asteroid_frugal.model import FrugalTasNet

    torch.manual_seed(0)
    sr = 44100
    n = int(seconds * sr)
    mix = torch.randn(batch, 2, n, device=device)
    targets = torch.randn(batch, 2, 2, n, device=device)
    if which == "frugal":
        model = FrugalTasNet().to(device)
        forward = model
    else:
        model = LSTMTasNet(n_src=2, n_layers=4, hid_size=500, dropout=0.0, bidirectional=True,
                           n_filters=500, kernel_size=220, stride=220, sample_rate=sr).to(device)

        def forward(x):  # stereo as two mono passes: (B, 2, T) -> (B*2, T) -> (B, n_src, 2, T)
            out = model(x.reshape(-1, x.shape[-1]))
            return out.reshape(x.shape[0], 2, 2, -1)[..., : x.shape[-1]].transpose(1, 2)
    loss_fn = TargetRestSISNRLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        opt.zero_grad()
        with autocast:
            est = forward(mix)
        loss, _ = loss_fn(est.float(), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    out = dict(step_s=dt, audio_s_per_s=batch * seconds / dt,
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               gemm_flops=gemm_rate(device))
    if device == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batch, args.seconds, args.steps, args.device, args.precision)))
        return
    import torch

    rows = {}
    for which in ("frugal", "stock"):
        cmd = [sys.executable, __file__, "--child", which, "--batch", str(args.batch), "--seconds", str(args.seconds),
               "--steps", str(args.steps), "--device", args.device, "--precision", args.precision]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            sys.exit(1)
        rows[which] = json.loads(out.stdout.strip().splitlines()[-1])
    frames_per_s = 44100 / 220
    flops = {"frugal": 3 * frugal_flops_per_frame() * frames_per_s, "stock": 3 * stock_flops_per_frame() * frames_per_s}
    print(f"device {args.device} ({torch.get_num_threads()} threads), {args.precision}, batch {args.batch} x "
          f"{args.seconds:g} s stereo, 44.1 kHz; training FLOPs counted as 3 x forward")
    print(f"{'model':<22}{'step (s)':>10}{'audio s/s':>11}{'peak RSS MB':>13}{'GFLOP/audio s':>15}{'% of GEMM':>11}")
    for which, name in (("frugal", "FrugalTasNet (joint)"), ("stock", "LSTMTasNet (2x mono)")):
        r = rows[which]
        share = flops[which] * r["audio_s_per_s"] / r["gemm_flops"] * 100
        print(f"{name:<22}{r['step_s']:>10.3f}{r['audio_s_per_s']:>11.2f}{r['peak_rss_mb']:>13.0f}"
              f"{flops[which] / 1e9:>15.1f}{share:>10.1f}%")
    print(f"throughput ratio FrugalTasNet / stock: {rows['frugal']['audio_s_per_s'] / rows['stock']['audio_s_per_s']:.2f}x"
          f"   measured GEMM rate: {rows['frugal']['gemm_flops'] / 1e9:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
