#!/usr/bin/env python
"""The recipe's stages at the paper's scale: wall and CPU time, peak memory and disk written per stage.

    .venv/bin/python benchmarks/bench_scale.py --work /tmp/scale --subset 6          # docs/scale.md's table
    .venv/bin/python benchmarks/bench_scale.py --work /tmp/s --songs 4 --length_scale 0.01 --tiny   # a check

Runs, each as its own process tree under a monitor, on a rehearsal set (local/make_rehearsal.py: the
MUSDB18 layout, lengths and format; ``--subset N`` of its 150 songs, each split's longest first):
make the set, stage 0 (prepare_data), stage 2 (shape_trainset, vocals), the data loader alone
(bench_loader.py, 1 and 2 workers), training steps at the paper's batch (bench_training.py's step on
synthetic excerpts), stage 3 for one epoch (``training.epochs=1``: the subset's few excerpts) and
stage 4 (evaluate, its default job count) with the stage-3 model. For each: wall seconds, CPU
seconds (user + system of the whole tree), peak RSS of its largest process (the kernel's own
maximum, exact), peak RSS and PSS of the whole tree (sums over its processes, sampled every 0.1 s
from /proc; PSS shares the pages processes have in common, such as torch's libraries), and bytes
written under the stage's output folder. ``--tiny`` runs every stage with a small model so
that the script can be tested in seconds; ``--stages`` picks some.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
PAGE = os.sysconf("SC_PAGE_SIZE")
STAGES = ("make", "prepare", "shape", "loader", "step", "train", "evaluate")
TINY_MODEL = ["filterbank.n_filters=16", "filterbank.kernel_size=20", "masker.hidden_size=8", "masker.n_layers=2",
              "masker.skip_every=1", "shaping.excerpt_seconds=0.5", "shaping.align_seconds=0.5",
              "data.valid_chunk_seconds=0.5", "training.num_workers=0", "evaluation.chunk_seconds=0.5",
              "evaluation.overlap_seconds=0.1", "evaluation.n_examples=1"]


def tree_memory(root_pid: int):
    """``(rss, pss)`` bytes of ``root_pid`` and all its descendants (from /proc): RSS counts the
    shared pages (libraries, copy-on-write) once per process, PSS splits them between processes."""
    children = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    rss = pss = 0
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            pass
        todo += children.get(pid, [])
    return rss, pss


def disk_bytes(paths) -> int:
    """Allocated bytes of the files under ``paths`` (hard links counted once)."""
    seen, total = set(), 0
    for base in paths:
        for folder, _, files in os.walk(base):
            for name in files:
                try:
                    st = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def monitored(cmd, outputs, log_path: Path) -> dict:
    """Run ``cmd``; its wall and CPU seconds, peak RSS (tree, sampled; largest process, exact), disk written."""
    before = disk_bytes(outputs)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        peak, done = [0, 0], threading.Event()

        def sample():
            while not done.is_set():
                peak[:] = [max(a, b) for a, b in zip(peak, tree_memory(proc.pid))]
                done.wait(0.1)
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        thread.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}); see {log_path}:\n"
                 + log_path.read_text()[-3000:])
    return dict(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, peak_process_gib=usage.ru_maxrss / 2 ** 20,  # KiB
                peak_tree_rss_gib=peak[0] / 2 ** 30, peak_tree_pss_gib=peak[1] / 2 ** 30,
                disk_mb=(disk_bytes(outputs) - before) / 1e6)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="folder for the set, the prepared data and the experiment")
    p.add_argument("--subset", type=int, default=None, help="songs of the 150-song set written and used (default all)")
    p.add_argument("--songs", type=int, default=None, help="songs of the whole set (default conf.yml's 150)")
    p.add_argument("--length_scale", type=float, default=None, help="song lengths times this (tests)")
    p.add_argument("--jobs", type=int, default=None, help="rehearsal jobs (default conf.yml's)")
    p.add_argument("--step_batch", type=int, default=None, help="batch of the training-step measure (default the paper's)")
    p.add_argument("--step_seconds", type=float, default=None, help="excerpt seconds of it (default the paper's)")
    p.add_argument("--steps", type=int, default=2, help="timed training steps")
    p.add_argument("--stages", nargs="*", default=list(STAGES), choices=STAGES)
    p.add_argument("--eval_tracks", type=int, default=None, help="stage 4 scores only the first N test tracks")
    p.add_argument("--no_sisnr", action="store_true", help="stage 4 without the SI-SNR of the test excerpts")
    p.add_argument("--tiny", action="store_true", help="a small model everywhere (tests)")
    p.add_argument("--out", default=None, help="write the results as JSON")
    args = p.parse_args(argv)
    from asteroid_frugal.config import load_config
    from asteroid_frugal.utils import cpu_name, write_json_atomic

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    root, data, exp = work / "rehearsal", work / "data", work / "exp" / "vocals"
    sets = [f"data.root={data}", f"data.musdb_root={root}", "data.target=vocals"] + (TINY_MODEL if args.tiny else [])
    conf_args = [a for s in sets for a in ("--set", s)]
    conf = load_config(overrides=sets)
    batch = args.step_batch or int(conf["training"]["batch_size"])
    seconds = args.step_seconds or float(conf["shaping"]["excerpt_seconds"])
    make = [PY, "local/make_rehearsal.py", str(root), "--no_progress"]
    make += ["--subset", str(args.subset)] if args.subset else []
    make += ["--songs", str(args.songs)] if args.songs else []
    make += ["--length_scale", str(args.length_scale)] if args.length_scale else []
    make += ["--jobs", str(args.jobs)] if args.jobs else []
    commands = {
        "make": (make, [root]),
        "prepare": ([PY, "local/prepare_data.py", "--no_progress", *conf_args], [data]),
        "shape": ([PY, "local/shape_trainset.py", "--exp_dir", str(exp), "--no_report", *conf_args], [exp / "data"]),
        "loader": None,
        "step": ([PY, "benchmarks/bench_training.py", "--child", "frugal", "--batch", str(batch), "--seconds",
                  str(seconds), "--steps", str(args.steps)], []),
        "train": ([PY, "local/train.py", "--exp_dir", str(exp), "--set", "training.epochs=1", *conf_args], [exp]),
        "evaluate": ([PY, "local/evaluate.py", "--exp_dir", str(exp), *conf_args]
                     + (["--max_tracks", str(args.eval_tracks)] if args.eval_tracks else [])
                     + (["--no_sisnr"] if args.no_sisnr else []), [exp / "results"]),
    }
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"{cpu_name()}; load average at start {' '.join(load)}; work folder {work}")
    results = {}
    for stage in STAGES:
        if stage not in args.stages:
            continue
        if stage == "loader":
            for workers in (1, 2):
                cmd = [PY, "benchmarks/bench_loader.py", "--manifest", str(exp / "data" / "test.csv"), "--workers",
                       str(workers), "--batch_size", str(batch), "--epochs", "2",
                       "--out", str(work / f"loader{workers}.json")]
                r = monitored(cmd, [], work / f"loader{workers}.log")
                epochs = json.loads((work / f"loader{workers}.json").read_text())["epochs"]
                r["x_realtime"] = [round(e["x_realtime"], 1) for e in epochs]
                results[f"loader, {workers} worker(s)"] = r
            continue
        cmd, outputs = commands[stage]
        r = monitored(cmd, outputs, work / f"{stage}.log")
        if stage == "step":
            step = json.loads((work / "step.log").read_text().strip().splitlines()[-1])
            r.update(step_s=step["step_s"], audio_per_s=step["audio_s_per_s"])
        results[stage] = r
        if args.out:   # after each stage: a long run stopped midway keeps what it measured
            write_json_atomic(args.out, dict(cpu=cpu_name(), load_start=load, results=results))
    with open("/proc/loadavg") as f:
        load_end = f.read().split()[:3]
    print(f"load average at the end {' '.join(load_end)}")
    print("| stage | wall (s) | CPU (s) | peak RSS, largest process (GiB) | peak RSS, tree (GiB) | peak PSS, tree (GiB) "
          "| disk written (MB) | notes |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        note = ""
        if "step_s" in r:
            note = f"{r['step_s']:.2f} s/step at batch {batch} x {seconds:g} s ({r['audio_per_s']:.2f} s of audio/s)"
        if "x_realtime" in r:
            note = "x real time per epoch: " + ", ".join(f"{x:g}" for x in r["x_realtime"])
        print(f"| {name} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_process_gib']:.3f} | {r['peak_tree_rss_gib']:.3f} "
              f"| {r['peak_tree_pss_gib']:.3f} | {r['disk_mb']:.1f} | {note} |")
    if args.out:
        write_json_atomic(args.out, dict(cpu=cpu_name(), load_start=load, load_end=load_end, results=results,
                                         batch=batch, excerpt_seconds=seconds))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from asteroid_frugal.cli.common import setup_process

    setup_process(sys.argv[1:])   # the threading policy, set as every command sets it
    main()
