"""Turn songs into stems with trained target-vs-rest models: files in, stem files out.

    separate_files(conf, ["song.mp3", "album/"], ["vocals=exp/vocals"], "stems")

:func:`separate_files` is the library side of the separation command (its command line:
``asteroid-frugal-separate``, ``asteroid_frugal/cli/separate.py``); songs in memory are
:func:`asteroid_frugal.inference.separate_stems`'s.

One model gives its target and the rest of the mix (``accompaniment`` for vocals,
``no_drums``, ``no_bass``). Several models give each target, plus ``other`` (the
mixture minus all targets; named ``rest`` unless the set is vocals+drums+bass) and
``accompaniment`` when vocals are among them (the vocals model's rest, as in the paper).

Rescaling: SI-SNR training leaves a model's output gain free, so each model's two
outputs are multiplied by the single least-squares gain ``a`` that makes
``a * (target + rest)`` closest to the mixture (masks sum to one, so target + rest
is the model's reconstruction of the mixture).

Files are read at any sample rate and channel count 1 or 2, resampled to the
model's rate, separated, resampled back: every stem has the input's rate, channels
and exact length. Outputs: ``OUT/<song>/<stem>.<ext>`` (songs found in a folder keep
their sub-folders; a MUSDB18-HQ-style ``<song>/mixture.wav`` is named after its folder, and the
reference stems beside it are not separated). A song's stems are written to a temporary folder
and published together with ``separation.json``, the record of the models and settings that
made them: a song counts as done only with that record, so an interrupted song is separated
again, and stems made by other models or settings are refused (kept) unless ``--overwrite``.

Failures are one ``error:`` line per song, and the other songs go on: a file that cannot be read
(or holds NaN, inf, or more than two channels); a model whose output holds NaN or inf (named; the
song is not separated); a disk too full for the song's stems (checked before separating a wav
song, and when a write fails: the output folder, the space the stems need and the space free).
A silent song (every sample zero) gets silent stems and a warning. Extreme but finite levels
are separated exactly (:func:`asteroid_frugal.inference.separate_long` normalises them).
"""
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .audio import AUDIO_EXTENSIONS, read_audio, write_audio
from .data.types import EXTRA_SOURCES, MIXTURE, stem_names
from .inference import (PRECISIONS, NonFiniteOutputError, TargetModel, choose_precision, chunking,
                        load_target_models, resolve_device, separate_stems)
from .streaming import stream_stems, streaming_options
from .utils import DiskFullError, FrugalError, disk_full_errors, disk_full_message, free_bytes, read_json, \
    write_json_atomic

log = logging.getLogger("asteroid_frugal.separate")

SUBTYPES = {"wav": ("PCM_16", "PCM_24", "FLOAT"), "flac": ("PCM_16", "PCM_24")}
SAMPLE_BYTES = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}
MANIFEST = "separation.json"      # in each song folder: what made its stems (written last)
PARTIAL = ".partial-"             # temporary song folders: OUT/.<song>.partial-XXXX


# ----------------------------------------------------------------------- files
def find_inputs(inputs: Sequence[str], out_dir: Path) -> List[Tuple[Path, Path]]:
    """``(audio file, output folder relative to OUT)`` for each file or folder given.

    Folders are searched recursively for audio extensions; the output folder is
    skipped so that earlier stems are not separated again, and so are the reference
    stems (vocals.wav, ...) that sit beside a ``mixture`` file (MUSDB18-HQ layout).
    """
    found: List[Tuple[Path, Path]] = []
    out_resolved = out_dir.resolve()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                           and not p.name.startswith(".") and out_resolved not in p.resolve().parents)
            mixture_dirs = {p.parent for p in files if _is_mixture(p)}
            beside = [p for p in files if p.parent in mixture_dirs and _bare_name(p) in EXTRA_SOURCES]
            if beside:
                log.info("%s: %d reference stem file(s) beside mixture files not separated (e.g. %s)",
                         path, len(beside), beside[0])
            files = [p for p in files if p not in set(beside)]
            if not files:
                log.warning("%s: no audio files (%s) in this folder", path, " ".join(AUDIO_EXTENSIONS))
            found += [(p, song_name(p.relative_to(path), path.resolve().name)) for p in files]
        else:
            found.append((path, song_name(Path(path.name), path.resolve().parent.name)))
    return found


def _bare_name(path: Path) -> str:
    name = path.name[: -len(path.suffix)] if path.suffix else path.name
    return name[:-5] if name.lower().endswith(".stem") else name


