"""Stage 3: train one target-vs-rest FrugalTasNet with Asteroid's System on PyTorch Lightning.

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
import argparse
import json
import logging
import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.trainer.states import TrainerFn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader, Dataset, RandomSampler

from asteroid.engine import System

from .config import DEFAULT_CONF, add_config_args, config_from_args, load_yaml, merge, save_config
from .data.types import TARGETS, stem_names
from .losses import TargetRestSISNRLoss
from .model import FrugalTasNet, count_parameters
from .utils import FrugalError, UnsafeFileError, torch_load, torch_save_atomic, write_json_atomic

log = logging.getLogger("asteroid_frugal.train")

# Keys whose change does not make an experiment a different one (resuming stays allowed); None:
# the whole section (what stage 3 never reads: scoring, separation, streaming, process threading).
RESUMABLE_KEYS = {"training": {"epochs", "devices", "num_nodes", "strategy", "accelerator",
                               "num_workers", "checkpoint_every_n_steps", "precision"},
                  "default_corpus": {"jobs"}, "midi_render": {"jobs"},   # same audio whatever the number
                  "evaluation": None, "separate": None, "streaming": None, "runtime": None}


def build_model(conf: Dict[str, Any]) -> FrugalTasNet:
    """FrugalTasNet from the ``filterbank``/``masker``/``data`` sections."""
    fb, mk, data = conf["filterbank"], conf["masker"], conf["data"]
    try:
        return FrugalTasNet(
            n_src=2, n_filters=fb["n_filters"], kernel_size=fb["kernel_size"], stride=fb["stride"],
            n_channels=data["n_channels"], hidden_size=mk["hidden_size"], n_layers=mk["n_layers"],
            bidirectional=mk["bidirectional"], skip_every=mk["skip_every"], dropout=mk["dropout"],
            mask_act=mk["mask_act"], causal=mk["causal"], sample_rate=data["sample_rate"])
    except ValueError as err:  # an inconsistent filterbank/masker section
        raise FrugalError(f"model configuration (filterbank/masker sections): {err}") from None


class FrugalSystem(System):
    """Asteroid ``System`` with the paper's loss and the robustness a two-month run needs:

    * silent references are excluded from SI-SNR (counted in ``silent_refs``);
    * a non-finite loss or gradient never reaches the optimiser: the step is skipped and
      counted in ``skipped_steps`` (kept in checkpoints);
    * validation logs ``val_loss`` and the target's SI-SNR and SI-SNR improvement;
    * training logs throughput in seconds of audio per second.
    """

    def __init__(self, *args, sample_rate: float = 44100.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.sample_rate = float(sample_rate)
        self.skipped_steps = 0
        self._t_batch = None
        self._epoch_lr = None

    @staticmethod
    def config_to_hparams(dic):
        """Flat hparams for TensorBoard. Asteroid's version turns lists into tensors, which
        fails for lists of strings (e.g. ``data.extra_roots``); we store them as text."""
        from asteroid.utils import flatten_dict

        return {k: ("None" if v is None else str(v) if isinstance(v, (list, tuple)) else v)
                for k, v in flatten_dict(json.loads(json.dumps(dic))).items()}

    def training_step(self, batch, batch_nb):
        mix, targets = batch
        loss, n_silent = self.loss_func(self(mix), targets)
        self.log("silent_refs", float(n_silent), on_step=False, on_epoch=True, reduce_fx="sum")
        if not torch.isfinite(loss):
            self.skipped_steps += 1
            log.warning("non-finite loss at epoch %d step %d: step skipped (%d so far)",
                        self.current_epoch, self.global_step, self.skipped_steps)
            self.log("skipped_steps", float(self.skipped_steps), on_step=False, on_epoch=True, reduce_fx="max")
            return None  # Lightning skips backward and the optimiser update
        self.log("loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=mix.shape[0])
        return loss

    def on_train_epoch_end(self):
        # The learning rate used during this epoch (read at its first batch: the plateau
        # scheduler has already stepped for the next one, in on_validation_epoch_end).
        if self._epoch_lr is not None:
            self.log("lr", self._epoch_lr, on_epoch=True, on_step=False, batch_size=1)
        self._epoch_lr = None

    def on_before_optimizer_step(self, optimizer):
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads and not all(torch.isfinite(g).all() for g in grads):
            self.skipped_steps += 1
            log.warning("non-finite gradient at step %d: step skipped", self.global_step)
            for p in self.parameters():
                p.grad = None  # Adam leaves parameters without gradient untouched

    def on_train_batch_start(self, batch, batch_idx):
        if self._epoch_lr is None:  # first batch of the epoch (also after a mid-epoch resume)
            self._epoch_lr = float(self.optimizers().param_groups[0]["lr"])
        self._t_batch = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self._t_batch is None:
            return
        mix = batch[0]
        seconds = mix.shape[0] * mix.shape[-1] / self.sample_rate
        rate = seconds / max(time.perf_counter() - self._t_batch, 1e-9)
        self.log("audio_s_per_s", rate, on_step=True, on_epoch=True, prog_bar=True, batch_size=1)

    def validation_step(self, batch, batch_nb):
        mix, targets = batch
        est = self(mix)
        loss, _ = self.loss_func(est, targets)
        if torch.isfinite(loss):
            self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=mix.shape[0])
        per_src = self.loss_func.per_source(est, targets)[:, 0]
        mix_sisnr = self.loss_func.per_source(mix.unsqueeze(1), targets[:, :1])[:, 0]
        keep = targets[:, 0].pow(2).flatten(1).mean(-1) > self.loss_func.silence_power
        if keep.any():
            self.log("val_sisnr_target", -per_src[keep].mean(), on_epoch=True, sync_dist=True,
                     batch_size=int(keep.sum()))
            self.log("val_sisnri_target", (mix_sisnr - per_src)[keep].mean(), on_epoch=True,
                     prog_bar=True, sync_dist=True, batch_size=int(keep.sum()))

    def on_validation_epoch_end(self):
        # Asteroid's version calls self.trainer.logger unconditionally (crashes without one).
        metric = self.trainer.callback_metrics.get("val_loss")
        if metric is not None and self.trainer.logger is not None:
            self.trainer.logger.log_metrics({"hp_metric": float(metric)}, step=self.trainer.global_step)
        if self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking:
            self._step_plateau_schedulers(metric)

    def _step_plateau_schedulers(self, metric) -> None:
        """Step ReduceLROnPlateau here, before this epoch's checkpoints are written.

        Lightning 2.6 steps plateau schedulers at the end of the training epoch, *after* the
        checkpoint callbacks have saved (in their ``on_train_epoch_end``), and does not step
        them when it resumes from such a checkpoint: every resume lost one scheduler update.
        :meth:`lr_scheduler_step` makes Lightning's own later call a no-op for them.
        """
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, ReduceLROnPlateau):
                if metric is None:
                    log.warning("epoch %d: no finite val_loss, learning-rate scheduler not stepped",
                                self.current_epoch)
                else:
                    config.scheduler.step(float(metric))

    def lr_scheduler_step(self, scheduler, metric):
        if isinstance(scheduler, ReduceLROnPlateau):
            return  # already stepped before the checkpoint (see _step_plateau_schedulers)
        super().lr_scheduler_step(scheduler, metric)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["skipped_steps"] = self.skipped_steps
        return super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint):
        self.skipped_steps = int(checkpoint.get("skipped_steps", 0))


class EpochSeededSampler(RandomSampler):
    """Shuffles with a generator seeded from (seed, epoch): a resumed run draws the same order as
    an uninterrupted one (``RandomSampler`` alone draws from the global RNG, which checkpoints do
    not restore). Lightning calls ``set_epoch`` before each epoch; under DDP it replaces this
    sampler, as any ``RandomSampler``, by a ``DistributedSampler``, also seeded from (seed, epoch)."""

    def __init__(self, data_source, seed: int):
        super().__init__(data_source, generator=torch.Generator())
        self.seed = int(seed)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed * 1_000_003 + int(epoch))


class _AppendingCSVWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv when it starts (so a resumed
    run would lose its history); this one keeps the file and appends under its header."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                header = f.readline().strip()
            self.metrics_keys = sorted(k for k in header.split(",") if k)


class ResumableCSVLogger(CSVLogger):
    """CSVLogger whose log survives resuming (see :class:`_AppendingCSVWriter`)."""

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingCSVWriter(log_dir=self.log_dir)
        return self._experiment


class ProgressBar(TQDMProgressBar):
    """Lightning's bar without the logger version number (meaningless here)."""

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


