"""Stage 1: extra per-instrument data (the paper's ~30x MUSDB18 on top of it).

An extra root holds ``<song>/<source>.<wav|flac|mp3|...>`` with sources among vocals,
drums, bass, other, accompaniment (any subset per song); Slakh2100 roots are delegated
to :mod:`asteroid_frugal.data.slakh`; ``midi_render.midi_dirs`` are rendered first by
:mod:`asteroid_frugal.midi_render` (stage 1 owns that plumbing; the renderer knows nothing
of stage 1). Each song is decoded once
(files of one source summed, resampled to ``data.sample_rate``, mono duplicated to
stereo) into ``<data.root>/prepared/extra/<root-id>/<song>/`` (same layout as stage 0),
and ``<data.root>/extra_index.json`` lists the songs, their durations and the targets
each can serve (see :func:`layout.rest_sources`), with hours per source.
A song whose stems have unequal lengths, or with an unreadable file, is skipped and
reported; it never stops the stage.
"""
import hashlib
import logging
import re
import shutil
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy as np
from tqdm import tqdm

from ..audio import AUDIO_EXTENSIONS, check_finite, read_audio, resample, to_channels
from ..midi_render import RenderOptions, render_midi_dir, rendering_group
from ..utils import DiskFullError, FrugalError, write_json_atomic
from . import slakh
from .layout import (CHANNELS, clean_temporaries, extra_index_path, extra_prepared_root, list_tracks,
                     read_track_meta, rest_sources, source_signature, track_is_valid, write_track)
from .types import EXTRA_SOURCES, TARGETS, ExtraSong

log = logging.getLogger("asteroid_frugal")


def root_id(root) -> str:
    """Stable folder name of an extra root: its name plus a hash of its absolute path."""
    root = Path(root).expanduser().resolve()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", root.name) or "root"
    return f"{slug}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"


def iter_extra_songs(root, slakh_mapping: dict) -> Iterator[ExtraSong]:
    """Songs of an extra root as :class:`ExtraSong` records (files per source, not decoded).

    ``slakh_mapping``: the config's ``slakh`` section, for Slakh2100 roots.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FrugalError(f"{root}: extra data folder not found")
    if slakh.is_slakh_root(root):
        yield from slakh.iter_slakh_songs(root, slakh_mapping)
        return
    rank = {ext: i for i, ext in enumerate(AUDIO_EXTENSIONS)}
    for song_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        stems: Dict[str, List[Path]] = {}
        for f in sorted(song_dir.iterdir(), key=lambda p: (rank.get(p.suffix.lower(), 99), p.name)):
            source = f.stem.lower()
            if f.is_file() and f.suffix.lower() in rank and source in EXTRA_SOURCES:
                if source in stems:
                    log.warning("%s: several files for %s; using %s", song_dir, source, stems[source][0].name)
                    continue
                stems[source] = [f]
        if stems:
            yield ExtraSong(name=song_dir.name, stems=stems, origin=str(root))


def decode_extra_song(song: ExtraSong, sample_rate: int, n_channels: int = CHANNELS) -> Dict[str, np.ndarray]:
    """``{source: [C, T] float32}``: files of a source summed, resampled, mono -> stereo.

    All files must have the same duration (one sample of slack for resampling round-off).
    """
    decoded: Dict[str, List[np.ndarray]] = {}
    lengths: Dict[str, int] = {}
    for source, files in song.stems.items():
        for path in files:
            audio, sr = read_audio(path)
            if audio.shape[1] == 0:
                raise FrugalError(f"{path}: empty audio file")
            check_finite(audio, path)
            audio = resample(to_channels(audio, n_channels, path), sr, sample_rate)
            decoded.setdefault(source, []).append(audio)
            lengths[Path(path).name if len(files) == 1 else str(path)] = audio.shape[1]
    if max(lengths.values()) - min(lengths.values()) > 1:
        detail = ", ".join(f"{k}: {v / sample_rate:.3f} s" for k, v in lengths.items())
        raise FrugalError(f"stems of unequal length ({detail})")
    n = min(lengths.values())
    return {source: np.sum([a[:, :n] for a in arrays], axis=0).astype(np.float32)
            for source, arrays in decoded.items()}


def song_targets(sources) -> List[str]:
    """Targets (vocals, drums, bass) a song with these sources can serve."""
    return [t for t in TARGETS if rest_sources(t, sources) is not None]


def configured_midi_outputs(conf) -> List[Tuple[Path, Path]]:
    """``(midi_dir, rendered_folder)`` for each ``midi_render.midi_dirs`` entry (nothing rendered)."""
    dirs = [Path(str(d)).expanduser() for d in (conf["midi_render"]["midi_dirs"] or [])]
    out_root = Path(str(conf["data"]["root"])) / "midi_rendered"
    return [(d, out_root / root_id(d)) for d in dirs]


def render_configured_midi_dirs(conf, progress: bool = True) -> List[Path]:
    """Stage 1's MIDI option: render each ``midi_render.midi_dirs`` folder (resumably) into
    ``<data.root>/midi_rendered/<id>/`` and return those folders, to be read as extra roots."""
    pairs = configured_midi_outputs(conf)
    if not pairs:
        return []
    opts = RenderOptions.from_conf(conf["midi_render"])
    for midi_dir, out in pairs:
        render_midi_dir(midi_dir, out, opts, progress=progress)
    return [out for _, out in pairs]


def configured_extra_roots(conf) -> List[Path]:
    """Stage 1's inputs: ``data.extra_roots`` plus the folders ``midi_render.midi_dirs`` render into."""
    roots = [Path(str(r)).expanduser() for r in (conf["data"]["extra_roots"] or [])]
    return roots + [out for _, out in configured_midi_outputs(conf)]


