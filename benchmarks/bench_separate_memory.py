#!/usr/bin/env python
"""Peak memory of the separation command a user runs, on long stereo songs.

    .venv/bin/python benchmarks/bench_separate_memory.py --size paper --minutes 10
    .venv/bin/python benchmarks/bench_separate_memory.py --size demo --minutes 10 60 --before /tmp/old

The models are untrained FrugalTasNets built through ``model.build_model`` from ``conf.yml``'s
values (``--size paper``) or with ``egs/demo/conf.yml``'s overlay (``--size demo``: the README's
main job's models) and saved as ``best_model.pth`` the way training exports them (an untrained
model costs the same memory and time as a trained one). The songs are synthetic 44.1 kHz stereo
PCM_16 wavs (``bench_inference.synthetic_song``). Each run is ``python -m
asteroid_frugal.cli.separate SONG --models ... --out ... --device cpu --precision P
--threads N`` in its own process with the other settings as shipped (``--precision``: ``auto`` by
default, as shipped, which runs the paper-size models in int8 on onnxruntime, one chunk per call:
``separate.int8_batch_chunks``; ``--batch_chunks`` sets the chunking, ``--int8_batch_chunks`` the
chunks per onnxruntime call); ``peak RSS`` is that
process's ``ru_maxrss`` (``os.wait4`` in a small launcher process: Linux keeps a process's peak RSS
across fork and exec, so a command started straight from this one, which holds PyTorch and the models,
would report at least this one's peak), so it is the figure ``/usr/bin/time -v`` would print.
``--before DIR`` also runs every configuration with ``PYTHONPATH=DIR``: another checkout of the
package (``git worktree add /tmp/old HEAD`` for the code before a change). Memory does not
depend on how busy the machine is; the times printed beside it do. ``peak anonymous``: the most
anonymous memory the command held (sampled every 20 ms): RSS also counts the pages of shared
libraries it touched (about 0.4 GB of PyTorch's and its CUDA libraries'), which the kernel can
drop and read again when memory is short; anonymous memory it cannot.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
SIZES = {"paper": [], "demo": [str(REPO / "egs" / "demo" / "conf.yml")]}   # config overlays of each model size


def make_models(root: Path, targets, size: str):
    """``{target: experiment folder}`` with an untrained best_model.pth each, of ``size``."""
    import torch

    from asteroid_frugal.config import load_config
    from asteroid_frugal.model import build_model
    from asteroid_frugal.utils import torch_save_atomic

    out = {}
    for i, target in enumerate(targets):
        conf = load_config(overlays=SIZES[size], overrides=[f"data.target={target}"])
        torch.manual_seed(i)
        package = build_model(conf).serialize()
        package.update(target=target, sources=[target, "rest"])
        exp = root / f"{size}_{target}"
        torch_save_atomic(package, exp / "best_model.pth")
        out[target] = exp
    return out


# The command runs under this small launcher, which reports the command's rusage: a process started
# straight from this one would count this process's own memory (its peak RSS is kept across the
# fork and exec, and this one holds PyTorch and the models it built). It also samples the command's
# anonymous memory (RssAnon, every 20 ms): RSS counts the pages of the shared libraries a process has
# touched, which the kernel can drop and read again at will; anonymous memory is what it cannot.
LAUNCHER = """import os, subprocess, sys, time
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
anon = 0
while True:
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if pid:
        break
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            anon = max([anon] + [int(l.split()[1]) for l in f if l.startswith("RssAnon:")])
    except OSError:
        pass
    time.sleep(0.02)
