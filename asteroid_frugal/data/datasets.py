"""PyTorch datasets over stage-2 manifests: ``(mixture [C, T], targets [2, C, T])`` for target vs rest.

Each item reads only the needed samples of each prepared stem (soundfile seeks in the
16-bit WAVs; no decoding of whole songs, no ffmpeg). ``targets[0]`` is the target stem,
``targets[1]`` the rest (``accompaniment.wav`` for an extra song that has it and the
target is vocals, else the sum of the other stems present), and the mixture is
``targets.sum(0)``: the sum of stems, never a stored mixture file.
"""
import csv
import functools
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
    """Peer recipes' augmentations (all off in the paper): per-stem gain, channel swap, remix,
    random equaliser, random stereo image.

    ``gain`` multiplies each stem by its own factor drawn uniformly in ``gain_range``;
    ``channel_swap`` swaps left and right of each stem with probability 1/2; ``remix``
    takes the rest from another random row of the manifest (another song), so target
    and accompaniment no longer come from the same song; ``eq_db`` > 0 gives each source
    stem read (target, and each source of the rest before they are summed) its own smooth
    random equaliser, gains drawn uniformly in +-``eq_db`` dB (:func:`random_eq`): other
    instruments' timbres than the corpus' own (another soundfont, another recording);
    ``stereo`` gives each source stem its own random stereo image (:func:`random_stereo`:
    a delay between its channels and a width), so that how correlated a source's two
    channels are tells nothing of which source it is (a soundfont's stereo samples and
    effects are its own, not the instrument's); ``speed`` > 0 plays the target, and the rest
    (its sources together, in time with each other), each at its own speed drawn log-uniformly in
    [1/(1+speed), 1+speed] (:func:`change_speed`): pitch, formants and tempo move together, as on a
    tape, so a singer sounds like another (a shorter or longer vocal tract in another register).
    Applied to the training set only.
    """

    gain: bool
    gain_range: Tuple[float, float]
    channel_swap: bool
    remix: bool
    eq_db: float
    stereo: bool
    stereo_delay_s: float
    stereo_width_range: Tuple[float, float]
    speed: float = 0.0

    @classmethod
    def from_conf(cls, conf) -> Optional["Augment"]:
        """The ``shaping.augment_*`` choices; None when all are off."""
        s = conf["shaping"]
        lo, hi = (float(v) for v in s["augment_gain_range"])
        if not 0 <= lo <= hi:
            raise FrugalError(f"shaping.augment_gain_range={s['augment_gain_range']}: expected [low, high] "
                              "with 0 <= low <= high")
        w_lo, w_hi = (float(v) for v in s["augment_stereo_width_range"])
        if not 0 <= w_lo <= w_hi:
            raise FrugalError(f"shaping.augment_stereo_width_range={s['augment_stereo_width_range']}: expected "
                              "[low, high] with 0 <= low <= high")
        aug = cls(gain=bool(s["augment_gain"]), gain_range=(lo, hi),
                  channel_swap=bool(s["augment_channel_swap"]), remix=bool(s["augment_remix"]),
                  eq_db=float(s["augment_eq_db"]),              # ranges checked with the config (config.RANGES)
                  stereo=bool(s["augment_stereo"]), stereo_delay_s=float(s["augment_stereo_delay_ms"]) / 1000,
                  stereo_width_range=(w_lo, w_hi), speed=float(s["augment_speed"]))
        return aug if (aug.gain or aug.channel_swap or aug.remix or aug.eq_db > 0 or aug.stereo
                       or aug.speed > 0) else None


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


