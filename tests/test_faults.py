"""Fault cases: bad values, crafted or corrupt files, kills and interruptions. Each must end in
one line naming what to fix (or a logged skip), run no code from a file, and lose no work.
The next fault found belongs here."""
import subprocess
import sys

import pytest

from asteroid_frugal.config import load_config
from asteroid_frugal.utils import FrugalError, run_cli

from conftest import REPO


# ------------------------------------------------------------------ config values
@pytest.mark.parametrize("bad, message", [
    ("optim.lr=abc", "optim.lr='abc': expected a number"),
    ("training.early_stop_patience=abc", "training.early_stop_patience='abc': expected an integer"),
    ("training.epochs=2.5", "training.epochs=2.5: expected an integer"),
    ("scheduler.factor=1.5", "scheduler.factor=1.5: expected a value in (0, 1)"),
    ("optim.lr=-0.1", "optim.lr=-0.1: expected a value in (0, inf)"),
    ("optim.lr=.nan", "optim.lr=nan: expected a finite number"),
    ("shaping.augment_gain=1", "shaping.augment_gain=1: expected true or false"),
    ("data.extra_roots=some/dir", "data.extra_roots='some/dir': expected a list"),
    ("filterbank.stride=half", "filterbank.stride='half': expected an integer or null"),
    ("training.devices=1.5", "training.devices=1.5: expected an integer or a string or a list"),
    ("training=3", "training=3: expected a mapping"),
])
def test_config_values_are_checked_before_any_work(bad, message):
    with pytest.raises(FrugalError) as err:
        load_config(overrides=[bad])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_config_values_of_every_accepted_type_pass():
    conf = load_config(overrides=["optim.lr=1e-3", "evaluation.overlap_seconds=0.5", "training.devices=2",
                                  "training.devices=[0, 1]", "filterbank.stride=110", "evaluation.max_tracks=3",
                                  "data.musdb_root=/data/musdb18", "training.gradient_clipping=5"])
    assert conf["optim"]["lr"] == 0.001  # PyYAML reads 1e-3 as a string: converted where a number is expected
    assert conf["training"]["devices"] == [0, 1] and conf["filterbank"]["stride"] == 110
    for overlay in sorted(REPO.glob("egs/*/*.yml")):
        if overlay.name != "experiment.yml":  # experiment specs are not config overlays
            load_config(overlays=[overlay])


def test_bad_value_stops_training_before_any_work(tmp_path, capsys):
    """The issue's case: early_stop_patience=abc was accepted, the run crashed later, its epochs were lost."""
    from asteroid_frugal.train import main

    exp = tmp_path / "exp" / "vocals"
    with pytest.raises(SystemExit) as exit_info:  # what run.sh's stage 3 runs (local/train.py)
        run_cli(lambda: main(["--exp_dir", str(exp), "--set", "training.early_stop_patience=abc"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: config: training.early_stop_patience='abc': expected an integer"]
    assert not exp.exists()
