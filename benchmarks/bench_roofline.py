#!/usr/bin/env python
"""How fast separation could be on this CPU: the model's arithmetic per second of audio against
the machine's measured matrix-multiply rate (a roofline lower bound on the real-time factor).

    .venv/bin/python benchmarks/bench_roofline.py                  # paper-size model, all threads
    .venv/bin/python benchmarks/bench_roofline.py --threads 1
    .venv/bin/python benchmarks/bench_roofline.py --set filterbank.n_filters=128 masker.hidden_size=128

Counts the multiply-adds of one forward pass from the model's own layers (every weight of a
linear layer or LSTM is used once per segment, the decoder once per source), measures the best
rate of large float32 (and, where the CPU runs it natively, bfloat16) matrix products with the
process's threads, and of the two operations the BLSTM is made of at separation's shapes
(``evaluation.batch_chunks`` chunks of ``evaluation.chunk_seconds``): the input projection over
all segments at once (one large product) and one recurrent step (a product with only
``batch_chunks`` rows, repeated once per segment). The lower bound assumes every multiply-add
runs at the large-product rate; separation cannot beat it, and the recurrent steps, which
cannot be batched over time, keep it well above.
"""
import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def model_macs_per_segment(model) -> dict:
    """Multiply-adds per segment (one frame of ``kernel_size`` stereo samples), by layer kind."""
    import torch.nn as nn

    macs = {"lstm": 0, "linear": 0}
    n_src = model.masker.n_src
    for name, mod in model.named_modules():
        if isinstance(mod, nn.LSTM):
            macs["lstm"] += sum(p.numel() for n, p in mod.named_parameters() if n.startswith("weight_"))
        elif isinstance(mod, nn.Linear):
            uses = n_src if name.startswith("decoder") else 1   # the decoder runs once per source
            macs["linear"] += mod.in_features * mod.out_features * uses
    return macs


def best_rate(fn, flops: float, repeats: int = 5) -> float:
    """Best GFLOP/s of ``fn`` over ``repeats`` calls (after one warm-up)."""
    fn()
    best = min(_timed(fn) for _ in range(repeats))
    return flops / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the process' runtime setting)")
    p.add_argument("--set", nargs="*", default=[], help="config overrides of the model (default: conf.yml, paper size)")
    p.add_argument("--size", type=int, default=2048, help="side of the square products that measure the peak rate")
    p.add_argument("--measured_rtf", type=float, default=None, help="a measured separation RTF to set beside the bound")
    args = p.parse_args(argv)
    import asteroid_frugal  # noqa: F401 - threading policy before torch loads
    import torch

    from asteroid_frugal.config import get, load_config
    from asteroid_frugal.inference import native_bf16
    from asteroid_frugal.runtime import describe
    from asteroid_frugal.model import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    conf = load_config(overrides=args.set)
    model = build_model(conf).eval()
    sr, L = get(conf, "data.sample_rate"), get(conf, "filterbank.kernel_size")
    stride = get(conf, "filterbank.stride") or L
    macs = model_macs_per_segment(model)
    seg_per_s = sr / stride
    flops_per_audio_s = 2 * sum(macs.values()) * seg_per_s
    print(f"threads: {describe()}")
    print(f"model: N={get(conf, 'filterbank.n_filters')}, L={L}, {get(conf, 'masker.n_layers')} x "
          f"{get(conf, 'masker.hidden_size')} {'B' if get(conf, 'masker.bidirectional') else ''}LSTM; "
          f"{macs['lstm']:,} LSTM + {macs['linear']:,} linear multiply-adds per segment, "
          f"{seg_per_s:.1f} segments per second: {flops_per_audio_s / 1e9:.4g} GFLOP per second of stereo audio")

    n = args.size
    a, b = torch.randn(n, n), torch.randn(n, n)
    rates = {"float32": best_rate(lambda: a @ b, 2 * n ** 3)}
    if native_bf16("cpu"):
        ab, bb = a.bfloat16(), b.bfloat16()
        rates["bfloat16"] = best_rate(lambda: ab @ bb, 2 * n ** 3)
    # the BLSTM's two operations at separation's shapes (first layer, one direction)
    H, N = get(conf, "masker.hidden_size"), get(conf, "filterbank.n_filters")
    batch = get(conf, "evaluation.batch_chunks")
    T = int(get(conf, "evaluation.chunk_seconds") * seg_per_s)
    x, w_ih = torch.randn(batch * T, N), torch.randn(N, 4 * H)
    h, w_hh = torch.randn(batch, H), torch.randn(H, 4 * H)
    proj = best_rate(lambda: x @ w_ih, 2 * batch * T * N * 4 * H)
    steps = 200

    def recurrent():
        for _ in range(steps):
            torch.addmm(h.new_zeros(()), h, w_hh)
    step = best_rate(recurrent, 2 * steps * batch * H * 4 * H)
    print(f"measured: float32 {n}x{n} products {rates['float32']:.3g} GFLOP/s"
          + (f", bfloat16 {rates['bfloat16']:.0f} GFLOP/s" if "bfloat16" in rates else ", bfloat16 not native here")
          + f"; LSTM input projection ({batch * T} x {N} @ {N} x {4 * H}) {proj:.0f} GFLOP/s; "
          f"one recurrent step ({batch} x {H} @ {H} x {4 * H}) {step:.1f} GFLOP/s")
    for dtype, rate in rates.items():
        print(f"lower bound on the real-time factor, {dtype}, every multiply-add at the large-product rate: "
              f"{flops_per_audio_s / (rate * 1e9):.3g}")
    # a finer bound: the recurrent half (weight_hh) at the step rate, the rest at the large-product rate
    hh = sum(p.numel() for mod in model.modules() if isinstance(mod, torch.nn.LSTM)
             for nm, p in mod.named_parameters() if nm.startswith("weight_hh"))
    rest = 2 * (sum(macs.values()) - hh) * seg_per_s
    print(f"with the recurrent products at the measured step rate: "
          f"{2 * hh * seg_per_s / (step * 1e9) + rest / (rates['float32'] * 1e9):.3g} (float32)")
    if args.measured_rtf:
        print(f"measured separation RTF {args.measured_rtf:.3f}: "
              f"{flops_per_audio_s / args.measured_rtf / 1e9:.0f} GFLOP/s achieved")


if __name__ == "__main__":
    from asteroid_frugal.cli.common import setup_process

    setup_process(sys.argv[1:])   # the threading policy, set as every command sets it
    main()