def change_speed(audio: np.ndarray, length: int) -> np.ndarray:
    """``audio`` [C, M] played in ``length`` samples (faster when ``length`` < M): band-limited
    resampling in the frequency domain (circular over the excerpt; what is above the new Nyquist
    frequency is dropped). Float32 [C, length]."""
    m = audio.shape[-1]
    if m == length or m == 0:
        return audio if m == length else np.zeros((audio.shape[0], length), dtype=np.float32)
    spec = torch.fft.rfft(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), dim=-1)
    bins = min(spec.shape[-1], length // 2 + 1)
    out = torch.zeros(*spec.shape[:-1], length // 2 + 1, dtype=spec.dtype)
    out[..., :bins] = spec[..., :bins]
    return (torch.fft.irfft(out, n=length, dim=-1) * (length / m)).numpy()


def read_at_speed(path, start: int, length: int, n_samples: int, speed: float) -> np.ndarray:
    """``[C, length]`` of the excerpt at ``start`` played ``speed`` times as fast: the
    ``length * speed`` samples around the excerpt's centre (from the song's start at the
    earliest; zeros past its end) through :func:`change_speed`. ``speed`` 1: :func:`read_segment`."""
    if speed == 1.0:
        return read_segment(path, start, length, n_samples)
    span = max(1, int(round(length * speed)))
    first = max(0, start + (length - span) // 2)
    return change_speed(read_segment(path, first, span, n_samples), length)


def _draw_speeds(n: int, speed: float) -> np.ndarray:
    """``n`` factors log-uniform in [1/(1+speed), 1+speed], from torch's RNG (seeded per DataLoader worker)."""
    return np.exp((2 * torch.rand(n, dtype=torch.float64) - 1).numpy() * np.log1p(speed))


class ExcerptDataset(Dataset):
    """Target-vs-rest excerpts of a stage-2 manifest (train, valid or test).

    Args:
        manifest_csv: ``<exp_dir>/data/{train,valid,test}.csv``.
        target: ``vocals``, ``drums`` or ``bass``.
        n_channels: 2 (stereo, as prepared) or 1 (mono downmix): the model's ``data.n_channels``.
        augment: an :class:`Augment`, or None (the paper's choice).
    """

    def __init__(self, manifest_csv, target: str, n_channels: int, augment: Optional[Augment] = None):
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

    def _read_pair(self, idx: int, rest_idx: Optional[int] = None, aug: Optional[Augment] = None):
        speeds = _draw_speeds(2, aug.speed) if aug is not None and aug.speed > 0 else (1.0, 1.0)
        row = self.rows[idx]
        plan = self._tracks[row["track_dir"]]
        target = read_at_speed(plan["target"], row["start"], row["length"], plan["n_samples"], speeds[0])
        if rest_idx is not None:
            row = self.rows[rest_idx]
            plan = self._tracks[row["track_dir"]]
        rest = [read_at_speed(path, row["start"], row["length"], plan["n_samples"], speeds[1])
                for path in plan["rest"]]
        if aug is not None and (aug.eq_db > 0 or aug.stereo):   # each source its own, before the rest is summed
            stems = np.stack([_channels(s, target.shape[0]) for s in [target] + rest])
            if aug.eq_db > 0:
                stems = random_eq(stems, _draw_eq_gains(len(stems), aug.eq_db), plan["sample_rate"])
            if aug.stereo and stems.shape[1] == 2:
                delays, widths = _draw_stereo(len(stems), aug.stereo_delay_s, aug.stereo_width_range)
                stems = random_stereo(stems, delays, widths, plan["sample_rate"])
            target, rest = stems[0], list(stems[1:])
        return target, sum(rest[1:], rest[0]) if rest else None

    def __getitem__(self, idx: int):
        rest_idx = None
        if self.augment is not None and self.augment.remix and len(self.rows) > 1:
            rest_idx = int(torch.randint(len(self.rows), (1,)))
        target, rest = self._read_pair(idx, rest_idx, self.augment)
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


# Control points of the random equaliser: 8 bands, log-spaced from 40 Hz to 16 kHz (an octave and
# a third apart), a gain at each, linear in dB between them over log frequency, flat beyond.
EQ_CENTRES_HZ = np.geomspace(40.0, 16000.0, 8)


@functools.lru_cache(maxsize=4)
def _eq_basis(n: int, sample_rate: int) -> torch.Tensor:
    """``[8, n // 2 + 1]``: each band's weight at each rFFT bin (linear interpolation over log
    frequency between neighbouring centres, flat beyond the ends); a curve is ``gains @ basis``."""
    log_f = np.log(np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), EQ_CENTRES_HZ[0]))
    eye = np.eye(len(EQ_CENTRES_HZ))
    return torch.from_numpy(np.stack([np.interp(log_f, np.log(EQ_CENTRES_HZ), e) for e in eye]).astype(np.float32))


def random_eq(audio: np.ndarray, gains_db: np.ndarray, sample_rate: int) -> np.ndarray:
    """``audio`` [..., C, T] through the zero-phase equaliser with ``gains_db`` [..., 8] at
    ``EQ_CENTRES_HZ`` (one filter per leading index, the same for all its channels: the stereo
    image stays). Float32 out, same shape; torch's FFT (2-3x NumPy's on 10 s stems)."""
    n = audio.shape[-1]
    if n == 0:
        return audio
    gains_db = torch.as_tensor(np.asarray(gains_db, dtype=np.float32))
    gain = torch.exp((gains_db @ _eq_basis(n, int(sample_rate))) * (np.log(10.0) / 20.0))
    gain = gain.reshape(*gains_db.shape[:-1], *([1] * (audio.ndim - gains_db.ndim)), -1)
    spec = torch.fft.rfft(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), dim=-1)
    return torch.fft.irfft(spec * gain, n=n, dim=-1).numpy()


