"""The Lightning side of stage 3: Asteroid's ``System`` with the paper's loss and what it owns.

* :class:`FrugalSystem` and its parts: :func:`make_loss`, :func:`make_optimizer`,
  :func:`make_scheduler`;
* the Trainer's callbacks and loggers: :func:`make_callbacks` (checkpoints, early stopping,
  progress bar), :func:`make_loggers` (a CSV log that survives resuming, TensorBoard);
* :class:`EpochSeededSampler`, so that a resumed run draws the batches of an uninterrupted one;
* checkpoints: :class:`CheckpointWriter` (written beside, then renamed), :func:`load_checkpoint`
  (``weights_only``), :func:`last_checkpoint` (what to resume).

:mod:`asteroid_frugal.train` puts them together.
"""
import csv
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.trainer.states import TrainerFn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import RandomSampler

from asteroid.engine import System

from .losses import TargetRestSISNRLoss
from .utils import FrugalError, UnsafeFileError, atomic_path, torch_load, torch_save_atomic

log = logging.getLogger("asteroid_frugal.system")


class FrugalSystem(System):
    """Asteroid ``System`` with the paper's loss and the robustness a two-month run needs:

    * silent references are excluded from SI-SNR (counted in ``silent_refs``);
    * a non-finite loss or gradient never reaches the optimiser: the step is skipped and
      counted in ``skipped_steps`` (kept in checkpoints);
    * validation logs ``val_loss`` and the target's SI-SNR and SI-SNR improvement;
    * training logs throughput in seconds of audio per second.
    """

    def __init__(self, *args, sample_rate: float, **kwargs):
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


def make_loss(conf: Dict[str, Any]) -> TargetRestSISNRLoss:
    """The training loss: SI-SNR over (target, rest), silent references left out (``training``)."""
    tr = conf["training"]
    return TargetRestSISNRLoss(pit=bool(tr["pit"]), silence_db=float(tr["silence_db"]))


