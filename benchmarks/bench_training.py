#!/usr/bin/env python
"""Training throughput of FrugalTasNet (paper configuration) against Asteroid's stock LSTMTasNet.

Prints, for each model: seconds per training step (forward + backward + Adam) on a batch of
stereo excerpts, stereo audio seconds processed per second, peak RSS (each model measured in
its own subprocess), the model's FLOPs per audio second, and the share of this machine's
measured matrix-product rate (float32 GEMM) that the training step achieves.

``--profile`` adds where the time goes: a torch.profiler breakdown of one training step of
each model (self time by operator family), and the measurements that explain the ratio: the
LSTM alone (forward + backward of one 2-layer BLSTM block) at the two models' batch shapes, and
the matrix-product rate at the LSTM's recurrent shape (batch x 500 by 500 x 2000) against the
large square GEMM.

The stock model runs stereo as two mono passes (it is mono only), at the closest settings:
500 filters, kernel 220, stride 220, 4 x 500 BLSTM, no dropout.

    .venv/bin/python benchmarks/bench_training.py [--batch 2 --seconds 5 --steps 3 --repeats 3 --device cpu] [--profile]

Each model runs ``--repeats`` times in its own subprocess, the two alternated (a shared machine's
speed drifts); the table shows the median step and the ratio's range over the run pairs.
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


def seconds_per_call(fn, reps: int, device: str, warmup: int = 1) -> float:
    """Mean wall time of ``fn()`` over ``reps`` calls after ``warmup`` calls (CUDA synchronised)."""
    import torch

    for _ in range(warmup):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps


def gemm_rate(device: str, dtype: str = "fp32") -> float:
    """This machine's matrix-product rate (FLOP/s) with the current thread settings: the best of
    square products of 1024, 2048 and 3072, through torch.mm and, on CPU, also through oneDNN
    (the library PyTorch's CPU LSTM runs on). On AMD CPUs the MKL behind torch.mm reaches about
    half of what oneDNN does, so torch.mm alone would understate the limit."""
    import torch

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    best = 0.0
    for n in (1024, 2048, 3072):
        a = torch.randn(n, n, device=device, dtype=torch_dtype)
        products = [lambda: a @ a]
        if device == "cpu" and torch.backends.mkldnn.is_available():
            from torch.utils import mkldnn as mkldnn_utils

            lin = torch.nn.Linear(n, n, bias=False).to(torch_dtype)
            dnn, a_dnn = mkldnn_utils.to_mkldnn(lin, torch_dtype), a.to_mkldnn()
            products.append(lambda: dnn(a_dnn))
        reps = max(3, int(20 * (1024 / n) ** 3))
        for product in products:
            best = max(best, 2 * n ** 3 / seconds_per_call(product, reps, device, warmup=2))
    return best


# Operator families of the profile, by substring of the aten/profiler op name (first match wins).
OP_FAMILIES = [
    ("LSTM backward", ("rnn_layer_backward", "lstmbackward", "mkldnnrnnlayerbackward", "_thnn_fused_lstm_cell_backward")),
    ("LSTM forward", ("mkldnn_rnn", "aten::lstm", "lstm_cell", "_thnn_fused_lstm")),
    ("matrix products", ("addmm", "aten::mm", "matmul", "linear", "bmm")),
    ("optimizer (Adam, clipping)", ("adam", "_foreach", "clip", "norm")),
    ("element-wise / copies", ("mul", "add", "div", "sigmoid", "relu", "softmax", "copy", "cat", "pad",
                               "sum", "mean", "sub", "clone", "contiguous", "fill", "zero")),
]


def op_family(name: str) -> str:
    low = name.lower()
    for family, keys in OP_FAMILIES:
        if any(k in low for k in keys):
            return family
    return "other"


def profile_step(step) -> dict:
    """Self CPU time of one call of ``step`` by operator family (seconds) and the top operators."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    families, ops = {}, []
    for ev in prof.key_averages():
        t = ev.self_cpu_time_total / 1e6
        families[op_family(ev.key)] = families.get(op_family(ev.key), 0.0) + t
        ops.append((ev.key, t, ev.count))
    ops.sort(key=lambda o: -o[1])
    return dict(families=families, top=ops[:8])


def lstm_block_time(batch: int, frames: int, device: str, reps: int = 2) -> float:
    """Seconds for forward + backward of one 2-layer 500-cell BLSTM block (the model's unit)."""
    import torch

    lstm = torch.nn.LSTM(500, 500, num_layers=2, batch_first=True, bidirectional=True).to(device)
    x = torch.randn(batch, frames, 500, device=device, requires_grad=True)

    def run():
        y, _ = lstm(x)
        y.sum().backward()

    return seconds_per_call(run, reps, device)


def recurrent_gemm_rate(batch: int, device: str, reps: int = 2000) -> float:
    """FLOP/s of the LSTM's per-time-step product: (batch x 500) by (500 x 4*500)."""
    import torch

    h, w = torch.randn(batch, 500, device=device), torch.randn(500, 2000, device=device)
    return 2 * batch * 500 * 2000 / seconds_per_call(lambda: h @ w, reps, device, warmup=50)


def child(which: str, batch: int, seconds: float, steps: int, device: str, precision: str,
          profile: bool = False) -> dict:
    import torch

    from asteroid.models import LSTMTasNet
    from asteroid_frugal.config import load_config
    from asteroid_frugal.model import build_model
    from asteroid_frugal.system import make_loss

    conf = load_config()  # the paper's configuration
    torch.manual_seed(0)
    sr = int(conf["data"]["sample_rate"])
    n = int(seconds * sr)
    mix = torch.randn(batch, 2, n, device=device)
    targets = torch.randn(batch, 2, 2, n, device=device)
    if which == "frugal":
        model = build_model(conf).to(device)
        forward = model
    else:
        model = LSTMTasNet(n_src=2, n_layers=4, hid_size=500, dropout=0.0, bidirectional=True,
                           n_filters=500, kernel_size=220, stride=220, sample_rate=sr).to(device)

        def forward(x):  # stereo as two mono passes: (B, 2, T) -> (B*2, T) -> (B, n_src, 2, T)
            out = model(x.reshape(-1, x.shape[-1]))
            return out.reshape(x.shape[0], 2, 2, -1)[..., : x.shape[-1]].transpose(1, 2)
    loss_fn = make_loss(conf)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        opt.zero_grad()
        with autocast:
            est = forward(mix)
        loss, _ = loss_fn(est.float(), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), conf["training"]["gradient_clipping"])
        opt.step()

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    dt = seconds_per_call(step, steps, device, warmup=0)
    out = dict(step_s=dt, audio_s_per_s=batch * seconds / dt,
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               gemm_flops=gemm_rate(device, precision))
    if device == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    if profile:
        out["profile"] = profile_step(step)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="alternated runs of each model (median reported)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--profile", action="store_true", help="also print where the time goes (see docstring)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batch, args.seconds, args.steps, args.device, args.precision,
                               args.profile)))
        return
    import torch

    runs = {"frugal": [], "stock": []}
    for rep in range(args.repeats):  # alternate the two models so that drifts of a shared machine hit both
        for which in ("frugal", "stock"):
            cmd = [sys.executable, __file__, "--child", which, "--batch", str(args.batch),
                   "--seconds", str(args.seconds), "--steps", str(args.steps), "--device", args.device,
                   "--precision", args.precision]
            cmd += ["--profile"] if args.profile and rep == 0 else []
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                sys.exit(1)
            runs[which].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = {}
    for which, rs in runs.items():  # median step time, highest peak memory, best GEMM rate
        rows[which] = dict(sorted(rs, key=lambda r: r["step_s"])[len(rs) // 2])
        rows[which]["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rs)
        rows[which]["profile"] = rs[0].get("profile")
    gemm = max(r["gemm_flops"] for rs in runs.values() for r in rs)
    pair_ratios = [f["audio_s_per_s"] / s["audio_s_per_s"] for f, s in zip(runs["frugal"], runs["stock"])]
    frames_per_s = 44100 / 220
    flops = {"frugal": 3 * frugal_flops_per_frame() * frames_per_s, "stock": 3 * stock_flops_per_frame() * frames_per_s}
    print(f"device {args.device} ({torch.get_num_threads()} threads), {args.precision}, batch {args.batch} x "
          f"{args.seconds:g} s stereo, 44.1 kHz; training FLOPs counted as 3 x forward")
    print(f"{'model':<22}{'step (s)':>10}{'audio s/s':>11}{'peak RSS MB':>13}{'GFLOP/audio s':>15}{'% of limit':>11}")
    for which, name in (("frugal", "FrugalTasNet (joint)"), ("stock", "LSTMTasNet (2x mono)")):
        r = rows[which]
        share = flops[which] * r["audio_s_per_s"] / gemm * 100
        print(f"{name:<22}{r['step_s']:>10.3f}{r['audio_s_per_s']:>11.2f}{r['peak_rss_mb']:>13.0f}"
              f"{flops[which] / 1e9:>15.1f}{share:>10.1f}%")
    print(f"throughput ratio FrugalTasNet / stock (medians of {args.repeats} alternated runs of {args.steps} steps): "
          f"{rows['frugal']['audio_s_per_s'] / rows['stock']['audio_s_per_s']:.2f}x; per run pair "
          f"{min(pair_ratios):.2f}-{max(pair_ratios):.2f}x")
    print(f"FLOP limit: best {args.precision} square GEMM (torch.mm or oneDNN) measured in these runs {gemm / 1e9:.0f} GFLOP/s")
    if args.profile:
        print_profile(rows, args, gemm)


def print_profile(rows: dict, args, gemm: float) -> None:
    """Where the time goes, and the LSTM's batch scaling that bounds the ratio."""
    print("\nwhere the time of one training step goes (torch.profiler, self CPU time):")
    names = (("frugal", "FrugalTasNet"), ("stock", "LSTMTasNet x2"))
    families = sorted({f for w, _ in names for f in rows[w]["profile"]["families"]},
                      key=lambda f: -rows["frugal"]["profile"]["families"].get(f, 0.0))
    print(f"{'operator family':<30}" + "".join(f"{n:>22}" for _, n in names))
    for f in families:
        cells = []
        for w, _ in names:
            fam = rows[w]["profile"]["families"]
            t, total = fam.get(f, 0.0), sum(fam.values())
            cells.append(f"{t:>12.2f} s ({t / total * 100:>4.1f}%)")
        print(f"{f:<30}" + "".join(f"{c:>22}" for c in cells))
    for w, n in names:
        print(f"top operators, {n}: " + ", ".join(f"{k} {t:.2f} s x{c}" for k, t, c in rows[w]["profile"]["top"][:5]))
    frames = int(args.seconds * 44100 / 220) + 1
    b = args.batch
    t_joint, t_mono = lstm_block_time(b, frames, args.device), lstm_block_time(2 * b, frames, args.device)
    print(f"\none 2-layer BLSTM block, forward + backward, {frames} frames: batch {b} (joint stereo) {t_joint:.2f} s, "
          f"batch {2 * b} (two mono passes) {t_mono:.2f} s: doubling the batch costs {t_mono / t_joint:.2f}x, "
          f"so the joint model's LSTM can be at most {t_mono / t_joint:.2f}x faster than the stock one's")
    square = gemm
    for bb in (b, 2 * b, 64):
        r = recurrent_gemm_rate(bb, args.device)
        print(f"recurrent product ({bb} x 500) @ (500 x 2000): {r / 1e9:6.1f} GFLOP/s = {r / square * 100:5.1f}% of the FLOP limit")


if __name__ == "__main__":
    from asteroid_frugal.cli.common import setup_process

    setup_process(sys.argv[1:])   # the threading policy, set as every command sets it
    main()
