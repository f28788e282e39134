"""The built-in corpus: MUSDB18-HQ layout, resumable, regenerated when its content changes, and
through the same stage 0 path. The synth generator (v2, NumPy) first; then corpus v3 (midi:
composed GM MIDI rendered with FluidSynth, two soundfonts) on a few very short real renderings.
The songs themselves: tests/test_data_synth_corpus.py and tests/test_data_midi_corpus.py."""
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import yaml

from asteroid_frugal.data import default_corpus
from asteroid_frugal.data.default_corpus import SETUP_FILE, CorpusParams, generate_corpus, synth_settings
from asteroid_frugal.data.layout import list_tracks, prepared_root, read_track_meta
from asteroid_frugal.data.musdb_prep import prepare_musdb
from asteroid_frugal.data.sung_voice import SPEAKERS, speaker_available
from asteroid_frugal.data.types import SOURCES as SOURCES_
from asteroid_frugal.midi_render import SynthSettings
from asteroid_frugal.utils import DiskFullError, FrugalError
from data_helpers import base_conf
from disk_helpers import no_space, resize, small_disk

SR = 44100


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
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(FrugalError, match="not written by the corpus generator"):
        generate_corpus(tmp_path, CorpusParams.from_conf(base_conf(tmp_path)), progress=False)


# ------------------------------------------------------------------ corpus v3 (midi generator)
FLUID, TIM = "/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2"
V3_SECONDS = 4.0


# the default lead voice (recorded speakers made to sing) where festival/flite and the voices are installed
# (local/setup_env.sh), else v3's additive singer: these tests are about the corpus, not the voice
# (that is tests/test_data_sung_voice.py)
_VOICES_MISSING = [n for n in SPEAKERS if speaker_available(n)]


def _v3_params(tmp_path, **over):
    values = {"generator": "midi", "n_train": 2, "n_valid": 1, "n_test": 1, "song_seconds": V3_SECONDS,
              "jobs": 1, "soundfonts": [FLUID, TIM], "test_soundfonts": None}
    if _VOICES_MISSING:
        values["singer"] = "additive"
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


def test_v3_new_generator_version_or_soundfonts_regenerate_the_corpus(v3_corpus, tmp_path):
    """An old (v2) corpus is rebuilt, not mixed; so is one rendered with other soundfonts."""
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


def test_v3_synth_settings_are_the_midi_render_ones_at_the_corpus_rate(tmp_path):
    params = CorpusParams.from_conf(base_conf(tmp_path, data={"sample_rate": 22050},
                                              midi_render={"gain": 0.3, "reverb": False, "sample_rate": 8000}))
    assert synth_settings(params) == SynthSettings(sample_rate=22050, gain=0.3, reverb=False, chorus=True)
    params = CorpusParams.from_conf(base_conf(tmp_path, midi_render={"gain": 20.0}))
    with pytest.raises(FrugalError, match="gain 20.0 must be in"):
        synth_settings(params)


# ------------------------------------------------------------------ faults
def _midi_params(tmp_path, fonts):
    return CorpusParams.from_conf(base_conf(tmp_path, default_corpus={
        "generator": "midi", "n_train": 1, "n_valid": 1, "n_test": 1, "song_seconds": 4, "jobs": 1,
        "soundfonts": fonts, "test_soundfonts": None}))


def test_corpus_missing_or_bad_soundfont_is_one_line_before_any_song(tmp_path):
    missing = tmp_path / "gone.sf2"
    with pytest.raises(FrugalError, match=f"{missing}: cannot read soundfont") as err:
        generate_corpus(tmp_path / "c1", _midi_params(tmp_path, [FLUID, str(missing)]), progress=False)
    assert "\n" not in str(err.value)
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF\0\0\0\0WAVEfmt ")
    with pytest.raises(FrugalError, match=f"{bad}: not a SoundFont"):
        generate_corpus(tmp_path / "c2", _midi_params(tmp_path, [str(bad)]), progress=False)
    for root in (tmp_path / "c1", tmp_path / "c2"):     # nothing generated, nothing half-written
        assert not list(root.rglob("*.wav"))


def test_corpus_leftovers_of_a_killed_run_are_removed_and_the_corpus_completed(tmp_path):
    params = CorpusParams.from_conf(base_conf(tmp_path, default_corpus={
        "generator": "synth", "n_train": 1, "n_valid": 1, "n_test": 1, "song_seconds": 4, "jobs": 1}))
    root = tmp_path / "corpus"
    generate_corpus(root, params, progress=False)
    # what a kill leaves: a song being written, a FluidSynth work folder, a missing song
    (root / "train" / ".tmp-Frugal Synth - Train 001-abc").mkdir()
    (root / "train" / ".tmp-render-xyz").mkdir()
    (root / "train" / ".tmp-render-xyz" / "other.wav").write_bytes(b"partial")
    shutil.rmtree(root / "test" / "Frugal Synth - Test 001")
    generate_corpus(root, params, progress=False)
    assert sorted(p.name for p in (root / "train").iterdir()) == ["Frugal Synth - Train 001", "Frugal Synth - Valid 001"]
    assert (root / "test" / "Frugal Synth - Test 001" / "mixture.wav").is_file()


def test_a_full_disk_stops_the_corpus_with_one_line_and_the_next_run_completes_it(tmp_path, monkeypatch):
    params = CorpusParams.from_conf(base_conf(tmp_path, default_corpus={
        "generator": "synth", "n_train": 1, "n_valid": 1, "n_test": 1, "song_seconds": 4, "jobs": 1}))
    song = "Frugal Synth - Train 001"
    monkeypatch.setattr(default_corpus.sf, "write", lambda path, *a, **k: (_ for _ in ()).throw(no_space(path)))
    with pytest.raises(DiskFullError) as err:
        generate_corpus(tmp_path / "corpus", params, progress=False)
    # 4 stereo stems and the mixture, 4 s at 44.1 kHz in 16 bit
    assert str(err.value).startswith(f"{tmp_path / 'corpus' / 'train' / song}: disk full: needed 3.5 MB, ")
    assert list((tmp_path / "corpus" / "train").iterdir()) == []         # nothing half-written
    monkeypatch.undo()
    with small_disk(tmp_path / "disk", 5000) as disk:                   # a real one: room for one song
        with pytest.raises(DiskFullError, match=f"{disk}/corpus/train/Frugal Synth - Valid 001: disk full: "
                                                r"needed 3.5 MB, 1\.\d MB free there; "):
            generate_corpus(disk / "corpus", params, progress=False)
        assert [p.name for p in (disk / "corpus" / "train").iterdir()] == [song]
        resize(disk, 12000)                                               # space freed: the same command
        generate_corpus(disk / "corpus", params, progress=False)
        assert sorted(p.name for p in (disk / "corpus" / "train").iterdir()) == [song, "Frugal Synth - Valid 001"]
        assert (disk / "corpus" / "test" / "Frugal Synth - Test 001" / "mixture.wav").is_file()
