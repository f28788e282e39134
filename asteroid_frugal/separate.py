"""Turn songs into stems with trained target-vs-rest models: files in, stem files out.

    separate_files(conf, ["song.mp3", "album/"], ["vocals=exp/vocals"], "stems")

:func:`separate_files` is the library side of the separation command (its command line:
``asteroid-frugal-separate``, ``asteroid_frugal/cli/separate.py``); songs in memory are
:func:`asteroid_frugal.inference.separate_stems`'s.

One model gives its target and the rest of the mix (``accompaniment`` for vocals,
``no_drums``, ``no_bass``). Several models give each target, plus ``other`` (the
mixture minus all targets; named ``rest`` unless the set is vocals+drums+bass) and
``accompaniment`` when vocals are among them (the vocals model's rest, as in the paper):
:func:`asteroid_frugal.inference.combine_stems` defines each. ``separate.stems`` keeps only
some; a model none of whose outputs they need is not run.

Rescaling: SI-SNR training leaves a model's output gain free, so each model's two
outputs are multiplied by the single least-squares gain ``a`` that makes
``a * (target + rest)`` closest to the mixture (masks sum to one, so target + rest
is the model's reconstruction of the mixture).

Files are read at any sample rate and channel count 1 or 2, resampled to the
model's rate, separated, resampled back: every stem has the input's rate, channels
and exact length. Any length, in bounded memory: a song is read, resampled, separated and
written block by block (``separate.block_frames``). A first pass over the file checks it and
measures its level; each model's outputs, before their gain, go to float32 temporaries in the
song's temporary folder (the gain is known only at the end of the song); the stems are then
made from those block by block, measured (``separate.clip: rescale`` needs the song's peak over
all stems), and written. A file soundfile cannot read (m4a, mp4, ...) is decoded by ffmpeg
into a float32 temporary first. ``--stream`` holds the song in memory (a live simulation).

Outputs: ``OUT/<separate.filename>``, by default ``OUT/<song>/<stem>.<ext>`` (songs found in a
folder keep their sub-folders; a MUSDB18-HQ-style ``<song>/mixture.wav`` is named after its
folder, and the reference stems beside it are not separated). A song's stems are written to a
temporary folder and published together with its record (``separation.json`` in the song folder:
the file name template with ``separation`` for the stem and ``json`` for the extension), the
record of the models and settings that made them: a song counts as done only with that record,
so an interrupted song is separated again, and stems made by other models or settings are
refused (kept) unless ``--overwrite``.

Failures are one ``error:`` line per song, and the other songs go on: a file that cannot be read
(or holds NaN, inf, or more than two channels); a model whose output holds NaN or inf (named; the
song is not separated); a disk too full for the song's stems and temporaries (checked before
separating a song, and when a write fails: the output folder, the space they need and the space
free). A silent song (every sample zero) gets silent stems and a warning. Extreme but finite
levels are separated exactly (:func:`asteroid_frugal.inference.separate_long` normalises them).
"""
import ctypes
import hashlib
import logging
import os
import re
import shutil
import string
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .audio import (AUDIO_EXTENSIONS, ENCODERS, AudioFileWriter, AudioReader, RawWriter, check_encoder,
                    encode_ffmpeg, open_audio)
from .data.types import EXTRA_SOURCES, MIXTURE, rest_name, stem_names
from .inference import (PRECISIONS, NonFiniteOutputError, TargetModel, auto_int8, check_precision_device,
                        choose_precision, chunking, combine_stems, is_weightless, load_model, load_target_models,
                        raw_outputs, release_heap, resolve_device, separate_stream, stream_levels)
from .streaming import stream_stems, streaming_options
from .utils import DiskFullError, FrugalError, disk_full_message, free_bytes, is_disk_full, read_json, \
    write_json_atomic

log = logging.getLogger("asteroid_frugal.separate")

SUBTYPES = {"wav": ("PCM_16", "PCM_24", "FLOAT"), "flac": ("PCM_16", "PCM_24"), "mp3": ()}  # mp3: no subtype
SAMPLE_BYTES = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}
CLIP_MODES = ("rescale", "clamp", "none")
INT8_BACKENDS = ("onnxruntime", "pytorch")
PLACEHOLDERS = ("track", "stem", "ext", "input_ext")   # of separate.filename
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