def make_scheduler(optimizer, conf: Dict[str, Any]) -> ReduceLROnPlateau:
    """Halve the LR after ``patience`` consecutive epochs without validation improvement.

    torch's ``ReduceLROnPlateau(patience=p)`` reduces on the (p+1)-th bad epoch, so the
    paper's "3 epochs without improvement" is ``patience=2`` in torch's terms. Any
    strictly lower val_loss counts as an improvement (abs threshold 0: torch's relative
    threshold misbehaves for negative losses such as -SI-SNR).
    """
    sch = conf["scheduler"]
    return ReduceLROnPlateau(optimizer, mode="min", factor=sch["factor"], patience=max(0, sch["patience"] - 1),
                             threshold=0.0, threshold_mode="abs")


def make_early_stopping(conf: Dict[str, Any]) -> EarlyStopping:
    """Stop after ``early_stop_patience`` consecutive epochs without improvement
    (Lightning's counter stops when it *reaches* patience: no off-by-one)."""
    return EarlyStopping(monitor="val_loss", mode="min", patience=conf["training"]["early_stop_patience"],
                         min_delta=0.0, check_finite=False)


def make_optimizer(model: torch.nn.Module, conf: Dict[str, Any]) -> torch.optim.Optimizer:
    opt = conf["optim"]
    name = str(opt["optimizer"]).lower()
    if name != "adam":
        from asteroid.engine.optimizers import make_optimizer as asteroid_make_optimizer

        return asteroid_make_optimizer(model.parameters(), optimizer=name, lr=opt["lr"],
                                       weight_decay=opt["weight_decay"])
    return torch.optim.Adam(model.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"])


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


def _batch_size(conf: Dict[str, Any], exp_dir: Path) -> int:
    shaping = exp_dir / "data" / "shaping.json"
    if shaping.exists():
        value = json.loads(shaping.read_text()).get("batch_size")
        if value:
            return int(value)
    return int(conf["training"]["batch_size"])


def _comparable(conf: Dict[str, Any]) -> Dict[str, Any]:
    out = json.loads(json.dumps(conf))
    for section, keys in RESUMABLE_KEYS.items():
        if keys is None:
            out.pop(section, None)
        for k in keys or ():
            out.get(section, {}).pop(k, None)
    return out


def _check_same_experiment(conf: Dict[str, Any], exp_dir: Path) -> None:
    saved = exp_dir / "conf.yml"
    if not saved.exists():
        return
    # A key added to conf.yml after the experiment was saved (e.g. masker.causal) counts as its
    # default, which is what that experiment ran with; a key conf.yml no longer has (e.g.
    # training.loss) is ignored. Overlays and --set cannot add or drop keys (unknown keys are
    # errors), so only a changed value is a different experiment.
    old, new = _comparable(merge(load_yaml(DEFAULT_CONF), load_yaml(saved), strict=False)), _comparable(conf)
    diff = sorted(f"{s}.{k}" for s, section in new.items() if isinstance(section, dict)
                  for k, v in section.items() if (old.get(s) or {}).get(k) != v)
    if diff:
        raise FrugalError(f"{exp_dir}: already holds an experiment with a different config "
                          f"({', '.join(diff)}); use another --tag, or --retrain to start over")


CHECKPOINT = "a training checkpoint"


def load_checkpoint(path) -> Dict[str, Any]:
    """A Lightning checkpoint of this recipe, loaded with ``weights_only=True`` (its checkpoints
    hold only tensors and plain values, so no safe globals are needed); a file holding other
    objects is refused (:class:`UnsafeFileError`) without running anything in it."""
    ckpt = torch_load(path, CHECKPOINT)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise FrugalError(f"{path}: not {CHECKPOINT} (no state_dict)")
    return ckpt


def _last_checkpoint(ckpt_dir: Path) -> Optional[Path]:
    """Newest loadable checkpoint (last.ckpt first among equally new: end of epoch, or
    latest-step.ckpt within an epoch); a broken file is skipped with a warning, a file holding
    code is refused (one line naming it: someone put it there)."""
    candidates = sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: (-p.stat().st_mtime, p.name != "last.ckpt"))
    for path in candidates:
        try:
            load_checkpoint(path)
            return path
        except UnsafeFileError:
            raise
        except FrugalError as err:
            log.warning("unreadable checkpoint skipped: %s", err)
    return None


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
    """PNG of training/validation loss and learning rate from the CSV log."""
    csv = exp_dir / "logs" / "csv" / "metrics.csv"
    if not csv.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from .utils import atomic_path

    df = pd.read_csv(csv)
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