def make_optimizer(model: torch.nn.Module, conf: Dict[str, Any]) -> torch.optim.Optimizer:
    """Adam (or any optimiser Asteroid knows by name) from the ``optim`` section."""
    opt = conf["optim"]
    name = str(opt["optimizer"]).lower()
    if name != "adam":
        from asteroid.engine.optimizers import make_optimizer as asteroid_make_optimizer

        return asteroid_make_optimizer(model.parameters(), optimizer=name, lr=opt["lr"],
                                       weight_decay=opt["weight_decay"])
    return torch.optim.Adam(model.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"])


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


# Works around Lightning's CSV writer (lightning_fabric ``_ExperimentWriter._check_log_dir_exists``,
# since Lightning 2.2, Lightning-AI/pytorch-lightning#19446, still so in 2.6): it deletes an
# existing metrics.csv when it starts, so a resumed run would lose the history of its epochs.
# It also rewrites the whole file in place when a new metric appears (a kill then truncates it) and
# crashes ("dict contains fields not in fieldnames") on a row longer than the header.
class _AppendingCSVWriter(ExperimentWriter):
    """Lightning's CSV writer, keeping an existing metrics.csv and appending under its header.

    An existing file whose rows do not all fit its header (two runs that appended at once before
    experiments had a lock, a cut-off write) is repaired first: the rows that fit are kept, the
    file as it was is moved aside (``metrics.csv.broken-<time>``), with one warning."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            self.metrics_keys = self._repaired_header()

    def _repaired_header(self) -> List[str]:
        path = self.metrics_file_path
        header, rows, n_bad = self._read_rows(path)
        if not n_bad:
            return header
        broken = f"{path}.broken-{time.strftime('%Y%m%d-%H%M%S')}"
        if header:
            with atomic_path(path) as tmp:
                with open(tmp, "w", newline="") as f:
                    csv.writer(f).writerows([header, *rows])
                os.replace(path, broken)
        else:   # no usable header: the log starts again
            os.replace(path, broken)
        log.warning("%s: %d row(s) did not fit its header (another run's, or a cut-off write): kept the %d "
                    "that do, the file as it was is %s", path, n_bad, len(rows), os.path.basename(broken))
        return header

    @staticmethod
    def _read_rows(path) -> Tuple[List[str], List[List[str]], int]:
        """(header, the rows that fit it, how many rows did not): a row fits when it has the
        header's number of fields, each a number or empty; a header with empty or repeated names
        counts as a row that does not fit, and no row fits it."""
        def number(value: str) -> bool:
            try:
                float(value)
                return True
            except ValueError:
                return value == ""

        header, rows, n_bad = None, [], 0
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.reader(f)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error:   # e.g. an unterminated quote: nothing after it is readable
                    n_bad += 1
                    break
                if header is None:
                    header = row
                    if not row or not all(row) or len(set(row)) != len(row):
                        header, n_bad = [], 1
                elif header and len(row) == len(header) and all(number(v) for v in row):
                    rows.append(row)
                else:
                    n_bad += 1
        return header or [], rows, n_bad

    def _rewrite_with_new_header(self, fieldnames: List[str]) -> None:
        # Lightning's rewrites the file in place: written beside and renamed instead
        with open(self.metrics_file_path, newline="") as f:
            metrics = [{k: v for k, v in row.items() if k is not None} for row in csv.DictReader(f)]
        with atomic_path(self.metrics_file_path) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fieldnames)
                writer.writeheader()
                writer.writerows(metrics)


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

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """End the bars' line: the one-line error that follows starts a line of its own."""
        for name in ("val_progress_bar", "train_progress_bar"):
            try:
                bar = getattr(self, name)
            except TypeError:   # not made yet
                continue
            bar.close()


def make_loggers(exp_dir: Path) -> list:
    """``exp_dir/logs/csv/metrics.csv`` (kept across resumes) and ``exp_dir/logs/tensorboard/``."""
    return [ResumableCSVLogger(str(exp_dir), name="logs", version="csv"),
            TensorBoardLogger(str(exp_dir), name="logs", version="tensorboard", default_hp_metric=False)]


def make_callbacks(conf: Dict[str, Any], ckpt_dir: Path) -> Tuple[ModelCheckpoint, List[Callback]]:
    """The best-k checkpoints (returned first, to read the best one after training), then every
    callback: best k, ``last.ckpt``, early stopping, progress bar, and ``latest-step.ckpt``
    every ``training.checkpoint_every_n_steps`` steps when that is > 0."""
    tr = conf["training"]
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
    return best_cb, callbacks


# Works around Lightning's checkpoint writer (lightning_fabric ``TorchCheckpointIO.save_checkpoint``
# -> ``cloud_io._atomic_save``, still so in 2.6): it writes through an fsspec transaction, whose local
# files are written in the system temporary folder and moved into place with ``shutil.move``. When
# that folder is on another file system, the move is a copy: a full disk left a truncated checkpoint
# under its final name, and a long traceback.
class CheckpointWriter(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing each checkpoint to a temporary file in its own folder
    (``.<name>.<random>.tmp``, see :data:`CHECKPOINT_TEMPORARY`) renamed onto its name when
    complete: a checkpoint is complete or absent, and a full disk is one line naming it and the
    space it needed (:class:`~asteroid_frugal.utils.DiskFullError`)."""

    def save_checkpoint(self, checkpoint: Dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        torch_save_atomic(checkpoint, path, suffix=".tmp")


CHECKPOINT_TEMPORARY = ".*.ckpt.*.tmp"   # CheckpointWriter's temporary files (glob), left by a kill


def remove_checkpoint_temporaries(ckpt_dir: Path) -> int:
    """Remove the temporary files a killed :class:`CheckpointWriter` left in ``ckpt_dir``; how many."""
    leftovers = list(Path(ckpt_dir).glob(CHECKPOINT_TEMPORARY)) if Path(ckpt_dir).is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        log.info("%s: removed %d incomplete checkpoint(s) left by an interrupted run", ckpt_dir, len(leftovers))
    return len(leftovers)


CHECKPOINT = "a training checkpoint"


def load_checkpoint(path) -> Dict[str, Any]:
    """A Lightning checkpoint of this recipe, loaded with ``weights_only=True`` (its checkpoints
    hold only tensors and plain values, so no safe globals are needed); a file holding other
    objects is refused (:class:`UnsafeFileError`) without running anything in it."""
    ckpt = torch_load(path, CHECKPOINT)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise FrugalError(f"{path}: not {CHECKPOINT} (no state_dict)")
    return ckpt


def last_checkpoint(ckpt_dir: Path) -> Optional[Path]:
    """The checkpoint to resume from: the newest loadable one in ``ckpt_dir`` (last.ckpt first
    among equally new: end of epoch, or latest-step.ckpt within an epoch), None when there is
    none; a broken file (a crash or a full disk under an older version) is skipped and set aside
    as ``<name>.broken`` with one warning (no later run reads it or warns again), a file holding
    code is refused (one line naming it: someone put it there). Temporary files of an interrupted
    save are removed first."""
    if not ckpt_dir.exists():
        return None
    remove_checkpoint_temporaries(ckpt_dir)
    candidates = sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: (-p.stat().st_mtime, p.name != "last.ckpt"))
    for path in candidates:
        try:
            load_checkpoint(path)
            return path
        except UnsafeFileError:
            raise
        except FrugalError as err:
            aside = path.with_name(path.name + ".broken")
            try:
                path.replace(aside)
                where = f", set aside as {aside.name}"
            except OSError:
                where = ""
            log.warning("unreadable checkpoint skipped%s: %s", where, err)
    return None
