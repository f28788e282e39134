"""What a manifest contains: songs, excerpts, hours, hours per source, silent target share.

Its command: ``local/data_report.py exp/vocals/data/train.csv`` (target read from the
``shaping.json`` beside the manifest, or ``--target``); stage 2 prints it after shaping.
"""
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import load_config
from ..data.datasets import read_manifest
from ..data.layout import read_levels, read_track_meta
from ..data.types import EXTRA_SOURCES, TARGETS
from ..utils import FrugalError, read_json


def shaped_with(manifest_csv: Path, target: Optional[str] = None, silence_db: Optional[float] = None):
    """``(target, silence_db)`` of a report: those given, else those the manifest was shaped with
    (``shaping.json`` beside it; for ``silence_db`` without one, conf.yml's ``shaping.silence_db``)."""
    shaping_json = manifest_csv.parent / "shaping.json"
    shaping = read_json(shaping_json) if shaping_json.is_file() else None
    if target is None:
        if shaping is None:
            raise FrugalError(f"{manifest_csv}: no shaping.json beside it; pass --target")
        target = shaping["target"]
    if silence_db is None:
        choices = shaping["choices"] if shaping is not None else load_config()["shaping"]
        silence_db = float(choices["silence_db"])
    if target not in TARGETS:
        raise FrugalError(f"target {target!r}: expected one of {', '.join(TARGETS)}")
    return target, silence_db


def manifest_report(manifest_csv, target: Optional[str] = None, silence_db: Optional[float] = None) -> dict:
    """Counts of a manifest; silence is measured on the prepared level envelopes (100 ms frames).

    ``target`` and ``silence_db`` (None): those the manifest was shaped with (:func:`shaped_with`).
    """
    manifest_csv = Path(manifest_csv)
    target, silence_db = shaped_with(manifest_csv, target, silence_db)
    rows = read_manifest(manifest_csv)
    metas, levels = {}, {}
    hours = {s: 0.0 for s in EXTRA_SOURCES}
    silent = total = 0.0
    sr = None
    for row in rows:
        d = row["track_dir"]
        if d not in metas:
            metas[d] = read_track_meta(d)
            levels[d] = read_levels(d)
            if target not in levels[d].db:
                raise FrugalError(f"{d}: has no {target} stem")
        sr = sr or int(metas[d]["sample_rate"])
        for s in metas[d]["sources"]:
            hours[s] += row["length"] / metas[d]["sample_rate"] / 3600
        silent += row["length"] * (1 - levels[d].active_fraction(target, row["start"], row["length"], silence_db))
        total += row["length"]
    total_hours = sum(r["length"] for r in rows) / (sr or 44100) / 3600
    return {"manifest": str(manifest_csv), "target": target, "songs": len(metas), "excerpts": len(rows),
            "excerpt_seconds": sorted({r["length"] / (sr or 44100) for r in rows}), "hours": total_hours,
            "hours_per_source": {k: v for k, v in hours.items() if v > 0},
            "silent_target_share": silent / total if total else float("nan"),
            "silence_db": silence_db,
            "corpora": dict(zip(*np.unique([r.get("corpus", "") for r in rows], return_counts=True)))
            if rows else {}}


def format_report(rep: dict) -> str:
    """The report of :func:`manifest_report` in three or four lines."""
    lengths = ", ".join(f"{s:g}" for s in rep["excerpt_seconds"])
    lines = [f"{rep['manifest']} ({rep['target']}): {rep['songs']} songs, {rep['excerpts']} excerpts of "
             f"{lengths} s, {rep['hours']:.3f} h",
             "  hours per source: " + ", ".join(f"{k} {v:.3f}" for k, v in rep["hours_per_source"].items()),
             f"  silent {rep['target']} frames (< {rep['silence_db']:g} dBFS, 100 ms): "
             f"{100 * rep['silent_target_share']:.1f} %"]
    if rep["corpora"]:
        lines.append("  excerpts per corpus: " + ", ".join(f"{k} {int(v)}" for k, v in rep["corpora"].items()))
    return "\n".join(lines)
