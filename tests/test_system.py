"""The Lightning System and its parts (system.py): non-finite steps skipped, silent references left
out, the paper's LR schedule and early stopping, the epoch-seeded sampler, the CSV log that survives
resuming, and checkpoints that are loaded without running code, written beside then renamed (a
full disk: one line, nothing partial)."""
import contextlib
import errno
import json
import pathlib
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from fsspec.implementations.local import LocalFileOpener
from pytorch_lightning.loggers import CSVLogger

import asteroid_frugal.train as train_module
import asteroid_frugal.utils as utils
from asteroid.models import BaseModel
from asteroid_frugal.model import build_model
from asteroid_frugal.system import (EpochSeededSampler, FrugalSystem, ResumableCSVLogger, last_checkpoint,
                                    load_checkpoint)
from asteroid_frugal.train import train
from asteroid_frugal.utils import DiskFullError, UnsafeFileError

from disk_helpers import resize, small_disk
from test_train import metrics, tiny_conf
from toy_data import ToyTargetRest


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


def test_epoch_seeded_sampler_order_depends_on_seed_and_epoch_only():
    """A resumed run (a new sampler, set to the epoch it resumes at) draws the order of the
    uninterrupted one, whatever the global RNG did meanwhile."""
    data = list(range(50))
    sampler = EpochSeededSampler(data, seed=3)
    sampler.set_epoch(2)
    order = list(sampler)
    assert sorted(order) == data and order != data
    torch.manual_seed(123)
    resumed = EpochSeededSampler(data, seed=3)
    resumed.set_epoch(2)
    assert list(resumed) == order
    resumed.set_epoch(3)
    assert list(resumed) != order
    assert list(EpochSeededSampler(data, seed=4)) != list(EpochSeededSampler(data, seed=3))


def _log_twice(logger_class, root):
    for step, loss in enumerate((1.0, 0.5)):   # a new logger each time: a run, then its resume
        logger = logger_class(str(root), name="logs", version="csv")
        logger.log_metrics({"loss": loss}, step=step)
        logger.save()
    return pd.read_csv(root / "logs" / "csv" / "metrics.csv")["loss"].tolist()


def test_csv_log_survives_resuming(tmp_path):
    assert _log_twice(ResumableCSVLogger, tmp_path / "ours") == [1.0, 0.5]
    # Lightning's own logger still deletes the earlier rows (what ResumableCSVLogger works around)
    assert _log_twice(CSVLogger, tmp_path / "lightning") == [0.5]