@dataclass
class SongScan:
    """What the first pass over a song finds: its reader, length, and levels (by model rate)."""

    reader: AudioReader
    frames: int
    silent: bool
    levels: Dict[int, int]


def scan_song(path: Path, reader: AudioReader, model_rates: Sequence[int], block_frames: int) -> SongScan:
    """Read a song once, block by block: empty, non-finite or >2-channel files are errors (a silent
    one is not: :func:`separate_song` gives it silent stems); the level of the mixture at each model
    rate (:func:`asteroid_frugal.inference.stream_levels`)."""
    if reader.frames == 0:
        raise FrugalError(f"{path}: empty audio file (no samples)")
    if reader.channels not in (1, 2):
        raise FrugalError(f"{path}: has {reader.channels} channels, expected mono or stereo")
    seen = {"frames": 0, "sound": False}

    def checked() -> Iterator[np.ndarray]:
        for block in reader.blocks(block_frames):
            if not np.isfinite(block).all():
                raise FrugalError(f"{path}: contains NaN or infinite samples")
            seen["frames"] += block.shape[-1]
            seen["sound"] = seen["sound"] or bool(np.any(block))
            yield block

    levels = stream_levels(checked(), reader.sample_rate, model_rates)
    if seen["frames"] == 0:
        raise FrugalError(f"{path}: empty audio file (no samples)")
    return SongScan(reader, seen["frames"], not seen["sound"], levels)


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


def song_state(paths: Dict[str, Path], record_path: Path, record: Dict) -> Tuple[str, str]:
    """``("done" | "absent" | "incomplete" | "foreign", detail)`` of a song's outputs (``paths``:
    each stem's file; ``record_path``: its record).

    done: its record matches ``record`` (same models, stems, settings and input) and every
    stem exists; foreign: its record names other models or settings (not ours to replace);
    incomplete: stems without a record (an interrupted or older run) or a stem missing.
    """
    stems = [paths[n] for n in record["stems"]]
    if not record_path.is_file():
        present = [p for p in stems if p.exists()]
        return ("incomplete", f"{len(present)} stem(s) without {record_path.name}") if present else ("absent", "")
    try:
        old = read_json(record_path)
    except FrugalError as err:
        return "incomplete", str(err)
    if not isinstance(old, dict):
        return "incomplete", f"{record_path}: not a separation record"
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


def publish_song(tmp_dir: Path, paths: Dict[str, Path], record_path: Path, record: Dict, ext: str,
                 out_dir: Path) -> None:
    """Move the stems written in ``tmp_dir`` (``<stem>.<ext>``) to ``paths`` and put the record last.

    The record is written into ``tmp_dir`` first (a full disk then leaves every stem where it was,
    in the temporary folder) and renamed into place at the end. The old record goes first, so no
    moment exists where a record vouches for a mix of old and new stems; stems of an old record
    that the new one does not make are removed (those inside ``out_dir`` only; records without
    ``files``: ``<stem>.<ext>`` beside the record).
    """
    new_record = tmp_dir / ".record.json"
    write_json_atomic(new_record, record)
    old_files: List[Path] = []
    if record_path.is_file():
        try:
            old = read_json(record_path)
            files = old.get("files") or {n: f"{n}.{ext}" for n in old.get("stems") or []}
            old_files = [_normal(record_path.parent / f) for f in files.values()]
        except (FrugalError, AttributeError, TypeError):
            pass
        record_path.unlink()
    for name in record["stems"]:
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_dir / f"{name}.{ext}", paths[name])
    inside = _normal(out_dir)
    for path in set(old_files) - {_normal(p) for p in paths.values()}:
        if inside in path.parents and path.is_file():
            path.unlink(missing_ok=True)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(new_record, record_path)


def _normal(path: Path) -> Path:
    return Path(os.path.normpath(os.path.abspath(path)))


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


