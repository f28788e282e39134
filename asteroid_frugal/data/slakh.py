"""Slakh2100 as an extra-data source: its instrument stems grouped into MUSDB18 sources.

A Slakh2100 root (``flac_redux`` or original layout) is ``<root>/<split>/TrackNNNNN/`` with
``metadata.yaml`` and ``stems/SNN.flac`` (mono, 44.1 kHz); a split folder or a folder of tracks
given directly works too. Each track becomes one :class:`ExtraSong` whose ``stems[source]`` lists
the instrument files summed into that source. Stage 1 decodes, duplicates mono to stereo and sums;
the mixture is the sum of the grouped stems (Slakh's ``mix.flac`` is not used).

Grouping (config section ``slakh``, a table the user can change): per stem, a ``programs`` entry
(by ``midi_program_name`` or 0-based ``program_num``, as metadata.yaml writes them) wins, then
``is_drum: true`` -> ``drum_source``, then ``classes`` (by ``inst_class``), else ``default``.
The source ``skip`` leaves the stem out of the song (and of its mixture). Stems whose
``audio_rendered`` is false, or whose file is missing, are skipped and logged.

Slakh has no vocals, so its songs carry no ``vocals`` stem: they are full examples for the drums
and bass targets (target vs. the sum of the rest). For the vocals target a Slakh song can only be
an accompaniment: sound as the "rest" of a remix with vocals from another song, never as an
example with silent vocals (SI-SNR of a silent target is undefined and would teach the model to
output silence). Stage 2 makes no such remixes, so the vocals model gets no Slakh songs (a song
serves a target only when it has that target's stem). By default the GM voice programs (Choir
Aahs, Voice Oohs, Synth Voice, rendered with sampled choirs) are left out, because MUSDB18 counts
sung backing vocals as vocals: kept in an accompaniment they would teach a vocals model to remove
voices. Left out, every Slakh song stays valid for any future use (its mixture is the sum of what
is kept).
"""
import logging
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import yaml

from ..audio import AUDIO_EXTENSIONS
from ..utils import FrugalError
from .types import SOURCES, ExtraSong

log = logging.getLogger("asteroid_frugal.slakh")

SKIP = "skip"
SPLIT_DIRS = ("train", "validation", "test", "omitted")
MAPPING_KEYS = ("classes", "default", "drum_source", "programs", "splits")   # of the ``slakh`` section
TRACK_RE = re.compile(r"^Track\d+$")


def is_slakh_root(root) -> bool:
    """True for a folder of Slakh2100 tracks, or of its split folders (train/validation/test)."""
    root = Path(root)
    if not root.is_dir():
        return False
    for folder in (root, *(root / s for s in SPLIT_DIRS)):
        if any(_is_track(p) for p in _children(folder)):
            return True
    return False


def iter_slakh_songs(root, mapping: Dict[str, Any]) -> Iterator[ExtraSong]:
    """Yield one :class:`ExtraSong` per usable Slakh2100 track under ``root``, in name order.

    ``mapping`` is the config's ``slakh`` section; ``split`` is the Slakh split folder the track
    lives in ("" for tracks directly under root).
    """
    root = Path(root)
    if not is_slakh_root(root):
        raise FrugalError(f"{root}: not a Slakh2100 root (no TrackNNNNN/metadata.yaml, "
                          f"directly or under {'/'.join(SPLIT_DIRS[:3])})")
    table = resolve_mapping(mapping)
    n_songs = 0
    for split, track in _tracks(root, table["splits"]):
        song = slakh_song(track, table, split=split, origin=str(root))
        if song is not None:
            n_songs += 1
            yield song
    if n_songs == 0:
        log.warning("%s: no usable Slakh2100 track (see the messages above)", root)


def slakh_song(track, mapping: Dict[str, Any], split: str = "", origin: str = "") -> Optional[ExtraSong]:
    """One track folder -> :class:`ExtraSong`, or None (logged) when nothing in it is usable
    (``mapping``: the ``slakh`` section, or :func:`resolve_mapping`'s table)."""
    track = Path(track)
    table = resolve_mapping(mapping)
    try:
        stems_meta = read_metadata(track)
    except FrugalError as err:
        log.warning("skipping Slakh track: %s", err)
        return None
    stems: Dict[str, List[Path]] = {}
    for stem_id, meta in sorted(stems_meta.items()):
        if not meta.get("audio_rendered", True):
            log.debug("%s/%s: audio_rendered is false, skipped", track.name, stem_id)
            continue
        source = stem_source(meta, table)
        if source == SKIP:
            log.debug("%s/%s (%s): mapped to skip", track.name, stem_id, meta.get("midi_program_name"))
            continue
        path = _stem_file(track, stem_id)
        if path is None:
            log.warning("%s: stem %s has no audio file in stems/, skipped", track, stem_id)
            continue
        stems.setdefault(source, []).append(path)
    if not stems:
        log.warning("%s: no rendered stem left after grouping, skipped", track)
        return None
    return ExtraSong(name=track.name, stems={s: stems[s] for s in SOURCES if s in stems},
                     origin=origin, split=split)


