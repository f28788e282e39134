"""Stage 0: decode a MUSDB18 / MUSDB18-HQ root (or the built-in corpus) into the prepared layout.

Tracks and splits come from the ``musdb`` package (``musdb.DB``: train minus its
validation tracks, valid, test). A root may carry its own musdb setup file
(``musdb_setup.yaml``, musdb's ``setup_file`` option): the built-in corpus uses it to name
its validation songs; MUSDB18 roots have none and get musdb's own list.

``.stem.mp4`` streams are decoded by musdb (stempeg/ffmpeg), once; MUSDB18-HQ WAVs are
read with soundfile (exact and faster than musdb's ffmpeg round trip; musdb still
provides the paths). Re-running skips tracks whose ``track.json`` records the same
input files (size, mtime); a track directory appears only when complete.
"""
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from tqdm import tqdm

from ..audio import check_finite, read_audio, require_ffmpeg, resample, to_channels
from ..utils import DiskFullError, FrugalError, write_json_atomic
from .default_corpus import SETUP_FILE, CorpusParams, generate_corpus
from .layout import (CHANNELS, CORPUS_DEFAULT, CORPUS_MUSDB_SAMPLE, SPLITS, clean_temporaries, is_prepared_format,
                     list_tracks, prepared_root, source_corpus, source_signature, track_is_valid, write_track)
from .types import MIXTURE, SOURCES

log = logging.getLogger("asteroid_frugal")

MAX_TRIM = 2048   # stems of one .stem.mp4 may differ by an AAC frame; more is an error


def open_musdb(root: Path, is_wav: bool) -> Tuple[Dict[str, list], Dict[str, str]]:
    """``({"train": [...], "valid": [...], "test": [...]}, unreadable)``: musdb tracks with
    musdb's own splits, and ``{mixture path: reason}`` for tracks whose header cannot be read."""
    import musdb

    setup_file = SETUP_FILE if (root / SETUP_FILE).is_file() else None
    unreadable: Dict[str, str] = {}
    try:
        with _listing_survives_unreadable_headers(unreadable):
            splits = {"train": musdb.DB(str(root), subsets="train", split="train", is_wav=is_wav,
                                        setup_file=setup_file).tracks,
                      "valid": musdb.DB(str(root), subsets="train", split="valid", is_wav=is_wav,
                                        setup_file=setup_file).tracks,
                      "test": musdb.DB(str(root), subsets="test", is_wav=is_wav, setup_file=setup_file).tracks}
    except Exception as err:  # musdb/stempeg raise bare exceptions
        raise FrugalError(f"{root}: musdb could not list the tracks ({type(err).__name__}: {err})") from None
    return splits, unreadable


class _NoHeader:
    """Stands in for the header of a file stempeg cannot read (the track is skipped later)."""

    def samples(self, *_):
        return 0

    def duration(self, *_):
        return 0.0

    def rate(self, *_):
        return 0


@contextmanager
def _listing_survives_unreadable_headers(unreadable: Dict[str, str]):
    """Workaround for musdb 0.4: ``musdb.DB`` reads every mixture's header (``stempeg.Info``,
    ffprobe) while it lists a root, and one unreadable file (a damaged download) makes the
    whole listing raise. While listing, a failed header read is recorded in ``unreadable``
    (path -> reason) and the track gets an empty header; stage 0 then skips exactly those
    tracks with a logged reason, as it skips tracks that fail to decode."""
    import musdb.audio_classes

    stempeg = musdb.audio_classes.stempeg
    real_info = stempeg.Info

    def info(path, *args, **kwargs):
        try:
            return real_info(path, *args, **kwargs)
        except Exception as err:  # noqa: BLE001 - stempeg/ffprobe raise bare exceptions
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            unreadable[str(path)] = f"{type(err).__name__}{': ' + first if first else ''}"
            return _NoHeader()

    stempeg.Info = info
    try:
        yield
    finally:
        stempeg.Info = real_info


def _inputs(track) -> List[Path]:
    if track.is_wav:
        return [Path(track.path)] + [Path(track.sources[s].path) for s in SOURCES if s in track.sources]
    return [Path(track.path)]


def decode_stream(track, stem_id: int) -> np.ndarray:
    """``[2, T]`` float32 of one stream of a ``.stem.mp4``: the samples musdb's ``.audio`` gives
    (16-bit PCM from ffmpeg over 32768: exact in float32), without its float64 copies: a stream of
    a 7-minute song is 0.15 GB in float32, musdb's reader held ~0.9 GB while decoding it."""
    import stempeg

    audio, _ = stempeg.read_stems(str(track.path), stem_id=stem_id, start=track.chunk_start,
                                  duration=track.chunk_duration, info=track.info, sample_rate=track.sample_rate,
                                  ffmpeg_format="s16le", dtype=np.float32)
    out = np.ascontiguousarray(audio.T)
    del audio
    return out