print(usage.ru_maxrss, anon, os.waitstatus_to_exitcode(status))
"""


def measure(cmd, env, cwd) -> tuple:
    """``(peak RSS in MB, peak anonymous memory in MB, wall seconds)`` of one command (its own
    process, ``wait4`` rusage and RssAnon samples through :data:`LAUNCHER`), run in ``cwd``
    (``python -m`` imports the package of its working folder before ``PYTHONPATH``'s)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: progress bars would fill a pipe and block
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], env=env, cwd=cwd, stdout=subprocess.PIPE,
                              stderr=err, text=True)
        maxrss_kb, anon_kb, code = (int(v) for v in proc.stdout.split())
        if code != 0:
            err.seek(0)
            sys.exit(f"separate failed ({code}): {err.read().decode(errors='replace')[-2000:]}")
    return maxrss_kb / 1024, anon_kb / 1024, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0], help="song lengths")
    parser.add_argument("--size", nargs="+", choices=sorted(SIZES), default=["paper"], help="model sizes")
    parser.add_argument("--threads", type=int, default=1, help="threads of the separate command")
    parser.add_argument("--sets", nargs="+", default=["vocals", "vocals,drums,bass"],
                        help="model sets, comma-separated targets")
    parser.add_argument("--before", default=None, help="another checkout of the package, run too (PYTHONPATH)")
    parser.add_argument("--batch_chunks", type=int, default=None, help="chunks per forward pass (default: shipped)")
    parser.add_argument("--int8_batch_chunks", default=None,
                        help="chunks per onnxruntime call (separate.int8_batch_chunks; default: shipped, 1; 4: "
                             "the whole batch of the shipped chunking)")
    parser.add_argument("--precision", default="auto",
                        help="--precision of the command: auto (as shipped: int8 on onnxruntime for paper-size models "
                             "on the CPU, whose graphs this script caches in its own folder), float32, int8...")
    args = parser.parse_args(argv)

    import soundfile as sf

    from bench_inference import synthetic_song
    from asteroid_frugal.utils import cpu_name

    sr = 44100
    codes = [("after", REPO)] + ([("before", Path(args.before).resolve())] if args.before else [])
    with tempfile.TemporaryDirectory(prefix="bench_sep_mem_") as tmp:
        tmp = Path(tmp)
        targets = sorted({t for s in args.sets for t in s.split(",")})
        exps = {size: make_models(tmp / "exp", targets, size) for size in args.size}
        batch = f"{args.batch_chunks} chunk(s) per pass" if args.batch_chunks else "shipped chunking"
        if args.int8_batch_chunks:
            batch += f", separate.int8_batch_chunks={args.int8_batch_chunks}"
        print(f"separate command, 44.1 kHz stereo PCM_16 wav, untrained FrugalTasNets, --precision {args.precision}, "
              f"{batch}, CPU, "
              f"{args.threads} thread(s), {cpu_name()}")
        if args.precision in ("int8", "auto"):   # int8 graphs exported once, as a user's first run does
            warm = tmp / "warm.wav"
            sf.write(str(warm), synthetic_song(2.0, sr, seed=1).T, sr, subtype="PCM_16")
            for label, code in codes:
                for size in args.size:
                    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(code),
                               XDG_CACHE_HOME=str(tmp / "cache"))
                    cmd = [sys.executable, "-m", "asteroid_frugal.cli.separate", str(warm), "--out", str(tmp / "warm"),
                           "--device", "cpu", "--precision", args.precision, "--threads", str(args.threads),
                           "--models", *(f"{t}={exps[size][t]}" for t in targets)]
                    peak, anon, wall = measure(cmd, env, code)
                    shutil.rmtree(tmp / "warm", ignore_errors=True)
                    print(f"first run ({label}, {size}, {len(targets)} models, 2 s song; exports and caches the int8 "
                          f"graphs): peak RSS {peak:.0f} MB, peak anonymous {anon:.0f} MB, {wall:.0f} s", flush=True)
        print("| code | model size | song | models | peak RSS | peak anonymous | wall time |\n"
              "|---|---|---:|---|---:|---:|---:|")
        for minutes in args.minutes:
            song = tmp / "song.wav"
            with sf.SoundFile(str(song), "w", sr, 2, subtype="PCM_16") as f:   # ten minutes at a time
                for start in range(0, int(minutes * 60), 600):
                    f.write(synthetic_song(min(600, minutes * 60 - start), sr, seed=start).T)
            for size in args.size:
                for models in args.sets:
                    ts = models.split(",")
                    for label, code in codes:
                        out = tmp / f"out_{label}"
                        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(code),
                                   XDG_CACHE_HOME=str(tmp / "cache"))
                        cmd = [sys.executable, "-m", "asteroid_frugal.cli.separate", str(song), "--out", str(out),
                               "--device", "cpu", "--precision", args.precision, "--threads", str(args.threads),
                               "--models", *(f"{t}={exps[size][t]}" for t in ts)]
                        if args.batch_chunks:
                            cmd += ["--batch_chunks", str(args.batch_chunks)]
                        if args.int8_batch_chunks:
                            cmd += ["--set", f"separate.int8_batch_chunks={args.int8_batch_chunks}"]
                        peak, anon, wall = measure(cmd, env, code)
                        shutil.rmtree(out, ignore_errors=True)
                        print(f"| {label} | {size} | {minutes:g} min | {'+'.join(ts)} | {peak:.0f} MB | {anon:.0f} MB | {wall:.0f} s |",
                              flush=True)
            song.unlink()


if __name__ == "__main__":
    from asteroid_frugal.cli.common import setup_process

    setup_process(sys.argv[1:])   # the threading policy, set as every command sets it
    main()
