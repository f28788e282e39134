"""Turn songs into stems with trained target-vs-rest models.

    python -m asteroid_frugal.separate song.mp3 album/ --models exp/vocals --out stems
    asteroid-frugal-separate album/ --models vocals=exp/vocals drums=exp/drums bass=exp/bass --out stems

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
"""
import argparse
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .audio import AUDIO_EXTENSIONS, read_audio, write_audio
from .config import add_config_args, config_from_args
from .data.types import EXTRA_SOURCES, stem_names
from .inference import (PRECISIONS, TargetModel, choose_precision, chunking, load_target_models, resolve_device,
                        separate_stems)
from .streaming import stream_stems, streaming_options
from .utils import FrugalError, read_json, run_cli, write_json_atomic

log = logging.getLogger("asteroid_frugal.separate")

SUBTYPES = {"wav": ("PCM_16", "PCM_24", "FLOAT"), "flac": ("PCM_16", "PCM_24")}
MANIFEST = "separation.json"      # in each song folder: what made its stems (written last)
MIXTURE_NAME = "mixture"          # MUSDB18-HQ and most stem datasets: <song>/mixture.wav
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
    return _bare_name(path).lower() == MIXTURE_NAME


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
    """Read a song for separation; empty, silent, non-finite or >2-channel files are errors."""
    audio, sr = read_audio(path)
    if audio.shape[-1] == 0:
        raise FrugalError(f"{path}: empty audio file (no samples)")
    if audio.shape[0] not in (1, 2):
        raise FrugalError(f"{path}: has {audio.shape[0]} channels, expected mono or stereo")
    if not np.isfinite(audio).all():
        raise FrugalError(f"{path}: contains NaN or infinite samples")
    if not np.any(audio):
        raise FrugalError(f"{path}: silent (every sample is zero), nothing to separate")
    return audio, sr


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
    """``("done" | "absent" | "incomplete" | "other", detail)`` of a song's output folder.

    done: its record matches ``record`` (same models, stems, settings and input) and every
    stem exists; other: its record names other models or settings (not ours to replace);
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
        return "other", ", ".join(differ)
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


# -------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asteroid-frugal-separate", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Chunking defaults come from conf.yml (evaluation.chunk_seconds, overlap_seconds, batch_chunks).")
    parser.add_argument("inputs", nargs="+", help="audio files or folders (wav, flac, ogg, mp3, m4a/mp4, ...)")
    parser.add_argument("--models", nargs="+", required=True, metavar="[TARGET=]PATH",
                        help="best_model.pth, experiment or publish folder per target, e.g. "
                             "vocals=exp/vocals drums=exp/drums bass=exp/bass")
    parser.add_argument("--out", required=True, help="output folder: OUT/<song>/<stem>.<ext>")
    parser.add_argument("--format", default="wav", choices=sorted(SUBTYPES), help="output format (default wav)")
    parser.add_argument("--subtype", default="PCM_24", choices=("PCM_16", "PCM_24", "FLOAT"),
                        help="sample format (default PCM_24; FLOAT: wav only, never clips)")
    parser.add_argument("--overwrite", action="store_true",
                        help="separate again songs whose stems exist (made by any models or settings)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda if available)")
    parser.add_argument("--chunk_seconds", type=float, default=None, help="chunk length (default: conf.yml)")
    parser.add_argument("--overlap_seconds", type=float, default=None, help="cross-fade length (default: conf.yml)")
    parser.add_argument("--batch_chunks", type=int, default=None, help="chunks per forward pass (default: conf.yml)")
    parser.add_argument("--precision", default=None, choices=sorted([*PRECISIONS, "auto"]),
                        help="auto (conf.yml separate.precision: bfloat16 where native and within "
                             "separate.min_snr_db of float32 on a probe, else float32), float32, bfloat16, float16")
    parser.add_argument("--stream", action="store_true",
                        help="run one causal model block by block as if live (asteroid_frugal/streaming.py); "
                             "logs latency and real-time factor")
    parser.add_argument("--block", type=int, default=None,
                        help="--stream block size in samples (default: conf.yml streaming.block)")
    parser.add_argument("--stream_precision", default=None,
                        help="--stream weights: float32, bfloat16 or int8 (default: conf.yml streaming.precision)")
    add_config_args(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Separate every input; returns the number of files that failed (exits 1 if any)."""
    args = build_parser().parse_args(argv)
    if args.subtype not in SUBTYPES[args.format]:
        raise FrugalError(f"--subtype {args.subtype} is not available for {args.format} "
                          f"(choose {' or '.join(SUBTYPES[args.format])})")
    conf = config_from_args(args)
    opts = chunking(conf)
    opts.update({k: getattr(args, k) for k in opts if getattr(args, k) is not None})
    precision = args.precision or conf["separate"]["precision"]
    if precision not in (*PRECISIONS, "auto"):
        raise FrugalError(f"separate.precision: expected auto, {', '.join(PRECISIONS)}; got {precision!r}")
    device = resolve_device(args.device)
    out_dir = Path(args.out)
    check_writable(out_dir)
    models = load_target_models(args.models, device)
    songs = find_inputs(args.inputs, out_dir)
    names = stem_names([m.target for m in models])
    log.info("%d file(s); models: %s; stems: %s; device %s", len(songs),
             ", ".join(f"{m.target}={m.path}" for m in models), ", ".join(names), device)
    if args.stream:  # the live path, block by block (asteroid_frugal/streaming.py)
        stream_opts = streaming_options(models, conf, block=args.block, precision=args.stream_precision)
        settings = dict(stream_opts, stream=True, format=args.format, subtype=args.subtype)
    else:
        settings = dict(opts, precision=precision, format=args.format, subtype=args.subtype)
    run_record = separation_record(models, names, settings)

    failed, done, skipped = [], 0, 0
    claimed: Dict[Path, Path] = {}
    for index, (path, rel) in enumerate(songs, 1):
        song_dir = out_dir / rel
        desc = f"[{index}/{len(songs)}] {path}"
        tmp_dir: Optional[Path] = None
        try:
            if song_dir in claimed:
                raise FrugalError(f"{path}: same output folder {song_dir} as {claimed[song_dir]}; rename one")
            claimed[song_dir] = path
            remove_partials(song_dir)
            record = dict(run_record, input={"file": path.name, "bytes": path.stat().st_size}
                          if path.is_file() else {"file": path.name})
            state, detail = song_state(song_dir, record, args.format)
            if state == "done" and not args.overwrite:
                log.info("%s: already separated into %s, skipped (use --overwrite)", desc, song_dir)
                skipped += 1
                continue
            if state == "other" and not args.overwrite:
                raise FrugalError(f"{song_dir}: holds stems made with other {detail} (see its {MANIFEST}); "
                                  f"kept: use --overwrite to replace them, or another --out")
            if state == "incomplete":
                log.info("%s: %s holds an incomplete separation (%s): separating again", desc, song_dir, detail)
            audio, sr = load_song(path)
            log.info("%s: %.1f s, %d Hz, %d channel(s)", desc, audio.shape[-1] / sr, sr, audio.shape[0])
            if args.stream:
                stems = stream_stems(models[0], audio, sr, desc=desc, **stream_opts)
            else:
                song_precision, why = choose_precision(models, audio, sr, precision, conf["separate"]["min_snr_db"],
                                                       conf["separate"]["probe_seconds"])
                log.info("%s: precision %s (%s)", desc, song_precision, why)
                stems = separate_stems(models, audio, sr, progress=True, desc=desc, precision=song_precision, **opts)
            del audio
            song_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp_dir = Path(tempfile.mkdtemp(prefix=f".{song_dir.name}{PARTIAL}", dir=song_dir.parent))
            write_stems(stems, tmp_dir, sr, args.format, args.subtype, shown_dir=song_dir)
            del stems
            publish_song(tmp_dir, song_dir, record, args.format)
            done += 1
        except FrugalError as err:
            print(f"error: {err}", file=sys.stderr)
            failed.append(path)
        except (RuntimeError, ValueError, OSError, MemoryError) as err:  # e.g. out of memory, a broken decoder
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(f"error: {path}: {first[:300]}", file=sys.stderr)
            failed.append(path)
        finally:  # every exit path, Ctrl-C included; a SIGKILL's leftovers go at the next run
            if tmp_dir is not None:
                shutil.rmtree(tmp_dir, ignore_errors=True)
    log.info("separated %d file(s) into %s, %d skipped (already separated), %d failed",
             done, out_dir, skipped, len(failed))
    if failed:
        print(f"error: {len(failed)} of {len(songs)} file(s) failed: {', '.join(map(str, failed))}",
              file=sys.stderr)
        sys.exit(1)
    return 0


def cli() -> None:
    """Console-script entry point (``asteroid-frugal-separate``)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
