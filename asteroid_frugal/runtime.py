"""The process's threading policy, set in one place where each process starts, before torch loads.

OpenMP (libgomp, which PyTorch's CPU kernels and LSTM run on) reads ``OMP_WAIT_POLICY``
and ``OMP_NUM_THREADS`` once, when ``import torch`` loads it. Its default wait policy
lets idle worker threads spin for a while between parallel regions; as soon as
another process competes for the cores (data-loader workers, parallel evaluation
jobs, a user's other work) the spinning threads take the cores from the threads
doing the work, and a separation or a training step gets 2-10x slower
(benchmarks/README.md, "Defaults"). ``passive`` makes waiting threads sleep.

Settings (``runtime`` in conf.yml, the only place of their defaults):

* ``runtime.threads``: intra-op threads of torch, and OMP/MKL/OpenBLAS threads:
  ``auto`` (default), ``null`` (all cores, PyTorch's default) or N; ``--threads N``
  on every command that reads the config.
* ``runtime.omp_wait_policy``: ``auto`` (default) | ``passive`` | ``active`` |
  ``null`` (OpenMP's default).

``auto`` looks at the machine when the process starts (:func:`free_cores`: /proc/stat
sampled over 0.2 s, before this process does any work). On a quiet machine it keeps
PyTorch's defaults (all cores, OpenMP's spin-waiting: the fastest there); when other
processes already use the cores it takes the free ones (at least one) with passive
waiting, because spinning threads then collapse. Measured on the 2-core machine, demo
training (3 epochs, stage 3) and the paper model (benchmarks/README.md, "Defaults"):
no single fixed setting is within 1.1x of the best in both states. The choice is made
once per process, not during the run: a training's result depends on its thread count
(floating-point summation order), so a run keeps one count from start to end; its log
line says which (``--threads N`` pins it for bit-identical re-runs).

Precedence: ``--threads`` and ``--set runtime.*`` on the command line, then the
environment (``OMP_NUM_THREADS``, ``OMP_WAIT_POLICY`` exported before the command),
then the config files (conf.yml and overlays).

How every process gets it: ``asteroid_frugal/__init__.py`` calls :func:`early_setup`
before anything imports torch, so the CLIs (``python -m asteroid_frugal.X``,
``asteroid-frugal-separate``), the stage scripts (``local/*.py``) and the benchmarks
all set it before torch loads. ``early_setup`` writes what it chose into
``os.environ``, which evaluation worker processes (spawned) inherit; data-loader
workers are forked and inherit the loaded runtime (PyTorch gives each one thread).
``config_from_args`` then calls :func:`apply` for ``--threads`` given to an in-process
``main(argv)``. A process that imported torch before this package keeps OpenMP's
wait policy as it was (logged by :func:`describe`).
"""
import argparse
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

log = logging.getLogger("asteroid_frugal.runtime")

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WAIT_POLICIES = ("passive", "active")
AUTO = "auto"
# what ``auto`` chose in a parent process, for its spawned workers: "<threads|all>,<policy|default>"
AUTO_ENV = "ASTEROID_FRUGAL_AUTO_RUNTIME"
_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent
# what early_setup chose in this process: threads, wait_policy, and where each came from
CHOSEN: Dict[str, Any] = {}


def check_threads(value: Any, source: str) -> Optional[Any]:
    """``None`` (all cores), ``"auto"`` or an integer >= 1, else a one-line error naming ``source``."""
    from .utils import FrugalError

    if value is None:
        return None
    if str(value).strip().lower() == AUTO:
        return AUTO
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(value).strip() not in (str(n), f"{n}.0"):
        raise FrugalError(f"{source}: threads must be an integer >= 1, auto, or null for all cores, got {value!r}")
    return n


