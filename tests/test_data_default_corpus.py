"""The built-in corpus: deterministic, MUSDB18-HQ layout, vocal-like, through the same stage 0 path."""
import numpy as np
import pytest
import soundfile as sf
import yaml

from asteroid_frugal.data.default_corpus import SETUP_FILE, CorpusParams, generate_corpus, generate_song
from asteroid_frugal.data.layout import frame_levels_db, list_tracks, prepared_root, read_track_meta
from asteroid_frugal.data.musdb_prep import prepare_musdb
from data_helpers import base_conf

SR = 44100


@pytest.fixture(scope="module")
def song():
    return generate_song(seed=0, split="train", index=0, seconds=8.0)


def test_song_is_deterministic_and_songs_differ(song):
    again = generate_song(seed=0, split="train", index=0, seconds=8.0)
    other = generate_song(seed=0, split="train", index=1, seconds=8.0)
    for s in ("vocals", "drums", "bass", "other"):
        assert song[s].shape == (2, 8 * SR) and song[s].dtype == np.float32
        np.testing.assert_array_equal(song[s], again[s])
        assert not np.allclose(song[s], other[s])


def test_vocals_are_pitched_with_gaps_and_centred(song):
    v = song["vocals"]
    levels = frame_levels_db(v)
    active = levels > -50
    assert 0.2 < active.mean() < 0.95          # sung passages and silent ones
    # centred: left and right nearly equal. The dry voice is identical in both channels;
    # the room reverb (up to 0.3 x a unit-energy decorrelated IR, RT60 up to 1.4 s) lowers the
    # correlation to 0.70-0.93 over the first songs, so 0.6 still rules out independent channels
    assert np.corrcoef(v[0], v[1])[0, 1] > 0.6
    assert abs(10 * np.log10(np.mean(v[0] ** 2) / np.mean(v[1] ** 2))) < 1.0
    # a voiced frame has a clear fundamental in the singing range and harmonics above it
    frame = int(np.argmax(levels)) * 4410
    x = v[0, frame:frame + 4096] * np.hanning(4096)
    spec = np.abs(np.fft.rfft(x, 16384))
    freqs = np.fft.rfftfreq(16384, 1 / SR)
    peak = freqs[np.argmax(spec * (freqs < 1200))]
    assert 80 < peak < 1100
    assert spec[(freqs > 1500) & (freqs < 4000)].max() > 1e-3 * spec.max()   # formant region energy


def test_levels_are_musdb_like(song):
    rms = {k: 20 * np.log10(np.sqrt(np.mean(a ** 2))) for k, a in song.items()}
    assert all(-40 < v < -8 for v in rms.values()), rms
    assert max(rms.values()) - min(rms.values()) < 15
    assert np.abs(sum(song.values())).max() <= 0.95 + 1e-6


def test_generated_corpus_goes_through_stage0(tmp_path):
    conf = base_conf(tmp_path / "data", default_corpus={"n_train": 2, "n_valid": 1, "n_test": 1,
                                                          "song_seconds": 5, "jobs": 1})
    summary = prepare_musdb(conf, progress=False)
    assert summary["corpus"] == "default" and summary["tracks"] == {"train": 2, "valid": 1, "test": 1}
    src = tmp_path / "data" / "default_corpus_hq"
    assert sorted(p.name for p in (src / "train").iterdir()) == [
        "Frugal Synth - Train 001", "Frugal Synth - Train 002", "Frugal Synth - Valid 001"]
    assert yaml.safe_load((src / SETUP_FILE).read_text())["validation_tracks"] == ["Frugal Synth - Valid 001"]
    song_dir = src / "test" / "Frugal Synth - Test 001"
    stems = [sf.read(str(song_dir / f"{s}.wav"), dtype="float32")[0] for s in ("vocals", "drums", "bass", "other")]
    mix = sf.read(str(song_dir / "mixture.wav"), dtype="float32")[0]
    assert np.abs(mix - sum(stems)).max() < 4 / 32768        # 16-bit rounding of each file only
    root = prepared_root(conf)
    valid = list_tracks(root / "valid")
    assert [p.name for p in valid] == ["Frugal Synth - Valid 001"]
    assert read_track_meta(valid[0])["n_samples"] == 5 * SR
    # a bigger corpus keeps the existing songs and only adds new ones
    before = (song_dir / "vocals.wav").stat().st_mtime_ns
    conf["default_corpus"]["n_test"] = 2
    assert prepare_musdb(conf, progress=False)["tracks"]["test"] == 2
    assert (song_dir / "vocals.wav").stat().st_mtime_ns == before


def test_bad_corpus_size_is_a_clear_error():
    from asteroid_frugal.utils import FrugalError

    with pytest.raises(FrugalError, match="n_valid"):
        CorpusParams.from_conf({"default_corpus": {"n_valid": 0}, "data": {}})


def test_foreign_folder_is_not_overwritten(tmp_path):
    from asteroid_frugal.utils import FrugalError

    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(FrugalError, match="not written by the corpus generator"):
        generate_corpus(tmp_path, CorpusParams(n_train=1, n_valid=1, n_test=1, song_seconds=4, jobs=1), progress=False)