# --------------------------------------------------------------------- options
def limit_heap(threshold_mb: Optional[float]) -> bool:
    """Have the C library hand buffers of at least ``threshold_mb`` MB back to the system as soon as
    they are freed (glibc's ``M_MMAP_THRESHOLD``, fixed). glibc otherwise raises that threshold up
    to 32 MB as such buffers are freed, so a long song's chunk-sized buffers come from its heap and
    stay there, fragmented: measured 0.1-0.2 GB more peak memory (benchmarks/README.md). For the
    separation command's entry point, like the threads (``separate.mmap_threshold_mb``; null: the C
    library's own policy). Returns whether it was set (False off glibc)."""
    if threshold_mb is None:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(-3, int(threshold_mb * 2 ** 20)))   # -3: M_MMAP_THRESHOLD


@dataclass
class OutputOptions:
    """The ``separate`` section's output settings, checked (:func:`output_settings`)."""

    fmt: str
    subtype: Optional[str]        # None for an encoded format (mp3)
    precision: str
    clip: str
    filename: str
    stems: Optional[List[str]]    # None: every stem the models make
    mp3_bitrate: str
    block_frames: int
    int8_backend: str             # onnxruntime | pytorch: what runs int8 weights
    int8_batch_chunks: int        # onnxruntime: chunks per call at most (the chunks: evaluation's)

    @property
    def full_scale(self) -> bool:
        """Whether the format clips at full scale (every one but FLOAT wav)."""
        return self.subtype != "FLOAT"


def output_settings(conf: Dict) -> OutputOptions:
    """The config's ``separate`` section, each value checked (one line naming the key and the choices)."""
    sec = conf["separate"]
    fmt, subtype, precision = sec["format"], sec["subtype"], str(sec["precision"])
    if fmt not in SUBTYPES:
        raise FrugalError(f"separate.format: expected {' or '.join(SUBTYPES)}; got {fmt!r}")
    if SUBTYPES[fmt] and subtype not in SUBTYPES[fmt]:
        raise FrugalError(f"separate.subtype {subtype} is not available for {fmt} "
                          f"(choose {' or '.join(SUBTYPES[fmt])})")
    if precision not in (*PRECISIONS, "auto"):
        raise FrugalError(f"separate.precision: expected auto, {', '.join(PRECISIONS)}; got {precision!r}")
    if sec["clip"] not in CLIP_MODES:
        raise FrugalError(f"separate.clip (--clip): expected {', '.join(CLIP_MODES)}; got {sec['clip']!r}")
    bitrate = str(sec["mp3_bitrate"])
    if not re.fullmatch(r"[1-9][0-9]*k?", bitrate):
        raise FrugalError(f"separate.mp3_bitrate (--mp3_bitrate): expected bits per second such as 320k or "
                          f"192000; got {bitrate!r}")
    block = int(sec["block_frames"])
    if sec["int8_backend"] not in INT8_BACKENDS:
        raise FrugalError(f"separate.int8_backend: expected {' or '.join(INT8_BACKENDS)}; got {sec['int8_backend']!r}")
    per_call = sec["int8_batch_chunks"]
    if isinstance(per_call, bool) or not isinstance(per_call, int) or per_call < 1:
        raise FrugalError(f"separate.int8_batch_chunks: expected a number of chunks, at least 1; got {per_call!r}")
    return OutputOptions(fmt, subtype if SUBTYPES[fmt] else None, precision, sec["clip"],
                         check_filename(sec["filename"]), stem_list(sec["stems"]), bitrate, block,
                         sec["int8_backend"], per_call)


def int8_cache_dir(conf: Dict) -> Path:
    """Where int8 onnxruntime graphs are kept between runs: ``separate.cache_dir``, else
    ``$XDG_CACHE_HOME/asteroid-frugal/int8``, else ``~/.cache/asteroid-frugal/int8``."""
    if conf["separate"]["cache_dir"]:
        return Path(os.path.expanduser(str(conf["separate"]["cache_dir"])))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "asteroid-frugal" / "int8"


