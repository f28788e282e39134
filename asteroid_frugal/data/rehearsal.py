"""A MUSDB18-shaped rehearsal set: the paper's data scale, before (or without) the real download.

    make_rehearsal(conf, "/data/rehearsal")     # 150 songs, ~10 h, .stem.mp4 (local/make_rehearsal.py)

Writes ``rehearsal.songs`` songs laid out as MUSDB18: ``train/<song>.stem.mp4`` (two thirds of
the songs, among them the first of musdb's own validation track names, in the share MUSDB18 has,
14 of 100, so that ``musdb.DB(split="valid")`` finds them with musdb's own setup file) and
``test/<song>.stem.mp4`` (one third). Each ``.stem.mp4`` holds five AAC streams in MUSDB18's
order (musdb's ``stem_ids``: mixture, drums, bass, other, vocals), stereo, 44.1 kHz, as
``stempeg.write_stems`` writes them (the same ffmpeg filter graph and stream titles; ffmpeg is
fed directly, block by block, which skips stempeg's temporary float WAV). ``rehearsal.format:
hq`` writes the MUSDB18-HQ layout instead (``<song>/mixture.wav`` and one 16-bit WAV per stem).

Song lengths follow MUSDB18's spread: the quantiles of a triangular distribution between
``min_seconds`` and ``max_seconds`` (mode ``mode_seconds``; about 2 to 7 minutes, ~10 hours for
150 songs), in a seeded order so that every split gets short and long songs; ``length_scale``
shrinks them all (tests). The audio is cheap and only measures the pipeline: a pool of
``pool_songs`` songs of the built-in ``synth`` corpus (:mod:`.synth_corpus`, train songs of
seed ``rehearsal.seed``), tiled: song ``i`` plays the pool in its own seeded order, from its own
offset, with its own gain per stem. Nothing is held whole in memory (blocks of ``block_seconds``),
songs are written in parallel processes (``jobs``), each under a temporary name then renamed
(complete or absent), and a re-run skips the songs already there (resumable). ``subset: N``
writes only N songs of the full plan, each split's longest first (a rehearsal of the rehearsal:
the same files a later complete run keeps).
"""
import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator, List, Tuple

import numpy as np
import soundfile as sf
import yaml
from tqdm import tqdm

from ..audio import require_ffmpeg
from ..utils import FrugalError, disk_full_errors, read_json, write_json_atomic
from .synth_corpus import generate_song
from .types import MIXTURE, SOURCES

log = logging.getLogger("asteroid_frugal")

FORMATS = ("stem", "hq")
RECORD = "rehearsal.json"          # the parameters and the song list, at the root
POOL_DIR = ".pool"                 # the tiled pool (int16 .npy), removed once every song is written
SAMPLE_RATE = 44100                # MUSDB18's
STEM_SUFFIX = ".stem.mp4"


@dataclass
class RehearsalParams:
    """The ``rehearsal`` section of conf.yml, checked."""

    songs: int
    min_seconds: float
    mode_seconds: float
    max_seconds: float
    length_scale: float
    format: str
    bitrate: str
    aac_coder: str
    pool_songs: int
    pool_seconds: float
    block_seconds: float
    seed: int
    jobs: int
    subset: int          # 0: every song

    @classmethod
    def from_conf(cls, conf) -> "RehearsalParams":
        s = conf["rehearsal"]
        p = cls(songs=int(s["songs"]), min_seconds=float(s["min_seconds"]), mode_seconds=float(s["mode_seconds"]),
                max_seconds=float(s["max_seconds"]), length_scale=float(s["length_scale"]), format=str(s["format"]),
                bitrate=str(s["bitrate"]), aac_coder=str(s["aac_coder"]), pool_songs=int(s["pool_songs"]),
                pool_seconds=float(s["pool_seconds"]), block_seconds=float(s["block_seconds"]),
                seed=int(s["seed"]), jobs=int(s["jobs"]), subset=int(s["subset"]))
        p.validate()
        return p

    def validate(self) -> None:
        if self.songs < 3:
            raise FrugalError(f"rehearsal.songs={self.songs}: at least 3 (a train, a validation and a test song)")
        if not 0 < self.min_seconds <= self.mode_seconds <= self.max_seconds:
            raise FrugalError("rehearsal: expected 0 < min_seconds <= mode_seconds <= max_seconds")
        if self.length_scale <= 0 or self.block_seconds <= 0 or self.pool_seconds < 4:
            raise FrugalError("rehearsal: length_scale and block_seconds must be > 0, pool_seconds >= 4")
        if self.format not in FORMATS:
            raise FrugalError(f"rehearsal.format={self.format!r}: expected one of {', '.join(FORMATS)}")
        if self.pool_songs < 1 or self.jobs < 1:
            raise FrugalError("rehearsal: pool_songs and jobs must be >= 1")
        if self.subset and not 3 <= self.subset <= self.songs:
            raise FrugalError(f"rehearsal.subset={self.subset}: expected 0 (all) or 3 to rehearsal.songs ({self.songs})")

    def content(self) -> dict:
        """What the files depend on (``jobs`` and ``block_seconds`` do not change a sample)."""
        return {k: v for k, v in asdict(self).items() if k not in ("jobs", "block_seconds", "subset")}


