"""The process's threading policy, set in one place where each process starts, before torch loads.

OpenMP (libgomp, which PyTorch's CPU kernels and LSTM run on) reads ``OMP_WAIT_POLICY``
and ``OMP_NUM_THREADS`` once, when ``import torch`` loads it. Its default wait policy
lets idle worker threads spin for a while between parallel regions; as soon as
another process competes for the cores (data-loader workers, parallel evaluation
jobs, a user's other work) the spinning threads take the cores from the threads
doing the work, and a separation or a training step gets 2-10x slower
(benchmarks/README.md, "Defaults"). ``passive`` makes waiting threads sleep.

Settings (``runtime`` in conf.yml, the only place of their defaults):

* ``runtime.threads``: intra-op threads of torch, and OMP/MKL/OpenBLAS threads
  (``null``: all cores, PyTorch's default); ``--threads N`` on every command that
  reads the config.
* ``runtime.omp_wait_policy``: ``passive`` | ``active`` | ``null`` (OpenMP's default).

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
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

log = logging.getLogger("asteroid_frugal.runtime")

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WAIT_POLICIES = ("passive", "active")
_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent
# what early_setup chose in this process: threads, wait_policy, and where each came from
CHOSEN: Dict[str, Any] = {}


def check_threads(value: Any, source: str) -> Optional[int]:
    """``None`` (all cores) or an integer >= 1, else a one-line error naming ``source``."""
    from .utils import FrugalError

    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(value).strip() not in (str(n), f"{n}.0"):
        raise FrugalError(f"{source}: threads must be an integer >= 1 (or null for all cores), got {value!r}")
    return n


def check_wait_policy(value: Any, source: str) -> Optional[str]:
    """``None`` (OpenMP's default), ``passive`` or ``active`` (any case)."""
    from .utils import FrugalError

    if value is None:
        return None
    policy = str(value).strip().lower()
    if policy not in WAIT_POLICIES:
        raise FrugalError(f"{source}: omp_wait_policy must be passive, active or null, got {value!r}")
    return policy


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


def decide(argv: Sequence[str], environ) -> Dict[str, Any]:
    """``{threads, wait_policy, threads_from, wait_policy_from}`` for a command line and environment."""
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
    return dict(threads=check_threads(threads, names.get(threads_from, threads_from).format("threads")),
                threads_from=threads_from, wait_policy_from=policy_from,
                wait_policy=check_wait_policy(policy, names.get(policy_from, policy_from).format("omp_wait_policy")))


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
    where = (f" (threads from {CHOSEN['threads_from']}, wait policy from {CHOSEN['wait_policy_from']})"
             if CHOSEN else " (set before this package was imported)")
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