def int8_onnx_models(job: "SeparationJob") -> List[TargetModel]:
    """The job's models as int8 onnxruntime models (:func:`asteroid_frugal.export.cached_int8_model`,
    ``separate.int8_batch_chunks`` chunks per call), made once per run, one model at a time; an empty
    list (and a warning: PyTorch's int8 weights then, read from the model files where the job holds
    the models without their weights) where onnxruntime cannot run them. Once made, they take the
    float models' place in the job's :class:`TargetModel` objects: every later song of the run is
    int8 too (the precision is the run's, or ``auto``'s choice for these models on the CPU, the same
    for every song). A model whose graph is cached is never read but for its settings
    (:func:`separate_files`); one whose graph must be made has its float weights (95 MB at paper
    size) read for that, and let go (:func:`release_heap`) before the next model is read."""
    if job.onnx_models is None:
        import torch

        from .export import cached_int8_model

        digests = {m["target"]: m["sha256"] for m in job.record["models"]}
        try:
            for tm in job.models:
                if not hasattr(tm.model, "graph_path"):
                    tm.model = cached_int8_model(tm.model, digests[tm.target], int8_cache_dir(job.conf),
                                                 torch.get_num_threads(), job.opts.int8_batch_chunks)
                    tm.model.close()     # opened again when it runs: one session at a time (stem_source)
                    release_heap()
            job.onnx_models = list(job.models)
        except NonFiniteOutputError:
            raise                 # not separable in int8 by either: one line per song
        except (ImportError, FrugalError, RuntimeError) as err:
            log.warning("int8 with onnxruntime unavailable (%s): PyTorch's int8 weights instead",
                        str(err).splitlines()[0] if str(err) else type(err).__name__)
            for tm in job.models:     # the float models back, weights and all
                if hasattr(tm.model, "graph_path") or is_weightless(tm.model):
                    tm.model = load_model(tm.path, job.device)
            job.onnx_models = []
    return job.onnx_models


def weightless_int8(opts: OutputOptions, conf: Dict, device: str, stream: bool,
                    models: Sequence[TargetModel]) -> bool:
    """Whether every song of a run is separated by onnxruntime's int8 graphs whatever the song, so
    that the models need no float weights (``models``: loaded without them): int8 requested, or
    ``auto`` on the CPU for models large enough (:func:`asteroid_frugal.inference.auto_int8`), with
    ``separate.int8_backend: onnxruntime``, off ``--stream``."""
    if stream or opts.int8_backend != "onnxruntime" or str(device) != "cpu":
        return False
    if opts.precision == "int8":
        return True
    return opts.precision == "auto" and auto_int8(models, device, conf["separate"]["auto_int8_min_hidden"])[0]


def stem_list(value) -> Optional[List[str]]:
    """``separate.stems`` (``--stems vocals,accompaniment``, or a list) as names; None: all."""
    if value is None:
        return None
    names = [str(v).strip() for v in (value.split(",") if isinstance(value, str) else value)]
    if not names or "" in names or len(set(names)) != len(names):
        raise FrugalError(f"separate.stems (--stems): expected stem names separated by commas, each once, "
                          f"e.g. vocals,accompaniment; got {value!r}")
    return names


def render_filename(template: str, **values: str) -> str:
    """``separate.filename`` with its placeholders (:data:`PLACEHOLDERS`) filled in."""
    out = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if field is not None:
            out.append(values[field])
    return "".join(out)


