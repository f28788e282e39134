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

How every process gets it: each entry point (``cli/common.py``'s ``run``, which every command,
stage script and console script goes through, and each benchmark script) calls
:func:`configure_process` before any work; importing the package changes nothing. OpenMP reads
its wait policy once, when ``import torch`` loads it, so where the chosen policy differs from
the one the process started with, :func:`configure_process` starts the command again in place
(``os.execv``, same arguments) with the policy in its environment: a second interpreter start,
only then. The thread count is set in place (torch's intra-op threads, and the BLAS pools
through threadpoolctl). What it chose is exported in ``os.environ``, which evaluation worker
processes (spawned) and child commands inherit; data-loader workers are forked and inherit the
loaded runtime (PyTorch gives each one thread). A library caller (a notebook, a test) keeps
its process as it is, or calls :func:`configure_process` itself.
"""
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from .config import load_config
from .utils import FrugalError

log = logging.getLogger("asteroid_frugal.runtime")

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WAIT_POLICIES = ("passive", "active")
AUTO = "auto"
# what ``auto`` chose in a parent process, for its spawned workers: "<threads|all>,<policy|default>"
AUTO_ENV = "ASTEROID_FRUGAL_AUTO_RUNTIME"
# what a command chose before it restarted itself (:func:`restart`), read once by the restarted process
RESTART_ENV = "ASTEROID_FRUGAL_RESTARTED_WITH"
# what configure_process chose in this process: threads, wait_policy, and where each came from
CHOSEN: Dict[str, Any] = {}


def check_threads(value: Any, source: str) -> Optional[Any]:
    """``None`` (all cores), ``"auto"`` or an integer >= 1, else a one-line error naming ``source``."""
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


def decide(settings: Dict[str, Any], given: Dict[str, str], environ, measure=free_cores) -> Dict[str, Any]:
    """``{threads, wait_policy, threads_from, wait_policy_from}`` from the config's resolved
    ``runtime`` section (``settings``), which of its keys the command line set (``given``:
    ``{"threads": "--threads" | "--set", "omp_wait_policy": "--set"}``) and the environment;
    ``auto`` resolved (``measure(n_cores)`` gives the free cores, see :func:`free_cores`)."""
    threads, threads_from = settings["threads"], given.get("threads", "config")
    if threads_from == "config" and environ.get("OMP_NUM_THREADS"):
        threads, threads_from = environ["OMP_NUM_THREADS"], "OMP_NUM_THREADS"
    policy, policy_from = settings["omp_wait_policy"], given.get("omp_wait_policy", "config")
    if policy_from == "config" and environ.get("OMP_WAIT_POLICY"):
        policy, policy_from = environ["OMP_WAIT_POLICY"], "OMP_WAIT_POLICY"
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


def configure_process(settings: Dict[str, Any], given: Dict[str, str], environ=None, measure=free_cores,
                      reexec: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
    """Choose this process's threading policy (:func:`decide`: the config's ``runtime`` section,
    what the command line set, the environment) and put it in effect; called once where a
    command starts (``cli.common.setup_process``).

    Exports the choice in ``environ`` (for child processes); sets torch's and the BLAS pools'
    thread counts now; where OpenMP, loaded with torch, started with another wait policy than
    the one chosen, calls ``reexec`` (default: start this command again with the new
    environment, see :func:`restart`), which does not return. A bad value is left to the
    command's own checks, which report it in one line: here the config defaults are used.
    """
    environ = os.environ if environ is None else environ
    if CHOSEN:
        return CHOSEN
    restarted = environ.pop(RESTART_ENV, None)
    if restarted:   # this command, started again by restart(): the same choice, not a new measurement
        chosen = json.loads(restarted)
        CHOSEN.update(chosen)
        if chosen["threads"] is not None:
            _set_threads_in_place(int(chosen["threads"]))
        return CHOSEN
    started_with = environ.get("OMP_WAIT_POLICY", "").strip().upper()
    try:
        chosen = decide(settings, given, environ, measure)
    except FrugalError:   # reported by the command itself (cli.common.config_from_args)
        try:
            chosen = decide(load_config()["runtime"], {}, environ, measure)
        except FrugalError:   # e.g. a broken OMP_* variable: leave the process as it is
            return CHOSEN
    if chosen["threads"] is not None:
        for var in THREAD_VARS:
            environ[var] = str(chosen["threads"])
    if chosen["wait_policy"] is not None:
        environ["OMP_WAIT_POLICY"] = chosen["wait_policy"].upper()
    if "auto" in (chosen["threads_from"] + chosen["wait_policy_from"]) and AUTO_ENV not in environ:
        # child commands (and this one, restarted) reuse this choice instead of measuring a
        # machine that this process is now loading
        environ[AUTO_ENV] = f"{chosen['threads'] or 'all'},{chosen['wait_policy'] or 'default'}"
    if "torch" in sys.modules and environ.get("OMP_WAIT_POLICY", "").strip().upper() != started_with:
        environ[RESTART_ENV] = json.dumps(chosen)
        (reexec or restart)()
    CHOSEN.update(chosen)
    if chosen["threads"] is not None:
        _set_threads_in_place(int(chosen["threads"]))
    return CHOSEN


def restart() -> None:
    """Start this command again in this process (``os.execv``) with ``os.environ``: the only way
    to give OpenMP, already loaded with torch, another wait policy."""
    argv = list(getattr(sys, "orig_argv", []) or [sys.executable, *sys.argv])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *argv[1:]])


def _set_threads_in_place(n: int) -> None:
    """torch's intra-op threads and the BLAS pools (NumPy's, SciPy's) to ``n`` in this process."""
    import torch
    from threadpoolctl import threadpool_limits

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    threadpool_limits(n, user_api="blas")


def apply(conf: Dict[str, Any]) -> None:
    """Check the config's runtime values (one line, not a traceback); an integer
    ``runtime.threads`` set for an in-process command (a test's ``main(argv)``) takes effect
    now (the thread count, unlike the wait policy, can change after torch has loaded); logs
    the policy in effect."""
    import torch

    runtime = conf["runtime"]
    n = check_threads(runtime["threads"], "runtime.threads")
    check_wait_policy(runtime["omp_wait_policy"], "runtime.omp_wait_policy")
    if isinstance(n, int) and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    log.info("runtime: %s", describe())


def describe() -> str:
    """One line for the logs: threads and OpenMP wait policy in effect, and where they came from."""
    import torch

    policy = os.environ.get("OMP_WAIT_POLICY", "OpenMP default").lower()
    if not CHOSEN:   # a worker process or a library caller: what the environment set, if anything
        inherited = [var for var in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if os.environ.get(var)]
        where = f" (from the environment: {', '.join(inherited)})" if inherited else " (PyTorch's defaults)"
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
