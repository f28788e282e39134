"""cli/common.py: the shortcut table, config resolution from a command line, and the entry point."""
import argparse
import importlib
import subprocess
import sys

import pytest

from asteroid_frugal.cli import common
from asteroid_frugal.cli.common import SHORTCUTS, add_config_args, config_from_args, run
from asteroid_frugal.config import load_config
from asteroid_frugal.utils import FrugalError

from conftest import REPO


def test_every_shortcut_sets_a_conf_key_and_every_command_has_its_module():
    conf = load_config()
    for command, flags in SHORTCUTS.items():
        for flag, key in flags.items():
            section, name = key.split(".")
            assert name in conf[section], f"--{flag} of {command}: no key {key} in conf.yml"
        if command != "*":
            assert hasattr(importlib.import_module(f"asteroid_frugal.cli.{command}"), "cli"), command
    modules = {p.stem for p in (REPO / "asteroid_frugal" / "cli").glob("*.py")} - {"__init__", "common"}
    assert modules == set(SHORTCUTS) - {"*"}


def _parse(command, argv):
    parser = argparse.ArgumentParser()
    add_config_args(parser, command)
    return parser.parse_args(argv)


def test_a_shortcut_is_a_set_override_that_wins():
    args = _parse("evaluate", ["--set", "evaluation.jobs=2", "--jobs", "3", "--threads", "1"])
    conf = config_from_args(args)
    assert conf["evaluation"]["jobs"] == 3 and conf["runtime"]["threads"] == 1
    assert config_from_args(_parse("evaluate", []))["evaluation"]["jobs"] == load_config()["evaluation"]["jobs"]
    with pytest.raises(SystemExit):   # a command offers only its own shortcuts
        _parse("train", ["--jobs", "3"])


def test_runtime_request_says_what_the_command_line_set():
    settings, given = common.runtime_request(["--threads", "2", "--set", "runtime.omp_wait_policy=passive",
                                              "--jobs", "4", "positional"])
    assert settings == {"threads": 2, "omp_wait_policy": "passive"}
    assert given == {"threads": "--threads", "omp_wait_policy": "--set"}


def test_run_with_argv_leaves_the_process_alone_and_prints_one_line(monkeypatch, capsys):
    monkeypatch.setattr(common, "setup_process", lambda argv: pytest.fail("the process was configured"))
    seen = []

    def main(argv):
        seen.append(argv)
        raise FrugalError("bad.wav: not audio")

    with pytest.raises(SystemExit) as exit_info:
        run(main, ["--x", "1"])
    assert exit_info.value.code == 2 and seen == [["--x", "1"]]
    assert capsys.readouterr().err.strip().splitlines() == ["error: bad.wav: not audio"]


def test_a_bad_config_is_one_line_from_an_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "local/train.py", "--exp_dir", str(tmp_path / "e"),
                           "--conf", str(tmp_path / "missing.yml")], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing.yml'}: config file not found"
    assert not (tmp_path / "e").exists()


def test_a_full_disk_anywhere_is_one_line(tmp_path, capsys):
    import errno
    import os

    def main(argv):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "logs" / "hparams.yaml"))

    with pytest.raises(SystemExit) as exit_info:
        run(main, [])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    assert err[0].startswith(f"error: {tmp_path / 'logs' / 'hparams.yaml'}: disk full")


def test_an_error_closes_the_progress_bars_a_failed_step_left_open(capsys):
    """The error line stands on its own line and no bar is drawn after it."""
    from tqdm import tqdm

    def failing(argv):
        bar = tqdm(total=10, desc="songs")
        bar.update(3)
        raise FrugalError("song.wav: broken")

    with pytest.raises(SystemExit) as exit_:
        run(failing, [])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert not list(getattr(tqdm, "_instances", ()))
    assert err.endswith("\nerror: song.wav: broken\n")
