#!/usr/bin/env python
"""int8 against float32 for offline separation on the CPU: what it costs in quality on trained
models, and what it gains in the separate command.

    .venv/bin/python benchmarks/bench_int8.py --exps exp/vocals exp/drums exp/bass   # all three parts
    .venv/bin/python benchmarks/bench_int8.py --parts quality --exps exp/vocals
    .venv/bin/python benchmarks/bench_int8.py --parts command backends --song_minutes 1 4

Parts:

* ``quality``: each experiment's model (the main job's ``exp/vocals``, ``exp/drums``, ``exp/bass``)
  scored in float32 and in int8 with stage 4's own functions: SI-SNRi on its held-out excerpts
  (``evaluate.run_sisnr``, ``<exp>/data/test.csv``) and BSS Eval SDR (the ``fast`` backend) of
  each whole song of its test split (``evaluation.split`` of the experiment's conf.yml; the
  median over 1 s frames, as ``final_metrics.json``), separated by ``separate_stems`` with the
  shipped chunking. Changes are int8 minus float32, paired per excerpt or song: mean, worst,
  and the change of the median over songs (the figure a results table shows).
* ``command``: ``python -m asteroid_frugal.cli.separate SONG --models EXP --out OUT --precision P``
  as a user runs it (a process each, start-up included) with a paper-size model
  (``build_model(load_config())``, untrained: the same cost) on a generated stereo 44.1 kHz song:
  ``float32``, ``int8`` (the shipped backend, onnxruntime, its graph read from the cache that a
  first run, timed apart, fills) and ``int8-pytorch`` (``--precisions``: also ``bfloat16``, and
  ``int8-batch``: onnxruntime given the whole batch of chunks per call, ``separate.int8_batch_chunks=4``)
  alternated ``--repeats`` times (medians), idle (whatever else runs: the load average is
  printed) and beside one ``yes > /dev/null`` it starts.
* ``backends``: the ways to run int8 weights, each in a fresh process with the shipped
  threading: PyTorch's dynamic quantisation (``separate.int8_backend: pytorch``) and onnxruntime on
  the int8 ONNX export (``asteroid_frugal.export.cached_int8_model``: exported, or read from the
  cache the run before filled), time to prepare the model (quantise; export + quantise + load;
  load) and to separate the song (``separate_long``), and the SNR of each to float32.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

PARTS = ("quality", "command", "backends")
BACKENDS = ("float32", "torch-int8", "onnxruntime-int8", "onnxruntime-int8-cached")
# --precisions: what each name runs in the separate command (int8: the shipped separate.int8_backend)
PRECISION_ARGS = {"float32": ["--precision", "float32"], "bfloat16": ["--precision", "bfloat16"],
                  "int8": ["--precision", "int8"],
                  "int8-pytorch": ["--precision", "int8", "--set", "separate.int8_backend=pytorch"],
                  # onnxruntime given the whole batch of chunks per call (shipped: one chunk per call, less memory)
                  "int8-batch": ["--precision", "int8", "--set", "separate.int8_batch_chunks=4"]}
INT8_KINDS = ("int8-pytorch", "int8-onnxruntime")   # quality: each int8 backend against float32


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--exps", nargs="+", default=["exp/vocals", "exp/drums", "exp/bass"],
                   help="quality: experiment folders (best_model.pth, conf.yml, data/test.csv)")
    p.add_argument("--max_tracks", type=int, default=None, help="quality: score only the first N test songs")
    p.add_argument("--song_minutes", type=float, nargs="+", default=[1.0], help="command, backends: song lengths")
    p.add_argument("--states", nargs="+", default=["idle", "loaded"], choices=("idle", "loaded"))
    p.add_argument("--repeats", type=int, default=3, help="command: runs of each precision (alternated; medians)")
    p.add_argument("--precisions", nargs="+", default=["float32", "int8", "int8-pytorch"], choices=tuple(PRECISION_ARGS),
                   help="command: settings compared with float32 (int8: the shipped backend, onnxruntime)")
    p.add_argument("--set", nargs="*", default=[], help="command, backends: config overrides of the model")
    p.add_argument("--threads", type=int, default=None,
                   help="backends: torch threads of every run (default: the shipped auto, chosen by each process)")
    p.add_argument("--out", default=None, help="write every figure as JSON here")
    p.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    p.add_argument("--song", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------------------- quality
def test_split(exp: Path, conf: dict) -> Path:
    """The experiment's prepared test split (a relative ``data.root`` is the recipe folder's: the
    current folder where it holds that root, else exp/<tag>/../..)."""
    from asteroid_frugal.data.layout import prepared_root

    root = Path(conf["data"]["root"])
    if not root.is_absolute():
        root = root.resolve() if root.is_dir() else exp.resolve().parent.parent / root
    conf = dict(conf, data=dict(conf["data"], root=str(root)))
    return prepared_root(conf) / conf["evaluation"]["split"]


def score_model(exp: Path, precision: str, max_tracks, scratch: Path) -> dict:
    """``{"sisnri": {stem: [per excerpt]}, "sdr": {stem: [per song]}, "songs": [...]}`` at ``precision``
    (float32, or one of :data:`INT8_KINDS`)."""
    import numpy as np

    from asteroid_frugal.config import load_config
    from asteroid_frugal.data.layout import list_tracks
    from asteroid_frugal.data.types import rest_name
    from asteroid_frugal.evaluate import load_track, run_sisnr
    import torch

    from asteroid_frugal.export import cached_int8_model
    from asteroid_frugal.inference import TargetModel, chunking, int8_model, load_target_models, separate_stems
    from asteroid_frugal.metrics import bss_eval
    from asteroid_frugal.separate import file_digest

    conf = load_config(exp / "conf.yml")
    opts = chunking(conf)
    [tm] = load_target_models([str(exp)], "cpu")
    names = [tm.target, rest_name(tm.target)]
    # run_sisnr runs the model as given (stage 4 is float32): give it the int8 model itself
    if precision == "int8-pytorch":
        scored = TargetModel(tm.target, int8_model(tm.model), tm.path)
    elif precision == "int8-onnxruntime":
        runner = cached_int8_model(tm.model, file_digest(tm.path), scratch / "cache", torch.get_num_threads(),
                                   load_config()["separate"]["int8_batch_chunks"])   # as the separate command runs it
        scored = TargetModel(tm.target, runner, tm.path)
    else:
        scored = tm
    results = scratch / f"{exp.name}-{precision}"
    results.mkdir(parents=True, exist_ok=True)
    run_sisnr(scored, exp, results, opts, "cpu", float(conf["training"]["silence_db"]))
    import pandas as pd

    table = pd.read_csv(results / "si_snr.csv")
    sisnri = {n: (table[f"si_snr_{n}"] - table[f"input_si_snr_{n}"]).tolist() for n in names}
    tracks = list_tracks(test_split(exp, conf))[:max_tracks]
    if not tracks:
        raise SystemExit(f"{exp}: no prepared test songs in {test_split(exp, conf)}")
    sdr = {n: [] for n in names}
    for track in tracks:
        mixture, refs, sr = load_track(track, names, False)
        stems = separate_stems([scored], mixture, sr, precision="float32", **opts)   # scored: int8 itself
        values, _ = bss_eval(np.stack([refs[n] for n in names]), np.stack([stems[n] for n in names]), sr,
                             "fast", "cpu", names=names)
        for j, n in enumerate(names):
            sdr[n].append(float(np.nanmedian(values["SDR"][j])))
    return dict(sisnri=sisnri, sdr=sdr, songs=[t.name for t in tracks])


def quality(args, rows: list) -> None:
    import numpy as np

    print("\n| model | stem | int8 by | float32 SI-SNRi | change (mean / worst of excerpts) | float32 SDR (median of "
          "songs) | change of the median | change per song (mean / worst) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for exp in map(Path, args.exps):
            f32 = score_model(exp, "float32", args.max_tracks, Path(scratch))
            for kind in INT8_KINDS:
                q8 = score_model(exp, kind, args.max_tracks, Path(scratch))
                for stem in f32["sdr"]:
                    a, b = np.array(f32["sisnri"][stem]), np.array(q8["sisnri"][stem])
                    sa, sb = np.array(f32["sdr"][stem]), np.array(q8["sdr"][stem])
                    row = dict(model=str(exp), stem=stem, int8=kind, excerpts=len(a), songs=len(sa),
                               sisnri=float(np.nanmean(a)), sisnri_change=float(np.nanmean(b - a)),
                               sisnri_worst=float(np.nanmin(b - a)), sdr=float(np.nanmedian(sa)),
                               sdr_median_change=float(np.nanmedian(sb) - np.nanmedian(sa)),
                               sdr_change=float(np.nanmean(sb - sa)), sdr_worst=float(np.nanmin(sb - sa)))
                    rows.append(dict(part="quality", **row))
                    print(f"| {exp.name} | {stem} | {kind.split('-')[1]} | {row['sisnri']:.2f} | "
                          f"{row['sisnri_change']:+.4f} / {row['sisnri_worst']:+.4f} ({len(a)}) | {row['sdr']:.2f} | "
                          f"{row['sdr_median_change']:+.4f} | {row['sdr_change']:+.4f} / {row['sdr_worst']:+.4f} "
                          f"({len(sa)}) |", flush=True)
    for kind in INT8_KINDS:
        mine = [r for r in rows if r["part"] == "quality" and r["int8"] == kind]
        loss = max(max(-r["sdr_median_change"], -r["sdr_change"]) for r in mine)
        worst = max(-r["sdr_worst"] for r in mine)
        print(f"{kind}: largest SDR loss of a model (median of songs, or mean over songs): {loss:.4f} dB; "
              f"worst single song: {worst:.4f} dB")


# ------------------------------------------------------------------------- command
def make_inputs(tmp: Path, minutes: float, overrides) -> tuple:
    """A paper-size model (untrained) in ``tmp/exp`` and a generated ``minutes``-long stereo song."""
    import soundfile as sf
    import torch
    import yaml

    from asteroid_frugal.config import load_config
    from asteroid_frugal.model import build_model
    from bench_inference import synthetic_song

    exp = tmp / "exp"
    if not exp.is_dir():
        exp.mkdir()
        torch.manual_seed(0)
        torch.save(build_model(load_config(overrides=overrides)).serialize(), exp / "best_model.pth")
        (exp / "conf.yml").write_text(yaml.safe_dump({"data": {"target": "vocals"}}))
    song = tmp / f"song_{minutes:g}min.wav"
    if not song.exists():
        sf.write(song, synthetic_song(minutes * 60, 44100).T, 44100, subtype="FLOAT")
    return exp, song


def run_command(song: Path, exp: Path, precision: str, out: Path) -> dict:
    """One separate command (``precision``: a :data:`PRECISION_ARGS` name); int8 graphs are cached
    in ``out``'s parent folder (``XDG_CACHE_HOME``), as in a user's cache between runs."""
    from bench_defaults import clean_env

    cmd = [sys.executable, "-m", "asteroid_frugal.cli.separate", str(song), "--models", str(exp), "--out", str(out),
           "--overwrite", *PRECISION_ARGS[precision]]
    start = time.perf_counter()
    env = dict(clean_env(), XDG_CACHE_HOME=str(out.parent / "cache"))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stderr.splitlines() if "runtime: " in ln]
    return dict(seconds=wall, runtime=line[0].split("runtime: ", 1)[1] if line else "?")


def command(args, rows: list, tmp: Path) -> None:
    from bench_defaults import start_load

    others = [p for p in args.precisions if p != "float32"]
    print("\n| song | state | load average (1 min) | float32 (s) | "
          + " | ".join(f"{p} (s) | {p} speed-up" for p in others) + " |")
    print("|---|---|---:|---:|" + "---:|---:|" * len(others))
    for minutes in args.song_minutes:
        exp, song = make_inputs(tmp, minutes, args.set)
        if {"int8", "int8-batch"} & set(others):   # the first int8 run exports the graph; later runs read the cache
            first = run_command(song, exp, "int8", tmp / "out")["seconds"]
            print(f"    first int8 run (exports and caches the graph): {first:.1f} s", flush=True)
            rows.append(dict(part="command", minutes=minutes, first_int8=first))
        for state in args.states:
            load = start_load(state)
            try:
                times = {p: [] for p in ["float32", *others]}
                runtime = ""
                loadavg = os.getloadavg()[0]
                for _ in range(args.repeats):
                    for precision in times:
                        got = run_command(song, exp, precision, tmp / "out")
                        times[precision].append(got["seconds"])
                        runtime = got["runtime"]
                loadavg = max(loadavg, os.getloadavg()[0])
            finally:
                if load is not None:
                    load.terminate()
                    load.wait()
            med = {p: statistics.median(t) for p, t in times.items()}
            rows.append(dict(part="command", minutes=minutes, state=state, loadavg=loadavg, runtime=runtime, **times))
            cells = [f"{med['float32']:.2f} (RTF {med['float32'] / minutes / 60:.3f})"]
            cells += [f"{med[p]:.2f} (RTF {med[p] / minutes / 60:.3f}) | {med['float32'] / med[p]:.2f}x"
                      for p in others]
            print(f"| {minutes:g} min | {state} | {loadavg:.2f} | " + " | ".join(cells) + " |", flush=True)
            print("    runs: " + "; ".join(f"{p} {', '.join(f'{t:.1f}' for t in ts)}" for p, ts in times.items())
                  + f"; [{runtime}]", flush=True)


# ------------------------------------------------------------------------ backends
def backend_child(args) -> None:
    """One backend in this process: prints a JSON line (prepare and separate seconds, SNR to float32)."""
    from asteroid_frugal.cli.common import setup_process

    setup_process(["--threads", str(args.threads)] if args.threads else [])
    import numpy as np
    import soundfile as sf
    import torch

    from asteroid_frugal.inference import load_model, quantize_int8, separate_long

    model = load_model(Path(args.song).parent / "exp")
    song = torch.from_numpy(sf.read(args.song, dtype="float32", always_2d=True)[0].T.copy())
    start = time.perf_counter()
    if args.child == "torch-int8":
        runner = quantize_int8(model)
    elif args.child.startswith("onnxruntime-int8"):   # -cached: the graph exported by the run before
        from asteroid_frugal.export import cached_int8_model

        cache = Path(args.song).parent / "cache"
        if args.child == "onnxruntime-int8":
            shutil.rmtree(cache, ignore_errors=True)
        runner = cached_int8_model(model, "bench", cache, torch.get_num_threads())
    else:
        runner = model
    prepared = time.perf_counter()
    est = separate_long(runner, song)
    done = time.perf_counter()
    ref_path = Path(args.song).with_suffix(".float32.npy")
    snr = None
    if args.child == "float32":
        np.save(ref_path, est.numpy())
    elif ref_path.exists():
        ref = torch.from_numpy(np.load(ref_path))
        snr = float(10 * torch.log10(ref.pow(2).sum() / (est - ref).pow(2).sum()))
    from asteroid_frugal.runtime import describe

    threads = describe().split(",", 1)[0]     # "torch threads N": chosen per process by the shipped auto
    print(json.dumps(dict(prepare=prepared - start, separate=done - prepared, snr=snr, threads=threads)), flush=True)


def backends(args, rows: list, tmp: Path) -> None:
    from bench_defaults import clean_env

    print("\n| song | backend | prepare (s) | separate (s) | total (s) | SNR to float32 (dB) | threads |")
    print("|---|---|---:|---:|---:|---:|---|")
    for minutes in args.song_minutes:
        _, song = make_inputs(tmp, minutes, args.set)
        for backend in BACKENDS:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", backend, "--song", str(song),
                   *(["--threads", str(args.threads)] if args.threads else [])]
            proc = subprocess.run(cmd, cwd=REPO, env=clean_env(), capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{backend} failed:\n{proc.stderr[-3000:]}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(dict(part="backends", minutes=minutes, backend=backend, loadavg=os.getloadavg()[0], **got))
            snr = "-" if got["snr"] is None else f"{got['snr']:.1f}"
            print(f"| {minutes:g} min | {backend} | {got['prepare']:.2f} | {got['separate']:.2f} | "
                  f"{got['prepare'] + got['separate']:.2f} | {snr} | {got['threads']} |", flush=True)
        print(f"    load average after: {os.getloadavg()[0]:.2f}", flush=True)


def main():
    args = parse_args()
    if args.child:
        backend_child(args)
        return
    from asteroid_frugal.cli.common import setup_process
    from asteroid_frugal.utils import cpu_name, write_json_atomic

    setup_process([])   # the quality part runs here, with the threading policy every command uses
    print(f"{cpu_name()}; load average (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    rows: list = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "quality" in args.parts:
            quality(args, rows)
        if "command" in args.parts:
            command(args, rows, tmp)
        if "backends" in args.parts:
            backends(args, rows, tmp)
    print(f"load average at the end (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.out:
        write_json_atomic(args.out, dict(cpu=cpu_name(), rows=rows, args=vars(args)))


if __name__ == "__main__":
    main()
