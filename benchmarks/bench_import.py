#!/usr/bin/env python
"""What ``import asteroid_frugal`` costs beyond the imports of torch and asteroid, and what a
command's start costs (its interpreter, imports and threading set-up), each in fresh processes.

    .venv/bin/python benchmarks/bench_import.py            # 7 runs each, medians
    .venv/bin/python benchmarks/bench_import.py --runs 3

Target: the package import adds under 0.1 s to torch's and asteroid's. The command start is
``python -m asteroid_frugal.cli.export --help`` as shipped and with ``--set
runtime.omp_wait_policy=passive`` (on a quiet machine ``auto`` keeps OpenMP's default, so the
second is the case where the command starts itself again to change OpenMP's wait policy).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMPORT = ("import time; t0 = time.perf_counter(); import torch, asteroid, asteroid.models; t1 = time.perf_counter(); "
          "import asteroid_frugal; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)")


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "ASTEROID_FRUGAL_"))}


def import_times(runs):
    pairs = [tuple(map(float, subprocess.run([sys.executable, "-c", IMPORT], cwd=REPO, env=clean_env(), check=True,
                                             capture_output=True, text=True).stdout.split())) for _ in range(runs)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def command_seconds(runs, *flags):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "asteroid_frugal.cli.export", "--help", *flags], cwd=REPO,
                       env=clean_env(), check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from asteroid_frugal.utils import cpu_name

    base, package = import_times(args.runs)
    shipped = command_seconds(args.runs)
    restarted = command_seconds(args.runs, "--set", "runtime.omp_wait_policy=passive")
    print(f"{cpu_name()}; load average {os.getloadavg()[0]:.2f}; medians of {args.runs} fresh processes")
    print(f"import torch + asteroid          {base:8.3f} s")
    print(f"import asteroid_frugal, beyond   {package:8.3f} s   (target < 0.1 s)")
    print(f"command start, as shipped        {shipped:8.3f} s")
    print(f"command start, policy restart    {restarted:8.3f} s   ({restarted / shipped:.2f}x)")


if __name__ == "__main__":
    main()