def decode_track(track, sample_rate: int):
    """``(stems {source: [2, T]}, mixture [2, T])`` of a musdb track, float32, at ``sample_rate``."""
    missing = [s for s in SOURCES if s not in track.sources]
    if missing:
        raise FrugalError(f"{track.path}: missing stems {', '.join(missing)}")
    arrays, rates = {}, {}
    for name in SOURCES + (MIXTURE,):
        if track.is_wav:
            path = track.path if name == MIXTURE else track.sources[name].path
            audio, sr = read_audio(path)
        else:   # the stem's AAC stream, decoded by stempeg (musdb's reader) straight to float32
            obj = track if name == MIXTURE else track.sources[name]
            try:
                audio, sr = decode_stream(track, obj.stem_id), int(track.rate)
            except Exception as err:
                raise FrugalError(f"{track.path}: could not decode the {name} stream "
                                  f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
        check_finite(audio, path if track.is_wav else f"{track.path} ({name} stream)")
        arrays[name] = resample(to_channels(audio, CHANNELS, track.path), sr, sample_rate)
        rates[name] = sr
    lengths = {k: a.shape[1] for k, a in arrays.items()}
    n = min(lengths.values())
    if max(lengths.values()) - n > MAX_TRIM:
        raise FrugalError(f"{track.path}: stems of unequal length {lengths}")
    mixture = arrays.pop(MIXTURE)[:, :n]
    return {k: a[:, :n] for k, a in arrays.items()}, mixture


def _linkable(track, sample_rate: int, n_samples: int) -> Dict[str, Path]:
    """MUSDB18-HQ files already in the prepared format (hard-linked rather than copied)."""
    if not track.is_wav:
        return {}
    files = {MIXTURE: Path(track.path), **{s: Path(track.sources[s].path) for s in SOURCES}}
    return {k: p for k, p in files.items() if is_prepared_format(p, sample_rate, n_samples)}


def prepare_musdb(conf, progress: bool = True) -> dict:
    """Stage 0 for the corpus the config names; returns the summary written to ``corpus.json``."""
    root, corpus, is_wav = source_corpus(conf)
    sample_rate = int(conf["data"]["sample_rate"])
    out = prepared_root(conf)
    if corpus == CORPUS_DEFAULT:
        generate_corpus(root, CorpusParams.from_conf(conf), progress=progress)
    elif corpus == CORPUS_MUSDB_SAMPLE and not (root / "train").is_dir():
        _download_sample(root)
    if not root.is_dir():
        if any(list_tracks(out / s) for s in SPLITS):
            log.warning("%s is not reachable: using the already prepared corpus %s as it is", root, out)
            return {"corpus": corpus, "prepared": str(out), "source": str(root), "reused": True}
        raise FrugalError(f"{root}: MUSDB18 root not found")
    require_ffmpeg()   # musdb reads headers with ffprobe, even for WAV roots
    splits, unreadable = open_musdb(root, is_wav)
    n_total = sum(len(v) for v in splits.values())
    if n_total == 0:
        raise FrugalError(f"{root}: no tracks found (expected train/ and test/ subfolders)")
    for split in SPLITS:
        clean_temporaries(out / split)
    skipped, counts, reused = [], {s: 0 for s in SPLITS}, 0
    bar = tqdm(total=n_total, desc=f"stage 0: preparing {corpus}", unit="track", disable=not progress)
    for split, tracks in splits.items():
        for track in tracks:
            dst = out / split / track.name
            if str(track.path) in unreadable:
                reason = f"{track.path}: unreadable audio header ({unreadable[str(track.path)]})"
                log.warning("skipping %s: %s", track.name, reason)
                skipped.append({"track": track.name, "split": split, "reason": reason})
                bar.update(1)
                continue
            signature = source_signature(_inputs(track))
            if track_is_valid(dst, signature):
                counts[split] += 1
                reused += 1
                bar.update(1)
                continue
            try:
                _prepare_track(track, dst, dict(name=track.name, split=split, sample_rate=sample_rate,
                                                corpus=corpus, origin=str(track.path), inputs=signature))
                counts[split] += 1
            except DiskFullError:
                raise       # not one track's problem: every later one would be skipped too
            except FrugalError as err:
                log.warning("skipping %s: %s", track.name, err)
                skipped.append({"track": track.name, "split": split, "reason": str(err)})
            bar.update(1)
    bar.close()
    _prune(out, {split: {t.name for t in tracks} for split, tracks in splits.items()})
    summary = {"corpus": corpus, "source": str(root.resolve()), "prepared": str(out.resolve()),
               "sample_rate": sample_rate, "tracks": counts, "reused": reused, "skipped": skipped}
    write_json_atomic(out / "corpus.json", summary)
    log.info("stage 0: %s -> %s: %s tracks (%d already prepared), %d skipped",
             root, out, ", ".join(f"{k} {v}" for k, v in counts.items()), reused, len(skipped))
    for item in skipped:
        log.warning("skipped %s (%s): %s", item["track"], item["split"], item["reason"])
    return summary


def _prepare_track(track, dst: Path, meta: dict) -> None:
    """Decode one track and write it; its audio is freed on return, before the next track is decoded
    (held in the loop's variables, a song's stems stayed in memory while the next one was decoded)."""
    stems, mixture = decode_track(track, int(meta["sample_rate"]))
    write_track(dst, stems, meta, mixture=mixture, links=_linkable(track, int(meta["sample_rate"]), mixture.shape[1]))


def _prune(out: Path, wanted: Dict[str, set]) -> None:
    """Remove prepared tracks that are no longer in the source (e.g. a smaller built-in corpus)."""
    import shutil

    for split, names in wanted.items():
        for track_dir in list_tracks(out / split):
            if track_dir.name not in names:
                log.info("removing %s (no longer in the source corpus)", track_dir)
                shutil.rmtree(track_dir, ignore_errors=True)


def _download_sample(root: Path) -> None:
    """musdb's own 7-second sample download (``musdb.DB(download=True)``); needs internet."""
    import musdb

    log.info("downloading musdb's 7-second sample into %s", root)
    try:
        musdb.DB(root=str(root), download=True)
    except Exception as err:
        raise FrugalError(f"musdb sample download into {root} failed ({type(err).__name__}: {err}); "
                          "it needs internet access, or pass --musdb_root") from None
