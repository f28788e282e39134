"""Stage 3: train one target-vs-rest FrugalTasNet with Asteroid's System on PyTorch Lightning.

:func:`train` reads as Asteroid's recipes do: data -> model -> System -> Trainer -> best model
(the System, its loss, optimiser, scheduler, callbacks and loggers: :mod:`asteroid_frugal.system`;
the model: :func:`asteroid_frugal.model.build_model`).

Experiment directory ``exp/<tag>/``::

    conf.yml               resolved config of this experiment
    train_command.txt      the command that trained it
    logs/csv/metrics.csv   CSV log (loss, val_loss, val SI-SNR(i), lr, throughput)
    logs/tensorboard/      TensorBoard log
    checkpoints/           last.ckpt + best k (Lightning checkpoints, full training state)
    best_k_models.json     {checkpoint: val_loss}
    best_model.pth         serialized model: asteroid.models.BaseModel.from_pretrained(path)
    training_curves.png    training/validation loss and learning rate
    training_done.json     written when training stopped (max epochs or early stopping)

Re-running continues from ``checkpoints/last.ckpt`` (optimiser, scheduler, early
stopping, epoch and step restored); a finished experiment is left alone unless
``--retrain`` (or its epoch budget was raised after stopping at max epochs).
"""
import contextlib
import json
import logging
import math
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader, Dataset

from .config import DEFAULT_CONF, load_yaml, merge, save_config
from .data.types import TARGETS, stem_names
from .lock import folder_lock
from .model import build_model, count_parameters
from .system import (CheckpointWriter, FrugalSystem, EpochSeededSampler, last_checkpoint, load_checkpoint,
                     make_callbacks, make_loggers, make_loss, make_optimizer, make_scheduler)
from .utils import FrugalError, atomic_path, read_json, torch_save_atomic, write_json_atomic, write_text_atomic

log = logging.getLogger("asteroid_frugal.train")

# Keys whose change does not make an experiment a different one (resuming stays allowed); None:
# the whole section (what stage 3 never reads: scoring, separation, streaming, process threading).
RESUMABLE_KEYS = {"training": {"epochs", "devices", "num_nodes", "strategy", "accelerator",
                               "num_workers", "checkpoint_every_n_steps", "precision"},
                  "default_corpus": {"jobs"}, "midi_render": {"jobs"},   # same audio whatever the number
                  "evaluation": None, "separate": None, "streaming": None, "runtime": None,
                  "sweep": None, "launcher": None, "rehearsal": None}   # how runs are launched, not what they train
RESULTS = ("training_done.json", "best_model.pth", "best_k_models.json", "training_curves.png")


def train(conf: Dict[str, Any], exp_dir, train_set: Optional[Dataset] = None, val_set: Optional[Dataset] = None,
          retrain: bool = False, command: Optional[str] = None) -> Dict[str, Any]:
    """Train (or resume, or skip when finished) one experiment; returns the summary of ``training_done.json``.

    ``train_set``/``val_set``: the datasets to use instead of stage 2's manifests (tests);
    ``command``: what ``train_command.txt`` records (default: this process's command line).
    One run at a time: the launching process holds the experiment's lock (:mod:`asteroid_frugal.lock`;
    a second run refuses in one line naming the first), DDP workers it starts do not take it.
    """
    if conf["data"]["target"] not in TARGETS:
        raise FrugalError(f"data.target must be one of {', '.join(TARGETS)}, got {conf['data']['target']!r}")
    with folder_lock(exp_dir, "training") if launching_process() else contextlib.nullcontext():
        return fit_experiment(conf, Path(exp_dir), train_set, val_set, retrain, command)


def launching_process() -> bool:
    """False in a distributed worker of rank > 0 (started by Lightning's DDP launcher, torchrun or
    SLURM: the rank variables Lightning reads, in its order, and the node rank): the launching
    process holds the experiment's lock for all of them."""
    rank = next((os.environ[k] for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
                 if k in os.environ), "0")
    node = os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0"))
    return rank.strip() in ("", "0") and node.strip() in ("", "0")


