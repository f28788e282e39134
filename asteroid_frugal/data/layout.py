"""The prepared on-disk layout shared by stages 0-2 and the datasets.

``<data.root>/prepared/<corpus>/<split>/<track>/`` holds one seekable WAV per source
(``vocals.wav``, ``drums.wav``, ``bass.wav``, ``other.wav``; ``accompaniment.wav`` for
some extra songs; ``mixture.wav`` for MUSDB corpora), ``levels.npz`` (per-source level
envelope, 100 ms frames, used by shaping) and ``track.json``. A track directory is
written under a hidden temporary name and renamed into place when complete, so a
directory that exists with a ``track.json`` is a finished track.

Format: 16-bit PCM WAV. MUSDB18 (AAC decoded to 16 bit by musdb) and MUSDB18-HQ
(16-bit WAV) are stored losslessly, files are half the size of float ones (disk and
read throughput), and soundfile seeks them in O(1). A track with a stem that would
clip in 16 bit (summed or resampled extra stems) is stored as 32-bit float WAV
instead (``format`` in ``track.json``): never rescaled, never clipped. Only the stored
stems must fit; their sum (the training mixture) is formed in float when reading.
"""
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np
import soundfile as sf

from ..utils import FrugalError, disk_full_errors, write_json_atomic
from .types import EXTRA_SOURCES, MIXTURE, REST_NAMES, SOURCES

SUBTYPE = "PCM_16"
CHANNELS = 2                     # prepared tracks are stereo (mono sources duplicated)
LEVEL_SECONDS = 0.1              # level envelope frame (100 ms)
FLOAT_SUBTYPE = "FLOAT"          # for tracks whose stems exceed the 16-bit range
SPLITS = ("train", "valid", "test")
CORPUS_DEFAULT = "default"       # the built-in procedurally generated corpus
CORPUS_MUSDB = "musdb18"         # .stem.mp4 root
CORPUS_MUSDB_HQ = "musdb18hq"    # wav-folder root
CORPUS_MUSDB_SAMPLE = "musdb18_7s"  # musdb's own 7 s download
LAYOUT_VERSION = 1


def data_root(conf) -> Path:
    return Path(conf["data"]["root"])


def default_corpus_source(conf) -> Path:
    """Where the built-in corpus is generated (MUSDB18-HQ layout) before stage 0 prepares it."""
    return data_root(conf) / "default_corpus_hq"


def musdb_sample_source(conf) -> Path:
    """Where ``data.musdb_download`` puts musdb's 7-second sample."""
    return data_root(conf) / "musdb18_7s"


def detect_musdb_kind(root) -> Optional[str]:
    """``"musdb18"`` for a ``.stem.mp4`` root, ``"musdb18hq"`` for wav folders, None if neither."""
    root = Path(root)
    for subset in ("train", "test"):
        folder = root / subset
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if entry.is_file() and entry.name.endswith(".stem.mp4"):
                return CORPUS_MUSDB
            if entry.is_dir() and (Path(entry.path) / f"{MIXTURE}.wav").is_file():
                return CORPUS_MUSDB_HQ
    return None


def source_corpus(conf):
    """``(source_root, corpus_name, is_wav)`` of the MUSDB-like corpus the config asks for."""
    musdb_root = conf["data"]["musdb_root"]
    if musdb_root:
        root = Path(str(musdb_root)).expanduser()
        kind = detect_musdb_kind(root)
        if kind is None:
            prepared = data_root(conf) / "prepared"
            found = [k for k in (CORPUS_MUSDB, CORPUS_MUSDB_HQ) if (prepared / k).is_dir()]
            if not root.is_dir() and len(found) == 1:   # raw data gone, prepared copy still here
                return root, found[0], found[0] == CORPUS_MUSDB_HQ
            raise FrugalError(f"{root}: not a MUSDB18 root (expected train/ and test/ holding "
                              "<track>.stem.mp4 files, or MUSDB18-HQ <track>/mixture.wav folders)")
        return root, kind, kind == CORPUS_MUSDB_HQ
    if conf["data"]["musdb_download"]:
        return musdb_sample_source(conf), CORPUS_MUSDB_SAMPLE, False
    return default_corpus_source(conf), CORPUS_DEFAULT, True


def prepared_root(conf) -> Path:
    """The prepared corpus root for the current config (``<data.root>/prepared/<corpus>``).

    A sample rate other than 44.1 kHz gets its own corpus folder (``musdb18hq_22050``).
    """
    sr = int(conf["data"]["sample_rate"])
    return data_root(conf) / "prepared" / (source_corpus(conf)[1] + ("" if sr == 44100 else f"_{sr}"))


