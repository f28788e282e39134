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
their sub-folders); existing outputs are kept unless ``--overwrite``.
"""
import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .audio import AUDIO_EXTENSIONS, read_audio, write_audio
from .config import add_config_args, config_from_args
from .data.types import stem_names
from .inference import PRECISIONS, chunking, load_target_models, resolve_device, separate_stems
from .utils import FrugalError, run_cli

log = logging.getLogger("asteroid_frugal.separate")

SUBTYPES = {"wav": ("PCM_16", "PCM_24", "FLOAT"), "flac": ("PCM_16", "PCM_24")}


# ----------------------------------------------------------------------- files
def find_inputs(inputs: Sequence[str], out_dir: Path) -> List[Tuple[Path, Path]]:
    """``(audio file, output folder relative to OUT)`` for each file or folder given.

    Folders are searched recursively for audio extensions; the output folder is
    skipped so that earlier stems are not separated again.
    """
    found: List[Tuple[Path, Path]] = []
    out_resolved = out_dir.resolve()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                           and out_resolved not in p.resolve().parents)
            if not files:
                log.warning("%s: no audio files (%s) in this folder", path, " ".join(AUDIO_EXTENSIONS))
            found += [(p, song_name(p.relative_to(path))) for p in files]
        else:
            found.append((path, song_name(Path(path.name))))
    return found


def song_name(rel: Path) -> Path:
    """``live/song.flac`` -> ``live/song``; MUSDB18's ``song.stem.mp4`` -> ``song``."""
    name = rel.name[: -len(rel.suffix)] if rel.suffix else rel.name
    if name.lower().endswith(".stem"):
        name = name[:-5]
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
                subtype: str) -> List[Path]:
    """Write each stem atomically as ``song_dir/<stem>.<ext>``; warn about clipped samples."""
    written = []
    for name, audio in stems.items():
        if subtype != "FLOAT":
            clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
            if clipped:
                log.warning("%s/%s.%s: %d samples beyond full scale are clipped (use --subtype FLOAT "
                            "with wav to keep them)", song_dir, name, ext, clipped)
        path = song_dir / f"{name}.{ext}"
        write_audio(path, audio, sample_rate, subtype=subtype)
        written.append(path)
    return written


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
    parser.add_argument("--overwrite", action="store_true", help="replace existing stems")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda if available)")
    parser.add_argument("--chunk_seconds", type=float, default=None, help="chunk length (default: conf.yml)")
    parser.add_argument("--overlap_seconds", type=float, default=None, help="cross-fade length (default: conf.yml)")
    parser.add_argument("--batch_chunks", type=int, default=None, help="chunks per forward pass (default: conf.yml)")
    parser.add_argument("--precision", default="float32", choices=sorted(PRECISIONS),
                        help="float32 (default) or bfloat16/float16 autocast (faster on recent CPUs/GPUs)")
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
    opts.update({k: getattr(args, k) for k in opts if getattr(args, k) is not None}, precision=args.precision)
    device = resolve_device(args.device)
    models = load_target_models(args.models, device)
    out_dir = Path(args.out)
    songs = find_inputs(args.inputs, out_dir)
    names = stem_names([m.target for m in models])
    log.info("%d file(s); models: %s; stems: %s; device %s", len(songs),
             ", ".join(f"{m.target}={m.path}" for m in models), ", ".join(names), device)
    if args.stream:  # the live path lives in asteroid_frugal/streaming.py
        from .streaming import stream_songs

        return stream_songs(models, songs, out_dir, names, args, conf)

    failed, done, skipped = [], 0, 0
    claimed: Dict[Path, Path] = {}
    for index, (path, rel) in enumerate(songs, 1):
        song_dir = out_dir / rel
        desc = f"[{index}/{len(songs)}] {path}"
        try:
            if song_dir in claimed:
                raise FrugalError(f"{path}: same output folder {song_dir} as {claimed[song_dir]}; rename one")
            claimed[song_dir] = path
            existing = [song_dir / f"{n}.{args.format}" for n in names
                        if (song_dir / f"{n}.{args.format}").exists()]
            if existing and not args.overwrite:
                log.info("%s: %s exists, skipped (use --overwrite)", desc, existing[0])
                skipped += 1
                continue
            audio, sr = load_song(path)
            log.info("%s: %.1f s, %d Hz, %d channel(s)", desc, audio.shape[-1] / sr, sr, audio.shape[0])
            stems = separate_stems(models, audio, sr, progress=True, desc=desc, **opts)
            write_stems(stems, song_dir, sr, args.format, args.subtype)
            done += 1
        except FrugalError as err:
            print(f"error: {err}", file=sys.stderr)
            failed.append(path)
        except (RuntimeError, ValueError, OSError, MemoryError) as err:  # e.g. out of memory, a broken decoder
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(f"error: {path}: {first[:300]}", file=sys.stderr)
            failed.append(path)
    log.info("separated %d file(s) into %s, %d skipped (outputs exist), %d failed",
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
