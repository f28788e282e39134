"""Stage 1: extra stem folders (resampling, mono, subsets of stems, bad songs skipped, a full disk
stops the stage, index)."""
import errno
import json
import types

import numpy as np
import pytest
import soundfile as sf

from asteroid_frugal.cli.prepare_extra import main
from asteroid_frugal.config import load_config
from asteroid_frugal.data import extra, layout
from asteroid_frugal.data.extra import iter_extra_songs, prepare_extra, root_id, song_targets
from asteroid_frugal.data.layout import read_track_meta
from asteroid_frugal.data.types import ExtraSong
from asteroid_frugal.utils import DiskFullError, FrugalError
from data_helpers import base_conf, stem_signal, write_wav

SLAKH = load_config()["slakh"]


@pytest.fixture
def extra_root(tmp_path):
    r = tmp_path / "stems"
    write_wav(r / "mono48k" / "vocals.wav", stem_signal("vocals", 2.0, 48000, channels=1), 48000)
    write_wav(r / "mono48k" / "drums.flac", stem_signal("drums", 2.0, 44100), 44100)
    write_wav(r / "mono48k" / "bass.wav", stem_signal("bass", 2.0, 44100), 44100)
    write_wav(r / "karaoke" / "vocals.wav", stem_signal("vocals", 1.5), 44100)
    write_wav(r / "karaoke" / "accompaniment.wav", stem_signal("accompaniment", 1.5), 44100)
    write_wav(r / "unequal" / "vocals.wav", stem_signal("vocals", 1.0), 44100)
    write_wav(r / "unequal" / "other.wav", stem_signal("other", 1.5), 44100)
    write_wav(r / "broken" / "vocals.wav", stem_signal("vocals", 1.0), 44100)
    (r / "broken" / "drums.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    write_wav(r / "solo" / "vocals.wav", stem_signal("vocals", 1.0), 44100)
    (r / "notes").mkdir()
    (r / "notes" / "readme.txt").write_text("not audio")
    return r


def test_iter_extra_songs_lists_stems(extra_root):
    songs = {s.name: s for s in iter_extra_songs(extra_root, SLAKH)}
    assert set(songs) == {"mono48k", "karaoke", "unequal", "broken", "solo"}
    assert sorted(songs["mono48k"].stems) == ["bass", "drums", "vocals"]
    assert songs["karaoke"].stems["accompaniment"][0].name == "accompaniment.wav"


def test_stage1_decodes_resamples_and_indexes(extra_root, tmp_path, capsys):
    conf = base_conf(tmp_path / "data", data={"extra_roots": [str(extra_root)]})
    index = prepare_extra(conf, progress=False)
    songs = {s["name"]: s for s in index["songs"]}
    assert set(songs) == {"mono48k", "karaoke", "solo"}
    reasons = {s["song"].rsplit("/", 1)[-1]: s["reason"] for s in index["skipped"]}
    assert "unequal length" in reasons["unequal"] and "1.000 s" in reasons["unequal"]
    assert "drums.wav" in reasons["broken"]
    assert songs["mono48k"]["targets"] == ["vocals", "drums", "bass"]
    assert songs["karaoke"]["targets"] == ["vocals"]          # accompaniment contains drums and bass
    assert songs["solo"]["targets"] == []                     # nothing to mix the target with
    assert index["summary"]["hours_per_source"]["vocals"] == pytest.approx(4.5 / 3600)
    assert json.loads((tmp_path / "data" / "extra_index.json").read_text())["summary"] == index["summary"]
    assert "hours per source" in capsys.readouterr().out
    # 48 kHz mono vocals: resampled to 44.1 kHz, duplicated to stereo, same pitch
    track = tmp_path / "data" / "prepared" / "extra" / root_id(extra_root) / "mono48k"
    assert read_track_meta(track)["n_samples"] == 2 * 44100
    vocals, sr = sf.read(str(track / "vocals.wav"), dtype="float32")
    assert sr == 44100 and vocals.shape == (2 * 44100, 2)
    np.testing.assert_array_equal(vocals[:, 0], vocals[:, 1])
    spec = np.abs(np.fft.rfft(vocals[:, 0]))
    assert np.fft.rfftfreq(len(vocals), 1 / 44100)[np.argmax(spec)] == pytest.approx(440, abs=1)


def test_stage1_rerun_reuses_songs(extra_root, tmp_path):
    conf = base_conf(tmp_path / "data", data={"extra_roots": [str(extra_root)]})
    prepare_extra(conf, progress=False)
    again = prepare_extra(conf, progress=False)
    assert again["roots"][0]["reused"] == 3


def test_cli_takes_extra_roots(extra_root, tmp_path):
    index = main(["--set", f"data.root={tmp_path / 'data'}", "--extra_roots", str(extra_root), "--no_progress"])
    assert len(index["songs"]) == 3


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FrugalError, match="extra data folder not found"):
        list(iter_extra_songs(tmp_path / "nope", SLAKH))