def train(conf: Dict[str, Any], exp_dir, train_set: Optional[Dataset] = None, val_set: Optional[Dataset] = None,
          retrain: bool = False, command: Optional[str] = None) -> Dict[str, Any]:
    """Train (or resume, or skip when finished) one experiment; returns the summary of ``training_done.json``."""
    exp_dir = Path(exp_dir)
    tr = conf["training"]
    ckpt_dir = exp_dir / "checkpoints"
    done_file = exp_dir / "training_done.json"
    if retrain:
        for name in ("checkpoints", "logs"):
            shutil.rmtree(exp_dir / name, ignore_errors=True)
        for name in ("training_done.json", "best_model.pth", "best_k_models.json", "training_curves.png"):
            (exp_dir / name).unlink(missing_ok=True)
    else:
        _check_same_experiment(conf, exp_dir)
    if done_file.exists():
        done = json.loads(done_file.read_text())
        more_epochs = done.get("stop_reason") == "max_epochs" and int(tr["epochs"]) > int(done["epochs_done"])
        if not more_epochs and (exp_dir / "best_model.pth").exists():
            log.info("%s: already trained (%s after %d epochs); --retrain to train again",
                     exp_dir, done.get("stop_reason"), done.get("epochs_done", 0))
            return done
    exp_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(int(tr["seed"]), workers=True, verbose=False)
    if train_set is None or val_set is None:
        train_set, val_set = load_datasets(conf, exp_dir)
    batch_size = _batch_size(conf, exp_dir)
    workers = int(tr["num_workers"])
    loader_kw = dict(num_workers=workers, persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
    train_loader = DataLoader(train_set, batch_size=batch_size, sampler=EpochSeededSampler(train_set, tr["seed"]),
                              drop_last=len(train_set) > batch_size, **loader_kw)
    val_loader = DataLoader(val_set, batch_size=batch_size, shuffle=False, **loader_kw)

    model = build_model(conf)
    optimizer = make_optimizer(model, conf)
    system = FrugalSystem(model=model, optimizer=optimizer,
                          loss_func=TargetRestSISNRLoss(pit=bool(tr["pit"]), silence_db=float(tr["silence_db"])),
                          train_loader=train_loader, val_loader=val_loader,
                          scheduler=make_scheduler(optimizer, conf), config=conf,
                          sample_rate=conf["data"]["sample_rate"])

    best_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="epoch{epoch:03d}-val{val_loss:.3f}",
                              auto_insert_metric_name=False, monitor="val_loss", mode="min",
                              save_top_k=int(tr["save_top_k"]))
    # last.ckpt after every epoch. Not save_last=True: Lightning 2.6 refreshes that file only when a
    # top-k checkpoint is saved in the same step, so a resume after epochs without improvement
    # replayed all of them (and a second save_last callback writes last-v1.ckpt beside it).
    last_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                              enable_version_counter=False)
    callbacks = [best_cb, last_cb, make_early_stopping(conf), ProgressBar()]
    if int(tr["checkpoint_every_n_steps"] or 0) > 0:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="latest-step", monitor=None, save_top_k=1,
                                         every_n_train_steps=int(tr["checkpoint_every_n_steps"]),
                                         enable_version_counter=False))
    loggers = [ResumableCSVLogger(str(exp_dir), name="logs", version="csv"),
               TensorBoardLogger(str(exp_dir), name="logs", version="tensorboard", default_hp_metric=False)]
    trainer = pl.Trainer(
        max_epochs=int(tr["epochs"]), callbacks=callbacks, logger=loggers, default_root_dir=str(exp_dir),
        gradient_clip_val=float(tr["gradient_clipping"]), accelerator=tr["accelerator"],
        devices=tr["devices"], num_nodes=int(tr["num_nodes"]), strategy=tr["strategy"], precision=tr["precision"],
        log_every_n_steps=max(1, min(int(tr["log_every_n_steps"]), len(train_loader))), enable_model_summary=False,
    )
    if trainer.is_global_zero:
        save_config(conf, exp_dir / "conf.yml")
        cmd = command or os.environ.get("FRUGAL_RUN_CMD") or " ".join(shlex.quote(a) for a in sys.argv)
        (exp_dir / "train_command.txt").write_text(cmd + "\n")
        log.info("%s: %s, %d parameters, %d training excerpts, batch %d", exp_dir.name, conf["data"]["target"],
                 count_parameters(model), len(train_set), batch_size)
    resume = _last_checkpoint(ckpt_dir) if ckpt_dir.exists() else None
    if resume is not None:
        log.info("resuming from %s", resume)
    # weights_only=True: Lightning 2.6 leaves torch.load's default to torch; never let it unpickle code
    trainer.fit(system, ckpt_path=str(resume) if resume else None, weights_only=True)

    stopped_early = any(isinstance(cb, EarlyStopping) and cb.stopped_epoch > 0 for cb in trainer.callbacks)
    summary = dict(
        stop_reason="early_stopping" if stopped_early else "max_epochs",
        epochs_done=int(trainer.current_epoch),
        global_step=int(trainer.global_step),
        best_val_loss=float(best_cb.best_model_score) if best_cb.best_model_score is not None else math.nan,
        best_checkpoint=os.path.relpath(best_cb.best_model_path, exp_dir) if best_cb.best_model_path else "",
        skipped_steps=int(system.skipped_steps),
        n_parameters=int(count_parameters(model)),
    )
    if trainer.is_global_zero:
        if trainer.interrupted:
            raise FrugalError(f"{exp_dir}: training interrupted; re-run the same command to resume")
        export_best_model(system, best_cb.best_model_path or None, conf, exp_dir)
        write_json_atomic(exp_dir / "best_k_models.json",
                          {os.path.relpath(k, exp_dir): float(v) for k, v in best_cb.best_k_models.items()})
        plot_curves(exp_dir)
        write_json_atomic(done_file, summary)
        log.info("%s: %s after %d epochs, best val_loss %.3f", exp_dir.name, summary["stop_reason"],
                 summary["epochs_done"], summary["best_val_loss"])
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--exp_dir", required=True, help="experiment directory (exp/<tag>)")
    parser.add_argument("--retrain", action="store_true", help="discard checkpoints and train from scratch")
    args = parser.parse_args(argv)
    conf = config_from_args(args)
    if conf["data"]["target"] not in TARGETS:
        raise FrugalError(f"data.target must be one of {', '.join(TARGETS)}, got {conf['data']['target']!r}")
    train(conf, args.exp_dir, retrain=args.retrain)