def check_filename(template) -> str:
    """``separate.filename``: placeholders among :data:`PLACEHOLDERS`, ``{stem}`` present, a relative
    path inside the output folder; one :class:`FrugalError` otherwise."""
    where = f"separate.filename (--filename) {template!r}"
    try:
        fields = [(f, s, c) for _, f, s, c in string.Formatter().parse(str(template)) if f is not None]
    except ValueError as err:
        raise FrugalError(f"{where}: not a template ({err}); e.g. {{track}}/{{stem}}.{{ext}}") from None
    bad = [f for f, spec, conv in fields if f not in PLACEHOLDERS or spec or conv]
    if bad:
        raise FrugalError(f"{where}: unknown placeholder {{{bad[0]}}}; use "
                          f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    if "stem" not in [f for f, _, _ in fields]:
        raise FrugalError(f"{where}: needs {{stem}} (every stem its own file)")
    example = Path(render_filename(str(template), track="t", stem="s", ext="wav", input_ext="mp3"))
    if example.is_absolute() or ".." in example.parts or not example.name:
        raise FrugalError(f"{where}: expected a file path inside the output folder")
    return str(template)


def song_paths(template: str, out_dir: Path, rel: Path, path: Path, stems: Sequence[str],
               ext: str) -> Tuple[Dict[str, Path], Path]:
    """``({stem: file}, record file)`` of a song: the template filled in under ``out_dir``
    (``{track}``: ``rel``, the song's name with its sub-folders; the record: ``separation`` for the
    stem, ``json`` for the extension, so by default ``OUT/<song>/separation.json``)."""
    values = dict(track=rel.as_posix(), input_ext=path.suffix.lower().lstrip("."))
    paths = {s: out_dir / render_filename(template, stem=s, ext=ext, **values) for s in stems}
    record_stem, record_ext = MANIFEST.rsplit(".", 1)
    return paths, out_dir / render_filename(template, stem=record_stem, ext=record_ext, **values)


@dataclass
class SeparationJob:
    """What every song of one run is separated with (made by :func:`separate_files`)."""

    conf: Dict
    models: List[TargetModel]     # the models run (those whose outputs the stems need)
    targets: List[str]            # the targets of every model given (they name the stems)
    stems: List[str]              # the stems written
    record: Dict                  # the run's separation record (each song adds its input)
    opts: OutputOptions
    out_dir: Path
    overwrite: bool
    stream_opts: Optional[Dict] = None   # --stream: block and weight precision
    onnx_models: Optional[List[TargetModel]] = None   # int8 with onnxruntime: made at the first song that needs them
    device: str = "cpu"           # where the models run

    @property
    def ext(self) -> str:
        return self.opts.fmt


def separate_files(conf: Dict, inputs: Sequence[str], model_specs: Sequence[str], out,
                   overwrite: bool = False, stream: bool = False) -> Dict[str, Any]:
    """Separate every input (files, or folders searched recursively) into ``OUT/<separate.filename>``.

    ``model_specs``: ``[target=]path`` of each model (:func:`~asteroid_frugal.inference.load_target_models`).
    Settings come from ``conf``: ``separate`` (format, subtype, precision, clip, filename, stems,
    mp3_bitrate, block_frames), ``evaluation`` (device, chunking), ``streaming`` (with ``stream``: one
    causal model, block by block). Every value, and the stems asked for, are checked before any
    file is touched. Songs already separated with the same models and settings are skipped; stems
    made by others are refused unless ``overwrite``. A file that fails is reported as one ``error:``
    line on stderr and the others go on. Returns ``{"files", "done", "skipped", "failed": [paths],
    "written": {input: {stem: file}}}`` (``written``: the songs separated by this run).
    """
    opts = output_settings(conf)
    chunks = None if stream else chunking(conf)   # checked before any file is touched
    device = resolve_device(conf["evaluation"]["device"])
    check_precision_device(opts.precision, device)   # int8: CPU only, said before any work
    if opts.fmt in ENCODERS:
        check_encoder(opts.fmt)
    out_dir = Path(out)
    check_writable(out_dir)
    models = load_target_models(model_specs, device, weights=False)   # each one's settings, no weights
    if weightless_int8(opts, conf, device, stream, models):
        log.debug("int8 on onnxruntime: the models' float weights are read only to make a graph not yet cached")
    else:
        models = load_target_models(model_specs, device)
    targets = [m.target for m in models]
    made = stem_names(targets)
    names = [n for n in made if n in opts.stems] if opts.stems else made
    raw = raw_outputs(targets, opts.stems or made)     # a stem no model makes: one line here
    running = [m for m in models if m.target in raw or rest_name(m.target) in raw]
    songs = find_inputs(inputs, out_dir)
    idle = [m.target for m in models if m not in running]
    log.info("%d file(s); models: %s; stems: %s%s; device %s", len(songs),
             ", ".join(f"{m.target}={m.path}" for m in running), ", ".join(names),
             f" (not run, none of their stems asked for: {', '.join(idle)})" if idle else "", device)
    stream_opts = streaming_options(models, conf) if stream else None  # the live path (streaming.py)
    output = dict(format=opts.fmt, subtype=opts.subtype, clip=opts.clip)
    if opts.fmt in ENCODERS:
        output["mp3_bitrate"] = opts.mp3_bitrate
    if stream_opts:
        settings = dict(stream_opts, stream=True, **output)
    else:
        settings = dict(chunks, precision=opts.precision, **output)
        if opts.precision in ("int8", "auto"):
            settings["int8_backend"] = opts.int8_backend   # int8's outputs depend on what runs it
            if opts.int8_backend == "onnxruntime":   # and on the chunks beside it in a call (onnxruntime's)
                settings["int8_batch_chunks"] = min(opts.int8_batch_chunks, chunks["batch_chunks"])
    job = SeparationJob(conf, running, targets, names, separation_record(running, names, settings), opts, out_dir,
                        overwrite, stream_opts, device=device)
    failed, done, skipped = [], 0, 0
    written: Dict[str, Dict[str, str]] = {}
    claimed: Dict[Path, Path] = {}
    for index, (path, rel) in enumerate(songs, 1):
        try:
            paths, record_path = song_paths(opts.filename, out_dir, rel, path, names, opts.fmt)
            for target in (record_path, *paths.values()):
                if target in claimed:
                    where = f"folder {record_path.parent}" if record_path.name == MANIFEST else f"file {target}"
                    raise FrugalError(f"{path}: same output {where} as {claimed[target]}; rename one")
            claimed.update({target: path for target in (record_path, *paths.values())})
            result = separate_song(job, path, rel, f"[{index}/{len(songs)}] {path}")
            if result is None:
                skipped += 1
            else:
                done += 1
                written[str(path)] = {stem: str(p) for stem, p in result.items()}
        except FrugalError as err:
            print(f"error: {err}", file=sys.stderr)
            failed.append(path)
        except (RuntimeError, ValueError, OSError, MemoryError) as err:  # e.g. out of memory, a broken decoder
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(f"error: {path}: {first[:300]}", file=sys.stderr)
            failed.append(path)
    log.info("separated %d file(s) into %s, %d skipped (already separated), %d failed",
             done, out_dir, skipped, len(failed))
    return dict(files=len(songs), done=done, skipped=skipped, failed=failed, written=written)


@contextmanager
def _disk_full_errors(song_dir: Path, needed: List[Optional[int]]):
    """:func:`asteroid_frugal.utils.disk_full_errors` with the space needed known part-way (``needed[0]``)."""
    try:
        yield
    except DiskFullError:
        if needed[0] is None:
            raise
        raise DiskFullError(disk_full_message(song_dir, needed[0])) from None   # the song, not one of its files
    except Exception as err:  # noqa: BLE001 - re-raised unless the disk is full
        if not is_disk_full(err, song_dir.parent, needed[0]):
            raise
        raise DiskFullError(disk_full_message(song_dir, needed[0])) from None


def separate_song(job: SeparationJob, path: Path, rel: Path, desc: str) -> Optional[Dict[str, Path]]:
    """Separate one file (``rel``: its song name) into its stem files, complete or absent (written to
    a temporary folder, then published with their record). Returns ``{stem: file}`` once the song's
    stems and record are in place; None when it was already separated (skipped)."""
    paths, record_path = song_paths(job.opts.filename, job.out_dir, rel, path, job.stems, job.ext)
    song_dir = record_path.parent
    remove_partials(job.out_dir / rel)
    record = dict(job.record, input={"file": path.name, "bytes": path.stat().st_size}
                  if path.is_file() else {"file": path.name}, track=rel.as_posix())
    state, detail = song_state(paths, record_path, record)
    if state == "done" and not job.overwrite:
        log.info("%s: already separated into %s, skipped (use --overwrite)", desc, song_dir)
        return None
    if state == "foreign" and not job.overwrite:
        raise FrugalError(f"{song_dir}: holds stems made with other {detail} (see its {record_path.name}); "
                          f"kept: use --overwrite to replace them, or another --out")
    if state == "incomplete":
        log.info("%s: %s holds an incomplete separation (%s): separating again", desc, song_dir, detail)
    if not path.exists():
        raise FrugalError(f"{path}: file not found")
    needed: List[Optional[int]] = [None]
    tmp_dir = None
    made_parent = (job.out_dir / rel).parent != job.out_dir and not (job.out_dir / rel).parent.exists()
    with _disk_full_errors(song_dir, needed):   # its message counts the free space after the clean-up below
        try:  # every exit path, Ctrl-C included; a SIGKILL's leftovers go at the next run
            tmp_parent = (job.out_dir / rel).parent
            tmp_parent.mkdir(parents=True, exist_ok=True)
            tmp_dir = Path(tempfile.mkdtemp(prefix=f".{rel.name}{PARTIAL}", dir=tmp_parent))
            rates = [] if job.stream_opts else [int(round(float(m.model.sample_rate))) for m in job.models]
            scan = scan_song(path, open_audio(path, tmp_dir), rates, job.opts.block_frames)
            reader = scan.reader
            log.info("%s: %.1f s, %d Hz, %d channel(s)", desc, scan.frames / reader.sample_rate,
                     reader.sample_rate, reader.channels)
            needed[0], check = song_bytes(job, scan)
            if free_bytes(song_dir) < check:   # before spending the time to separate it
                raise DiskFullError(disk_full_message(song_dir, needed[0]))
            try:
                stems = stem_source(job, scan, tmp_dir, desc)
            except NonFiniteOutputError as err:
                raise FrugalError(f"{path}: {err}; the song is not separated") from None
            factor = write_stems(job, stems, scan, tmp_dir, song_dir, desc)
            files = {name: os.path.relpath(p, song_dir) for name, p in paths.items()}
            publish_song(tmp_dir, paths, record_path, dict(record, files=files, clip_factor=factor), job.ext,
                         job.out_dir)
        finally:
            if tmp_dir is not None:
                shutil.rmtree(tmp_dir, ignore_errors=True)
                if made_parent:
                    try:
                        tmp_dir.parent.rmdir()   # made for the temporary folder, and not used by the stems
                    except OSError:
                        pass
    return paths


def song_bytes(job: SeparationJob, scan: SongScan) -> Tuple[int, int]:
    """``(needed, checked)``: the disk space a song's temporaries and stems take (uncompressed), and
    the part of it known before writing (a flac's size is known only once written)."""
    frames = scan.frames * scan.reader.channels
    raw = 0 if scan.silent or job.stream_opts else len(raw_outputs(job.targets, job.stems))
    temporaries = raw * frames * 4
    if job.opts.fmt in ENCODERS:
        stems = len(job.stems) * frames * 4          # the float32 files ffmpeg encodes from
        return temporaries + stems, temporaries + stems
    stems = len(job.stems) * frames * SAMPLE_BYTES[job.opts.subtype]
    return temporaries + stems, temporaries + (stems if job.opts.fmt == "wav" else 0)


StemSource = Callable[[], Iterator[Dict[str, np.ndarray]]]


def stem_source(job: SeparationJob, scan: SongScan, tmp_dir: Path, desc: str) -> StemSource:
    """Separate a song; returns a function giving a new pass over its stems, block by block
    (``{stem: [C, n]}``, in order). Offline: each model's outputs go to float32 temporaries in
    ``tmp_dir`` and the stems are made from them and the mixture at each pass
    (:func:`asteroid_frugal.inference.combine_stems`); the precision is chosen per song. A silent
    song gets silent stems (and a warning) without running a model; ``--stream`` runs the live path
    on the song in memory."""
    reader, n, block = scan.reader, scan.frames, job.opts.block_frames
    sr, n_chan = reader.sample_rate, reader.channels
    if scan.silent:
        log.warning("%s: silent (every sample is zero): its stems are silent", desc)
        return lambda: ({name: np.zeros_like(b) for name in job.stems} for b in reader.blocks(block))
    if job.stream_opts:
        made = stream_stems(job.models[0], reader.read(0, n), sr, desc=desc, **job.stream_opts)
        return lambda: ({name: made[name][:, i:i + block] for name in job.stems} for i in range(0, n, block))
    sec, chunks = job.conf["separate"], chunking(job.conf)
    length = min(n, max(1, int(round(sec["probe_seconds"] * sr))))
    probe = reader.read((n - length) // 2, length)        # the excerpt choose_precision probes
    precision, why = choose_precision(job.models, probe, sr, sec["precision"], sec["min_snr_db"],
                                      sec["probe_seconds"], chunks=chunks,
                                      auto_int8_min_hidden=sec["auto_int8_min_hidden"], device=job.device)
    del probe
    models, run_precision, backend = job.models, precision, ""
    if precision == "int8":
        onnx = int8_onnx_models(job) if job.opts.int8_backend == "onnxruntime" else []
        if onnx:   # the graphs compute with int8 weights themselves
            models, run_precision = onnx, "float32"
            per_call = min(job.opts.int8_batch_chunks, chunks["batch_chunks"])
            backend = f", onnxruntime, {per_call} chunk{'s' if per_call > 1 else ''} per call"
        else:
            backend = ", PyTorch"
    log.info("%s: precision %s%s (%s)", desc, precision, backend, why)
    writers = {name: RawWriter(tmp_dir / f"{name}.raw.f32", n_chan) for name in raw_outputs(job.targets, job.stems)}
    gains: Dict[str, float] = {}
    try:
        for tm in models:   # one after another; an onnxruntime model's session is open only while it runs
            try:
                gains.update(separate_stream([tm], lambda: reader.blocks(block), sr, n, n_chan,
                                             {name: w.write for name, w in writers.items()}, scan.levels,
                                             precision=run_precision, progress=True, desc=desc, **chunks))
            finally:
                if hasattr(tm.model, "close"):
                    tm.model.close()
    finally:
        for w in writers.values():
            w.close()
    raws = {name: w.reader(sr) for name, w in writers.items()}

    def passes() -> Iterator[Dict[str, np.ndarray]]:
        outputs = {name: r.blocks(block) for name, r in raws.items()}
        for mixture in reader.blocks(block):
            yield combine_stems(job.targets, job.stems, gains, mixture,
                                {name: next(it) for name, it in outputs.items()})
    return passes


def write_stems(job: SeparationJob, stems: StemSource, scan: SongScan, tmp_dir: Path, song_dir: Path,
                desc: str) -> float:
    """Write each stem as ``tmp_dir/<stem>.<ext>`` block by block, samples beyond full scale handled
    as ``separate.clip`` says: ``rescale`` measures the song's peak over all stems first (a pass over
    ``stems``) and scales every stem by one factor (< 1 only when the peak is beyond full scale:
    logged), so they still sum to the mixture times that factor; ``clamp`` clips each sample;
    ``none`` writes them as they are (PCM and mp3 then clip, FLOAT keeps them). A FLOAT wav has no full
    scale: written as is in every mode. mp3: float32 temporaries, then one ffmpeg call per stem.
    Returns the factor."""
    opts, sr, n_chan = job.opts, scan.reader.sample_rate, scan.reader.channels
    factor = 1.0
    if opts.clip == "rescale" and opts.full_scale:
        peak = 0.0
        for block in stems():
            peak = max([peak, *(float(np.max(np.abs(a), initial=0.0)) for a in block.values())])
        if peak > 1.0:
            factor = 1.0 / peak
            log.info("%s: stems peak at %.3f, beyond full scale: all scaled by %.4f (--clip rescale), so they "
                     "still sum to the mixture times %.4f", desc, peak, factor, factor)
    encoded = opts.fmt in ENCODERS
    files = {name: RawWriter(tmp_dir / f"{name}.f32", n_chan) if encoded else
             AudioFileWriter(tmp_dir / f"{name}.{opts.fmt}", sr, n_chan, opts.subtype, frames=scan.frames)
             for name in job.stems}
    beyond = dict.fromkeys(job.stems, 0)
    try:
        for block in stems():
            for name, audio in block.items():
                if factor != 1.0:
                    audio = audio * np.float32(factor)
                if opts.full_scale and opts.clip != "rescale":
                    beyond[name] += int(np.count_nonzero(np.abs(audio) > 1.0))
                    if opts.clip == "clamp":
                        audio = np.clip(audio, -1.0, 1.0)
                files[name].write(audio)
    finally:
        for f in files.values():
            f.close()
    for name, count in beyond.items():
        if count:
            log.warning("%s/%s.%s: %d samples beyond full scale %s", song_dir, name, opts.fmt, count,
                        "clamped (--clip clamp)" if opts.clip == "clamp" else
                        "are clipped (--clip rescale scales the song's stems instead; --subtype FLOAT with wav "
                        "keeps them)")
    if encoded:
        for name, raw in files.items():
            encode_ffmpeg(raw.reader(sr), tmp_dir / f"{name}.{opts.fmt}", opts.fmt, opts.mp3_bitrate)
            raw.path.unlink()
    return factor
