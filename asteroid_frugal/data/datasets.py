"""PyTorch datasets over stage-2 manifests: ``(mixture [C, T], targets [2, C, T])`` for target vs rest.

Each item reads only the needed samples of each prepared stem (soundfile seeks in the
16-bit WAVs; no decoding of whole songs, no ffmpeg). ``targets[0]`` is the target stem,
``targets[1]`` the rest (``accompaniment.wav`` for an extra song that has it and the
target is vocals, else the sum of the other stems present), and the mixture is
``targets.sum(0)``: the sum of stems, never a stored mixture file.
"""
import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from ..utils import FrugalError, read_json
from .layout import read_track_meta, rest_sources

MANIFEST_FIELDS = ["track_dir", "start", "length", "song", "split", "corpus", "target_active"]


def read_manifest(path) -> List[dict]:
    """Rows of a manifest CSV; ``track_dir`` is resolved against the manifest's folder."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"track_dir", "start", "length"} - set(reader.fieldnames or [])
            if missing:
                raise FrugalError(f"{path}: not a manifest (missing columns {sorted(missing)})")
            rows = list(reader)
    except FileNotFoundError:
        raise FrugalError(f"{path}: manifest not found (run stage 2, local/shape_trainset.py)") from None
    for i, row in enumerate(rows):
        try:
            row["start"], row["length"] = int(row["start"]), int(row["length"])
        except ValueError:
            raise FrugalError(f"{path}: row {i + 2}: start/length are not integers") from None
        row["track_dir"] = str((path.parent / row["track_dir"]).resolve())
        if row.get("target_active") not in (None, ""):
            row["target_active"] = float(row["target_active"])
    return rows


def write_manifest(path, rows: List[dict]) -> None:
    """Write a manifest atomically; ``track_dir`` stored relative to the manifest's folder."""
    from ..utils import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            out = dict(row)
            out["track_dir"] = os.path.relpath(Path(row["track_dir"]).resolve(), base)
            if isinstance(out.get("target_active"), float):
                out["target_active"] = f"{out['target_active']:.4f}"
            writer.writerow(out)


def load_shaping(exp_dir) -> dict:
    """``<exp_dir>/data/shaping.json`` written by stage 2 (target, seed, choices, batch_size...)."""
    return read_json(Path(exp_dir) / "data" / "shaping.json")


@dataclass
class Augment:
    """Peer recipes' augmentations (all off in the paper): per-stem gain, channel swap, remix.

    ``gain`` multiplies each stem by its own factor drawn uniformly in ``gain_range``;
    ``channel_swap`` swaps left and right of each stem with probability 1/2; ``remix``
    takes the rest from another random row of the manifest (another song), so target
    and accompaniment no longer come from the same song. Applied to the training set only.
    """

    gain: bool
    gain_range: Tuple[float, float]
    channel_swap: bool
    remix: bool

    @classmethod
    def from_conf(cls, conf) -> Optional["Augment"]:
        """The ``shaping.augment_*`` choices; None when all are off."""
        s = conf["shaping"]
        lo, hi = (float(v) for v in s["augment_gain_range"])
        if not 0 <= lo <= hi:
            raise FrugalError(f"shaping.augment_gain_range={s['augment_gain_range']}: expected [low, high] "
                              "with 0 <= low <= high")
        aug = cls(gain=bool(s["augment_gain"]), gain_range=(lo, hi),
                  channel_swap=bool(s["augment_channel_swap"]), remix=bool(s["augment_remix"]))
        return aug if (aug.gain or aug.channel_swap or aug.remix) else None