def fit_experiment(conf: Dict[str, Any], exp_dir: Path, train_set: Optional[Dataset], val_set: Optional[Dataset],
                   retrain: bool, command: Optional[str]) -> Dict[str, Any]:
    """:func:`train`'s work, the lock held: data -> model -> System -> Trainer -> best model."""
    tr = conf["training"]
    if retrain:
        clear_experiment(exp_dir)
    else:
        check_same_experiment(conf, exp_dir)
    done = finished_run(conf, exp_dir)
    if done is not None:
        return done
    exp_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(int(tr["seed"]), workers=True, verbose=False)

    # Data: stage 2's training and validation excerpts
    if train_set is None or val_set is None:
        train_set, val_set = load_datasets(conf, exp_dir)
    batch_size = training_batch_size(conf, exp_dir)
    train_loader, val_loader = make_loaders(conf, train_set, val_set, batch_size)

    # Model and System (loss, optimiser, learning-rate schedule)
    model = build_model(conf)
    optimizer = make_optimizer(model, conf)
    system = FrugalSystem(model=model, optimizer=optimizer, loss_func=make_loss(conf),
                          train_loader=train_loader, val_loader=val_loader,
                          scheduler=make_scheduler(optimizer, conf), config=conf,
                          sample_rate=conf["data"]["sample_rate"])

    # Trainer: checkpoints, early stopping, logs; resumes from the last checkpoint
    ckpt_dir = exp_dir / "checkpoints"
    best_cb, callbacks = make_callbacks(conf, ckpt_dir)
    trainer = pl.Trainer(
        max_epochs=int(tr["epochs"]), callbacks=callbacks, logger=make_loggers(exp_dir), default_root_dir=str(exp_dir),
        gradient_clip_val=float(tr["gradient_clipping"]), accelerator=tr["accelerator"],
        devices=tr["devices"], num_nodes=int(tr["num_nodes"]), strategy=tr["strategy"], precision=tr["precision"],
        log_every_n_steps=max(1, min(int(tr["log_every_n_steps"]), len(train_loader))), enable_model_summary=False,
        plugins=[CheckpointWriter()],   # checkpoints written beside, then renamed (system.py)
    )
    if trainer.is_global_zero:
        record_experiment(conf, exp_dir, command)
        log.info("%s: %s, %d parameters, %d training excerpts, batch %d", exp_dir.name, conf["data"]["target"],
                 count_parameters(model), len(train_set), batch_size)
    resume = last_checkpoint(ckpt_dir)
    if resume is not None:
        log.info("resuming from %s", resume)
    # weights_only=True: Lightning 2.6 leaves torch.load's default to torch; never let it unpickle code
    try:
        trainer.fit(system, ckpt_path=str(resume) if resume else None, weights_only=True)
    except MisconfigurationException as err:
        if resume is None or "current_epoch" not in str(err):
            raise
        # an interrupted run resumed with fewer epochs than it had already done
        raise FrugalError(f"{exp_dir}: its checkpoint {resume.name} is past training.epochs={tr['epochs']}: raise "
                          f"training.epochs to resume it, or --retrain to start over") from None

    # Best model: best_model.pth, best_k_models.json, curves, training_done.json
    summary = training_summary(trainer, best_cb, system, exp_dir)
    if trainer.is_global_zero:
        if trainer.interrupted:
            raise FrugalError(f"{exp_dir}: training interrupted; re-run the same command to resume")
        save_results(conf, exp_dir, system, best_cb, summary)
    return summary


# ------------------------------------------------------------------ the experiment folder
def clear_experiment(exp_dir: Path) -> None:
    """``--retrain``: remove the checkpoints, logs and results of a previous run."""
    for name in ("checkpoints", "logs"):
        shutil.rmtree(exp_dir / name, ignore_errors=True)
    for name in RESULTS:
        (exp_dir / name).unlink(missing_ok=True)


def comparable(conf: Dict[str, Any]) -> Dict[str, Any]:
    """``conf`` without the :data:`RESUMABLE_KEYS` (what may change between runs of one experiment)."""
    out = json.loads(json.dumps(conf))
    for section, keys in RESUMABLE_KEYS.items():
        if keys is None:
            out.pop(section, None)
        for k in keys or ():
            out.get(section, {}).pop(k, None)
    return out