@dataclass
class SongPlan:
    name: str
    subset: str          # train | test (folder); validation songs are in train/ as in MUSDB18
    split: str           # train | valid | test (musdb's split)
    n_samples: int
    index: int           # seeds the song's tiling and gains

    def path(self, root: Path, fmt: str) -> Path:
        return root / self.subset / (self.name + (STEM_SUFFIX if fmt == "stem" else ""))


def musdb_setup() -> dict:
    """musdb's own setup file (``musdb/configs/mus.yaml``): validation tracks and stream order."""
    import musdb

    return yaml.safe_load((Path(musdb.__path__[0]) / "configs" / "mus.yaml").read_text())


def stream_order() -> List[str]:
    """The names of a ``.stem.mp4``'s streams in order (musdb's ``stem_ids``)."""
    ids = musdb_setup()["stem_ids"]
    order = sorted(ids, key=ids.get)
    if sorted(order) != sorted((MIXTURE,) + SOURCES):
        raise FrugalError(f"musdb's stem_ids {ids} do not name the mixture and the four sources")
    return order


def split_counts(n_songs: int) -> Tuple[int, int, int]:
    """``(train, valid, test)`` songs in MUSDB18's shares (86 / 14 / 50 of 150), at least one each."""
    n_test = min(n_songs - 2, max(1, round(n_songs * 50 / 150)))
    n_in_train = n_songs - n_test
    n_valid = min(n_in_train - 1, max(1, round(n_in_train * 14 / 100)))
    return n_in_train - n_valid, n_valid, n_test


def song_lengths(params: RehearsalParams) -> List[float]:
    """Seconds of each song: triangular quantiles, in a seeded order, times ``length_scale``."""
    a, c, b = params.min_seconds, params.mode_seconds, params.max_seconds
    out = []
    for k in range(params.songs):
        q = (k + 0.5) / params.songs
        if b == a:
            x = a
        elif q < (c - a) / (b - a):
            x = a + math.sqrt(q * (b - a) * (c - a))
        else:
            x = b - math.sqrt((1 - q) * (b - a) * (b - c))
        out.append(x * params.length_scale)
    order = np.random.default_rng([params.seed, 1]).permutation(params.songs)
    return [out[i] for i in order]


def plan(params: RehearsalParams) -> List[SongPlan]:
    """Every song: name, folder, musdb split and length (samples)."""
    n_train, n_valid, n_test = split_counts(params.songs)
    valid_names = musdb_setup()["validation_tracks"]
    if n_valid > len(valid_names):
        raise FrugalError(f"rehearsal.songs={params.songs}: needs {n_valid} validation songs, "
                          f"musdb names {len(valid_names)}")
    names = ([("train", "train", f"Rehearsal - Train {i + 1:03d}") for i in range(n_train)]
             + [("train", "valid", valid_names[i]) for i in range(n_valid)]
             + [("test", "test", f"Rehearsal - Test {i + 1:03d}") for i in range(n_test)])
    lengths = song_lengths(params)
    return [SongPlan(name, subset, split, max(1, int(round(sec * SAMPLE_RATE))), i)
            for i, ((subset, split, name), sec) in enumerate(zip(names, lengths))]


def subset_of(songs: List[SongPlan], n: int) -> List[SongPlan]:
    """``n`` songs of the plan, each split in MUSDB18's share (:func:`split_counts`), spread over
    that split's lengths from its longest down (one song: the longest; two: longest and shortest)."""
    out = []
    for split, k in zip(("train", "valid", "test"), split_counts(n)):
        ranked = sorted((s for s in songs if s.split == split), key=lambda s: s.n_samples)
        picks = dict.fromkeys(int(round(i)) for i in np.linspace(len(ranked) - 1, 0, k)) if k else {}
        out += [ranked[i] for i in picks]
    return out


# ------------------------------------------------------------------ the pool
def pool_seconds(params: RehearsalParams) -> float:
    return max(4.0, params.pool_seconds * min(1.0, params.length_scale))


