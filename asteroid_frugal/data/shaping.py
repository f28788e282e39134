"""Stage 2: shape the training set as in the paper's experiments; write the manifests.

Writes ``<exp_dir>/data/{train,valid,test}.csv`` (one row per excerpt / chunk:
``track_dir,start,length,...``), ``shaping.json`` (every choice, counts, skipped songs
with reasons, the batch size to use) and the resolved ``conf.yml``. All random choices
are hashes of (seed, song), so they are reproducible, independent of the order songs
are listed in, and stable when songs are added:

* ``database_fraction`` (Table 1): songs ranked by hash(seed, song); a fraction takes the
  first songs of that ranking, so smaller fractions are nested in larger ones;
* ``excerpt_seconds`` (Table 2): each song has one centre (hash position inside the song,
  leaving ``align_seconds`` of room), and excerpts of every length up to
  ``align_seconds`` are centred on it: same songs, same position (Sec. 3.3);
  ``excerpts_per_song`` > 1 cuts the song into equal parts, one excerpt in each
  (non-overlapping);
* ``equal_total_audio`` (Sec. 3.4): ``n_songs x excerpt_seconds`` is held equal to the
  reference (``database_fraction`` of the songs at ``reference_seconds``), and the batch
  size is scaled so that audio per batch is constant;
* songs shorter than the excerpt are skipped (counted) or zero-padded (``short_songs``);
* optional ``energy_filter``: an excerpt whose target is silent in more than
  ``max_silent_fraction`` of its 100 ms frames is moved to another hashed position of
  the same song, or dropped when none qualifies.

Validation and SI-SNR test manifests cut whole tracks into fixed chunks of
``data.valid_chunk_seconds`` (the last chunk ends at the track's end).
"""
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

from ..config import save_config
from ..lock import folder_lock
from ..utils import FrugalError, read_json, write_json_atomic
from .datasets import write_manifest
from .extra import configured_extra_roots
from .layout import (SPLITS, extra_index_path, list_tracks, prepared_root,
                     read_levels, read_track_meta, rest_sources)
from .types import TARGETS

log = logging.getLogger("asteroid_frugal")

ENERGY_FILTER_TRIES = 8


@dataclass
class Song:
    """A prepared song that can serve the target."""

    key: str               # unique: "<corpus>/<name>" or "extra/<root-id>/<name>"
    track_dir: Path
    name: str
    n_samples: int
    corpus: str
    split: str
    sources: List[str] = field(default_factory=list)


