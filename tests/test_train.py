"""Stage 3 training: learning, export, resume after a real kill, robustness, LR schedule and early stop."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from asteroid.models import BaseModel
from asteroid_frugal.config import load_config
from asteroid_frugal.train import FrugalSystem, build_model, train
from asteroid_frugal.utils import FrugalError

from conftest import REPO
from toy_data import ToyTargetRest

TINY = ["filterbank.n_filters=16", "filterbank.kernel_size=20", "masker.hidden_size=16", "masker.n_layers=2",
        "data.sample_rate=8000", "training.batch_size=4", "training.num_workers=0", "training.save_top_k=2"]


def tiny_conf(*extra):
    return load_config(overrides=[*TINY, *extra])


def metrics(exp):
    return pd.read_csv(exp / "logs" / "csv" / "metrics.csv")


def test_training_lowers_the_loss_and_exports_a_loadable_model(tmp_path):
    conf = tiny_conf("training.epochs=6", "optim.lr=0.01")
    exp = tmp_path / "vocals"
    summary = train(conf, exp, ToyTargetRest(8, seed=0), ToyTargetRest(4, seed=1))
    for name in ("conf.yml", "train_command.txt", "best_model.pth", "best_k_models.json",
                 "training_curves.png", "training_done.json", "checkpoints/last.ckpt"):
        assert (exp / name).exists(), name
    assert (exp / "logs" / "tensorboard").is_dir()
    m = metrics(exp)
    losses = m["loss_epoch"].dropna().to_numpy()
    assert losses[-1] < losses[0] - 1.0
    assert summary["stop_reason"] == "max_epochs" and summary["epochs_done"] == 6
    # best_model.pth = the best checkpoint's weights, loadable by Asteroid
    model = BaseModel.from_pretrained(str(exp / "best_model.pth")).eval()
    ckpt = torch.load(exp / summary["best_checkpoint"], map_location="cpu", weights_only=True)
    reference = build_model(conf)
    reference.load_state_dict({k[len("model."):]: v for k, v in ckpt["state_dict"].items()})
    x = ToyTargetRest(2, seed=5)[0][0].unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference.eval()(x), rtol=0, atol=0)
    best = json.loads((exp / "best_k_models.json").read_text())
    assert len(best) == 2 and min(best.values()) == pytest.approx(summary["best_val_loss"])
    # a finished experiment is not retrained...
    before = (exp / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    assert train(conf, exp, ToyTargetRest(8), ToyTargetRest(4))["epochs_done"] == 6
    assert (exp / "checkpoints" / "last.ckpt").stat().st_mtime_ns == before
    # ...and a changed model is refused with a one-line error
    with pytest.raises(FrugalError, match="masker.hidden_size"):
        train(tiny_conf("training.epochs=6", "masker.hidden_size=8"), exp, ToyTargetRest(8), ToyTargetRest(4))


def test_raised_epoch_budget_continues_a_finished_run(tmp_path):
    exp = tmp_path / "e"
    train(tiny_conf("training.epochs=2"), exp, ToyTargetRest(8), ToyTargetRest(4))
    summary = train(tiny_conf("training.epochs=3"), exp, ToyTargetRest(8), ToyTargetRest(4))
    assert summary["epochs_done"] == 3
    assert sorted(metrics(exp)["epoch"].dropna().unique().astype(int)) == [0, 1, 2]


RUNNER = """
import sys, time
sys.path[:0] = [{repo!r}, {tests!r}]
import torch; torch.set_num_threads(1)
from asteroid_frugal.config import load_config
from asteroid_frugal.train import train
from asteroid_frugal.utils import setup_logging
from toy_data import ToyTargetRest

setup_logging()

class Slow(ToyTargetRest):
    def __getitem__(self, i):
        time.sleep({delay})
        return super().__getitem__(i)