def _is_mixture(path: Path) -> bool:
    return _bare_name(path).lower() == MIXTURE     # MUSDB18-HQ and most stem datasets: <song>/mixture.wav


def song_name(rel: Path, folder: str = "") -> Path:
    """``live/song.flac`` -> ``live/song``; MUSDB18's ``song.stem.mp4`` -> ``song``;
    MUSDB18-HQ's ``song/mixture.wav`` -> ``song`` (``folder``: the name of the folder the
    file is in, for a ``mixture`` file given on its own or at the top of a given folder)."""
    if _is_mixture(rel):
        if rel.parent != Path("."):
            return rel.parent
        if folder:
            return Path(folder)
    name = _bare_name(rel)
    return rel.with_name(name or rel.name)


def load_song(path: Path) -> Tuple[np.ndarray, int]:
    """Read a song for separation; empty, non-finite or >2-channel files are errors (a silent
    one is not: :func:`separate_song` gives it silent stems)."""
    audio, sr = read_audio(path)
    if audio.shape[-1] == 0:
        raise FrugalError(f"{path}: empty audio file (no samples)")
    if audio.shape[0] not in (1, 2):
        raise FrugalError(f"{path}: has {audio.shape[0]} channels, expected mono or stereo")
    if not np.isfinite(audio).all():
        raise FrugalError(f"{path}: contains NaN or infinite samples")
    return audio, sr


def stems_bytes(audio: np.ndarray, n_stems: int, subtype: str) -> int:
    """The space a song's stems take as uncompressed audio (samples x channels x bytes per
    sample x stems): what a wav output needs, at most what a flac one needs."""
    return int(audio.shape[-1]) * int(audio.shape[0]) * SAMPLE_BYTES[subtype] * int(n_stems)


def write_stems(stems: Dict[str, np.ndarray], song_dir: Path, sample_rate: int, ext: str,
                subtype: str, shown_dir: Optional[Path] = None) -> List[Path]:
    """Write each stem atomically as ``song_dir/<stem>.<ext>``; warn about clipped samples
    (naming ``shown_dir``, the folder the stems will be published to, when given)."""
    written = []
    for name, audio in stems.items():
        if subtype != "FLOAT":
            clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
            if clipped:
                log.warning("%s/%s.%s: %d samples beyond full scale are clipped (use --subtype FLOAT "
                            "with wav to keep them)", shown_dir or song_dir, name, ext, clipped)
        path = song_dir / f"{name}.{ext}"
        write_audio(path, audio, sample_rate, subtype=subtype)
        written.append(path)
    return written


def file_digest(path) -> str:
    """SHA-256 of a file (identifies a model in the separation record)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def separation_record(models: Sequence[TargetModel], names: Sequence[str], settings: Dict) -> Dict:
    """What makes a song's stems what they are: models (by content), stems and settings."""
    return {"models": [{"target": m.target, "file": str(Path(m.path).resolve()), "sha256": file_digest(m.path)}
                       for m in models],
            "stems": list(names), "settings": dict(settings)}


def _same_models(a: Dict, b: Dict) -> bool:
    key = [(m.get("target"), m.get("sha256")) for m in a.get("models", [])]
    return key == [(m.get("target"), m.get("sha256")) for m in b.get("models", [])]


def song_state(song_dir: Path, record: Dict, ext: str) -> Tuple[str, str]:
    """``("done" | "absent" | "incomplete" | "foreign", detail)`` of a song's output folder.

    done: its record matches ``record`` (same models, stems, settings and input) and every
    stem exists; foreign: its record names other models or settings (not ours to replace);
    incomplete: stems without a record (an interrupted or older run) or a stem missing.
    """
    stems = [song_dir / f"{n}.{ext}" for n in record["stems"]]
    manifest = song_dir / MANIFEST
    if not manifest.is_file():
        present = [p for p in stems if p.exists()]
        return ("incomplete", f"{len(present)} stem(s) without {MANIFEST}") if present else ("absent", "")
    try:
        old = read_json(manifest)
    except FrugalError as err:
        return "incomplete", str(err)
    if not isinstance(old, dict):
        return "incomplete", f"{manifest}: not a separation record"
    differ = [k for k in ("stems", "settings", "input") if old.get(k) != record.get(k)]
    if not _same_models(old, record):
        differ.insert(0, "models")
    if differ:
        return "foreign", ", ".join(differ)
    missing = [p.name for p in stems if not p.exists()]
    return ("incomplete", f"missing {', '.join(missing)}") if missing else ("done", "")


