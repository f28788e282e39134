"""The prepared layout: which corpus a config names, atomic tracks that know their inputs (a full
disk: one line, the old track kept), 16-bit storage with a float fallback, level envelopes, and
what "the rest" of a target is."""
import json

import numpy as np
import pytest
import soundfile as sf

from asteroid_frugal.data import layout
from asteroid_frugal.data.layout import (clean_temporaries, frame_levels_db, list_tracks, prepared_root, read_levels,
                                         read_track_meta, rest_sources, source_corpus, source_signature,
                                         track_is_valid, write_track)
from asteroid_frugal.utils import DiskFullError, FrugalError
from data_helpers import base_conf, make_hq_root, stem_signal, write_wav
from disk_helpers import no_space, small_disk

SR = 8000


def _stems(seconds=1.0, scale=1.0):
    return {s: scale * stem_signal(s, seconds, SR, seed=i) for i, s in enumerate(("vocals", "drums", "bass", "other"))}


def test_rest_sources_rules():
    assert rest_sources("vocals", ["vocals", "accompaniment", "drums"]) == ["accompaniment"]
    assert rest_sources("vocals", ["vocals", "drums", "other"]) == ["drums", "other"]
    assert rest_sources("drums", ["drums", "accompaniment", "vocals"]) == ["vocals"]
    assert rest_sources("bass", ["drums", "other"]) is None
    assert rest_sources("vocals", ["vocals"]) is None


def test_config_names_the_source_corpus_and_its_prepared_folder(tmp_path):
    conf = base_conf(tmp_path / "data")
    assert source_corpus(conf) == (tmp_path / "data" / "default_corpus_hq", "default", True)
    assert prepared_root(conf) == tmp_path / "data" / "prepared" / "default"
    conf["data"]["musdb_download"] = True
    assert source_corpus(conf)[1:] == ("musdb18_7s", False)
    hq = make_hq_root(tmp_path / "hq", {"A - B": ("train", 0.5)}, sr=SR)
    conf["data"].update(musdb_root=str(hq), sample_rate=22050)
    assert source_corpus(conf) == (hq, "musdb18hq", True)
    assert prepared_root(conf).name == "musdb18hq_22050"                 # other rates: their own folder
    (tmp_path / "empty" / "train").mkdir(parents=True)
    conf["data"]["musdb_root"] = str(tmp_path / "empty")
    with pytest.raises(FrugalError, match="not a MUSDB18 root"):
        source_corpus(conf)


def test_written_track_is_complete_and_tied_to_its_inputs(tmp_path):
    src = write_wav(tmp_path / "in.wav", stem_signal("vocals", 0.1, SR), SR)
    signature = source_signature([src])
    stems = _stems()
    meta = write_track(tmp_path / "split" / "song", stems, dict(name="song", sample_rate=SR, inputs=signature),
                       mixture=sum(stems.values()))
    track = tmp_path / "split" / "song"
    assert meta == read_track_meta(track) and meta["format"] == "PCM_16" and meta["has_mixture"]
    assert meta["sources"] == ["vocals", "drums", "bass", "other"] and meta["n_samples"] == SR
    assert sorted(p.name for p in track.iterdir()) == ["bass.wav", "drums.wav", "levels.npz", "mixture.wav",
                                                        "other.wav", "track.json", "vocals.wav"]
    assert track_is_valid(track, signature) and list_tracks(track.parent) == [track]
    write_wav(src, stem_signal("vocals", 0.2, SR), SR)                   # the input changed: stale
    assert not track_is_valid(track, source_signature([src]))
    (track / "drums.wav").write_bytes(b"broken")
    assert not track_is_valid(track)
    (track / "track.json").write_text("{")
    with pytest.raises(FrugalError, match="track.json: not valid JSON"):
        read_track_meta(track)