def stem_source(meta: Dict[str, Any], mapping: Dict[str, Any]) -> str:
    """The MUSDB18 source (or ``skip``) of one stem's metadata, by the mapping's precedence."""
    programs = mapping["programs"]
    name = str(meta.get("midi_program_name", "")).strip().lower()
    for key, source in programs.items():
        key = str(key).strip()
        if (key.isdigit() and int(key) == meta.get("program_num")) or key.lower() == name:
            return source
    if meta.get("is_drum"):
        return mapping["drum_source"]
    return mapping["classes"].get(str(meta.get("inst_class", "")), mapping["default"])


def resolve_mapping(mapping: Dict[str, Any]) -> Dict[str, Any]:
    """The grouping table of a config's ``slakh`` section (all of :data:`MAPPING_KEYS`), validated."""
    unknown = set(mapping) - set(MAPPING_KEYS)
    if unknown:
        raise FrugalError(f"slakh config: unknown key(s) {sorted(unknown)} "
                          f"(known: {', '.join(MAPPING_KEYS)})")
    missing = [k for k in MAPPING_KEYS if k not in mapping]
    if missing:
        raise FrugalError(f"slakh config: missing key(s) {', '.join(missing)} (the whole section is needed)")
    table = dict(mapping)
    allowed = set(SOURCES) | {SKIP}
    targets = [("default", table["default"]), ("drum_source", table["drum_source"])]
    targets += [(f"classes[{k}]", v) for k, v in (table["classes"] or {}).items()]
    targets += [(f"programs[{k}]", v) for k, v in (table["programs"] or {}).items()]
    for where, source in targets:
        if source not in allowed:
            raise FrugalError(f"slakh config: {where} = {source!r} is not one of "
                              f"{', '.join(sorted(allowed))}")
    splits = table["splits"]
    if not isinstance(splits, (list, tuple)) or any(s not in SPLIT_DIRS[:3] for s in splits):
        raise FrugalError(f"slakh config: splits = {splits!r} must be a list of {', '.join(SPLIT_DIRS[:3])} "
                          "('omitted' holds duplicates of tracks in the other splits)")
    table["classes"] = dict(table["classes"] or {})
    table["programs"] = dict(table["programs"] or {})
    return table


def read_metadata(track: Path) -> Dict[str, Dict[str, Any]]:
    """``stems`` of a track's metadata.yaml; one-line error naming the file when unusable."""
    path = track / "metadata.yaml"
    try:
        meta = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FrugalError(f"{path}: file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise FrugalError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    stems = meta.get("stems") if isinstance(meta, dict) else None
    if not isinstance(stems, dict) or not all(isinstance(v, dict) for v in stems.values()):
        raise FrugalError(f"{path}: no 'stems' mapping of stem id -> metadata")
    return {str(k): v for k, v in stems.items()}


def _tracks(root: Path, splits: List[str]) -> Iterator[Tuple[str, Path]]:
    """(split, track folder) pairs: the root's own tracks, then each wanted split folder's."""
    own_split = root.name if root.name in SPLIT_DIRS[:3] else ""
    for track in sorted(p for p in _children(root) if _is_track(p)):
        yield own_split, track
    for split in splits:
        for track in sorted(p for p in _children(root / split) if _is_track(p)):
            yield split, track


def _children(folder: Path) -> List[Path]:
    return list(folder.iterdir()) if folder.is_dir() else []


def _is_track(path: Path) -> bool:
    return bool(TRACK_RE.match(path.name)) and (path / "metadata.yaml").is_file()


def _stem_file(track: Path, stem_id: str) -> Optional[Path]:
    """``stems/<id>.<ext>`` (flac in Slakh2100, wav in some derived versions), or None."""
    for ext in (".flac", ".wav", *AUDIO_EXTENSIONS):
        path = track / "stems" / f"{stem_id}{ext}"
        if path.is_file():
            return path
    return None
