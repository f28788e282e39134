"""local/run_egs.py's --launcher: from run.sh, checked in one line, and the launcher's settings reach no variant."""
import subprocess
import types

import pytest

from asteroid_frugal import sweep
from asteroid_frugal.cli.run_egs import build_parser, main as run_egs
from asteroid_frugal.utils import FrugalError

from conftest import REPO
from test_sweep import make_egs


def test_run_sh_passes_launcher_to_the_sweep(tmp_path):
    echo = tmp_path / "python"
    echo.write_text('#!/bin/bash\necho "$@"\n')
    echo.chmod(0o755)
    out = subprocess.run(["./run.sh", "--setup", "no", "--python", str(echo), "--egs", "egs/table2_excerpt_length",
                          "--launcher", "slurm", "--set", "launcher.partition=gpu"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1].startswith("local/run_egs.py --egs egs/table2_excerpt_length")
    assert " --launcher slurm " in out.stdout and "--set launcher.partition=gpu" in out.stdout
    bare = subprocess.run(["./run.sh", "--setup", "no", "--python", str(echo), "--egs", "egs/table2_excerpt_length"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "--launcher" not in bare.stdout          # conf.yml's launcher.name (local) decides


def test_launcher_values_are_checked(tmp_path, capsys):
    egs = make_egs(tmp_path)
    assert "submitit_local" in build_parser().format_help()
    with pytest.raises(SystemExit):
        run_egs(["--egs", str(egs), "--exp_dir", "exp", "--launcher", "pbs"])
    assert "invalid choice: 'pbs'" in capsys.readouterr().err
    with pytest.raises(FrugalError, match="^launcher.name='pbs': expected one of local, slurm, submitit_local"):
        run_egs(["--egs", str(egs), "--exp_dir", "exp", "--set", "launcher.name=pbs"])


def test_launcher_settings_reach_no_variant(tmp_path, monkeypatch):
    """launcher.* (the job's resources) is the sweep's business: a variant's run.sh never sees it, so
    changing a time limit never makes a variant's saved config differ."""
    seen = []
    monkeypatch.setattr(sweep.subprocess, "run", lambda cmd, **kw: seen.append(cmd) or types.SimpleNamespace(returncode=0))
    monkeypatch.chdir(REPO)
    egs = make_egs(tmp_path)
    assert run_egs(["--egs", str(egs), "--exp_dir", str(tmp_path / "exp"), "--seeds", "1", "--stop_stage", "3",
                    "--launcher", "local", "--set", "launcher.partition=gpu", "--set", "optim.lr=0.1"]) is None
    assert len(seen) == 2
    for cmd in seen:
        sets = cmd[cmd.index("--set") + 1]
        assert "optim.lr=0.1" in sets and "launcher." not in " ".join(cmd)
