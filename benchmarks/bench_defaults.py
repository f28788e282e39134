#!/usr/bin/env python
"""What a user gets with the settings as shipped: the user's commands run as processes, on an
idle machine and beside one competing CPU-bound process, as shipped and with other threading
settings, and the ratio of the shipped time to the best one.

    .venv/bin/python benchmarks/bench_defaults.py             # 4-minute song, 240 s BSS Eval (~15-25 min)
    .venv/bin/python benchmarks/bench_defaults.py --quick     # 30 s song, 30 s BSS Eval (~3-5 min)
    .venv/bin/python benchmarks/bench_defaults.py --states idle --commands separate --museval

Commands (each its own process, started like a user starts it; wall seconds of the whole
command, Python and torch start-up included, minus nothing):

* ``separate``: ``python -m asteroid_frugal.cli.separate SONG --models EXP --out OUT`` with a
  paper-size untrained model (``build_model(load_config())``, same cost as a trained one) on a generated
  stereo song (``--song_minutes``); also reported as a real-time factor.
* ``bss``: the fast BSS Eval (``asteroid_frugal.bsseval_fast.evaluate``, what stage 4 calls,
  with ``evaluation.bss_threads`` as stage 4 uses it) on ``--bss_seconds`` of generated 4-stem
  stereo audio, in a process started through this package (so with its threading policy);
  ``--museval`` adds museval on the same audio
  (shipped settings only) and prints the speed-up.
* ``train``: training steps of the stage-3 model, loss (SI-SNR), optimizer, batch size and
  data-loader workers from conf.yml (``training.batch_size``, ``training.num_workers``) on
  generated excerpts; seconds per step after one warm-up step. Not Lightning's loop (no
  validation, logging or checkpoints), the part of stage 3 that threading changes.

Settings: ``shipped`` (no flag, no OMP_* variable: conf.yml's ``runtime``, ``auto``), ``threads1``
(``--threads 1``), ``omp-default`` (all cores, OpenMP's own spin-then-sleep policy: PyTorch's
defaults), ``passive`` (all cores, passive waiting: the shipped setting before ``auto``),
``active`` (all cores, spin-waiting).
States: ``idle`` (whatever else runs on the machine: check ``uptime`` first) and ``loaded``
(this script starts one ``yes > /dev/null`` process for the measurement and stops it).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SETTINGS = {
    "shipped": [],
    "threads1": ["--threads", "1"],
    "omp-default": ["--set", "runtime.threads=null", "--set", "runtime.omp_wait_policy=null"],
    "passive": ["--set", "runtime.threads=null", "--set", "runtime.omp_wait_policy=passive"],
    "active": ["--set", "runtime.threads=null", "--set", "runtime.omp_wait_policy=active"],
}
COMMANDS = ("separate", "bss", "train")
# what a command's threading could inherit, none of it (and no ASTEROID_FRUGAL_* variable: a parent's
# runtime choice, runtime.AUTO_ENV and runtime.RESTART_ENV)
OMP_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short inputs, settings shipped/threads1/omp-default")
    p.add_argument("--states", nargs="+", default=["idle", "loaded"], choices=("idle", "loaded"))
    p.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=COMMANDS)
    p.add_argument("--settings", nargs="+", default=None, choices=sorted(SETTINGS))
    p.add_argument("--song_minutes", type=float, default=None, help="separate: song length (default 4, quick 0.5)")
    p.add_argument("--bss_seconds", type=float, default=None, help="bss: audio length (default 240, quick 30)")
    p.add_argument("--train_steps", type=int, default=None, help="train: timed steps (default 4, quick 2)")
    p.add_argument("--excerpt_seconds", type=float, default=None, help="train: excerpt length (default 5, quick 2)")
    p.add_argument("--museval", action="store_true", help="bss: also time museval (shipped settings)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--child", choices=("bss", "museval", "train"), help=argparse.SUPPRESS)
    args, _ = p.parse_known_args(argv)   # a child also gets --threads/--set (read by cli.common.setup_process)
    q = args.quick
    args.song_minutes = args.song_minutes or (0.5 if q else 4.0)
    args.bss_seconds = args.bss_seconds or (30.0 if q else 240.0)
    args.train_steps = args.train_steps or (2 if q else 4)
    args.excerpt_seconds = args.excerpt_seconds or (2.0 if q else 5.0)
    args.settings = args.settings or (["shipped", "threads1", "omp-default"] if q else list(SETTINGS))
    return args


# ------------------------------------------------------------------ children
def four_stems(seconds: float, sr: int = 44100):
    """``(refs, ests)`` (4, T, 2) float64: generated stems and model-like estimates of them."""
    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_inference import synthetic_song

    refs = np.stack([synthetic_song(seconds, sr, seed=s).T.astype(np.float64) for s in range(4)])
    rng = np.random.default_rng(0)
    ests = refs + 0.3 * (refs.sum(0, keepdims=True) - refs) + 0.05 * rng.standard_normal(refs.shape)
    return refs, ests


def child(args) -> None:
    """One measurement in this process; prints one JSON line."""
    sys.path.insert(0, str(REPO))
    import torch

    from asteroid_frugal.cli.common import setup_process
    from asteroid_frugal.runtime import describe

    setup_process(sys.argv[1:])   # as every command does (cli.common.run), before any work

    if args.child in ("bss", "museval"):
        refs, ests = four_stems(args.bss_seconds)
        from asteroid_frugal.config import get, load_config
        from asteroid_frugal.runtime import torch_threads

        # as stage 4 scores a track: evaluation.bss_threads, unless --threads was given
        threads = None if "--threads" in sys.argv else get(load_config(), "evaluation.bss_threads")
        start = time.perf_counter()
        if args.child == "bss":
            from asteroid_frugal.bsseval_fast import evaluate
        else:
            from museval import evaluate
            threads = None
        with torch_threads(threads):
            evaluate(refs, ests, win=44100, hop=44100)
            seconds = time.perf_counter() - start
            line = describe() + (" (evaluation.bss_threads)" if threads else "")
    else:
        from asteroid_frugal.config import load_config
        from asteroid_frugal.losses import TargetRestSISNRLoss
        from asteroid_frugal.model import build_model
        from asteroid_frugal.system import make_optimizer

        conf = load_config()
        tr = conf["training"]
        torch.manual_seed(0)
        model = build_model(conf).train()
        optimizer = make_optimizer(model, conf)
        loss_func = TargetRestSISNRLoss(pit=bool(tr["pit"]), silence_db=float(tr["silence_db"]))
        n = int(args.excerpt_seconds * conf["data"]["sample_rate"])
        data = torch.utils.data.TensorDataset(torch.randn(64, 2, n) * 0.1, torch.randn(64, 2, 2, n) * 0.1)
        loader = torch.utils.data.DataLoader(data, batch_size=int(tr["batch_size"]), shuffle=True,
                                             num_workers=int(tr["num_workers"]), persistent_workers=False)
        times, it = [], iter(loader)
        for step in range(args.train_steps + 1):
            t = time.perf_counter()
            mix, targets = next(it)
            loss, _ = loss_func(model(mix), targets)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(tr["gradient_clipping"]))
            optimizer.step()
            if step:
                times.append(time.perf_counter() - t)
        seconds = sum(times) / len(times)
        line = describe()
    print(json.dumps(dict(seconds=seconds, runtime=line)), flush=True)


# ------------------------------------------------------------------- parent
def clean_env():
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS and not k.startswith("ASTEROID_FRUGAL_")}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def prepare(tmp: Path, args):
    sys.path.insert(0, str(REPO))
    import soundfile as sf
    import torch
    import yaml

    from asteroid_frugal.config import load_config
    from asteroid_frugal.model import build_model
    from bench_inference import synthetic_song

    exp = tmp / "exp"
    exp.mkdir()
    torch.manual_seed(0)
    torch.save(build_model(load_config()).serialize(), exp / "best_model.pth")   # paper size (untrained: same cost)
    (exp / "conf.yml").write_text(yaml.safe_dump({"data": {"target": "vocals"}}))
    song = tmp / "song.wav"
    sf.write(song, synthetic_song(args.song_minutes * 60, 44100).T, 44100, subtype="FLOAT")
    return exp, song


def measure(command: str, setting: str, args, exp: Path, song: Path, tmp: Path) -> dict:
    flags = SETTINGS[setting]
    if command == "separate":
        cmd = [sys.executable, "-m", "asteroid_frugal.cli.separate", str(song), "--models", str(exp),
               "--out", str(tmp / "out"), "--overwrite", *flags]
    else:
        child_kind = "museval" if command == "museval" else command
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", child_kind,
               "--bss_seconds", str(args.bss_seconds), "--train_steps", str(args.train_steps),
               "--excerpt_seconds", str(args.excerpt_seconds), *flags]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=clean_env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    row = dict(command=command, setting=setting, seconds=wall)
    if command == "separate":
        row["rtf"] = wall / (args.song_minutes * 60)
        line = [ln for ln in proc.stderr.splitlines() if "runtime: " in ln]
        row["runtime"] = line[0].split("runtime: ", 1)[1] if line else "?"
    else:
        row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        row["command_seconds"] = wall
    return row


def start_load(state: str):
    if state != "loaded":
        return None
    return subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)


def measure_in_state(state, command, setting, args, exp, song, tmp) -> dict:
    """:func:`measure` with the machine in ``state`` (the competing process stopped afterwards)."""
    load = start_load(state)
    try:
        row = measure(command, setting, args, exp, song, tmp)
    finally:
        if load is not None:
            load.terminate()
            load.wait()
    row["state"] = state
    return row


def main():
    sys.path.insert(0, str(REPO))
    args = parse_args()
    if args.child:
        child(args)
        return
    sys.path.insert(0, str(REPO / "benchmarks"))
    from asteroid_frugal.utils import cpu_name, write_json_atomic

    print(f"{cpu_name()}; load average before: {os.getloadavg()[0]:.2f}; song {args.song_minutes:g} min, "
          f"BSS Eval {args.bss_seconds:g} s, training {args.train_steps} steps of {args.excerpt_seconds:g} s",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        exp, song = prepare(tmp, args)
        for state in args.states:
            for command in args.commands:
                for setting in args.settings:
                    row = measure_in_state(state, command, setting, args, exp, song, tmp)
                    rows.append(row)
                    extra = f", RTF {row['rtf']:.3f}" if "rtf" in row else ""
                    print(f"  {state:6s} {command:8s} {setting:11s} {row['seconds']:8.2f} s{extra}  [{row['runtime']}]",
                          flush=True)
                if command == "bss" and args.museval:
                    row = measure_in_state(state, "museval", "shipped", args, exp, song, tmp)
                    rows.append(row)
                    print(f"  {state:6s} museval  shipped     {row['seconds']:8.2f} s", flush=True)
    print("\n| state | command | shipped (s) | best setting | best (s) | shipped / best |")
    print("|---|---|---:|---|---:|---:|")
    for state in args.states:
        for command in args.commands:
            mine = [r for r in rows if r["state"] == state and r["command"] == command]
            shipped = next(r for r in mine if r["setting"] == "shipped")
            best = min(mine, key=lambda r: r["seconds"])
            print(f"| {state} | {command} | {shipped['seconds']:.2f} | {best['setting']} | {best['seconds']:.2f} "
                  f"| {shipped['seconds'] / best['seconds']:.2f}x |")
            if command == "bss":
                mus = [r for r in rows if r["state"] == state and r["command"] == "museval"]
                if mus:
                    print(f"| {state} | museval / fast (shipped) | {mus[0]['seconds']:.2f} | | | "
                          f"{mus[0]['seconds'] / shipped['seconds']:.1f}x faster |")
    print("(separate: whole command, start-up included; bss/museval/train: the work alone, "
          "train per step)")
    if args.out:
        write_json_atomic(args.out, dict(cpu=cpu_name(), rows=rows, args=vars(args)))


if __name__ == "__main__":
    main()
