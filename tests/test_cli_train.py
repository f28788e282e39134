"""local/train.py: the resolved config, the experiment folder and --retrain reach the library's train()."""
import pytest

from asteroid_frugal.cli import train as command
from asteroid_frugal.utils import FrugalError


@pytest.fixture
def captured(monkeypatch):
    seen = {}
    monkeypatch.setattr(command, "train", lambda conf, exp_dir, retrain=False: seen.update(
        conf=conf, exp_dir=exp_dir, retrain=retrain) or {})
    return seen


def test_config_folder_and_retrain_reach_train(captured, tmp_path):
    overlay = tmp_path / "o.yml"
    overlay.write_text("training:\n  epochs: 7\n")
    command.main(["--exp_dir", "exp/x", "--overlay", str(overlay), "--set", "data.target=drums", "--retrain"])
    assert captured["exp_dir"] == "exp/x" and captured["retrain"] is True
    assert captured["conf"]["training"]["epochs"] == 7 and captured["conf"]["data"]["target"] == "drums"
    command.main(["--exp_dir", "exp/y"])
    assert captured["retrain"] is False and captured["conf"]["data"]["target"] == "vocals"


def test_a_bad_value_stops_before_train(captured):
    with pytest.raises(FrugalError, match="training.epochs='x': expected an integer"):
        command.main(["--exp_dir", "exp/x", "--set", "training.epochs=x"])
    assert captured == {}