conf = load_config(overrides={overrides!r})
print(train(conf, {exp!r}, Slow(16, length=800), ToyTargetRest(4, length=800, seed=1)))
"""


def _runner(exp, delay, epochs):
    code = RUNNER.format(repo=str(REPO), tests=str(REPO / "tests"), delay=delay, exp=str(exp),
                         overrides=[*TINY, f"training.epochs={epochs}", "training.checkpoint_every_n_steps=1"])
    return [sys.executable, "-c", code]


def test_resume_after_sigkill_restores_epoch_step_and_optimizer(tmp_path):
    exp = tmp_path / "killed"
    proc = subprocess.Popen(_runner(exp, 0.05, 3), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = exp / "checkpoints" / "latest-step.ckpt"  # every step (last.ckpt: every epoch)
    deadline = time.time() + 300  # a busy machine takes long to import and start
    try:
        while time.time() < deadline:  # kill mid-epoch 1, after a few step checkpoints
            if last.exists():
                try:
                    ck = torch.load(last, map_location="cpu", weights_only=True)
                    if ck["epoch"] >= 1 and ck["global_step"] >= 5:
                        break
                except Exception:
                    pass
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (exp / "training_done.json").exists()
    killed = torch.load(last, map_location="cpu", weights_only=True)
    assert killed["global_step"] >= 5
    # the same command again resumes
    out = subprocess.run(_runner(exp, 0.0, 3), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming from" in out.stderr
    done = json.loads((exp / "training_done.json").read_text())
    final = torch.load(last, map_location="cpu", weights_only=True)
    assert done["epochs_done"] == 3 and final["global_step"] >= killed["global_step"]
    # Adam's step counter runs on from the killed run's: its state was restored, not reset
    adam_steps = {int(s["step"]) for s in final["optimizer_states"][0]["state"].values()}
    assert adam_steps == {final["global_step"]}
    steps_logged = metrics(exp)["step"].to_numpy()
    assert steps_logged.max() >= final["global_step"] - 1


def test_silent_targets_and_nan_inputs_do_not_corrupt_weights(tmp_path):
    conf = tiny_conf("training.epochs=1")
    torch.manual_seed(0)
    initial = {k: v.clone() for k, v in build_model(conf).state_dict().items()}
    # every item has NaN input: every step skipped, weights untouched
    train(conf, tmp_path / "nan", ToyTargetRest(8, nan=range(8)), ToyTargetRest(4, seed=1))
    model = BaseModel.from_pretrained(str(tmp_path / "nan" / "best_model.pth"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, initial[k]), k
    done = json.loads((tmp_path / "nan" / "training_done.json").read_text())
    assert done["skipped_steps"] == 2
    # silent targets: excluded from the loss, counted, weights stay finite and do change
    train(conf, tmp_path / "silent", ToyTargetRest(8, silent=range(0, 8, 2)), ToyTargetRest(4, seed=1))
    model = BaseModel.from_pretrained(str(tmp_path / "silent" / "best_model.pth"))
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    m = metrics(tmp_path / "silent")
    assert m["silent_refs"].dropna().sum() == 4
    assert torch.isfinite(torch.tensor(m["loss_epoch"].dropna().to_numpy())).all()


def test_lr_halving_and_early_stopping_at_the_paper_epoch_counts(tmp_path, monkeypatch):
    """Scripted val_loss: best at epoch 1, then no improvement. Paper: LR halved after 3 epochs
    without improvement, stop after 10."""
    curve = [10.0, 9.0] + [9.5] * 30

    def scripted_validation(self, batch, batch_nb):
        self.log("val_loss", torch.tensor(curve[self.current_epoch]), on_epoch=True, batch_size=1)

    monkeypatch.setattr(FrugalSystem, "validation_step", scripted_validation)
    exp = tmp_path / "sched"
    summary = train(tiny_conf("training.epochs=30"), exp, ToyTargetRest(4, length=400), ToyTargetRest(1, length=400))
    m = metrics(exp)
    lr = m[["epoch", "lr"]].dropna().set_index("epoch")["lr"]
    # bad epochs 2, 3, 4 -> halved from epoch 5; bad 5, 6, 7 -> halved again from epoch 8
    assert lr.loc[4] == pytest.approx(1e-3) and lr.loc[5] == pytest.approx(5e-4)
    assert lr.loc[7] == pytest.approx(5e-4) and lr.loc[8] == pytest.approx(2.5e-4)
    # 10 bad epochs (2..11) -> stop after epoch 11
    assert summary["stop_reason"] == "early_stopping"
    assert m["epoch"].max() == 11
