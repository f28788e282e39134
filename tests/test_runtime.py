"""The threading policy (asteroid_frugal/runtime.py): chosen by each command where it starts, from
the config, the environment and ``--threads``, put in effect before any work (restarting the
command where OpenMP's wait policy must change); spawned workers inherit it."""
import os
import re
import subprocess
import sys
from multiprocessing import get_context

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from asteroid_frugal.model import FrugalTasNet
from asteroid_frugal import runtime
from asteroid_frugal.cli.common import runtime_request
from asteroid_frugal.runtime import (AUTO_ENV, RESTART_ENV, auto_policy, configure_process, decide, describe,
                                      free_cores, torch_threads, usable_cores)
from asteroid_frugal.utils import FrugalError

from conftest import REPO

OMP_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", AUTO_ENV)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def runtime_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "runtime: torch threads" in line]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0].split("runtime: ", 1)[1]


def test_separate_command_sets_threads_and_wait_policy_before_torch(tmp_path, tiny_model_args):
    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save(FrugalTasNet(**tiny_model_args).serialize(), exp / "best_model.pth")
    (exp / "conf.yml").write_text(yaml.safe_dump({"data": {"target": "vocals"}}))
    t = np.arange(8000) / 8000
    sf.write(tmp_path / "song.wav", np.stack([np.sin(2 * np.pi * 220 * t)] * 2).T * 0.3, 8000)
    proc = subprocess.run([sys.executable, "-m", "asteroid_frugal.cli.separate", str(tmp_path / "song.wav"),
                           "--models", str(exp), "--out", str(tmp_path / "out"), "--threads", "1"],
                          cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # "from auto, ..." (not "from the environment"): chosen by the command where it started;
    # the shipped wait policy is auto: measured at start, so either policy
    assert re.fullmatch(r"torch threads 1, OMP wait policy (passive|openmp default) \(threads from --threads, "
                        r"wait policy from auto, \d+\.\d of \d+ cores free at start\)", runtime_line(proc.stderr))
    assert (tmp_path / "out" / "song" / "vocals.wav").is_file()


def test_stage_script_precedence_environment_then_command_line(tmp_path):
    base = [sys.executable, "local/evaluate.py", "--exp_dir", str(tmp_path / "missing")]
    env = clean_env(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="ACTIVE")
    proc = subprocess.run(base, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "model file not found" in proc.stderr.splitlines()[-1]
    assert runtime_line(proc.stderr) == ("torch threads 1, OMP wait policy active "
                                         "(threads from OMP_NUM_THREADS, wait policy from OMP_WAIT_POLICY)")
    proc = subprocess.run(base + ["--set", "runtime.threads=2", "--set", "runtime.omp_wait_policy=passive"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert runtime_line(proc.stderr) == ("torch threads 2, OMP wait policy passive "
                                         "(threads and wait policy from --set)")


def decide_for(argv, environ, measure=free_cores):
    """:func:`runtime.decide` for a command line, as a command's entry point calls it."""
    return decide(*runtime_request(argv), environ, measure)


def test_decide_config_overlay_environment(tmp_path):
    overlay = tmp_path / "o.yml"
    overlay.write_text(yaml.safe_dump({"runtime": {"threads": 3, "omp_wait_policy": "active"}}))
    shipped = yaml.safe_load((REPO / "conf.yml").read_text())["runtime"]
    assert (shipped["threads"], shipped["omp_wait_policy"]) == ("auto", "auto")
    n = usable_cores()
    # auto on a quiet machine: PyTorch's and OpenMP's defaults; on a busy one: the free cores, passive
    got = decide_for([], {}, measure=lambda cores: float(cores))
    assert (got["threads"], got["wait_policy"]) == (None, None)
    assert got["threads_from"] == got["wait_policy_from"] == f"auto, {n:.1f} of {n} cores free at start"
    got = decide_for([], {}, measure=lambda cores: cores - 1.0)
    assert (got["threads"], got["wait_policy"]) == ((max(1, n - 1), "passive") if n > 1 else (None, None))
    got = decide_for(["--set", "runtime.omp_wait_policy=active"], {}, measure=lambda cores: 0.0)
    assert (got["threads"], got["wait_policy"], got["wait_policy_from"]) == ((1, "active", "--set") if n > 1
                                                                             else (None, "active", "--set"))
    # a child process reuses its parent's choice instead of measuring the machine its parent loads
    got = decide_for([], {AUTO_ENV: "1,passive"}, measure=lambda cores: pytest.fail("measured again"))
    assert (got["threads"], got["wait_policy"], got["threads_from"]) == (1, "passive", "auto (parent process: 1,passive)")
    got = decide_for(["--overlay", str(overlay), "--other", "x"], {})
    assert (got["threads"], got["wait_policy"], got["threads_from"]) == (3, "active", "config")
    # a spawned worker reads no command line: the environment its parent exported decides
    got = decide_for([], {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"})
    assert (got["threads"], got["wait_policy"], got["threads_from"]) == (1, "passive", "OMP_NUM_THREADS")
    assert decide_for(["--threads", "2"], {"OMP_NUM_THREADS": "1"})["threads"] == 2
    for argv in (["--threads", "0"], ["--set", "runtime.threads=two"], ["--set", "runtime.omp_wait_policy=spin"]):
        with pytest.raises(FrugalError, match="runtime|threads"):
            decide_for(argv, {})


def test_spawned_worker_inherits_the_policy(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    with get_context("spawn").Pool(1) as pool:
        line = pool.apply(describe)
    assert line == "torch threads 1, OMP wait policy passive (from the environment: OMP_NUM_THREADS, OMP_WAIT_POLICY)"


def test_torch_threads_block_restores():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_auto_policy_from_cpu_counters(tmp_path):
    # /proc/stat's aggregate line: user nice system idle iowait irq softirq steal ...
    counters = iter([[100, 0, 50, 1000, 0, 0, 0, 0, 0, 0], [150, 0, 100, 1100, 0, 0, 0, 0, 0, 0]])
    free = free_cores(2, read=lambda: next(counters), sleep=lambda s: None)
    assert free == pytest.approx(2 * 100 / 200)   # half the time idle over the sample: one core free
    assert auto_policy(2, free) == (1, "passive")
    assert auto_policy(2, 1.7) == (None, None) and auto_policy(8, 5.2) == (5, "passive")
    assert auto_policy(2, 0.1) == (1, "passive") and auto_policy(2, None) == (None, None)
    assert free_cores(2, read=lambda: None) is None
    stat = tmp_path / "stat"   # a file that is not /proc/stat: nothing measured, not an error
    stat.write_text("intr 1 2 3\n")
    from asteroid_frugal.runtime import _cpu_times
    assert _cpu_times(str(stat)) is None and _cpu_times(str(tmp_path / "missing")) is None
    real = free_cores(usable_cores(), sample_seconds=0.05)
    assert real is None or -0.01 <= real <= usable_cores() + 0.01


def test_bench_defaults_children_inherit_no_runtime_choice(monkeypatch):
    """bench_defaults.py starts each measured command as a user would: none of the variables a
    command's threading reads or exports (runtime.AUTO_ENV, runtime.RESTART_ENV) reaches it."""
    import importlib.util

    from asteroid_frugal.runtime import RESTART_ENV

    spec = importlib.util.spec_from_file_location("bench_defaults", REPO / "benchmarks" / "bench_defaults.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for var in (*OMP_VARS, RESTART_ENV):
        monkeypatch.setenv(var, "1")
    assert not set(bench.clean_env()) & {*OMP_VARS, RESTART_ENV}


def test_bad_runtime_values_are_one_line_errors(tmp_path):
    for args, message in ((["--threads", "0"], "error: runtime.threads: threads must be an integer >= 1"),
                          (["--set", "runtime.omp_wait_policy=spin"],
                           "error: runtime.omp_wait_policy: omp_wait_policy must be auto, passive, active or null")):
        proc = subprocess.run([sys.executable, "local/evaluate.py", "--exp_dir", str(tmp_path), *args],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


@pytest.fixture
def fresh_choice(monkeypatch):
    monkeypatch.setattr(runtime, "CHOSEN", {})
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_configure_process_restarts_only_where_the_wait_policy_must_change(fresh_choice):
    restarts = []
    environ = {}
    got = configure_process(*runtime_request(["--set", "runtime.omp_wait_policy=passive", "--threads", "1"]), environ,
                            reexec=lambda: restarts.append(dict(environ)))
    assert len(restarts) == 1 and restarts[0]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert restarts[0]["OMP_NUM_THREADS"] == restarts[0]["OPENBLAS_NUM_THREADS"] == "1"
    assert got["threads"] == 1 and torch.get_num_threads() == 1
    # the restarted command takes the same choice, measured nothing and restarts no more
    runtime.CHOSEN.clear()
    again = configure_process(*runtime_request([]), restarts[0], measure=lambda n: pytest.fail("measured again"),
                              reexec=lambda: pytest.fail("restarted twice"))
    assert again == got and RESTART_ENV not in restarts[0]
    # a policy the process already started with: no restart, the thread count set in place
    runtime.CHOSEN.clear()
    environ = {"OMP_WAIT_POLICY": "PASSIVE"}
    got = configure_process(*runtime_request(["--threads", "1"]), environ, measure=lambda n: 0.0,
                            reexec=lambda: pytest.fail("restart"))
    assert got["wait_policy"] == "passive" and RESTART_ENV not in environ


def test_configure_process_leaves_a_bad_value_to_the_command(fresh_choice):
    environ = {}
    got = configure_process(*runtime_request(["--threads", "0"]), environ, measure=lambda n: float(n),
                            reexec=lambda: None)
    assert got["threads_from"].startswith("auto")   # the config's defaults; the command reports --threads 0
