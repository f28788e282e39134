"""The built-in corpus: deterministic, MUSDB18-HQ layout, vocal-like, through the same stage 0 path.

The synth generator (v2, NumPy) first; then corpus v3 (midi: composed GM MIDI rendered with
FluidSynth, two soundfonts) on a few very short real renderings."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from asteroid_frugal.data.default_corpus import SETUP_FILE, CorpusParams, generate_corpus, generate_song
from asteroid_frugal.data.layout import frame_levels_db, list_tracks, prepared_root, read_track_meta
from asteroid_frugal.data.musdb_prep import prepare_musdb
from asteroid_frugal.data.types import SOURCES as SOURCES_
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
    conf = base_conf(tmp_path / "data", default_corpus={"generator": "synth", "n_train": 2, "n_valid": 1,
                                                          "n_test": 1, "song_seconds": 5, "jobs": 1})
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


def test_bad_corpus_settings_are_clear_errors(tmp_path):
    from asteroid_frugal.utils import FrugalError

    with pytest.raises(FrugalError, match="n_valid"):
        CorpusParams.from_conf(base_conf(tmp_path, default_corpus={"n_valid": 0}))
    with pytest.raises(FrugalError, match="generator: 'fm' is not one of midi, synth"):
        CorpusParams.from_conf(base_conf(tmp_path, default_corpus={"generator": "fm"}))
    with pytest.raises(FrugalError, match="needs at least one soundfont"):
        CorpusParams.from_conf(base_conf(tmp_path, default_corpus={"soundfonts": []}))
    conf = base_conf(tmp_path)
    del conf["default_corpus"]["seed"]
    with pytest.raises(FrugalError, match="default_corpus lacks seed"):
        CorpusParams.from_conf(conf)


def test_foreign_folder_is_not_overwritten(tmp_path):
    from asteroid_frugal.utils import FrugalError

    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(FrugalError, match="not written by the corpus generator"):
        generate_corpus(tmp_path, CorpusParams.from_conf(base_conf(tmp_path)), progress=False)


# ------------------------------------------------------------------ corpus v3 (midi generator)
FLUID, TIM = "/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2"
V3_SECONDS = 4.0


def _v3_params(tmp_path, **over):
    values = {"generator": "midi", "n_train": 2, "n_valid": 1, "n_test": 1, "song_seconds": V3_SECONDS,
              "jobs": 1, "soundfonts": [FLUID, TIM], "test_soundfonts": None}
    return CorpusParams.from_conf(base_conf(tmp_path, default_corpus={**values, **over}))


def _song_files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "generator.json"}


@pytest.fixture(scope="module")
def v3_corpus(tmp_path_factory):
    """A 4-song corpus v3 (2 train, 1 valid, 1 test songs of 4 s) generated with one job."""
    root = tmp_path_factory.mktemp("v3") / "corpus"
    generate_corpus(root, _v3_params(root.parent), progress=False)
    return root


def test_v3_is_identical_whatever_the_number_of_jobs(v3_corpus, tmp_path):
    again = tmp_path / "corpus"
    generate_corpus(again, _v3_params(tmp_path, jobs=2), progress=False)
    one, two = _song_files(v3_corpus), _song_files(again)
    assert sorted(one) == sorted(two) and len([k for k in one if k.endswith("mixture.wav")]) == 4
    assert all(one[k] == two[k] for k in one)


def test_v3_songs_are_rendered_with_both_soundfonts_and_sum_to_the_mixture(v3_corpus):
    import json

    songs = sorted(p for p in v3_corpus.glob("*/Frugal GM - *") if p.is_dir())
    records = {p.name: json.loads((p / ".song.json").read_text()) for p in songs}
    assert records["Frugal GM - Train 001"]["soundfont"] == "FluidR3_GM.sf2"     # song i: soundfonts[i % 2]
    assert records["Frugal GM - Train 002"]["soundfont"] == "TimGM6mb.sf2"
    for song in songs:
        stems = {s: sf.read(str(song / f"{s}.wav"), dtype="float32", always_2d=True)[0].T for s in SOURCES_}
        mix = sf.read(str(song / "mixture.wav"), dtype="float32", always_2d=True)[0].T
        assert all(a.shape == (2, int(V3_SECONDS * SR)) for a in stems.values())
        assert np.abs(mix - sum(stems.values())).max() < 4 / 32768
        rms = {s: 20 * np.log10(np.sqrt(np.mean(a ** 2)) + 1e-12) for s, a in stems.items()}
        assert all(-45 < v < -10 for v in rms.values() if v > -200), (song.name, rms)  # vocals: silent in
        assert all(rms[s] > -45 for s in ("drums", "bass", "other")), (song.name, rms)  # some 4 s intros
        rec = records[song.name]
        assert rec["generator_version"] == 3 and 1 <= rec["drum_kit"] <= 128 and 33 <= rec["bass_program"] <= 40
        assert 2 <= len(rec["other_programs"]) <= 4 and not set(rec["other_programs"]) & {53, 54, 55, 92, 95}


def _spectrum(x, sr=SR):
    spec = np.abs(np.fft.rfft(x.mean(axis=0))) ** 2
    return np.fft.rfftfreq(x.shape[1], 1 / sr), spec


def test_v3_stems_sound_like_their_sources(v3_corpus):
    """Bass is low, drums are broadband, 'other' is panned (not a mono copy)."""
    song = v3_corpus / "train" / "Frugal GM - Train 001"
    stems = {s: sf.read(str(song / f"{s}.wav"), dtype="float32", always_2d=True)[0].T for s in SOURCES_}
    freqs, bass = _spectrum(stems["bass"])
    _, other_spec = _spectrum(stems["other"])
    centroid = lambda spec: (spec * freqs).sum() / spec.sum()       # noqa: E731
    assert centroid(bass) < 500 and centroid(bass) < centroid(other_spec)
    freqs, drums = _spectrum(stems["drums"])
    assert drums[freqs > 2000].sum() > 0.02 * drums.sum()
    other = stems["other"]
    assert np.corrcoef(other[0], other[1])[0, 1] < 0.999          # stereo placement, not a mono copy


def test_v3_soundfonts_change_the_sound_not_the_song(tmp_path):
    """One composed song rendered with each soundfont: the same notes (record), different samples;
    its vocals are sung phrases and rests, centred, with a fundamental in the singing range."""
    from asteroid_frugal.data import midi_corpus
    from asteroid_frugal.data.default_corpus import _render_options

    params = _v3_params(tmp_path, song_seconds=8)
    songs = {f: midi_corpus.generate_song(0, "train", 5, 8.0, SR, Path(f), _render_options(params, Path(f)),
                                          tmp_path) for f in (FLUID, TIM)}
    (a, rec_a), (b, rec_b) = songs[FLUID], songs[TIM]
    assert {k: v for k, v in rec_a.items() if k != "soundfont"} == {k: v for k, v in rec_b.items() if k != "soundfont"}
    for s in ("drums", "bass", "other"):
        assert np.any(a[s]) and np.any(b[s]) and not np.allclose(a[s], b[s], atol=1e-3)
    v = a["vocals"]
    levels = frame_levels_db(v)
    assert 0.15 < (levels > -50).mean() < 0.95                     # sung phrases and rests
    assert abs(10 * np.log10(np.mean(v[0] ** 2) / np.mean(v[1] ** 2))) < 1.5
    frame = int(np.argmax(levels)) * 4410
    x = v[0, frame:frame + 4096] * np.hanning(4096)
    spec = np.abs(np.fft.rfft(x, 16384))
    freqs = np.fft.rfftfreq(16384, 1 / SR)
    assert 80 < freqs[np.argmax(spec * (freqs < 1200))] < 1100


def test_v3_melody_follows_the_key_and_lands_on_chord_tones():
    from asteroid_frugal.data import midi_corpus

    for index in range(4):
        rng = np.random.default_rng([0, 0, index, 3])
        c = midi_corpus._Composer(rng, 30.0, SR)
        phrases = midi_corpus._melody(c, 53)
        notes = [n for p in phrases for n in p]
        assert len(phrases) >= 2 and len(notes) >= 10
        scale = {(c.song.key + d) % 12 for d in c.song.scale}
        assert all(m % 12 in scale for _, _, m, _ in notes)
        assert {m % 12 for m in c.chord(0, 28) + c.chord(0, 55)} <= scale        # bass and chords too
        on_beat = [(t, m) for t, _, m, _ in notes if abs(t / c.song.beat - round(t / c.song.beat)) < 0.05]
        chord_tone = [m % 12 in {x % 12 for x in c.chord(int(round(t / c.song.beat)) // 4, 53)}
                      for t, m in on_beat]
        assert np.mean(chord_tone) > 0.8


def test_v3_new_generator_version_or_soundfonts_regenerate_the_corpus(v3_corpus, tmp_path):
    """An old (v2) corpus is rebuilt, not mixed; so is one rendered with other soundfonts."""
    import shutil

    root = tmp_path / "corpus"
    generate_corpus(root, CorpusParams.from_conf(base_conf(tmp_path, default_corpus={
        "generator": "synth", "n_train": 1, "n_valid": 1, "n_test": 1, "song_seconds": 4, "jobs": 1})),
        progress=False)
    assert (root / "train" / "Frugal Synth - Train 001").is_dir()
    shutil.rmtree(root / "train"), shutil.rmtree(root / "test")
    shutil.copytree(v3_corpus / "train", root / "train")
    shutil.copytree(v3_corpus / "test", root / "test")
    stamp = (root / "generator.json").read_text()
    # same content as v3_corpus, under a v2 stamp: everything is regenerated
    import json

    content = _v3_params(tmp_path).content_key()
    assert content["version"] == 3 and content["soundfonts"] == ["FluidR3_GM.sf2", "TimGM6mb.sf2"]
    (root / "generator.json").write_text(json.dumps({"content": {**content, "version": 2}}))
    marker = root / "train" / "Frugal GM - Train 001" / "vocals.wav"
    before = marker.stat().st_mtime_ns
    generate_corpus(root, _v3_params(tmp_path, n_train=1), progress=False)
    assert marker.stat().st_mtime_ns != before and not (root / "train" / "Frugal GM - Train 002").exists()
    assert stamp != (root / "generator.json").read_text()
    # held-out soundfont for the test split: a different content key, so a rebuilt corpus
    held = _v3_params(tmp_path, soundfonts=[FLUID], test_soundfonts=[TIM])
    assert held.content_key() != content and held.soundfont("test", 0).name == "TimGM6mb.sf2"
    assert {held.soundfont("train", i).name for i in range(3)} == {"FluidR3_GM.sf2"}