def test_stems_that_would_clip_are_stored_as_float_never_rescaled(tmp_path):
    stems = _stems(scale=6.0)                                            # peaks above 1
    meta = write_track(tmp_path / "loud", stems, dict(name="loud", sample_rate=SR))
    assert meta["format"] == "FLOAT"
    np.testing.assert_array_equal(sf.read(str(tmp_path / "loud" / "bass.wav"), dtype="float32")[0].T, stems["bass"])
    stems["drums"][0, 3] = np.nan
    with pytest.raises(FrugalError, match="drums contain"):
        write_track(tmp_path / "nan", stems, dict(name="nan", sample_rate=SR))
    with pytest.raises(FrugalError, match="unequal length"):
        write_track(tmp_path / "short", {**_stems(), "bass": stem_signal("bass", 0.5, SR)},
                    dict(name="s", sample_rate=SR))
    assert not (tmp_path / "nan").exists() and not (tmp_path / "short").exists()


def test_interrupted_write_leaves_only_a_temporary_that_is_cleaned(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "write_json_atomic", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        write_track(tmp_path / "song", _stems(), dict(name="song", sample_rate=SR))
    assert list(tmp_path.iterdir()) == []                                # temporary removed, nothing half-there
    (tmp_path / ".tmp-song-x").mkdir()
    (tmp_path / ".old-song-y").mkdir()
    assert clean_temporaries(tmp_path) == 2 and list(tmp_path.iterdir()) == []


def test_levels_envelope_and_active_fraction(tmp_path):
    vocals = stem_signal("vocals", 1.0, SR, silent=(0.0, 0.5))
    write_track(tmp_path / "t", {**_stems(), "vocals": vocals}, dict(name="t", sample_rate=SR))
    levels = read_levels(tmp_path / "t")
    assert levels.hop == SR // 10 and len(levels.db["vocals"]) == 10
    np.testing.assert_allclose(levels.db["vocals"], frame_levels_db(vocals, SR // 10), atol=1e-5)
    assert levels.active_fraction("vocals", 0, SR, -50) == pytest.approx(0.5)
    assert levels.active_fraction("vocals", 0, 2 * SR, -50) == pytest.approx(0.25)   # past the end: silent
    assert json.loads((tmp_path / "t" / "track.json").read_text())["layout_version"] == layout.LAYOUT_VERSION


def test_a_full_disk_while_writing_a_track_is_one_line_and_keeps_the_old_track(tmp_path, monkeypatch):
    track = tmp_path / "split" / "song"
    write_track(track, _stems(), dict(name="song", sample_rate=SR))
    monkeypatch.setattr(layout.np, "savez", lambda *a, **k: (_ for _ in ()).throw(no_space(a[0])))
    with pytest.raises(DiskFullError) as err:
        write_track(track, _stems(2.0), dict(name="song", sample_rate=SR))
    # 4 stereo stems of 2 s at 8 kHz in 16 bit, their level envelopes, the track record
    assert str(err.value).startswith(f"{track}: disk full: needed 260.8 kB, ") and "\n" not in str(err.value)
    assert track_is_valid(track) and read_track_meta(track)["n_samples"] == SR     # the old track, untouched
    assert [p.name for p in track.parent.iterdir()] == ["song"]                   # no temporary left


def test_a_track_written_onto_a_really_full_disk(tmp_path):
    with small_disk(tmp_path / "disk", 300) as disk:
        stems = _stems(3.0)
        with pytest.raises(DiskFullError) as err:    # 4 stems and the mixture: 480 kB
            write_track(disk / "train" / "song", stems, dict(name="song", sample_rate=SR), mixture=sum(stems.values()))
        assert str(err.value).startswith(f"{disk / 'train' / 'song'}: disk full: needed 485.1 kB, ")
        assert list((disk / "train").iterdir()) == []


@pytest.mark.parametrize("n", [1, 4409, 4410, 4411, 300 * 4410 + 17])
def test_frame_levels_in_blocks_equal_the_whole_song_at_once(n):
    """Levels computed a block of frames at a time (no float64 copy of the whole song) equal the
    formula over the whole padded song, bit for bit, partial last frame included."""
    audio = np.random.default_rng(n).standard_normal((2, n)).astype(np.float32)
    hop = 4410
    frames = -(-n // hop)
    padded = np.zeros((2, frames * hop))
    padded[:, :n] = audio
    power = (padded.reshape(2, frames, hop) ** 2).mean(axis=(0, 2))
    if n % hop:
        power[-1] *= hop / (n % hop)
    assert np.array_equal(frame_levels_db(audio, hop), (10 * np.log10(power + 1e-12)).astype(np.float32))
