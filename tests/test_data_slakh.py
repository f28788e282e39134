"""Slakh2100 adapter, on the real-layout fixture in ../shared/data/slakh2100_sample (one track
cut to 2 s; S06 has no audio; S04 is a Choir Aahs stem), and through stages 1-2."""
import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from asteroid_frugal.config import load_config
from asteroid_frugal.data import slakh
from asteroid_frugal.utils import FrugalError

from conftest import REPO

OTHER = ["S00", "S02", "S05", "S07", "S08", "S09", "S10"]
SLAKH = load_config()["slakh"]          # conf.yml's grouping table


def _table(**changes):
    return {**SLAKH, **changes}


@pytest.fixture
def fixture_root(shared_dir):
    root = shared_dir / "data" / "slakh2100_sample"
    if not (root / "Track00001" / "metadata.yaml").is_file():
        pytest.skip(f"{root} is absent")
    return root


def _ids(song):
    return {s: [p.stem for p in files] for s, files in song.stems.items()}


def _read(path):
    return sf.read(str(path), dtype="float64", always_2d=True)[0].T


def test_fixture_is_grouped_by_its_metadata(fixture_root):
    assert slakh.is_slakh_root(fixture_root)
    (song,) = list(slakh.iter_slakh_songs(fixture_root, SLAKH))
    assert song.name == "Track00001" and song.split == "" and song.origin == str(fixture_root)
    # S01 is_drum, S03 inst_class Bass; S04 (Choir Aahs) skipped by default; S06 audio_rendered: false
    assert _ids(song) == {"drums": ["S01"], "bass": ["S03"], "other": OTHER}
    assert list(song.stems) == ["drums", "bass", "other"]       # no vocals: Slakh has none


def test_grouped_stems_sum_to_the_slakh_mix(fixture_root):
    """With nothing mapped to skip, the grouped stems are every rendered stem: their sum is mix.flac."""
    (song,) = list(slakh.iter_slakh_songs(fixture_root, _table(programs={})))
    assert _ids(song)["other"] == ["S00", "S02", "S04", "S05", "S07", "S08", "S09", "S10"]
    total = sum(_read(p) for files in song.stems.values() for p in files)
    np.testing.assert_array_equal(total, _read(fixture_root / "Track00001" / "mix.flac"))


def test_mapping_table_is_configurable(fixture_root):
    mapping = _table(classes={"Guitar": "skip", "Organ": "bass"}, default="other", drum_source="other",
                     programs={33: "vocals"})
    (song,) = list(slakh.iter_slakh_songs(fixture_root, mapping))
    assert _ids(song) == {"vocals": ["S03"], "bass": ["S05", "S09", "S10"], "other": ["S01", "S02", "S04"]}
    # conf.yml's section resolves to itself (the only table)
    assert slakh.resolve_mapping(SLAKH) == {**SLAKH, "classes": dict(SLAKH["classes"]),
                                            "programs": dict(SLAKH["programs"])}


@pytest.mark.parametrize("bad, match", [
    (_table(classes={"Bass": "guitar"}), r"classes\[Bass\]"),
    (_table(default="accompaniment"), "default"),
    (_table(mapping={}), "unknown key"),
    (_table(splits="train"), "splits"),
    ({k: v for k, v in SLAKH.items() if k != "splits"}, "missing key"),
])
def test_bad_mapping_is_a_one_line_error(bad, match):
    with pytest.raises(FrugalError, match=match) as err:
        slakh.resolve_mapping(bad)
    assert "\n" not in str(err.value)


def test_split_folders_and_omitted(fixture_root, tmp_path):
    track = fixture_root / "Track00001"
    for split, name in (("train", "Track00001"), ("validation", "Track00002"), ("test", "Track00003"),
                        ("omitted", "Track00004")):
        (tmp_path / split).mkdir()
        (tmp_path / split / name).symlink_to(track)
    assert slakh.is_slakh_root(tmp_path) and not slakh.is_slakh_root(tmp_path / "nothing")
    songs = {s.name: s.split for s in slakh.iter_slakh_songs(tmp_path, SLAKH)}
    assert songs == {"Track00001": "train", "Track00002": "validation", "Track00003": "test"}
    only_test = slakh.iter_slakh_songs(tmp_path, _table(splits=["test"]))
    assert [(s.name, s.split) for s in only_test] == [("Track00003", "test")]
    with pytest.raises(FrugalError, match="duplicates"):      # redux's omitted tracks would leak
        list(slakh.iter_slakh_songs(tmp_path, _table(splits=["train", "omitted"])))
    # a split folder given directly keeps its split name
    assert [(s.name, s.split) for s in slakh.iter_slakh_songs(tmp_path / "validation", SLAKH)] == \
        [("Track00002", "validation")]