def remove_partials(song_dir: Path) -> None:
    """Remove temporary folders an interrupted run (SIGKILL, power loss) left for this song."""
    if song_dir.parent.is_dir():
        for tmp in song_dir.parent.glob(f".{song_dir.name}{PARTIAL}*"):
            shutil.rmtree(tmp, ignore_errors=True)


def publish_song(tmp_dir: Path, song_dir: Path, record: Dict, ext: str) -> None:
    """Move the stems written in ``tmp_dir`` into ``song_dir`` and write its record last.

    The old record goes first, so no moment exists where a record vouches for a mix of old
    and new stems; stems of an old record that the new one does not make are removed.
    """
    song_dir.mkdir(parents=True, exist_ok=True)
    manifest = song_dir / MANIFEST
    old_stems: List[str] = []
    if manifest.is_file():
        try:
            old_stems = list(read_json(manifest).get("stems") or [])
        except (FrugalError, AttributeError):
            pass
        manifest.unlink()
    for name in record["stems"]:
        os.replace(tmp_dir / f"{name}.{ext}", song_dir / f"{name}.{ext}")
    for name in set(old_stems) - set(record["stems"]):
        (song_dir / f"{name}.{ext}").unlink(missing_ok=True)
    write_json_atomic(manifest, record)


def check_writable(out_dir: Path) -> None:
    """Fail before any work when ``--out`` cannot be created or written (folders it had to create
    for the probe are removed again: a run that fails later leaves no empty output folder)."""
    first_new = next((p for p in reversed([out_dir, *out_dir.parents]) if not p.exists()), None)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise FrugalError(f"{out_dir}: the output folder cannot be written ({err.strerror or err}); "
                          f"choose another --out") from None
    finally:
        if first_new is not None:
            shutil.rmtree(first_new, ignore_errors=True)


# ------------------------------------------------------------------- the files
def output_settings(conf: Dict) -> Tuple[str, str, str]:
    """``(format, subtype, precision)`` of the config's ``separate`` section, each checked
    (one line naming the key and the choices)."""
    sec = conf["separate"]
    fmt, subtype, precision = sec["format"], sec["subtype"], str(sec["precision"])
    if fmt not in SUBTYPES:
        raise FrugalError(f"separate.format: expected {' or '.join(SUBTYPES)}; got {fmt!r}")
    if subtype not in SUBTYPES[fmt]:
        raise FrugalError(f"separate.subtype {subtype} is not available for {fmt} "
                          f"(choose {' or '.join(SUBTYPES[fmt])})")
    if precision not in (*PRECISIONS, "auto"):
        raise FrugalError(f"separate.precision: expected auto, {', '.join(PRECISIONS)}; got {precision!r}")
    return fmt, subtype, precision


@dataclass
class SeparationJob:
    """What every song of one run is separated with (made by :func:`separate_files`)."""

    conf: Dict
    models: List[TargetModel]
    record: Dict              # the run's separation record (each song adds its input)
    fmt: str
    subtype: str
    overwrite: bool
    stream_opts: Optional[Dict] = None   # --stream: block and weight precision


def separate_files(conf: Dict, inputs: Sequence[str], model_specs: Sequence[str], out,
                   overwrite: bool = False, stream: bool = False) -> Dict[str, Any]:
    """Separate every input (files, or folders searched recursively) into ``OUT/<song>/<stem>.<ext>``.

    ``model_specs``: ``[target=]path`` of each model (:func:`~asteroid_frugal.inference.load_target_models`).
    Settings come from ``conf``: ``separate`` (format, subtype, precision), ``evaluation``
    (device, chunking), ``streaming`` (with ``stream``: one causal model, block by block).
    Songs already separated with the same models and settings are skipped; stems made by others
    are refused unless ``overwrite``. A file that fails is reported as one ``error:`` line on
    stderr and the others go on. Returns ``{"files", "done", "skipped", "failed": [paths]}``.
    """
    fmt, subtype, precision = output_settings(conf)
    chunks = None if stream else chunking(conf)   # checked before any file is touched
    device = resolve_device(conf["evaluation"]["device"])
    out_dir = Path(out)
    check_writable(out_dir)
    models = load_target_models(model_specs, device)
    songs = find_inputs(inputs, out_dir)
    names = stem_names([m.target for m in models])
    log.info("%d file(s); models: %s; stems: %s; device %s", len(songs),
             ", ".join(f"{m.target}={m.path}" for m in models), ", ".join(names), device)
    stream_opts = streaming_options(models, conf) if stream else None  # the live path (streaming.py)
    if stream_opts:
        settings = dict(stream_opts, stream=True, format=fmt, subtype=subtype)
    else:
        settings = dict(chunks, precision=precision, format=fmt, subtype=subtype)
    job = SeparationJob(conf, models, separation_record(models, names, settings), fmt, subtype, overwrite,
                        stream_opts)
    failed, done, skipped = [], 0, 0
    claimed: Dict[Path, Path] = {}
    for index, (path, rel) in enumerate(songs, 1):
        song_dir = out_dir / rel
        try:
            if song_dir in claimed:
                raise FrugalError(f"{path}: same output folder {song_dir} as {claimed[song_dir]}; rename one")
            claimed[song_dir] = path
            if separate_song(job, path, song_dir, f"[{index}/{len(songs)}] {path}"):
                done += 1
            else:
                skipped += 1
        except FrugalError as err:
            print(f"error: {err}", file=sys.stderr)
            failed.append(path)
        except (RuntimeError, ValueError, OSError, MemoryError) as err:  # e.g. out of memory, a broken decoder
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(f"error: {path}: {first[:300]}", file=sys.stderr)
            failed.append(path)
    log.info("separated %d file(s) into %s, %d skipped (already separated), %d failed",
             done, out_dir, skipped, len(failed))
    return dict(files=len(songs), done=done, skipped=skipped, failed=failed)