def test_slakh_roots_are_delegated(tmp_path, monkeypatch, extra_root):
    a, b = (write_wav(tmp_path / "slakh" / n, stem_signal("bass", 1.0, seed=i)) for i, n in enumerate(("S00.wav", "S01.wav")))
    v = write_wav(tmp_path / "slakh" / "S02.wav", stem_signal("vocals", 1.0))
    fake = types.ModuleType("asteroid_frugal.data.slakh")
    fake.is_slakh_root = lambda root: root.name == "slakh"
    fake.iter_slakh_songs = lambda root, mapping: iter(
        [ExtraSong("Track00001", {"bass": [a, b], "vocals": [v]}, str(root), "validation")])
    monkeypatch.setattr(extra, "slakh", fake)
    assert [s.name for s in iter_extra_songs(tmp_path / "slakh", SLAKH)] == ["Track00001"]
    assert {s.name for s in iter_extra_songs(extra_root, SLAKH)} >= {"karaoke"}   # plain roots unaffected
    conf = base_conf(tmp_path / "data", data={"extra_roots": [str(tmp_path / "slakh")]})
    (song,) = prepare_extra(conf, progress=False)["songs"]
    assert song["split"] == "validation" and song["targets"] == ["vocals", "bass"]
    bass = sf.read(song["track_dir"] + "/bass.wav", dtype="float32")[0].T
    expected = stem_signal("bass", 1.0, seed=0) + stem_signal("bass", 1.0, seed=1)
    np.testing.assert_allclose(bass, expected, atol=2 / 32768)     # several files of a source are summed


def test_song_targets_follow_the_sources():
    assert song_targets(["vocals", "drums", "bass", "other"]) == ["vocals", "drums", "bass"]
    assert song_targets(["vocals", "accompaniment"]) == ["vocals"]   # accompaniment holds drums and bass
    assert song_targets(["drums", "other"]) == ["drums"]
    assert song_targets(["vocals"]) == []


def test_nan_in_an_extra_stem_is_a_logged_skip(tmp_path):
    root = tmp_path / "stems"
    for song in ("good", "nan"):
        write_wav(root / song / "vocals.wav", stem_signal("vocals", 0.5), 44100)
        bass = stem_signal("bass", 0.5)
        if song == "nan":
            bass[1, 100:110] = np.nan  # PCM_16 stored this as -1.0: full-scale clicks indexed as usable
        write_wav(root / song / "bass.wav", bass, 44100, subtype="FLOAT")
    index = prepare_extra(base_conf(tmp_path / "data", data={"extra_roots": [str(root)]}), progress=False)
    assert [s["name"] for s in index["songs"]] == ["good"]
    (skip,) = index["skipped"]
    assert skip["reason"] == f"{root / 'nan' / 'bass.wav'}: contains 10 NaN or infinite sample(s)"


def test_a_full_disk_stops_stage1_in_one_line_instead_of_skipping_every_song(extra_root, tmp_path, monkeypatch):
    conf = base_conf(tmp_path / "data", data={"extra_roots": [str(extra_root)]})
    real_savez, calls = layout.np.savez, []

    def full_on_the_second_song(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(path, *args, **kwargs)

    monkeypatch.setattr(layout.np, "savez", full_on_the_second_song)
    with pytest.raises(DiskFullError, match=r": disk full: needed [\d.]+ [kM]B, "):
        prepare_extra(conf, progress=False)
    assert not (tmp_path / "data" / "extra_index.json").exists()
    monkeypatch.undo()
    assert len(prepare_extra(conf, progress=False)["songs"]) == 3
