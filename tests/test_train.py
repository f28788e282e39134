"""Stage 3 training (train.py): learning, export, resume after a real kill, the same-experiment check,
DDP, and the command line's one-line errors. The System's parts (robustness, LR schedule, early stop,
sampler, CSV log, checkpoint loading): test_system.py."""
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
from asteroid_frugal.config import load_config, save_config
from asteroid_frugal.model import build_model
from asteroid_frugal.system import load_checkpoint
from asteroid_frugal.train import check_same_experiment, launching_process, plot_curves, train
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


DDP_SCRIPT = """
import json, os, sys
sys.path[:0] = [{repo!r}, {tests!r}]
import torch; torch.set_num_threads(1)
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from asteroid_frugal.config import load_config
from asteroid_frugal.system import FrugalSystem
from asteroid_frugal.train import train
from toy_data import ToyTargetRest

record = {{"val_loss": []}}
original = FrugalSystem.on_validation_epoch_end

def on_validation_epoch_end(self):
    if not self.trainer.sanity_checking:
        record["val_loss"].append(float(self.trainer.callback_metrics["val_loss"]))
    original(self)

def on_train_end(self):
    cbs = self.trainer.callbacks
    record["early_stop_best"] = [float(c.best_score) for c in cbs if isinstance(c, EarlyStopping)]
    record["best_k"] = sorted(float(v) for c in cbs if isinstance(c, ModelCheckpoint) for v in c.best_k_models.values())
    record["scheduler_best"] = float(self.lr_schedulers().best)
    record["lr"] = float(self.optimizers().param_groups[0]["lr"])

FrugalSystem.on_validation_epoch_end = on_validation_epoch_end
FrugalSystem.on_train_end = on_train_end
conf = load_config(overrides={overrides!r} + sys.argv[1:])
# each rank validates on half of these (DistributedSampler): unsynced, their val_loss would differ
summary = train(conf, {exp!r}, ToyTargetRest(8, length=800), ToyTargetRest(4, length=800, seed=1))
rank = int(os.environ.get("LOCAL_RANK", 0))
with open(os.path.join({out!r}, f"rank{{rank}}.json"), "w") as f:
    json.dump(dict(record, summary=summary), f)
"""