def check_wait_policy(value: Any, source: str) -> Optional[str]:
    """``None`` (OpenMP's default), ``auto``, ``passive`` or ``active`` (any case)."""
    from .utils import FrugalError

    if value is None:
        return None
    policy = str(value).strip().lower()
    if policy not in (*WAIT_POLICIES, AUTO):
        raise FrugalError(f"{source}: omp_wait_policy must be auto, passive, active or null, got {value!r}")
    return policy


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times(path: str = "/proc/stat") -> Optional[Sequence[int]]:
    """The machine's aggregate CPU times (user nice system idle iowait irq softirq steal), or None."""
    try:
        with open(path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    return [int(x) for x in fields[1:9]]


def free_cores(n_cores: int, sample_seconds: float = 0.2, read=_cpu_times, sleep=time.sleep) -> Optional[float]:
    """How many of ``n_cores`` were idle while this process waited ``sample_seconds``
    (from the machine's CPU counters; ``None`` where they cannot be read, e.g. not Linux)."""
    before = read()
    if before is None:
        return None
    sleep(sample_seconds)
    after = read()
    if after is None:
        return None
    delta = [b - a for a, b in zip(before, after)]
    total = sum(delta)
    if total <= 0:
        return None
    idle = delta[3] + delta[4]   # idle + iowait
    return n_cores * idle / total


def auto_policy(n_cores: int, free: Optional[float]) -> Tuple[Optional[int], Optional[str]]:
    """``(threads, wait_policy)`` for ``auto`` given the idle cores measured at start:
    PyTorch's and OpenMP's defaults on a quiet machine (or where nothing could be
    measured), else the free cores (at least one) with passive waiting."""
    if free is None or free >= n_cores - 0.5:
        return None, None
    return max(1, int(free + 0.5)), "passive"


def _our_command(argv0: str) -> bool:
    """Whether this process runs one of this project's commands (whose flags we may read)."""
    orig = getattr(sys, "orig_argv", [])
    if argv0 == "-m":   # python -m asteroid_frugal.X: argv[0] is "-m" while the package loads
        return any(a.startswith("asteroid_frugal") for a in orig)
    if not argv0:
        return False
    path = Path(argv0)
    if path.name.startswith("asteroid-frugal"):
        return True
    try:
        parent = path.resolve().parent
    except OSError:
        return False
    return parent in (_PACKAGE_DIR, _REPO_ROOT / "local", _REPO_ROOT / "benchmarks")


def decide(argv: Sequence[str], environ, measure=free_cores) -> Dict[str, Any]:
    """``{threads, wait_policy, threads_from, wait_policy_from}`` for a command line and environment
    (``auto`` resolved: ``measure(n_cores)`` gives the free cores, see :func:`free_cores`)."""
    from .config import DEFAULT_CONF, load_config

    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--conf", default=str(DEFAULT_CONF))
    p.add_argument("--overlay", action="append", default=[])
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--threads", default=None)
    args, _ = p.parse_known_args(list(argv))
    overlays = [o for item in args.overlay for o in str(item).split()]
    conf = load_config(args.conf, overlays, args.overrides)
    runtime = conf.get("runtime") or {}
    on_cmdline = {s.split("=", 1)[0].strip() for s in args.overrides if "=" in s}

    threads_from = "config"
    threads = runtime.get("threads")
    if args.threads is not None:
        threads, threads_from = args.threads, "--threads"
    elif "runtime.threads" in on_cmdline:
        threads_from = "--set"
    elif environ.get("OMP_NUM_THREADS"):
        threads, threads_from = environ["OMP_NUM_THREADS"], "OMP_NUM_THREADS"
    policy_from = "config"
    policy = runtime.get("omp_wait_policy")
    if "runtime.omp_wait_policy" not in on_cmdline and environ.get("OMP_WAIT_POLICY"):
        policy, policy_from = environ["OMP_WAIT_POLICY"], "OMP_WAIT_POLICY"
    else:
        policy_from = "--set" if "runtime.omp_wait_policy" in on_cmdline else "config"
    names = {"config": "runtime.{}", "--set": "--set runtime.{}"}
    threads = check_threads(threads, names.get(threads_from, threads_from).format("threads"))
    policy = check_wait_policy(policy, names.get(policy_from, policy_from).format("omp_wait_policy"))
    if AUTO in (threads, policy):
        auto_threads, auto_wait, how = _resolve_auto(environ, measure)
        if threads == AUTO:
            threads, threads_from = auto_threads, how
        if policy == AUTO:
            policy, policy_from = auto_wait, how
    return dict(threads=threads, threads_from=threads_from, wait_policy=policy, wait_policy_from=policy_from)


def _resolve_auto(environ, measure) -> Tuple[Optional[int], Optional[str], str]:
    """``auto``'s ``(threads, wait_policy, where from)``: the parent process's choice
    (exported in :data:`AUTO_ENV`), else measured now."""
    inherited = environ.get(AUTO_ENV, "")
    if inherited.count(",") == 1:
        t, p = inherited.split(",")
        if (t == "all" or t.isdigit()) and p in (*WAIT_POLICIES, "default"):
            return (None if t == "all" else int(t)), (None if p == "default" else p), f"auto (parent process: {inherited})"
    n = usable_cores()
    free = measure(n)
    threads, policy = auto_policy(n, free)
    seen = "cores not measurable" if free is None else f"{free:.1f} of {n} cores free at start"
    return threads, policy, f"auto, {seen}"


def early_setup(argv: Optional[Sequence[str]] = None, environ=None) -> Dict[str, Any]:
    """Choose and export the threading policy of this process; a no-op once torch is loaded.

    The command line is read only in the main process of this project's commands (a
    spawned worker gets its parent's choice through the environment); any problem
    (a bad value, a missing config file) is left to the command's own checks, which
    report it in one line: here the config defaults are used.
    """
    environ = os.environ if environ is None else environ
    if "torch" in sys.modules or CHOSEN:
        return CHOSEN
    if argv is None:
        import multiprocessing

        main_process = multiprocessing.parent_process() is None
        argv = sys.argv[1:] if main_process and sys.argv and _our_command(sys.argv[0]) else []
    try:
        chosen = decide(argv, environ)
    except Exception:   # noqa: BLE001 - reported by the command itself (config_from_args, apply)
        try:
            chosen = decide([], environ)
        except Exception:   # noqa: BLE001 - e.g. a broken OMP_* variable: leave the process as it is
            return CHOSEN
    if chosen["threads"] is not None:
        for var in THREAD_VARS:
            environ[var] = str(chosen["threads"])
    if chosen["wait_policy"] is not None:
        environ["OMP_WAIT_POLICY"] = chosen["wait_policy"].upper()
    if "auto" in (chosen["threads_from"] + chosen["wait_policy_from"]) and AUTO_ENV not in environ:
        # spawned workers and child commands reuse this choice instead of measuring a machine
        # that this process is now loading
        environ[AUTO_ENV] = f"{chosen['threads'] or 'all'},{chosen['wait_policy'] or 'default'}"
    CHOSEN.update(chosen)
    return CHOSEN


def apply(threads: Any = None) -> None:
    """``--threads`` given to an in-process ``main(argv)``: torch's intra-op threads now
    (the thread count, unlike the wait policy, can change after torch has loaded); logs
    the policy in effect."""
    import torch

    n = check_threads(threads, "--threads")
    if n is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    log.info("runtime: %s", describe())


def describe() -> str:
    """One line for the logs: threads and OpenMP wait policy in effect, and where they came from."""
    import torch

    policy = os.environ.get("OMP_WAIT_POLICY", "OpenMP default").lower()
    if not CHOSEN:
        where = " (set before this package was imported)"
    elif CHOSEN["threads_from"] == CHOSEN["wait_policy_from"]:
        where = f" (threads and wait policy from {CHOSEN['threads_from']})"
    else:
        where = f" (threads from {CHOSEN['threads_from']}, wait policy from {CHOSEN['wait_policy_from']})"
    return f"torch threads {torch.get_num_threads()}, OMP wait policy {policy}{where}"


@contextmanager
def torch_threads(n: Optional[int]):
    """Run a block with ``n`` torch intra-op threads (``None``: unchanged), then restore them."""
    if n is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(check_threads(n, "threads"))
    try:
        yield
    finally:
        torch.set_num_threads(old)
