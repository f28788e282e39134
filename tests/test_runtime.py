"""The threading policy (asteroid_frugal/runtime.py): set where each process starts, before torch
loads, from the config, the environment and ``--threads``; spawned workers inherit it."""
import os
import subprocess
import sys
from multiprocessing import get_context

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from asteroid_frugal.model import FrugalTasNet
from asteroid_frugal.runtime import decide, describe, torch_threads
from asteroid_frugal.utils import FrugalError

from conftest import REPO

OMP_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")


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
    proc = subprocess.run([sys.executable, "-m", "asteroid_frugal.separate", str(tmp_path / "song.wav"),
                           "--models", str(exp), "--out", str(tmp_path / "out"), "--threads", "1"],
                          cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # "from config" (not "set before this package was imported"): chosen before torch loaded
    assert runtime_line(proc.stderr) == ("torch threads 1, OMP wait policy passive "
                                         "(threads from --threads, wait policy from config)")
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
                                         "(threads from --set, wait policy from --set)")


def test_decide_config_overlay_environment(tmp_path):
    overlay = tmp_path / "o.yml"
    overlay.write_text(yaml.safe_dump({"runtime": {"threads": 3, "omp_wait_policy": "active"}}))
    shipped = yaml.safe_load((REPO / "conf.yml").read_text())["runtime"]
    got = decide([], {})
    assert (got["threads"], got["wait_policy"]) == (shipped["threads"], shipped["omp_wait_policy"])
    got = decide(["--overlay", str(overlay), "--other", "x"], {})
    assert (got["threads"], got["wait_policy"], got["threads_from"]) == (3, "active", "config")
    # a spawned worker reads no command line: the environment its parent exported decides
    got = decide([], {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"})
    assert (got["threads"], got["wait_policy"], got["threads_from"]) == (1, "passive", "OMP_NUM_THREADS")
    assert decide(["--threads", "2"], {"OMP_NUM_THREADS": "1"})["threads"] == 2
    for argv in (["--threads", "0"], ["--set", "runtime.threads=two"], ["--set", "runtime.omp_wait_policy=spin"]):
        with pytest.raises(FrugalError, match="runtime|threads"):
            decide(argv, {})


def test_spawned_worker_inherits_the_policy(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    with get_context("spawn").Pool(1) as pool:
        line = pool.apply(describe)
    assert line == "torch threads 1, OMP wait policy passive (threads from OMP_NUM_THREADS, wait policy from OMP_WAIT_POLICY)"


def test_torch_threads_block_restores():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