def make_pool(root: Path, params: RehearsalParams) -> List[Path]:
    """The pool songs as int16 ``[source, channel, T]`` arrays (``SOURCES`` order) under ``root/.pool``."""
    folder = root / POOL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(min(params.pool_songs, params.songs)):
        path = folder / f"{i}.npy"
        if not path.is_file():
            stems = generate_song(params.seed, "train", i, pool_seconds(params), SAMPLE_RATE)
            audio = np.stack([stems[s] for s in SOURCES])
            tmp = folder / f".tmp-{i}.npy"
            np.save(tmp, np.round(np.clip(audio, -1, 32767 / 32768) * 32768).astype(np.int16))
            os.replace(tmp, path)
        paths.append(path)
    return paths


def song_blocks(pool: List[np.ndarray], song: SongPlan, seed: int, block: int) -> Iterator[np.ndarray]:
    """The song as float32 ``[source, channel, b]`` blocks (``SOURCES`` order): the pool tiled
    in the song's own order, from its own offset, each stem at its own gain."""
    rng = np.random.default_rng([seed, 2, song.index])
    order = rng.permutation(len(pool))
    period = min(p.shape[-1] for p in pool)
    offset = int(rng.integers(period))
    gains = rng.uniform(0.5, 1.0, size=(len(SOURCES), 1, 1)).astype(np.float32) / 32768
    for start in range(0, song.n_samples, block):
        n = min(block, song.n_samples - start)
        out = np.empty((len(SOURCES), 2, n), dtype=np.float32)
        done = 0
        while done < n:
            t = offset + start + done
            tile, within = divmod(t, period)
            take = min(n - done, period - within)
            out[:, :, done:done + take] = pool[order[tile % len(pool)]][:, :, within:within + take]
            done += take
        yield out * gains


def _with_mixture(stems: np.ndarray, order: List[str]) -> np.ndarray:
    """``[stream, channel, b]`` in stream ``order``: the mixture (sum of the stems) and the stems."""
    by_name = {s: stems[i] for i, s in enumerate(SOURCES)}
    by_name[MIXTURE] = np.clip(stems.sum(axis=0), -1, 32767 / 32768)
    return np.stack([by_name[name] for name in order])


# ------------------------------------------------------------------ writers
def ffmpeg_stem_command(out: Path, names: List[str], bitrate: str, aac_coder: str) -> List[str]:
    """ffmpeg reading interleaved 16-bit ``2 x len(names)`` channels on stdin and writing one
    stereo AAC stream per name (stempeg's ``StreamsWriter`` graph and stream titles)."""
    graph = ";".join(f"[a:0]pan=stereo| c0=c{2 * i} | c1=c{2 * i + 1}[a{i}]" for i in range(len(names)))
    cmd = ["ffmpeg", "-y", "-loglevel", "error", "-f", "s16le", "-ar", str(SAMPLE_RATE),
           "-ac", str(2 * len(names)), "-i", "pipe:0", "-filter_complex", graph]
    for i, name in enumerate(names):
        cmd += ["-map", f"[a{i}]", f"-metadata:s:a:{i}", f"title={name}", f"-metadata:s:a:{i}", f"handler={name}",
                f"-metadata:s:a:{i}", f"handler_name={name}"]
    return cmd + ["-vn", "-c:a", "aac", "-aac_coder", aac_coder, "-b:a", bitrate, "-ar", str(SAMPLE_RATE),
                  "-f", "mp4", str(out)]


