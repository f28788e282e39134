#!/usr/bin/env python
"""Benchmark and accuracy check of the fast BSS Eval v4 (asteroid_frugal.bsseval_fast) against museval.

    .venv/bin/python benchmarks/bench_bsseval.py --seconds 60 --threads 1            # speed, this CPU
    .venv/bin/python benchmarks/bench_bsseval.py --accuracy --seconds 0              # accuracy only
    .venv/bin/python benchmarks/bench_bsseval.py --seconds 240 --device cuda --out r.json

Speed: the real MUSDB18 track shipped with stempeg ("The Easton Ellises - Falcon 69",
6.1 s) looped to ``--seconds``, 4 stereo sources (or 2: vocals/accompaniment), model-like
estimates (reference + leakage of the others + noise); museval.evaluate vs the fast
evaluator, CPU time and wall time, and the fast evaluator's phases.
Accuracy (``--accuracy``): the largest per-frame difference to museval per metric on
synthetic and real signals, next to museval's own spread when the references are
perturbed by a relative 2^-40 (its round-off sensitivity).

``--threads N`` sets OMP/MKL/OpenBLAS/torch threads for both implementations; without it, the
shipped policy (conf.yml ``runtime``: all cores, passive OpenMP waiting) applies to both.
``--stems DIR`` reads ``DIR/{vocals,drums,bass,other}.wav`` (or an ``.npz`` with ``stems``
(4, T, C) and ``rate``) instead of stempeg's track (for machines without ffmpeg); ``--museval_metrics FILE`` loads museval's ``metrics.py``
directly when the museval package cannot be imported (its ``__init__`` needs ffmpeg).
"""
import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="speed test duration (0: no speed test)")
    p.add_argument("--sources", type=int, default=4, choices=(2, 4), help="4 stems, or vocals/accompaniment")
    p.add_argument("--threads", type=int, default=None, help="threads for both implementations")
    p.add_argument("--device", default="cpu", help="device of the fast evaluator (cpu, cuda)")
    p.add_argument("--skip_museval", action="store_true", help="time the fast evaluator only")
    p.add_argument("--accuracy", action="store_true", help="compare per-frame values with museval")
    p.add_argument("--accuracy_seconds", type=float, default=6.0)
    p.add_argument("--stems", default=None, help="folder with vocals/drums/bass/other.wav")
    p.add_argument("--museval_metrics", default=None, help="path of museval/metrics.py (no museval package)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    return p.parse_args()


ARGS = parse_args()
if ARGS.threads:  # before numpy/torch load their thread pools
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

sys.path.insert(0, str(REPO))
try:  # the package's threading policy (asteroid_frugal/runtime.py) before torch loads, as its commands get it
    import asteroid_frugal  # noqa: E402,F401
except ImportError:   # a machine without asteroid: the evaluator files alone (see repo_module)
    pass
import numpy as np  # noqa: E402
import torch  # noqa: E402


def repo_module(name):
    """``asteroid_frugal.<name>``; on a machine without asteroid, the file itself (these need only numpy/torch)."""
    import importlib
    import importlib.util
    try:
        return importlib.import_module(f"asteroid_frugal.{name}")
    except ImportError:
        spec = importlib.util.spec_from_file_location(name, REPO / "asteroid_frugal" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


bsseval_fast = repo_module("bsseval_fast")
_utils = repo_module("utils")
cpu_name, write_json_atomic = _utils.cpu_name, _utils.write_json_atomic

METRICS = ("SDR", "ISR", "SIR", "SAR")   # museval.evaluate's order


def museval_evaluate():
    """``museval.evaluate``, or the same two calls on museval's metrics module loaded from a file."""
    if ARGS.museval_metrics:
        import importlib.util

        spec = importlib.util.spec_from_file_location("museval_metrics", ARGS.museval_metrics)
        metrics = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(metrics)

        def evaluate(refs, ests, win, hop):   # museval.evaluate without padding (equal lengths here)
            return metrics.bss_eval(np.asarray(refs), np.asarray(ests), window=win, hop=hop,
                                    compute_permutation=False, framewise_filters=False,
                                    bsseval_sources_version=False)[:4]
        return evaluate
    import museval
    return lambda refs, ests, win, hop: museval.evaluate(refs, ests, win=win, hop=hop)


def real_stems():
    """``(4, T, 2)`` float64 vocals, drums, bass, other and the sample rate."""
    names = ("vocals", "drums", "bass", "other")
    if ARGS.stems and ARGS.stems.endswith(".npz"):
        data = np.load(ARGS.stems)
        return data["stems"].astype(np.float64), int(data["rate"])
    if ARGS.stems:
        import soundfile as sf
        audio = [sf.read(str(Path(ARGS.stems) / f"{n}.wav"), always_2d=True) for n in names]
        return np.stack([a for a, _ in audio]).astype(np.float64), audio[0][1]
    import stempeg
    stems, rate = stempeg.read_stems(stempeg.example_stem_path())   # mixture, drums, bass, other, vocals
    return stems[[4, 1, 2, 3]].astype(np.float64), int(rate)


def model_like(refs, seed=0):
    """Estimates: the reference, 30 % leakage of the other sources, noise 20 dB down."""
    rng = np.random.default_rng(seed)
    total = refs.sum(0, keepdims=True)
    noise = rng.standard_normal(refs.shape) * refs.std() * 0.1
    return refs + 0.3 * (total - refs) + noise


def as_sources(stems, n):
    return stems if n == 4 else np.stack([stems[0], stems[1:].sum(0)])


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    if ARGS.device.startswith("cuda"):
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0, time.process_time() - c0


def fast_phases(refs, ests, rate, device):
    """Wall time of the fast evaluator's three phases."""
    dev = torch.device(device)
    nsrc, n, nchan = refs.shape
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    t = time.perf_counter()
    ref_t = torch.from_numpy(np.ascontiguousarray(refs.transpose(0, 2, 1))).to(dev).reshape(nsrc * nchan, n)
    est_t = torch.from_numpy(np.ascontiguousarray(ests.transpose(0, 2, 1))).to(dev).reshape(nsrc * nchan, n)
    sync()
    phases = {"transfer": time.perf_counter() - t}
    gpu = dev.type == "cuda"
    t = time.perf_counter()
    corr = bsseval_fast.lag_correlations(ref_t, est_t, 512, bsseval_fast.fast_len(64 * 512 if gpu else 8 * 512))
    sync()
    phases["correlations"] = time.perf_counter() - t
    t = time.perf_counter()
    C, Cj = bsseval_fast.distortion_filters(corr, nsrc, nchan, 512)
    sync()
    phases["filters (solve)"] = time.perf_counter() - t
    t = time.perf_counter()
    starts, width = bsseval_fast.framing(rate, rate, n)
    bsseval_fast.frame_metrics(ref_t, est_t, C, Cj, starts, width, nsrc, nchan, 512, 32 if gpu else 1)
    sync()
    phases["frames"] = time.perf_counter() - t
    return {k: round(v, 3) for k, v in phases.items()}


def speed(results):
    stems, rate = real_stems()
    reps = int(np.ceil(ARGS.seconds * rate / stems.shape[1]))
    refs = as_sources(np.concatenate([stems] * reps, axis=1)[:, :int(ARGS.seconds * rate)], ARGS.sources)
    ests = model_like(refs)
    row = dict(seconds=ARGS.seconds, sources=ARGS.sources, threads=ARGS.threads or torch.get_num_threads(),
               device=ARGS.device, cpu=cpu_name())
    if ARGS.device.startswith("cuda"):   # CUDA context and FFT plans: not part of the timing
        bsseval_fast.evaluate(refs[:, :2 * rate], ests[:, :2 * rate], win=rate, hop=rate, device=ARGS.device)
    fast, wall, cpu = timed(lambda: bsseval_fast.evaluate(refs, ests, win=rate, hop=rate, device=ARGS.device))
    row.update(fast_wall=round(wall, 2), fast_cpu=round(cpu, 2), fast_phases=fast_phases(refs, ests, rate, ARGS.device))
    print(f"fast ({ARGS.device}): {wall:.2f} s wall, {cpu:.2f} s CPU; phases {row['fast_phases']}", flush=True)
    if not ARGS.skip_museval:
        ref_vals, wall_m, cpu_m = timed(lambda: museval_evaluate()(refs, ests, rate, rate))
        row.update(museval_wall=round(wall_m, 2), museval_cpu=round(cpu_m, 2),
                   speedup_wall=round(wall_m / wall, 1),
                   max_abs_diff={m: float(np.nanmax(np.abs(a - b))) for m, a, b in zip(METRICS, ref_vals, fast)})
        print(f"museval: {wall_m:.2f} s wall, {cpu_m:.2f} s CPU -> fast is {wall_m / wall:.1f}x faster (wall); "
              f"max |diff| {row['max_abs_diff']}", flush=True)
    results["speed"] = row


def accuracy(results):
    from scipy.signal import lfilter

    stems, rate = real_stems()
    n = min(stems.shape[1], int(ARGS.accuracy_seconds * rate))
    stems = stems[:, :n]
    rng = np.random.default_rng(1)
    synth = lfilter([1.0], [1.0, -0.9], rng.standard_normal(stems.shape), axis=1)
    np.random.seed(0)   # museval's regression test: uniform random estimates
    regression = np.stack([np.random.random(stems[0].shape), np.random.random(stems[0].shape)])
    cases = {
        "synthetic AR(1), 4 sources, model-like estimates": (synth, model_like(synth)),
        "real, 4 sources, model-like estimates": (stems, model_like(stems)),
        "real, vocals/accompaniment, random estimates (museval's regression case)": (as_sources(stems, 2), regression),
        "real, 4 sources, random estimates": (stems, np.random.default_rng(2).random(stems.shape)),
    }
    evaluate = museval_evaluate()
    rows = []
    for name, (refs, ests) in cases.items():
        ref = evaluate(refs, ests, rate, rate)
        got = bsseval_fast.evaluate(refs, ests, win=rate, hop=rate, device=ARGS.device)
        spread = evaluate(refs * (1 + 2.0 ** -40), ests, rate, rate)
        row = dict(case=name, frames=int(ref[0].size))
        for m, a, b, c in zip(METRICS, ref, got, spread):
            row[f"{m} diff"] = float(np.nanmax(np.abs(a - b)))
            row[f"{m} museval spread"] = float(np.nanmax(np.abs(a - c)))
            row[f"{m} same NaN"] = bool(np.array_equal(np.isnan(a), np.isnan(b)))
        rows.append(row)
        print(f"{name}: " + ", ".join(f"{m} {row[m + ' diff']:.2g} (museval spread {row[m + ' museval spread']:.2g})"
                                      for m in METRICS), flush=True)
    results["accuracy"] = rows


def main():
    torch.set_num_threads(ARGS.threads or torch.get_num_threads())
    results = {}
    if ARGS.seconds > 0:
        speed(results)
    if ARGS.accuracy:
        accuracy(results)
    if ARGS.out:
        write_json_atomic(ARGS.out, results)


if __name__ == "__main__":
    from asteroid_frugal.cli.common import setup_process

    setup_process(sys.argv[1:])   # the threading policy, set as every command sets it
    main()