def check_same_experiment(conf: Dict[str, Any], exp_dir: Path) -> None:
    """A one-line error when ``exp_dir`` holds an experiment whose saved config differs from
    ``conf`` (other than :data:`RESUMABLE_KEYS`)."""
    saved = exp_dir / "conf.yml"
    if not saved.exists():
        return
    # A key added to conf.yml after the experiment was saved (e.g. masker.causal) counts as its
    # default, which is what that experiment ran with; a key conf.yml no longer has (e.g.
    # training.loss) is ignored. Overlays and --set cannot add or drop keys (unknown keys are
    # errors), so only a changed value is a different experiment.
    old, new = comparable(merge(load_yaml(DEFAULT_CONF), load_yaml(saved), strict=False)), comparable(conf)
    diff = sorted(f"{s}.{k}" for s, section in new.items() if isinstance(section, dict)
                  for k, v in section.items() if (old.get(s) or {}).get(k) != v)
    if diff:
        raise FrugalError(f"{exp_dir}: already holds an experiment with a different config "
                          f"({', '.join(diff)}); use another --tag, or --retrain to start over")


def finished_run(conf: Dict[str, Any], exp_dir: Path) -> Optional[Dict[str, Any]]:
    """The summary of a finished run there is nothing more to do for, else None (also when the
    epoch budget was raised after a stop at max epochs)."""
    done_file = exp_dir / "training_done.json"
    if not done_file.exists():
        return None
    try:
        done = read_json(done_file)
        int(done["epochs_done"])
    except (FrugalError, KeyError, TypeError, ValueError) as err:   # an older version's, a hand edit
        log.warning("%s: unreadable (%s): training resumes and writes it again", done_file,
                    err if isinstance(err, FrugalError) else "no epochs_done")
        return None
    more_epochs = done.get("stop_reason") == "max_epochs" and int(conf["training"]["epochs"]) > int(done["epochs_done"])
    if more_epochs or not (exp_dir / "best_model.pth").exists():
        return None
    log.info("%s: already trained (%s after %d epochs); --retrain to train again",
             exp_dir, done.get("stop_reason"), done.get("epochs_done", 0))
    return done


def record_experiment(conf: Dict[str, Any], exp_dir: Path, command: Optional[str]) -> None:
    """``conf.yml`` and ``train_command.txt`` (``command``, else $FRUGAL_RUN_CMD, else argv)."""
    save_config(conf, exp_dir / "conf.yml")
    cmd = command or os.environ.get("FRUGAL_RUN_CMD") or " ".join(shlex.quote(a) for a in sys.argv)
    write_text_atomic(exp_dir / "train_command.txt", cmd + "\n")


# ------------------------------------------------------------------------------- data
def load_datasets(conf: Dict[str, Any], exp_dir: Path):
    """Training and validation sets from the stage-2 manifests in ``exp_dir/data``."""
    from .data.datasets import Augment, ExcerptDataset

    data_dir = exp_dir / "data"
    target = conf["data"]["target"]
    for name in ("train.csv", "valid.csv"):
        if not (data_dir / name).exists():
            raise FrugalError(f"{data_dir / name}: missing; run stage 2 first "
                              f"(./run.sh --stage 2 --stop_stage 2 --tag {exp_dir.name})")
    n_chan = conf["data"]["n_channels"]
    return (ExcerptDataset(data_dir / "train.csv", target, n_channels=n_chan, augment=Augment.from_conf(conf)),
            ExcerptDataset(data_dir / "valid.csv", target, n_channels=n_chan))


def training_batch_size(conf: Dict[str, Any], exp_dir: Path) -> int:
    """Stage 2's batch size (``data/shaping.json``, set by ``shaping.equal_total_audio``), else
    ``training.batch_size``."""
    shaping = exp_dir / "data" / "shaping.json"
    if shaping.exists():
        info = read_json(shaping)   # broken: one line naming it (re-run stage 2)
        value = info.get("batch_size") if isinstance(info, dict) else None
        if value:
            return int(value)
    return int(conf["training"]["batch_size"])