def test_missing_stems_and_broken_tracks_are_skipped_and_logged(fixture_root, tmp_path, caplog):
    shutil.copytree(fixture_root / "Track00001", tmp_path / "Track00001")
    (tmp_path / "Track00001" / "stems" / "S03.flac").unlink()
    shutil.copytree(fixture_root / "Track00001", tmp_path / "Track00002")
    (tmp_path / "Track00002" / "metadata.yaml").write_text("stems: [unclosed\n")
    with caplog.at_level(logging.WARNING, logger="asteroid_frugal.slakh"):
        songs = list(slakh.iter_slakh_songs(tmp_path, SLAKH))
    assert [s.name for s in songs] == ["Track00001"] and "bass" not in songs[0].stems
    assert any("S03" in r.getMessage() and "Track00001" in r.getMessage() for r in caplog.records)
    assert any("Track00002/metadata.yaml" in r.getMessage() and "invalid YAML" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(FrugalError, match="not a Slakh2100 root"):
        list(slakh.iter_slakh_songs(tmp_path / "Track00001", SLAKH))


def _stage(script, data, fixture_root, *args):
    cmd = [sys.executable, str(REPO / "local" / script), "--set", f"data.root={data}",
           "--set", f"data.extra_roots=[{fixture_root}]", "--set", "data.extra_test_fraction=0", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_slakh_fixture_through_stage1_into_a_training_manifest(fixture_root, tmp_path):
    from asteroid_frugal.data.datasets import read_manifest
    from asteroid_frugal.data.musdb_prep import prepare_musdb
    from asteroid_frugal.data.shaping import shape
    from data_helpers import base_conf

    data = tmp_path / "data"
    conf = base_conf(data, default_corpus={"generator": "synth", "n_train": 1, "n_valid": 1, "n_test": 1,
                                                          "song_seconds": 4, "jobs": 1},
                     data={"extra_roots": [str(fixture_root)], "extra_test_fraction": 0.0},
                     shaping={"excerpt_seconds": 1})
    prepare_musdb(conf, progress=False)                               # stage 0: a tiny built-in corpus
    _stage("prepare_extra.py", data, fixture_root, "--no_progress")   # stage 1 on the Slakh root
    index = json.loads((data / "extra_index.json").read_text())
    (song,) = index["songs"]
    assert song["name"] == "Track00001" and sorted(song["sources"]) == ["bass", "drums", "other"]
    assert song["targets"] == ["drums", "bass"] and song["seconds"] == pytest.approx(2.0)
    stems = fixture_root / "Track00001" / "stems"
    prepared = {s: _read(f"{song['track_dir']}/{s}.wav") for s in ("drums", "bass", "other")}
    np.testing.assert_allclose(prepared["drums"], np.repeat(_read(stems / "S01.flac"), 2, 0), atol=1e-4)
    other = sum(_read(stems / f"{s}.flac") for s in OTHER)
    np.testing.assert_allclose(prepared["other"], np.repeat(other, 2, 0), atol=1e-4)   # mono -> stereo, summed

    _stage("shape_trainset.py", data, fixture_root, "--set", "data.target=drums",   # stage 2
           "--set", "shaping.excerpt_seconds=1", "--exp_dir", str(tmp_path / "exp"), "--no_report")
    rows = read_manifest(tmp_path / "exp" / "data" / "train.csv")
    assert [r["song"] for r in rows if r["corpus"] == "extra"] == ["Track00001"]
    # no vocals: the vocals model does not get Slakh songs (a silent target is no SI-SNR example)
    shape({**conf, "data": {**conf["data"], "target": "vocals"}}, tmp_path / "voc")
    assert all(r["corpus"] != "extra" for r in read_manifest(tmp_path / "voc" / "data" / "train.csv"))
