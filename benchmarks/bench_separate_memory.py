#!/usr/bin/env python
"""Peak memory of the separation command a user runs, on a long stereo song.

    .venv/bin/python benchmarks/bench_separate_memory.py                 # 10-minute song, 1 and 3 models
    .venv/bin/python benchmarks/bench_separate_memory.py --minutes 4 --threads 2

The models are untrained FrugalTasNets built from ``conf.yml``'s (paper) values through
``model.build_model`` and saved as ``best_model.pth`` the way training exports them (an
untrained model costs the same memory and time as a trained one). The song is a
synthetic 44.1 kHz stereo wav (``bench_inference.synthetic_song``). Each run is
``python -m asteroid_frugal.cli.separate SONG --models ... --out ...`` in its own process
with the shipped defaults; ``peak RSS`` is that process's ``ru_maxrss`` (``os.wait4``),
so it is the figure ``/usr/bin/time -v`` would print. Memory does not depend on how
busy the machine is; the times printed beside it do.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def make_models(root: Path, targets):
    """``{target: experiment folder}`` with an untrained paper-size best_model.pth each."""
    import torch

    from asteroid_frugal.config import load_config
    from asteroid_frugal.model import build_model
    from asteroid_frugal.utils import torch_save_atomic

    out = {}
    for i, target in enumerate(targets):
        conf = load_config(overrides=[f"data.target={target}"])
        torch.manual_seed(i)
        package = build_model(conf).serialize()
        package.update(target=target, sources=[target, "rest"])
        exp = root / target
        torch_save_atomic(package, exp / "best_model.pth")
        out[target] = exp
    return out


def measure(cmd, env) -> tuple:
    """``(peak RSS in MB, wall seconds)`` of one command (its own process, ``wait4`` rusage)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: progress bars would fill a pipe and block
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            sys.exit(f"separate failed ({proc.returncode}): {err.read().decode(errors='replace')[-2000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the separate command")
    parser.add_argument("--sets", nargs="+", default=["vocals", "vocals,drums,bass"],
                        help="model sets, comma-separated targets")
    args = parser.parse_args(argv)

    import soundfile as sf

    from bench_inference import synthetic_song
    from asteroid_frugal.utils import cpu_name

    sr = 44100
    with tempfile.TemporaryDirectory(prefix="bench_sep_mem_") as tmp:
        tmp = Path(tmp)
        song = tmp / "song.wav"
        sf.write(song, synthetic_song(args.minutes * 60, sr).T, sr, subtype="PCM_16")
        exps = make_models(tmp / "exp", sorted({t for s in args.sets for t in s.split(",")}))
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(REPO))
        print(f"separate command, {args.minutes:g}-minute 44.1 kHz stereo wav, paper-size FrugalTasNet "
              f"(conf.yml), shipped defaults, CPU, {args.threads} thread(s), {cpu_name()}")
        print("| models | peak RSS | wall time |\n|---|---:|---:|")
        for models in args.sets:
            targets = models.split(",")
            out = tmp / f"out_{len(targets)}"
            cmd = [sys.executable, "-m", "asteroid_frugal.cli.separate", str(song), "--out", str(out),
                   "--device", "cpu", "--models", *(f"{t}={exps[t]}" for t in targets)]
            peak, wall = measure(cmd, env)
            print(f"| {'+'.join(targets)} | {peak:.0f} MB | {wall:.0f} s |", flush=True)


if __name__ == "__main__":
    from asteroid_frugal.cli.common import setup_process

    setup_process(sys.argv[1:])   # the threading policy, set as every command sets it
    main()