def separate_song(job: SeparationJob, path: Path, song_dir: Path, desc: str) -> bool:
    """Separate one file into ``song_dir`` (complete or absent: written to a temporary folder,
    then published with its record); False when it was already separated (skipped)."""
    remove_partials(song_dir)
    record = dict(job.record, input={"file": path.name, "bytes": path.stat().st_size}
                  if path.is_file() else {"file": path.name})
    state, detail = song_state(song_dir, record, job.fmt)
    if state == "done" and not job.overwrite:
        log.info("%s: already separated into %s, skipped (use --overwrite)", desc, song_dir)
        return False
    if state == "foreign" and not job.overwrite:
        raise FrugalError(f"{song_dir}: holds stems made with other {detail} (see its {MANIFEST}); "
                          f"kept: use --overwrite to replace them, or another --out")
    if state == "incomplete":
        log.info("%s: %s holds an incomplete separation (%s): separating again", desc, song_dir, detail)
    audio, sr = load_song(path)
    log.info("%s: %.1f s, %d Hz, %d channel(s)", desc, audio.shape[-1] / sr, sr, audio.shape[0])
    names = record["stems"]
    needed = stems_bytes(audio, len(names), job.subtype)
    if job.fmt == "wav" and free_bytes(song_dir) < needed:   # before spending the time to separate it
        raise DiskFullError(disk_full_message(song_dir, needed))
    try:
        stems = separate_audio(job, audio, sr, desc)
    except NonFiniteOutputError as err:
        raise FrugalError(f"{path}: {err}; the song is not separated") from None
    del audio
    tmp_dir = None
    with disk_full_errors(song_dir, needed):   # its message counts the free space after the clean-up below
        try:  # every exit path, Ctrl-C included; a SIGKILL's leftovers go at the next run
            song_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp_dir = Path(tempfile.mkdtemp(prefix=f".{song_dir.name}{PARTIAL}", dir=song_dir.parent))
            write_stems(stems, tmp_dir, sr, job.fmt, job.subtype, shown_dir=song_dir)
            del stems
            publish_song(tmp_dir, song_dir, record, job.fmt)
        finally:
            if tmp_dir is not None:
                shutil.rmtree(tmp_dir, ignore_errors=True)
    return True


def separate_audio(job: SeparationJob, audio: np.ndarray, sr: int, desc: str) -> Dict[str, np.ndarray]:
    """One song's stems: the offline path (precision chosen per song) or, with ``--stream``, the
    live one; a silent song gets silent stems (and a warning) without running a model."""
    if not np.any(audio):
        log.warning("%s: silent (every sample is zero): its stems are silent", desc)
        return {name: np.zeros_like(audio, dtype=np.float32) for name in job.record["stems"]}
    if job.stream_opts:
        return stream_stems(job.models[0], audio, sr, desc=desc, **job.stream_opts)
    sec, chunks = job.conf["separate"], chunking(job.conf)
    precision, why = choose_precision(job.models, audio, sr, sec["precision"], sec["min_snr_db"],
                                      sec["probe_seconds"], chunks=chunks)
    log.info("%s: precision %s (%s)", desc, precision, why)
    return separate_stems(job.models, audio, sr, progress=True, desc=desc, precision=precision, **chunks)