def test_two_process_ddp_on_cpu_syncs_validation_and_resumes(tmp_path):
    """./run.sh --devices 2 --strategy ddp on CPU (gloo): both ranks finish, one set of checkpoints,
    the validation metric that drives the LR schedule, early stopping and best-k is the same on
    both ranks, and a raised epoch budget resumes from the checkpoint."""
    exp, out = tmp_path / "ddp", tmp_path / "ranks"
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(
        repo=str(REPO), tests=str(REPO / "tests"), exp=str(exp), out=str(out),
        overrides=[*TINY, "training.batch_size=2", "training.accelerator=cpu", "training.devices=2",
                   "training.strategy=ddp", "training.log_every_n_steps=1", "scheduler.patience=1"]))

    def run(epochs):
        out.mkdir(exist_ok=True)
        for f in out.glob("*.json"):
            f.unlink()
        env = dict(os.environ, OMP_NUM_THREADS="1", PL_TORCH_DISTRIBUTED_BACKEND="gloo")
        proc = subprocess.run([sys.executable, str(script), f"training.epochs={epochs}"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]

    ranks = run(2)
    for key in ("val_loss", "early_stop_best", "best_k", "scheduler_best", "lr"):
        assert ranks[0][key] == ranks[1][key], key
    assert len(ranks[0]["val_loss"]) == 2 and ranks[0]["summary"]["epochs_done"] == 2
    assert ranks[0]["early_stop_best"] == [min(ranks[0]["val_loss"])] == [ranks[0]["scheduler_best"]]
    ckpts = sorted(p.name for p in (exp / "checkpoints").iterdir())
    assert len(ckpts) == 3 and "last.ckpt" in ckpts, ckpts            # last + best 2, written once
    assert json.loads((exp / "training_done.json").read_text())["epochs_done"] == 2
    assert (exp / "best_model.pth").is_file()

    ranks = run(3)                                                        # resume: one more epoch
    assert len(ranks[0]["val_loss"]) == 1 and ranks[0]["val_loss"] == ranks[1]["val_loss"]
    assert json.loads((exp / "training_done.json").read_text())["epochs_done"] == 3
    assert sorted(metrics(exp)["epoch"].dropna().unique().astype(int)) == [0, 1, 2]


def test_config_check_ignores_keys_a_conf_yml_version_added_or_removed(tmp_path):
    """An experiment saved by an older conf.yml (a key since removed, one not yet added) still
    resumes; a changed value of a key both have is still refused."""
    conf = tiny_conf()
    old = tiny_conf()
    old["training"]["loss"] = "sisnr"
    del old["training"]["silence_db"]
    save_config(old, tmp_path / "conf.yml")
    check_same_experiment(conf, tmp_path)
    with pytest.raises(FrugalError, match=r"\(optim.lr\)"):
        check_same_experiment(tiny_conf("optim.lr=0.5"), tmp_path)


def test_config_check_ignores_what_training_never_reads(tmp_path):
    """Scoring, separation, streaming, threading and launching settings (a sweep resumed with --jobs
    or requeued with another time limit, stage 4 re-run with museval) leave the experiment the same one; a model or data key does not."""
    save_config(tiny_conf("runtime.threads=1"), tmp_path / "conf.yml")
    check_same_experiment(tiny_conf("runtime.threads=2", "runtime.omp_wait_policy=passive",
                                     "evaluation.bss_backend=museval", "separate.precision=float32",
                                     "streaming.block=512", "default_corpus.jobs=1", "midi_render.jobs=3",
                                     "launcher.time_min=60", "sweep.seeds=5", "rehearsal.songs=4"),
                           tmp_path)
    with pytest.raises(FrugalError, match=r"\(shaping.excerpt_seconds\)"):
        check_same_experiment(tiny_conf("runtime.threads=2", "shaping.excerpt_seconds=3"), tmp_path)


def test_unknown_target_is_a_one_line_error_before_any_work(tmp_path):
    conf = tiny_conf()
    conf["data"]["target"] = "guitar"
    with pytest.raises(FrugalError) as err:
        train(conf, tmp_path / "guitar", ToyTargetRest(4), ToyTargetRest(1))
    assert str(err.value) == "data.target must be one of vocals, drums, bass, got 'guitar'"
    assert not (tmp_path / "guitar").exists()


def test_bad_value_stops_training_before_any_work(tmp_path):
    """early_stop_patience=abc was once accepted, the run crashed later and its epochs were lost."""
    exp = tmp_path / "exp" / "vocals"
    out = subprocess.run([sys.executable, str(REPO / "local" / "train.py"), "--exp_dir", str(exp),
                          "--set", "training.early_stop_patience=abc"],  # what run.sh's stage 3 runs
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    last_line = out.stderr.strip().splitlines()[-1:]
    assert last_line == ["error: config: training.early_stop_patience='abc': expected an integer"]
    assert not exp.exists()


# ------------------------------------------------------------- kill and resume
RESUME_RUNNER = """
import sys, time
sys.path[:0] = [{repo!r}, {tests!r}]
import torch; torch.set_num_threads(1)
from asteroid_frugal.config import load_config
from asteroid_frugal.system import FrugalSystem
from asteroid_frugal.train import train
from asteroid_frugal.utils import setup_logging
from toy_data import ToyTargetRest

setup_logging()
CURVE = [10.0, 9.0] + [9.5] * 30  # best at epoch 1, then no improvement: the LR halves after every epoch

def scripted_validation(self, batch, batch_nb):
    self.log("val_loss", torch.tensor(CURVE[self.current_epoch]), on_epoch=True, batch_size=1)

FrugalSystem.validation_step = scripted_validation

class Slow(ToyTargetRest):
    def __getitem__(self, i):
        time.sleep({delay})
        return super().__getitem__(i)

conf = load_config(overrides={overrides!r})
train(conf, {exp!r}, Slow(8, length=400), ToyTargetRest(1, length=400, seed=1))
"""


RESUME_CONF = [*TINY, "training.epochs=30", "scheduler.patience=1", "training.early_stop_patience=3"]


def _resume_runner(exp, delay):
    code = RESUME_RUNNER.format(repo=str(REPO), tests=str(REPO / "tests"), delay=delay, exp=str(exp),
                                overrides=RESUME_CONF)
    return [sys.executable, "-c", code]


def _last_epoch(last):
    try:
        return torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    except Exception:  # not written yet, or being written
        return -1


def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path):
    """Killed after the checkpoint of epoch 2 (the first epoch that changes the LR), resumed: same LR
    history, scheduler and early-stopping state, and weights as a run never interrupted."""
    ref_exp, exp = tmp_path / "reference", tmp_path / "killed"
    reference = subprocess.Popen(_resume_runner(ref_exp, 0.0), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc = subprocess.Popen(_resume_runner(exp, 0.1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300  # a busy machine takes long to import and start
    try:
        while time.time() < deadline and proc.poll() is None and _last_epoch(exp / "checkpoints" / "last.ckpt") < 2:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        _, ref_err = reference.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL and not (exp / "training_done.json").exists()
    assert reference.returncode == 0, ref_err[-2000:]
    resumed = subprocess.run(_resume_runner(exp, 0.0), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr

    done = [json.loads((e / "training_done.json").read_text()) for e in (ref_exp, exp)]
    assert done[0]["stop_reason"] == done[1]["stop_reason"] == "early_stopping"
    assert done[0]["epochs_done"] == done[1]["epochs_done"]
    lr = [pd.read_csv(e / "logs" / "csv" / "metrics.csv")[["epoch", "lr"]].dropna().groupby("epoch")["lr"].last()
          for e in (ref_exp, exp)]
    assert list(lr[0].index) == list(range(5)) and lr[0].tolist() == pytest.approx([1e-3] * 3 + [5e-4, 2.5e-4])
    assert lr[1].tolist() == pytest.approx(lr[0].tolist())
    ckpts = [load_checkpoint(e / "checkpoints" / "last.ckpt") for e in (ref_exp, exp)]
    sched = [c["lr_schedulers"][0] for c in ckpts]
    for key in ("_last_lr", "num_bad_epochs", "last_epoch", "best"):
        assert sched[1][key] == pytest.approx(sched[0][key]), key
    stops = [next(v for k, v in c["callbacks"].items() if k.startswith("EarlyStopping")) for c in ckpts]
    assert stops[1]["wait_count"] == stops[0]["wait_count"] and stops[1]["stopped_epoch"] == stops[0]["stopped_epoch"]
    assert float(stops[1]["best_score"]) == float(stops[0]["best_score"])
    assert ckpts[1]["global_step"] == ckpts[0]["global_step"]
    for key, value in ckpts[0]["state_dict"].items():
        torch.testing.assert_close(ckpts[1]["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key)


# ------------------------------------------------------------- one run per experiment
TWIN_RUNNER = """
import os, sys, time
sys.path[:0] = [{repo!r}, {tests!r}]
import torch; torch.set_num_threads(1)
from asteroid_frugal.cli.common import run
from asteroid_frugal.config import load_config
from asteroid_frugal.train import train
from toy_data import ToyTargetRest

class Slow(ToyTargetRest):
    def __getitem__(self, i):
        time.sleep(0.02)
        return super().__getitem__(i)

conf = load_config(overrides={overrides!r})
print("ready", flush=True)
while not os.path.exists({go!r}):   # both start training at the same moment
    time.sleep(0.01)
run(lambda argv: train(conf, {exp!r}, Slow(16, length=800), ToyTargetRest(4, length=800, seed=1)), [])
"""


def test_two_trainings_of_one_experiment_at_once_one_refuses_in_one_line(tmp_path):
    """The same training started twice at once: one trains to the end, the other refuses at once
    naming it (exit 2, no traceback) and touches nothing: the log is one run's, training_done.json
    is written, the lock is gone."""
    exp, go = tmp_path / "vocals", tmp_path / "go"
    code = TWIN_RUNNER.format(repo=str(REPO), tests=str(REPO / "tests"), exp=str(exp), go=str(go),
                              overrides=[*TINY, "training.epochs=2"])
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], [o[1][-2000:] for o in outs]
    winner, loser = (0, 1) if procs[0].returncode == 0 else (1, 0)
    err = outs[loser][1]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: {exp} is in use by pid {procs[winner].pid} on host ")
    assert json.loads((exp / "training_done.json").read_text())["epochs_done"] == 2
    assert sorted(metrics(exp)["epoch"].dropna().unique().astype(int)) == [0, 1]
    assert not (exp / ".lock").exists() and not list((exp / "logs" / "csv").glob("*.broken-*"))


def test_training_resumes_over_a_log_two_runs_mixed(tmp_path, caplog):
    """The state an unlocked double run left: a metrics.csv of two runs' rows, no training_done.json.
    The next run repairs the log (one warning, the file kept aside) and finishes."""
    from test_system import MIXED_CSV

    exp = tmp_path / "vocals"
    train(tiny_conf("training.epochs=1"), exp, ToyTargetRest(8), ToyTargetRest(4))
    (exp / "training_done.json").unlink()
    log_file = exp / "logs" / "csv" / "metrics.csv"
    good = log_file.read_text()
    header = good.splitlines()[0].split(",")
    log_file.write_text(good + MIXED_CSV.split("\n", 1)[1] + ",".join(["1"] * len(header)) + ",9\n")
    with pytest.raises(pd.errors.ParserError):
        pd.read_csv(log_file)
    summary = train(tiny_conf("training.epochs=2"), exp, ToyTargetRest(8), ToyTargetRest(4))
    assert summary["epochs_done"] == 2 and (exp / "training_done.json").is_file()
    assert sorted(metrics(exp)["epoch"].dropna().unique().astype(int)) == [0, 1]
    assert (exp / "training_curves.png").is_file()
    assert len(list(log_file.parent.glob("metrics.csv.broken-*"))) == 1
    assert sum("did not fit its header" in r.getMessage() for r in caplog.records) == 1


def test_plot_curves_never_fails_on_a_bad_log(tmp_path, caplog):
    from test_system import MIXED_CSV

    log_dir = tmp_path / "logs" / "csv"
    log_dir.mkdir(parents=True)
    for text in (MIXED_CSV, "", "step,loss\n0,1.0\n", "epoch,loss_epoch,lr\n0,abc,x\n"):
        (log_dir / "metrics.csv").write_text(text)
        caplog.clear()
        out = plot_curves(tmp_path)
        assert out is None or out.is_file()
        if out is None:
            assert any("no training curves" in r.getMessage() for r in caplog.records), text
    (log_dir / "metrics.csv").write_text(MIXED_CSV)
    assert plot_curves(tmp_path) is None


def test_a_broken_training_done_file_resumes_instead_of_failing(tmp_path, caplog):
    exp = tmp_path / "vocals"
    train(tiny_conf("training.epochs=1"), exp, ToyTargetRest(8), ToyTargetRest(4))
    (exp / "training_done.json").write_text('{"stop_reason": "max_ep')   # cut off by an older version
    summary = train(tiny_conf("training.epochs=1"), exp, ToyTargetRest(8), ToyTargetRest(4))
    assert summary["epochs_done"] == 1 and json.loads((exp / "training_done.json").read_text())["epochs_done"] == 1
    assert any("training_done.json: unreadable" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("env, launching", [
    ({}, True), ({"LOCAL_RANK": "0"}, True), ({"LOCAL_RANK": "1"}, False), ({"RANK": "3", "LOCAL_RANK": "0"}, False),
    ({"SLURM_PROCID": "0"}, True), ({"SLURM_PROCID": "2"}, False), ({"NODE_RANK": "1"}, False),
    ({"LOCAL_RANK": "0", "SLURM_PROCID": "5"}, True),   # Lightning: LOCAL_RANK before SLURM_PROCID
])
def test_only_the_launching_process_holds_the_lock(monkeypatch, env, launching):
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert launching_process() is launching


def test_resuming_with_fewer_epochs_than_were_done_is_one_line(tmp_path):
    """An interrupted run (no training_done.json) resumed with training.epochs below its checkpoint's
    epoch: Lightning's MisconfigurationException traceback became one line saying what to do."""
    exp = tmp_path / "vocals"
    train(tiny_conf("training.epochs=3"), exp, ToyTargetRest(8), ToyTargetRest(4))
    (exp / "training_done.json").unlink()
    with pytest.raises(FrugalError, match=r"vocals: its checkpoint last\.ckpt is past training\.epochs=1: raise "
                                          r"training\.epochs to resume it, or --retrain to start over"):
        train(tiny_conf("training.epochs=1"), exp, ToyTargetRest(8), ToyTargetRest(4))
    assert train(tiny_conf("training.epochs=3"), exp, ToyTargetRest(8), ToyTargetRest(4))["epochs_done"] == 3