def make_loaders(conf: Dict[str, Any], train_set: Dataset, val_set: Dataset,
                 batch_size: int) -> Tuple[DataLoader, DataLoader]:
    """Training batches shuffled from (seed, epoch) (:class:`EpochSeededSampler`), validation in order."""
    tr = conf["training"]
    workers = int(tr["num_workers"])
    loader_kw = dict(num_workers=workers, persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
    train_loader = DataLoader(train_set, batch_size=batch_size, sampler=EpochSeededSampler(train_set, tr["seed"]),
                              drop_last=len(train_set) > batch_size, **loader_kw)
    val_loader = DataLoader(val_set, batch_size=batch_size, shuffle=False, **loader_kw)
    return train_loader, val_loader


# ------------------------------------------------------------------------- best model
def training_summary(trainer: pl.Trainer, best_cb: ModelCheckpoint, system: FrugalSystem,
                     exp_dir: Path) -> Dict[str, Any]:
    """What ``training_done.json`` holds: why and when training stopped, the best checkpoint."""
    stopped_early = any(isinstance(cb, EarlyStopping) and cb.stopped_epoch > 0 for cb in trainer.callbacks)
    return dict(
        stop_reason="early_stopping" if stopped_early else "max_epochs",
        epochs_done=int(trainer.current_epoch),
        global_step=int(trainer.global_step),
        best_val_loss=float(best_cb.best_model_score) if best_cb.best_model_score is not None else math.nan,
        best_checkpoint=os.path.relpath(best_cb.best_model_path, exp_dir) if best_cb.best_model_path else "",
        skipped_steps=int(system.skipped_steps),
        n_parameters=int(count_parameters(system.model)),
    )


def save_results(conf: Dict[str, Any], exp_dir: Path, system: FrugalSystem, best_cb: ModelCheckpoint,
                 summary: Dict[str, Any]) -> None:
    """best_model.pth, best_k_models.json, training_curves.png, then training_done.json (last:
    it marks the experiment finished)."""
    export_best_model(system, best_cb.best_model_path or None, conf, exp_dir)
    write_json_atomic(exp_dir / "best_k_models.json",
                      {os.path.relpath(k, exp_dir): float(v) for k, v in best_cb.best_k_models.items()})
    plot_curves(exp_dir)
    write_json_atomic(exp_dir / "training_done.json", summary)
    log.info("%s: %s after %d epochs, best val_loss %.3f", exp_dir.name, summary["stop_reason"],
             summary["epochs_done"], summary["best_val_loss"])


def export_best_model(system: FrugalSystem, ckpt_path: Optional[str], conf: Dict[str, Any], exp_dir: Path) -> Path:
    """Write ``best_model.pth`` (Asteroid serialization, plain types) from the best checkpoint."""
    if ckpt_path:
        system.load_state_dict(load_checkpoint(ckpt_path)["state_dict"])
    to_save = system.model.serialize()
    to_save["target"] = conf["data"]["target"]
    to_save["sources"] = stem_names([conf["data"]["target"]])
    to_save["training_config"] = json.loads(json.dumps(conf))
    path = exp_dir / "best_model.pth"
    torch_save_atomic(to_save, path)
    return path


def plot_curves(exp_dir: Path) -> Optional[Path]:
    """PNG of training/validation loss and learning rate from the CSV log; None (and a warning
    when the log cannot be read: the curves are not worth failing a run for) when there is none."""
    csv = exp_dir / "logs" / "csv" / "metrics.csv"
    if not csv.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    try:
        df = pd.read_csv(csv).apply(pd.to_numeric, errors="coerce")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        log.warning("%s: unreadable (%s): no training curves", csv, " ".join(str(err).split()))
        return None
    if "epoch" not in df:
        log.warning("%s: no epoch column: no training curves", csv)
        return None
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for col, label in (("loss_epoch", "training"), ("val_loss", "validation")):
        if col in df:
            d = df[["epoch", col]].dropna()
            ax1.plot(d["epoch"] + 1, d[col], marker="o", ms=3, label=label)
    ax1.set_ylabel("-SI-SNR (dB)")
    ax1.legend()
    ax1.grid(alpha=0.3)
    if "lr" in df:
        d = df[["epoch", "lr"]].dropna()
        ax2.step(d["epoch"] + 1, d["lr"], where="mid")
    ax2.set_yscale("log")
    ax2.set_ylabel("learning rate")
    ax2.set_xlabel("epoch")
    ax2.grid(alpha=0.3)
    fig.suptitle(f"{exp_dir.name}: training curves")
    fig.tight_layout()
    out = exp_dir / "training_curves.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out