def prepare_extra(conf, progress: bool = True) -> dict:
    """Stage 1 for every ``data.extra_roots`` (and ``midi_render.midi_dirs``, rendered first);
    writes and returns the extra index."""
    render_configured_midi_dirs(conf, progress)
    roots = configured_extra_roots(conf)
    sample_rate = int(conf["data"]["sample_rate"])
    out_root = extra_prepared_root(conf)
    songs, skipped, roots_info = [], [], []
    for root in roots:
        rid = root_id(root)
        out = out_root / rid
        clean_temporaries(out)
        listing = list(iter_extra_songs(root, conf["slakh"]))
        reused = 0
        for song in tqdm(listing, desc=f"stage 1: {root.name}", unit="song", disable=not progress):
            dst = out / song.name
            files = [p for paths in song.stems.values() for p in paths]
            signature = source_signature(files)
            try:
                if track_is_valid(dst, signature):
                    reused += 1
                else:
                    stems = decode_extra_song(song, sample_rate)
                    write_track(dst, stems, dict(name=song.name, split=song.split, sample_rate=sample_rate,
                                                 corpus="extra", origin=str(root.resolve()), root_id=rid,
                                                 inputs=signature))
            except DiskFullError:
                raise       # not one song's problem: every later one would be skipped too
            except FrugalError as err:
                reason = str(err)
                log.warning("extra song skipped: %s: %s", root / song.name, reason)
                skipped.append({"song": str(root / song.name), "reason": reason})
                continue
            meta = read_track_meta(dst)
            songs.append({"key": f"{rid}/{song.name}", "group": f"{rid}/{rendering_group(root / song.name)}",
                          "name": song.name, "root": str(root.resolve()),
                          "root_id": rid, "track_dir": str(dst.resolve()), "split": song.split or "",
                          "seconds": meta["n_samples"] / sample_rate, "sources": meta["sources"],
                          "targets": song_targets(meta["sources"])})
        names = {s.name for s in listing}
        for track_dir in list_tracks(out):
            if track_dir.name not in names:
                log.info("removing %s (no longer in %s)", track_dir, root)
                shutil.rmtree(track_dir, ignore_errors=True)
        roots_info.append({"root": str(root.resolve()), "root_id": rid, "songs": len(listing), "reused": reused})
    index = {"sample_rate": sample_rate, "roots": roots_info, "songs": songs, "skipped": skipped,
             "summary": summarise(songs)}
    write_json_atomic(extra_index_path(conf), index)
    print(format_summary(index))
    return index


def summarise(songs: List[dict]) -> dict:
    hours = {s: 0.0 for s in EXTRA_SOURCES}
    target_hours = {t: 0.0 for t in TARGETS}
    for song in songs:
        for s in song["sources"]:
            hours[s] += song["seconds"] / 3600
        for t in song["targets"]:
            target_hours[t] += song["seconds"] / 3600
    return {"songs": len(songs), "hours": sum(s["seconds"] for s in songs) / 3600,
            "hours_per_source": hours, "hours_per_target": target_hours}


def format_summary(index: dict) -> str:
    s = index["summary"]
    lines = [f"extra data: {s['songs']} songs, {s['hours']:.3f} h, {len(index['skipped'])} skipped"]
    lines.append("  hours per source: " + ", ".join(f"{k} {v:.3f}" for k, v in s["hours_per_source"].items()))
    lines.append("  hours per target (songs that can serve it): "
                 + ", ".join(f"{k} {v:.3f}" for k, v in s["hours_per_target"].items()))
    for item in index["skipped"]:
        lines.append(f"  skipped {item['song']}: {item['reason']}")
    return "\n".join(lines)