def extra_prepared_root(conf) -> Path:
    return data_root(conf) / "prepared" / "extra"


def extra_index_path(conf) -> Path:
    return data_root(conf) / "extra_index.json"


def list_tracks(split_dir) -> List[Path]:
    """Finished track directories of a split (sorted; hidden temporaries ignored)."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        return []
    return sorted(p for p in split_dir.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / "track.json").is_file())


def read_track_meta(track_dir) -> dict:
    """``track.json`` of a prepared track, with a one-line error when missing or broken."""
    path = Path(track_dir) / "track.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise FrugalError(f"{path}: missing (track not prepared: re-run stage 0/1)") from None
    except json.JSONDecodeError as err:
        raise FrugalError(f"{path}: not valid JSON ({err.msg}); delete the track directory "
                          "and re-run its preparation stage") from None
    for key in ("name", "sample_rate", "n_samples", "sources"):
        if key not in meta:
            raise FrugalError(f"{path}: missing key {key!r}")
    return meta


def rest_sources(target: str, sources: Iterable[str]) -> Optional[List[str]]:
    """Stems whose sum is "the rest" for ``target``, or None if the song cannot serve it.

    ``accompaniment`` means everything but vocals (MUSDB18's definition): it is the
    complement of vocals when present; for drums and bass it contains the target, so
    the complement is then the sum of the other four-stem sources present.
    """
    present = set(sources)
    if target not in present:
        return None
    whole_rest = REST_NAMES.get(target)         # a stem that is all of the rest (accompaniment)
    if whole_rest in EXTRA_SOURCES and whole_rest in present:
        return [whole_rest]
    rest = [s for s in SOURCES if s != target and s in present]
    return rest or None


def source_signature(paths: Iterable[Path]) -> List[list]:
    """``[name, size, mtime_ns]`` per input file: a prepared track is stale when this changes."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append([str(p), int(st.st_size), int(st.st_mtime_ns)])
    return out


def track_is_valid(track_dir, signature: Optional[list] = None) -> bool:
    """True when a prepared track is complete and (if given) made from the same inputs."""
    try:
        meta = read_track_meta(track_dir)
    except FrugalError:
        return False
    if meta.get("layout_version") != LAYOUT_VERSION:
        return False
    if signature is not None and meta.get("inputs") != signature:
        return False
    if not (Path(track_dir) / "levels.npz").is_file():
        return False
    for src in meta["sources"] + ([MIXTURE] if meta.get("has_mixture") else []):
        try:
            info = sf.info(str(Path(track_dir) / f"{src}.wav"))
        except (sf.LibsndfileError, RuntimeError):
            return False
        if info.frames != meta["n_samples"] or info.samplerate != meta["sample_rate"]:
            return False
    return True


def level_hop(sample_rate: int) -> int:
    return max(1, int(round(LEVEL_SECONDS * sample_rate)))


def frame_levels_db(audio: np.ndarray, hop: int = 4410) -> np.ndarray:
    """Level (dBFS, RMS over channels) of consecutive ``hop``-sample frames of ``[C, T]`` audio."""
    n = audio.shape[-1]
    n_frames = -(-n // hop)
    power = np.empty(n_frames)
    step = max(1, (1 << 20) // hop)   # frames at a time: no float64 copy of the whole song
    for a in range(0, n_frames, step):
        b = min(n_frames, a + step)
        block = np.zeros((audio.shape[0], (b - a) * hop))
        part = audio[:, a * hop:min(n, b * hop)]
        block[:, :part.shape[-1]] = part
        power[a:b] = (block.reshape(audio.shape[0], b - a, hop) ** 2).mean(axis=(0, 2))
    if n % hop:  # the last frame is partial: average over its real samples only
        power[-1] *= hop / (n % hop)
    return (10 * np.log10(power + 1e-12)).astype(np.float32)


def write_track(track_dir, stems: Dict[str, np.ndarray], meta: dict,
                mixture: Optional[np.ndarray] = None, links: Optional[Dict[str, Path]] = None) -> dict:
    """Write a prepared track atomically: temp directory, then rename onto ``track_dir``.

    ``stems[source]`` and ``mixture`` are float ``[C, T]`` arrays of equal length, written
    as 16-bit WAV, or as float WAV if any of them would clip in 16 bit. ``links[name]`` is
    an input file already in the prepared format (16-bit stereo WAV at the right rate,
    same samples): it is hard-linked instead of copied when the file system allows it
    (MUSDB18-HQ then costs no extra disk). A full disk is a ``DiskFullError`` naming
    ``track_dir`` and the space the track needed; nothing of the new track is left, an old one
    is kept. Returns the ``track.json`` written.
    """
    track_dir = Path(track_dir)
    lengths = {s: a.shape[-1] for s, a in stems.items()}
    if mixture is not None:
        lengths[MIXTURE] = mixture.shape[-1]
    if len(set(lengths.values())) != 1:
        raise FrugalError(f"{track_dir.name}: stems of unequal length {lengths}")
    arrays = list(stems.values()) + ([mixture] if mixture is not None else [])
    peak = float(np.max([np.abs(a).max(initial=0.0) for a in arrays]))   # NaN anywhere: NaN
    if not np.isfinite(peak):  # the decoders check their files; this guards every other writer
        bad = [name for name, a in list(stems.items()) + [(MIXTURE, mixture)]
               if a is not None and not np.isfinite(a).all()]
        raise FrugalError(f"{track_dir.name}: {', '.join(bad)} contain(s) NaN or infinite samples")
    subtype = SUBTYPE if peak <= 32767 / 32768 else FLOAT_SUBTYPE
    meta = dict(meta)
    meta.update(n_samples=int(next(iter(lengths.values()))), sources=list(stems),
                has_mixture=mixture is not None, format=subtype, layout_version=LAYOUT_VERSION)
    # what the new files take (linked inputs take nothing): a full disk's message names it
    needed = sum(a.shape[0] * a.shape[-1] * (2 if subtype == SUBTYPE else 4) + 100
                 for name, a in list(stems.items()) + [(MIXTURE, mixture)]
                 if a is not None and not (subtype == SUBTYPE and links and name in links))
    needed += len(stems) * 4 * (-(-meta["n_samples"] // level_hop(int(meta["sample_rate"])))) + 4096
    with disk_full_errors(track_dir, needed):
        track_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{track_dir.name[:40]}-", dir=track_dir.parent))
        try:
            sr = int(meta["sample_rate"])
            levels, hop = {}, level_hop(sr)
            for name, audio in list(stems.items()) + ([(MIXTURE, mixture)] if mixture is not None else []):
                audio = np.asarray(audio, dtype=np.float32)
                if not (subtype == SUBTYPE and links and name in links and _try_link(links[name], tmp / f"{name}.wav")):
                    sf.write(str(tmp / f"{name}.wav"), audio.T, sr, subtype=subtype)
                if name != MIXTURE:
                    levels[name] = frame_levels_db(audio, hop)
            np.savez(tmp / "levels.npz", hop=np.int64(hop), **levels)
            write_json_atomic(tmp / "track.json", meta)
            if track_dir.exists():  # a stale or broken previous version: swap it out, then delete
                old = Path(tempfile.mkdtemp(prefix=f".old-{track_dir.name[:40]}-", dir=track_dir.parent))
                os.replace(track_dir, old / "track")
                os.replace(tmp, track_dir)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, track_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return meta


def _try_link(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except OSError:   # other file system, or links not supported: write a copy instead
        return False


def is_prepared_format(path, sample_rate: int, n_samples: int) -> bool:
    """True when ``path`` is already a 16-bit stereo WAV at ``sample_rate`` with ``n_samples``."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return False
    return (info.format == "WAV" and info.subtype == SUBTYPE and info.channels == CHANNELS
            and info.samplerate == sample_rate and info.frames == n_samples)


def clean_temporaries(folder) -> int:
    """Remove ``.tmp-*``/``.old-*`` directories left by an interrupted run; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    for p in folder.iterdir():
        if p.is_dir() and (p.name.startswith(".tmp-") or p.name.startswith(".old-")):
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n


@dataclass
class Levels:
    """Per-source level envelopes of a prepared track: dBFS of consecutive ``hop``-sample frames."""

    hop: int
    db: Dict[str, np.ndarray]

    def active_fraction(self, source: str, start: int, length: int, silence_db: float) -> float:
        """Share of the frames of ``[start, start+length)`` where ``source`` is above ``silence_db``.

        Frames past the end of the track (zero padding) count as silent.
        """
        a = start // self.hop
        b = max(a + 1, -(-(start + length) // self.hop))
        frames = self.db[source][a:b]
        return float((frames > silence_db).sum()) / (b - a)


def read_levels(track_dir) -> Levels:
    """The ``levels.npz`` of a prepared track."""
    path = Path(track_dir) / "levels.npz"
    try:
        with np.load(path) as z:
            return Levels(int(z["hop"]), {k: z[k] for k in z.files if k != "hop"})
    except (OSError, ValueError, KeyError) as err:
        raise FrugalError(f"{path}: unreadable ({err}); re-run the preparation stage") from None