def read_segment(path, start: int, length: int, n_samples: int) -> np.ndarray:
    """``[C, length]`` float32 from ``start``; zeros where the excerpt runs past the end."""
    out_len = max(0, min(length, n_samples - start))
    try:
        with sf.SoundFile(str(path)) as f:
            if start > 0:
                f.seek(min(start, n_samples))
            data = f.read(out_len, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise FrugalError(f"{path}: unreadable prepared audio ({err}); re-run stage 0/1") from None
    if data.shape[0] == length:
        return np.ascontiguousarray(data.T)
    seg = np.zeros((data.shape[1], length), dtype=np.float32)
    seg[:, :data.shape[0]] = data.T
    return seg


class ExcerptDataset(Dataset):
    """Target-vs-rest excerpts of a stage-2 manifest (train, valid or test).

    Args:
        manifest_csv: ``<exp_dir>/data/{train,valid,test}.csv``.
        target: ``vocals``, ``drums`` or ``bass``.
        n_channels: 2 (stereo, as prepared) or 1 (mono downmix).
        augment: an :class:`Augment`, or None (the paper's choice).
    """

    def __init__(self, manifest_csv, target: str, n_channels: int = 2, augment: Optional[Augment] = None):
        self.manifest = Path(manifest_csv)
        self.rows = read_manifest(self.manifest)
        self.target = target
        self.n_channels = int(n_channels)
        self.augment = augment
        lengths = {r["length"] for r in self.rows}
        if len(lengths) > 1:
            raise FrugalError(f"{self.manifest}: rows have different lengths {sorted(lengths)[:5]}")
        self.segment_samples = lengths.pop() if lengths else 0
        self._tracks: Dict[str, dict] = {}
        for row in self.rows:
            if row["track_dir"] not in self._tracks:
                self._tracks[row["track_dir"]] = self._plan(row["track_dir"])
        rates = {t["sample_rate"] for t in self._tracks.values()}
        if len(rates) > 1:
            raise FrugalError(f"{self.manifest}: tracks with different sample rates {sorted(rates)}")
        self.sample_rate = rates.pop() if rates else 44100

    def _plan(self, track_dir: str) -> dict:
        meta = read_track_meta(track_dir)
        rest = rest_sources(self.target, meta["sources"])
        if rest is None:
            raise FrugalError(f"{track_dir}: cannot serve target {self.target!r} "
                              f"(sources: {', '.join(meta['sources'])})")
        d = Path(track_dir)
        return dict(target=d / f"{self.target}.wav", rest=[d / f"{s}.wav" for s in rest],
                    n_samples=int(meta["n_samples"]), sample_rate=int(meta["sample_rate"]),
                    name=meta["name"])

    def __len__(self) -> int:
        return len(self.rows)

    def _read_pair(self, idx: int, rest_idx: Optional[int] = None):
        row = self.rows[idx]
        plan = self._tracks[row["track_dir"]]
        target = read_segment(plan["target"], row["start"], row["length"], plan["n_samples"])
        if rest_idx is not None:
            row = self.rows[rest_idx]
            plan = self._tracks[row["track_dir"]]
        rest = None
        for path in plan["rest"]:
            seg = read_segment(path, row["start"], row["length"], plan["n_samples"])
            rest = seg if rest is None else rest + seg
        return target, rest

    def __getitem__(self, idx: int):
        rest_idx = None
        if self.augment is not None and self.augment.remix and len(self.rows) > 1:
            rest_idx = int(torch.randint(len(self.rows), (1,)))
        target, rest = self._read_pair(idx, rest_idx)
        targets = torch.from_numpy(np.stack([_channels(target, self.n_channels),
                                             _channels(rest, self.n_channels)]))
        if self.augment is not None:
            targets = _apply_augment(targets, self.augment)
        return targets.sum(0), targets

    def get_infos(self, idx: int) -> dict:
        """Song name, track directory, start and length (samples) of item ``idx``."""
        row = self.rows[idx]
        return dict(song=self._tracks[row["track_dir"]]["name"], track_dir=row["track_dir"],
                    start=row["start"], length=row["length"])


def _channels(audio: np.ndarray, n_channels: int) -> np.ndarray:
    if audio.shape[0] == n_channels:
        return audio
    if n_channels == 1:
        return audio.mean(axis=0, keepdims=True)
    if audio.shape[0] == 1:
        return np.repeat(audio, n_channels, axis=0)
    raise FrugalError(f"cannot turn {audio.shape[0]}-channel audio into {n_channels} channels")


def _apply_augment(targets: torch.Tensor, aug: Augment) -> torch.Tensor:
    """Random per-stem gain and left/right swap (torch RNG: seeded per DataLoader worker)."""
    targets = targets.clone()
    n_src = targets.shape[0]
    if aug.gain:
        lo, hi = aug.gain_range
        targets *= (lo + (hi - lo) * torch.rand(n_src, 1, 1))
    if aug.channel_swap and targets.shape[1] == 2:
        for i in range(n_src):
            if torch.rand(()) < 0.5:
                targets[i] = targets[i].flip(0)
    return targets