def unit_hash(*parts) -> float:
    """Deterministic number in [0, 1) from the parts (seeded choices without a global RNG)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()
    return int(digest[:15], 16) / 16 ** 15


def assign_extra_split(key: str, test_fraction: float, valid_fraction: float, seed: int) -> str:
    """Held-out split of an extra song, from a hash of its key: fixed across targets and runs."""
    u = unit_hash("extra-split", seed, key)
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


def _imposed_split(split: str) -> str:
    return {"validation": "valid", "val": "valid", "dev": "valid"}.get(split, split)


def collect_songs(conf, target: str) -> Dict[str, List[Song]]:
    """Songs per split that can serve ``target``: the prepared corpus plus extra songs."""
    root = prepared_root(conf)
    out: Dict[str, List[Song]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        for track_dir in list_tracks(root / split):
            meta = read_track_meta(track_dir)
            if rest_sources(target, meta["sources"]) is None:
                continue
            out[split].append(Song(f"{root.name}/{meta['name']}", track_dir, meta["name"], int(meta["n_samples"]),
                                   root.name, split, list(meta["sources"])))
    if not out["train"]:
        raise FrugalError(f"{root}: no prepared training tracks (run stage 0, local/prepare_data.py)")
    roots = [str(r.resolve()) for r in configured_extra_roots(conf)]
    if roots and conf["shaping"]["use_extra"]:
        path = extra_index_path(conf)
        if not path.is_file():
            raise FrugalError(f"{path}: missing; run stage 1 (local/prepare_extra.py) for data.extra_roots")
        index = read_json(path)
        missing = set(roots) - {r["root"] for r in index.get("roots", [])}
        if missing:
            raise FrugalError(f"{path}: does not cover {', '.join(sorted(missing))}; re-run stage 1")
        sr = int(conf["data"]["sample_rate"])
        if int(index.get("sample_rate", sr)) != sr:
            raise FrugalError(f"{path}: prepared at {index['sample_rate']} Hz, config says {sr} Hz; re-run stage 1")
        fractions = (float(conf["data"]["extra_test_fraction"]), float(conf["data"]["extra_valid_fraction"]))
        seed = int(conf["data"]["extra_split_seed"])
        for item in index["songs"]:
            if item["root"] not in roots or target not in item["targets"]:
                continue
            key = f"extra/{item['key']}"
            # renderings of one MIDI song with several soundfonts share their split (no test leakage)
            group = f"extra/{item.get('group', item['key'])}"
            split = _imposed_split(item.get("split") or "") or assign_extra_split(group, *fractions, seed=seed)
            if split not in SPLITS:
                raise FrugalError(f"{path}: song {item['key']} has unknown split {split!r}")
            out[split].append(Song(key, Path(item["track_dir"]), item["name"], int(round(item["seconds"] * sr)),
                                   "extra", split, list(item["sources"])))
    for songs in out.values():
        songs.sort(key=lambda s: s.key)
    return out


def rank_songs(songs: List[Song], seed: int) -> List[Song]:
    """Seeded order of songs; prefixes of it are the nested database fractions."""
    return sorted(songs, key=lambda s: (unit_hash("rank", seed, s.key), s.key))


def excerpt_starts(n_samples: int, length: int, count: int, align: int, u: List[float]) -> List[int]:
    """Starts of ``count`` non-overlapping excerpts of ``length`` samples in a song of ``n_samples``.

    The song is cut into ``count`` equal parts; in each part the excerpt is centred at a
    position ``u`` in [0, 1) of the room left by an ``align``-sample window (or at the
    middle of the part when it is shorter than ``align``), so every length <= ``align``
    gets the same centre.
    """
    part = n_samples // count
    starts = []
    for j in range(count):
        lo = j * part
        window = min(max(align, length), part)
        centre = lo + window / 2 + u[j] * (part - window)
        starts.append(int(min(max(round(centre - length / 2), lo), lo + part - length)))
    return starts


@dataclass
class ShapingChoices:
    """The ``shaping`` section, validated."""

    database_fraction: float
    excerpt_seconds: float
    excerpts_per_song: int
    align_seconds: float
    min_song_seconds: float
    equal_total_audio: bool
    reference_seconds: float
    short_songs: str
    energy_filter: bool
    silence_db: float
    max_silent_fraction: float
    seed: int

    @classmethod
    def from_conf(cls, conf) -> "ShapingChoices":
        s = conf["shaping"]
        c = cls(database_fraction=float(s["database_fraction"]),
                excerpt_seconds=float(s["excerpt_seconds"]),
                excerpts_per_song=int(s["excerpts_per_song"]),
                align_seconds=float(s["align_seconds"] or 0),
                min_song_seconds=float(s["min_song_seconds"] or 0),
                equal_total_audio=bool(s["equal_total_audio"]),
                reference_seconds=float(s["reference_seconds"]),
                short_songs=str(s["short_songs"]),
                energy_filter=bool(s["energy_filter"]),
                silence_db=float(s["silence_db"]),
                max_silent_fraction=float(s["max_silent_fraction"]),
                seed=int(s["seed"]))
        if not 0 < c.database_fraction <= 1:
            raise FrugalError(f"shaping.database_fraction={c.database_fraction}: expected a value in (0, 1]")
        if c.excerpt_seconds <= 0 or c.reference_seconds <= 0:
            raise FrugalError("shaping.excerpt_seconds and shaping.reference_seconds must be > 0")
        if c.excerpts_per_song < 1:
            raise FrugalError("shaping.excerpts_per_song must be >= 1")
        if c.short_songs not in ("skip", "pad"):
            raise FrugalError(f"shaping.short_songs={c.short_songs!r}: expected skip or pad")
        if c.equal_total_audio and c.excerpts_per_song != 1:
            raise FrugalError("shaping.equal_total_audio uses one excerpt per song (Sec. 3.4): "
                              "set shaping.excerpts_per_song=1")
        return c


def shape_train(songs: List[Song], choices: ShapingChoices, target: str, sample_rate: int,
                batch_size: int) -> Tuple[List[dict], dict]:
    """Training excerpts and the shaping summary (selected songs, skips, batch size)."""
    length = int(round(choices.excerpt_seconds * sample_rate))
    align = int(round(choices.align_seconds * sample_rate))
    min_len = max(length if choices.short_songs == "skip" else 1, int(round(choices.min_song_seconds * sample_rate)))
    ranked = rank_songs(songs, choices.seed)
    n_fraction = max(1, round(choices.database_fraction * len(ranked)))
    info = {"pool_songs": len(ranked), "fraction_songs": n_fraction, "batch_size": int(batch_size),
            "excerpt_samples": length}
    skipped: List[dict] = []
    if choices.equal_total_audio:
        ratio = choices.reference_seconds / choices.excerpt_seconds
        wanted = max(1, round(n_fraction * ratio))
        eligible = []
        for song in ranked:
            if len(eligible) == wanted:
                break
            if song.n_samples < min_len:
                skipped.append({"song": song.key, "reason": f"shorter than {min_len / sample_rate:.1f} s"})
            else:
                eligible.append(song)
        if len(eligible) < wanted:
            raise FrugalError(f"equal_total_audio: {choices.excerpt_seconds:g} s excerpts need {wanted} songs "
                              f"({n_fraction} reference songs x {choices.reference_seconds:g} s / "
                              f"{choices.excerpt_seconds:g} s) but only {len(eligible)} are long enough; "
                              "lower shaping.database_fraction")
        selected = eligible
        exact_batch = batch_size * ratio
        info.update(reference_songs=n_fraction, reference_seconds=choices.reference_seconds,
                    batch_size=max(1, round(exact_batch)),
                    total_audio_seconds=len(selected) * choices.excerpt_seconds,
                    reference_total_audio_seconds=n_fraction * choices.reference_seconds)
        if abs(info["batch_size"] - exact_batch) > 1e-9:
            log.warning("equal_total_audio: batch size %.3g rounded to %d (audio per batch %.1f s instead of %.1f s)",
                        exact_batch, info["batch_size"], info["batch_size"] * choices.excerpt_seconds,
                        batch_size * choices.reference_seconds)
    else:
        selected = []
        for song in ranked[:n_fraction]:
            if song.n_samples < min_len:
                skipped.append({"song": song.key, "reason": f"shorter than {min_len / sample_rate:.1f} s"})
            else:
                selected.append(song)
    info["batch_seconds"] = info["batch_size"] * choices.excerpt_seconds
    rows = []
    for song in selected:
        song_rows, reason = _song_excerpts(song, choices, target, length, align)
        if reason:
            skipped.append({"song": song.key, "reason": reason})
        rows += song_rows
    if not rows:
        raise FrugalError("stage 2: no training excerpt left (every selected song was skipped: "
                          + "; ".join(f"{s['song']}: {s['reason']}" for s in skipped[:5]) + ")")
    info["skipped"] = skipped
    return rows, info


def _song_excerpts(song: Song, choices: ShapingChoices, target: str, length: int,
                   align: int) -> Tuple[List[dict], str]:
    """Rows of one song (and a reason when it gave fewer excerpts than asked, or none)."""
    reason = ""
    if song.n_samples < length:   # only reached with short_songs=pad
        starts, count = [0], 1
        reason = f"padded from {song.n_samples} to {length} samples"
    else:
        count = min(choices.excerpts_per_song, song.n_samples // length)
        if count < choices.excerpts_per_song:
            reason = f"room for {count} of {choices.excerpts_per_song} excerpts"
        starts = excerpt_starts(song.n_samples, length, count, align,
                                [unit_hash("pos", choices.seed, song.key, j) for j in range(count)])
    levels = _target_levels(song, target)
    rows = []
    for j, start in enumerate(starts):
        active = levels.active_fraction(target, start, length, choices.silence_db)
        if choices.energy_filter and 1 - active > choices.max_silent_fraction:
            start, active = _retry_position(song, choices, levels, target, length, count, j)
            if start is None:
                reason = f"target silent in excerpt {j + 1} at every tried position"
                continue
        rows.append(_row(song, start, length, active))
    return rows, reason


def _target_levels(song: Song, target: str):
    levels = read_levels(song.track_dir)
    if target not in levels.db:
        raise FrugalError(f"{song.track_dir}: levels.npz has no {target} envelope; re-run its preparation stage")
    return levels


def _retry_position(song, choices, levels, target, length, count, j):
    part = song.n_samples // count
    if part < length:
        return None, 0.0
    for attempt in range(ENERGY_FILTER_TRIES):
        start = j * part + int(unit_hash("retry", choices.seed, song.key, j, attempt) * (part - length + 1))
        active = levels.active_fraction(target, start, length, choices.silence_db)
        if 1 - active <= choices.max_silent_fraction:
            return start, active
    return None, 0.0


def _row(song: Song, start: int, length: int, active: float) -> dict:
    return {"track_dir": str(song.track_dir), "start": int(start), "length": int(length), "song": song.name,
            "split": song.split, "corpus": song.corpus, "target_active": float(active)}


def chunk_rows(songs: List[Song], target: str, chunk: int, silence_db: float) -> List[dict]:
    """Fixed chunks covering each track (the last one ends at the track's end; short tracks padded)."""
    rows = []
    for song in songs:
        levels = _target_levels(song, target)
        starts = list(range(0, max(song.n_samples - chunk, 0) + 1, chunk))
        if song.n_samples > chunk and starts[-1] + chunk < song.n_samples:
            starts.append(song.n_samples - chunk)
        for start in starts:
            rows.append(_row(song, start, chunk, levels.active_fraction(target, start, chunk, silence_db)))
    return rows


def _hours(rows: List[dict], sample_rate: int) -> float:
    return sum(r["length"] for r in rows) / sample_rate / 3600


def shape(conf, exp_dir) -> dict:
    """Stage 2: write the manifests, ``shaping.json`` and ``conf.yml`` into ``<exp_dir>/data``
    (holding the experiment's lock, :mod:`asteroid_frugal.lock`: one run at a time)."""
    target = str(conf["data"]["target"])
    if target not in TARGETS:
        raise FrugalError(f"data.target={target!r}: expected one of {', '.join(TARGETS)}")
    with folder_lock(exp_dir, "training-set shaping"):
        choices = ShapingChoices.from_conf(conf)
        sr = int(conf["data"]["sample_rate"])
        songs = collect_songs(conf, target)
        train_rows, info = shape_train(songs["train"], choices, target, sr, int(conf["training"]["batch_size"]))
        chunk = int(round(float(conf["data"]["valid_chunk_seconds"]) * sr))
        eval_rows = {split: chunk_rows(songs[split], target, chunk, choices.silence_db) for split in ("valid", "test")}
        if not eval_rows["valid"]:
            raise FrugalError(f"{prepared_root(conf)}: no validation tracks for {target} "
                              f"(musdb's valid split is empty)")
        out = Path(exp_dir) / "data"
        write_manifest(out / "train.csv", train_rows)
        write_manifest(out / "valid.csv", eval_rows["valid"])
        write_manifest(out / "test.csv", eval_rows["test"])
        summary = {
            "target": target, "seed": choices.seed, "sample_rate": sr, "corpus": prepared_root(conf).name,
            "choices": dict(conf.get("shaping", {})),
            "n_songs": len({r["track_dir"] for r in train_rows}), "n_excerpts": len(train_rows),
            "hours": _hours(train_rows, sr), "excerpt_samples": info.pop("excerpt_samples"),
            "batch_size": info.pop("batch_size"), "batch_seconds": info.pop("batch_seconds"),
            "skipped": info.pop("skipped"), **info,
            "songs": sorted({r["song"] if r["corpus"] != "extra" else r["track_dir"] for r in train_rows}),
            "valid": {"n_tracks": len(songs["valid"]), "n_chunks": len(eval_rows["valid"]),
                      "hours": _hours(eval_rows["valid"], sr), "chunk_samples": chunk},
            "test": {"n_tracks": len(songs["test"]), "n_chunks": len(eval_rows["test"]),
                     "hours": _hours(eval_rows["test"], sr), "chunk_samples": chunk,
                     "extra_tracks": sum(s.corpus == "extra" for s in songs["test"])},
        }
        write_json_atomic(out / "shaping.json", summary)
        save_config(conf, out / "conf.yml")
        log.info("stage 2 (%s): %d songs, %d excerpts of %g s, %.3f h, batch size %d; %d skipped; "
                 "valid %d chunks, test %d chunks -> %s", target, summary["n_songs"], summary["n_excerpts"],
                 choices.excerpt_seconds, summary["hours"], summary["batch_size"], len(summary["skipped"]),
                 len(eval_rows["valid"]), len(eval_rows["test"]), out)
        return summary