def _draw_eq_gains(n_stems: int, eq_db: float) -> np.ndarray:
    """``[n_stems, 8]`` gains (dB) uniform in +-eq_db, from torch's RNG (seeded per DataLoader worker)."""
    return ((2 * torch.rand(n_stems, len(EQ_CENTRES_HZ), dtype=torch.float64) - 1) * eq_db).numpy()


def random_stereo(audio: np.ndarray, delays_s: np.ndarray, widths: np.ndarray, sample_rate: int) -> np.ndarray:
    """``audio`` [S, 2, T]: stem ``s``'s right channel delayed by ``delays_s[s]`` seconds against its
    left (half each way, exact fractional delay in the frequency domain, circular over the excerpt),
    then its side signal (L - R) / 2 scaled by ``widths[s]`` (0: mono, 1: as it is)."""
    n = audio.shape[-1]
    if n == 0:
        return audio
    freqs = torch.from_numpy(np.fft.rfftfreq(n, 1.0 / sample_rate))
    half = torch.as_tensor(np.asarray(delays_s, dtype=np.float64))[:, None] / 2
    phase = torch.polar(torch.ones(1, dtype=torch.float64), -2 * np.pi * freqs * half)   # [S, F]: delay by half
    spec = torch.fft.rfft(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), dim=-1)
    spec = torch.stack([spec[:, 0] * phase.conj().to(spec.dtype), spec[:, 1] * phase.to(spec.dtype)], dim=1)
    out = torch.fft.irfft(spec, n=n, dim=-1)
    mid, side = (out[:, 0] + out[:, 1]) / 2, (out[:, 0] - out[:, 1]) / 2
    side = side * torch.as_tensor(np.asarray(widths, dtype=np.float32))[:, None]
    return torch.stack([mid + side, mid - side], dim=1).numpy()


def _draw_stereo(n_stems: int, max_delay_s: float, width_range: Tuple[float, float]) -> Tuple[np.ndarray, np.ndarray]:
    """Delays (s) uniform in +-max_delay_s and widths uniform in width_range, from torch's RNG."""
    u = torch.rand(2, n_stems, dtype=torch.float64).numpy()
    lo, hi = width_range
    return (2 * u[0] - 1) * max_delay_s, lo + (hi - lo) * u[1]


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
