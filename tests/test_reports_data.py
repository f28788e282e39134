"""What a manifest contains (reports.data): songs, excerpts, hours, silent target share from the
prepared level envelopes, and where the target and silence level come from."""
import pytest

from asteroid_frugal.config import load_config
from asteroid_frugal.data.datasets import write_manifest
from asteroid_frugal.data.layout import write_track
from asteroid_frugal.data.types import SOURCES
from asteroid_frugal.reports.data import format_report, manifest_report
from asteroid_frugal.utils import FrugalError, write_json_atomic
from data_helpers import stem_signal

SR = 4410


@pytest.fixture
def manifest(tmp_path):
    """Two prepared songs (20 s with vocals silent for its first 10 s, 10 s) cut into 10 s excerpts."""
    rows = []
    for i, (seconds, silent) in enumerate([(20, (0, 10)), (10, None)]):
        track = tmp_path / "prepared" / f"song {i}"
        write_track(track, {s: stem_signal(s, seconds, SR, seed=i, silent=silent if s == "vocals" else None)
                            for s in SOURCES}, dict(name=f"song {i}", split="valid", sample_rate=SR))
        rows += [dict(track_dir=track, start=start * SR, length=10 * SR, song=f"song {i}", split="valid",
                      corpus="default") for start in range(0, seconds, 10)]
    path = tmp_path / "exp" / "data" / "valid.csv"
    write_manifest(path, rows)
    return path


def test_report_counts_songs_hours_and_silence(manifest):
    rep = manifest_report(manifest, "vocals")
    assert rep["songs"] == 2 and rep["excerpts"] == 3 and rep["excerpt_seconds"] == [10]
    assert rep["hours"] == pytest.approx(30 / 3600)
    assert rep["hours_per_source"] == {s: pytest.approx(30 / 3600) for s in SOURCES}
    assert rep["silent_target_share"] == pytest.approx(10 / 30, abs=0.02)
    assert rep["silence_db"] == load_config()["shaping"]["silence_db"]   # no shaping.json: conf.yml's
    lines = format_report(rep).splitlines()
    assert lines[0].endswith("(vocals): 2 songs, 3 excerpts of 10 s, 0.008 h") and "default 3" in lines[-1]


def test_target_and_silence_level_come_from_shaping_json(manifest):
    with pytest.raises(FrugalError, match="no shaping.json beside it; pass --target"):
        manifest_report(manifest)
    write_json_atomic(manifest.parent / "shaping.json", {"target": "drums", "choices": {"silence_db": -30}})
    rep = manifest_report(manifest)
    assert rep["target"] == "drums" and rep["silence_db"] == -30
    with pytest.raises(FrugalError, match="target 'other': expected one of"):
        manifest_report(manifest, "other")