# --------------------------------------------------------- files that would run code
class _RunsCode:
    """Pickles as a call to ``Path.touch(marker)``: unpickling it (weights_only=False) creates the marker."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def plant(path, marker, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "epoch": 0, "payload": _RunsCode(marker), **extra}, path)
    return path


def test_crafted_checkpoint_is_refused_and_nothing_runs(tmp_path, caplog):
    marker = tmp_path / "marker"
    exp = tmp_path / "exp" / "vocals"
    evil = plant(exp / "checkpoints" / "last.ckpt", marker)
    with pytest.raises(UnsafeFileError) as err:
        train(tiny_conf("training.epochs=1"), exp, ToyTargetRest(4, length=400), ToyTargetRest(1, length=400))
    assert str(evil) in str(err.value) and "refused" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()
    with pytest.raises(UnsafeFileError):  # the best checkpoint, read to export best_model.pth
        load_checkpoint(evil)
    assert not marker.exists()


def test_lightning_resume_cannot_unpickle_code_either(tmp_path, monkeypatch):
    """Defence in depth: even a file that got past our check is loaded by Lightning with weights_only=True."""
    marker = tmp_path / "marker"
    evil = plant(tmp_path / "exp" / "checkpoints" / "last.ckpt", marker)
    monkeypatch.setattr(train_module, "last_checkpoint", lambda ckpt_dir: evil)
    with pytest.raises(Exception, match="Weights only load failed"):
        train(tiny_conf("training.epochs=1"), tmp_path / "exp", ToyTargetRest(4, length=400),
              ToyTargetRest(1, length=400))
    assert not marker.exists()


def test_truncated_checkpoint_is_skipped_with_a_warning(tmp_path, caplog):
    exp = tmp_path / "exp"
    conf = tiny_conf("training.epochs=1")
    train(conf, exp, ToyTargetRest(4, length=400), ToyTargetRest(1, length=400))
    (exp / "training_done.json").unlink()
    last = exp / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    summary = train(tiny_conf("training.epochs=2"), exp, ToyTargetRest(4, length=400), ToyTargetRest(1, length=400))
    assert summary["epochs_done"] == 2
    assert any("unreadable checkpoint skipped" in r.getMessage() and "last.ckpt" in r.getMessage()
               for r in caplog.records)


# Two runs that appended to one log at once (before experiments had a lock): a header of 3 fields,
# rows of 5 and 4, a second run's header line in the middle. pandas and Lightning's writer fail on it.
MIXED_CSV = "epoch,loss_epoch,step\n0,1.0,3\n0,0.9,3,0.5,5\nepoch,hp_metric,loss_epoch,step\n1,0.8,7\n1,0.5,0.7,7\n"


def test_a_csv_log_mixing_two_runs_is_repaired_on_resume(tmp_path, caplog):
    log_dir = tmp_path / "logs" / "csv"
    log_dir.mkdir(parents=True)
    (log_dir / "metrics.csv").write_text(MIXED_CSV)
    with pytest.raises(pd.errors.ParserError):
        pd.read_csv(log_dir / "metrics.csv")
    logger = ResumableCSVLogger(str(tmp_path), name="logs", version="csv")
    logger.log_metrics({"loss_epoch": 0.7, "val_loss": 0.6}, step=11)   # a new metric: the header grows
    logger.save()
    m = pd.read_csv(log_dir / "metrics.csv")
    assert m["step"].tolist() == [3, 7, 11] and m["loss_epoch"].tolist() == [1.0, 0.8, 0.7]
    assert m["val_loss"].isna().tolist() == [True, True, False]
    broken = [p for p in log_dir.iterdir() if p.name.startswith("metrics.csv.broken-")]
    assert len(broken) == 1 and broken[0].read_text() == MIXED_CSV
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "metrics.csv" in r.getMessage()]
    assert len(warnings) == 1 and "3 row(s) did not fit its header" in warnings[0] and "kept the 2" in warnings[0]
    # a consistent log is left as it is
    before = (log_dir / "metrics.csv").read_text()
    ResumableCSVLogger(str(tmp_path), name="logs", version="csv").experiment
    assert (log_dir / "metrics.csv").read_text() == before and len(list(log_dir.glob("*.broken-*"))) == 1


def test_a_csv_log_without_a_usable_header_starts_again(tmp_path):
    log_dir = tmp_path / "logs" / "csv"
    log_dir.mkdir(parents=True)
    (log_dir / "metrics.csv").write_bytes(b"\x00\xff,,\n1,2\n")
    logger = ResumableCSVLogger(str(tmp_path), name="logs", version="csv")
    logger.log_metrics({"loss": 0.5}, step=0)
    logger.save()
    assert pd.read_csv(log_dir / "metrics.csv")["loss"].tolist() == [0.5]
    assert len(list(log_dir.glob("metrics.csv.broken-*"))) == 1


# ------------------------------------------------------------------ checkpoints and a full disk
def _fit(exp, epochs):
    return train(tiny_conf(f"training.epochs={epochs}"), exp, ToyTargetRest(4, length=400),
                 ToyTargetRest(1, length=400))


def test_checkpoints_are_written_beside_then_renamed(tmp_path, monkeypatch):
    """Not Lightning's own writer: a file in the system temporary folder, then fsspec's shutil.move
    (a copy across file systems, which a full disk cut short under the checkpoint's final name)."""
    written, real = [], utils.atomic_path

    @contextlib.contextmanager
    def spy(path, **kw):
        with real(path, **kw) as tmp:
            written.append((Path(path), tmp))
            yield tmp

    def no_commit(self):
        raise AssertionError(f"{self.path}: written through an fsspec transaction")

    monkeypatch.setattr(utils, "atomic_path", spy)
    monkeypatch.setattr(LocalFileOpener, "commit", no_commit)
    exp = tmp_path / "exp"
    _fit(exp, 2)
    ckpts = exp / "checkpoints"
    written = [(p, tmp) for p, tmp in written if p.suffix == ".ckpt"]
    assert {p.name for p, _ in written} >= {"last.ckpt"} and all(tmp.parent == ckpts for _, tmp in written)
    assert all(re.fullmatch(rf"\.{re.escape(p.name)}\.\w+\.tmp", tmp.name) for p, tmp in written)
    assert all(not p.name.startswith(".") for p in ckpts.iterdir())


def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    real_write = Path.write_bytes

    def full_at_epoch_1(self, data):
        if self.name.startswith(".epoch001-"):
            real_write(self, bytes(data)[:1000])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_at_epoch_1)
    exp = tmp_path / "exp"
    with pytest.raises(DiskFullError) as err:
        _fit(exp, 3)
    ckpts = exp / "checkpoints"
    assert re.fullmatch(rf"{re.escape(str(ckpts))}/epoch001-val-?[\d.]+\.ckpt: disk full: needed \d+\.\d kB, "
                        r".* free there.*; free some space and run the command again", str(err.value))
    names = sorted(p.name for p in ckpts.iterdir())
    assert len(names) == 2 and names[0].startswith("epoch000-") and names[1] == "last.ckpt"   # nothing partial
    assert all(load_checkpoint(ckpts / n) for n in names)
    monkeypatch.undo()
    assert _fit(exp, 3)["epochs_done"] == 3                       # the same command resumes and finishes