def _write_stem_file(path: Path, blocks: Iterator[np.ndarray], params: RehearsalParams, order: List[str]) -> None:
    tmp = path.parent / f".tmp-{path.name}"
    proc = subprocess.Popen(ffmpeg_stem_command(tmp, order, params.bitrate, params.aac_coder),
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        try:
            for stems in blocks:
                streams = _with_mixture(stems, order)            # [stream, channel, b]
                pcm = np.round(streams * 32767).astype("<i2")
                proc.stdin.write(pcm.transpose(2, 0, 1).tobytes())   # interleaved: sample, stream, channel
            proc.stdin.close()
        except BrokenPipeError:
            pass
        err = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            raise OSError(f"ffmpeg failed writing {path.name}: {err.splitlines()[-1] if err else proc.returncode}")
        os.replace(tmp, path)
    except BaseException:
        proc.kill()
        proc.wait()
        tmp.unlink(missing_ok=True)
        raise


def _write_hq_folder(path: Path, blocks: Iterator[np.ndarray], order: List[str]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name[:40]}-", dir=path.parent))
    try:
        files = {name: sf.SoundFile(str(tmp / f"{name}.wav"), "w", SAMPLE_RATE, 2, "PCM_16") for name in order}
        try:
            for stems in blocks:
                for name, audio in zip(order, _with_mixture(stems, order)):
                    files[name].write(audio.T)
        finally:
            for f in files.values():
                f.close()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_song(job) -> Tuple[str, float]:
    """Write one song (a worker's task): ``(name, seconds taken)``."""
    root, song, params, pool_paths = job
    start = time.perf_counter()
    pool = [np.load(p, mmap_mode="r") for p in pool_paths]
    blocks = song_blocks(pool, song, params.seed, max(1, int(params.block_seconds * SAMPLE_RATE)))
    path = song.path(root, params.format)
    order = stream_order()
    per_sample = 5 * 320e3 / 8 / SAMPLE_RATE if params.format == "stem" else 5 * 2 * 2   # AAC (<= 320k) or 16-bit
    with disk_full_errors(path, int(song.n_samples * per_sample) + 4096):
        path.parent.mkdir(parents=True, exist_ok=True)
        if params.format == "stem":
            _write_stem_file(path, blocks, params, order)
        else:
            _write_hq_folder(path, blocks, order)
    return song.name, time.perf_counter() - start


# ------------------------------------------------------------------ the set
def _check_root(root: Path, params: RehearsalParams) -> None:
    record = root / RECORD
    if record.is_file():
        old = read_json(record).get("content")
        if old != params.content():
            changed = sorted(k for k in params.content() if (old or {}).get(k) != params.content()[k])
            raise FrugalError(f"{root}: holds a rehearsal set made with other settings ({', '.join(changed)}); "
                              "choose another folder or delete it")
    elif root.exists() and any(root.iterdir()):
        raise FrugalError(f"{root}: exists and holds no {RECORD} (not a rehearsal set); choose an empty folder")


def clean_partial(root: Path) -> int:
    """Remove the temporary files and folders an interrupted run left; returns how many."""
    n = 0
    for subset in ("train", "test"):
        folder = root / subset
        if folder.is_dir():
            for p in folder.iterdir():
                if p.name.startswith(".tmp-"):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
                    n += 1
    return n


def is_done(path: Path, fmt: str) -> bool:
    return path.is_file() if fmt == "stem" else (path / f"{MIXTURE}.wav").is_file()


def make_rehearsal(conf, root, progress: bool = True) -> dict:
    """Write (or complete) the rehearsal set under ``root``; returns its summary (also in
    ``root/rehearsal.json``): songs, hours, and the wall seconds of this run."""
    params = RehearsalParams.from_conf(conf)
    root = Path(root).expanduser()
    if params.format == "stem":
        require_ffmpeg()
    _check_root(root, params)
    songs = plan(params)
    summary = {"content": params.content(), "format": params.format,
               "layout": "MUSDB18 (.stem.mp4)" if params.format == "stem" else "MUSDB18-HQ (wav folders)",
               "songs": len(songs), "hours": sum(s.n_samples for s in songs) / SAMPLE_RATE / 3600,
               "splits": dict(zip(("train", "valid", "test"), split_counts(params.songs))),
               "tracks": [{"name": s.name, "subset": s.subset, "split": s.split,
                           "seconds": round(s.n_samples / SAMPLE_RATE, 3)} for s in songs]}
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / RECORD, summary)
    if clean_partial(root):
        log.info("%s: removed the partial files of an interrupted run", root)
    wanted = subset_of(songs, params.subset) if params.subset else songs
    todo = [s for s in wanted if not is_done(s.path(root, params.format), params.format)]
    started = time.perf_counter()
    if todo:
        log.info("rehearsal set %s: %d of %d songs to write (%.2f h of %.2f h), %d job(s)", root, len(todo),
                 len(wanted), sum(s.n_samples for s in todo) / SAMPLE_RATE / 3600, summary["hours"], params.jobs)
        pool_paths = make_pool(root, params)
        jobs = [(root, s, params, pool_paths) for s in sorted(todo, key=lambda s: -s.n_samples)]  # longest first
        seconds = {s.name: -(-s.n_samples // SAMPLE_RATE) for s in todo}   # whole seconds of audio, per song
        bar = tqdm(total=sum(seconds.values()), unit="s", unit_scale=True, disable=not progress,
                   desc="rehearsal songs (seconds of audio)")
        if params.jobs > 1 and len(todo) > 1:
            # fork: the workers need numpy and ffmpeg only; spawned ones would import torch again (~0.3 GB each)
            with ProcessPoolExecutor(min(params.jobs, len(todo)), mp_context=get_context("fork")) as pool:
                for name, _ in pool.map(write_song, jobs):
                    bar.update(seconds[name])
        else:
            for job in jobs:
                name, _ = write_song(job)
                bar.update(seconds[name])
        bar.close()
    if len(wanted) == len(songs):
        shutil.rmtree(root / POOL_DIR, ignore_errors=True)   # kept while only a subset is written
    summary["subset"] = [s.name for s in wanted] if params.subset else None
    summary["seconds_this_run"] = round(time.perf_counter() - started, 1)
    summary["written_this_run"] = len(todo)
    log.info("rehearsal set %s: %d songs (%.2f h of audio), %d written in %.0f s", root, len(songs),
             summary["hours"], len(todo), summary["seconds_this_run"])
    return summary