def test_a_checkpoint_temporary_left_by_a_kill_is_removed_at_the_next_run(tmp_path):
    exp = tmp_path / "exp"
    _fit(exp, 1)
    (exp / "training_done.json").unlink()
    last = exp / "checkpoints" / "last.ckpt"
    left = last.parent / ".last.ckpt.k2j3h4lq.tmp"                   # a kill between write and rename
    left.write_bytes(last.read_bytes()[:1000])
    assert last_checkpoint(last.parent) == last and not left.exists()
    left.write_bytes(last.read_bytes())
    assert _fit(exp, 2)["epochs_done"] == 2 and not left.exists()


def test_training_onto_a_really_full_disk_stops_in_one_line_and_resumes(tmp_path):
    with small_disk(tmp_path / "disk", 700) as disk:                 # room for three 204 kB checkpoints
        exp = disk / "exp"
        with pytest.raises(DiskFullError, match=rf"^{disk}/exp/checkpoints/[\w.-]+\.ckpt: disk full: "
                                                r"needed \d+\.\d kB, \d+\.\d kB free there; "):
            _fit(exp, 4)
        ckpts = sorted((exp / "checkpoints").iterdir())
        assert ckpts and all(not p.name.startswith(".") and load_checkpoint(p) for p in ckpts)
        resize(disk, 4000)                                           # space freed: the same command
        assert _fit(exp, 4)["epochs_done"] == 4


def test_an_unreadable_checkpoint_left_by_an_older_version_is_set_aside_once(tmp_path, caplog):
    """An older version, stopped by a full disk, left a truncated epochNNN-*.ckpt under its final
    name: the next run skips it, sets it aside as <name>.broken (one warning) and resumes from the
    newest good one; later runs neither read it nor warn again."""
    exp = tmp_path / "exp"
    _fit(exp, 1)
    (exp / "training_done.json").unlink()
    ckpts = exp / "checkpoints"
    bad = ckpts / "epoch001-val9.999.ckpt"
    bad.write_bytes((ckpts / "last.ckpt").read_bytes()[:5000])     # newer than last.ckpt: tried first
    assert _fit(exp, 2)["epochs_done"] == 2
    assert not bad.exists() and (ckpts / "epoch001-val9.999.ckpt.broken").is_file()
    warned = [r.getMessage() for r in caplog.records if "unreadable checkpoint" in r.getMessage()]
    assert len(warned) == 1 and "set aside as epoch001-val9.999.ckpt.broken" in warned[0]
    assert all(load_checkpoint(p) for p in ckpts.glob("*.ckpt"))
    caplog.clear()
    (exp / "training_done.json").unlink()
    assert _fit(exp, 3)["epochs_done"] == 3
    assert not any("unreadable checkpoint" in r.getMessage() for r in caplog.records)


def test_an_error_during_training_ends_the_progress_bar_line(tmp_path, monkeypatch, capsys):
    """The one-line error printed after a failed fit starts a line of its own, not the bar's."""
    real_write = Path.write_bytes

    def full_at_the_checkpoint(self, data):
        if self.name.endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_at_the_checkpoint)
    with pytest.raises(DiskFullError, match="ckpt: disk full"):
        _fit(tmp_path / "exp", 2)
    bars = capsys.readouterr().out                                # (Lightning's bars go to stdout)
    assert "Epoch 0" in bars and bars.endswith("\n")
