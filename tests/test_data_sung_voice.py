"""The sung voice made from recorded speech (data/sung_voice.py) on real synthesised speech: the
speakers, the pitch and timing of what they sing (f0 measured with WORLD's harvest), determinism,
stereo placement, one clear line when a voice is missing, and the corpus integration (the sung
voice's version in the corpus fingerprint, held-out speakers, virtual speakers by formant shift)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asteroid_frugal.data import sung_voice
from asteroid_frugal.data.default_corpus import CorpusParams, generate_corpus
from asteroid_frugal.utils import FrugalError
from data_helpers import base_conf

SR = 22050
_missing = {name: sung_voice.speaker_available(name) for name in sung_voice.SPEAKERS}
needs_voices = pytest.mark.skipif(any(_missing.values()), reason="speech synthesisers missing: " + "; ".join(
    sorted({why for why in _missing.values() if why})) + " (local/setup_env.sh installs them)")
needs_one = pytest.mark.skipif(bool(_missing["en_rms"] and _missing["it_lp"]),
                               reason=f"no speech synthesiser: {_missing['en_rms']}")
SPEAKER = "en_rms" if not _missing["en_rms"] else "it_lp"


def _f0_midi(x, sr):
    pw = sung_voice.pyworld()

    f0, t = pw.harvest(np.asarray(x, dtype=np.float64), sr, f0_floor=70.0, f0_ceil=800.0, frame_period=10)
    with np.errstate(divide="ignore"):
        return np.where(f0 > 0, 69 + 12 * np.log2(f0 / 440.0), np.nan), t


def test_speakers_cover_languages_and_sexes():
    speakers = sung_voice.SPEAKERS.values()
    assert len(sung_voice.SPEAKERS) >= 8
    assert len({s.language for s in speakers}) >= 3 and {s.sex for s in speakers} == {"female", "male"}
    assert all(s.language in sung_voice.WORDS and len(sung_voice.WORDS[s.language]) >= 20 for s in speakers)


def test_the_set_up_installs_every_speaker():
    """local/setup_env.sh installs the Debian package of each festival voice (where its files go)."""
    script = (Path(__file__).resolve().parents[1] / "local" / "setup_env.sh").read_text()
    for s in sung_voice.SPEAKERS.values():
        assert s.package in script, s.name
        if s.engine == "festival":
            assert f"/{s.voice}:{s.package}" in script, s.name


@needs_voices
def test_every_speaker_is_installed_and_says_its_words():
    assert sung_voice.available_speakers() == list(sung_voice.SPEAKERS)
    bank = sung_voice.word_bank("cs_dita")
    assert bank.sr >= 16000 and len(bank.words) >= len(sung_voice.WORDS["cs"]) // 2
    assert all(w.f0.shape[0] == w.sp.shape[0] == w.ap.shape[0] and (w.f0 > 0).any() for w in bank.words)


def test_a_missing_voice_is_one_clear_line(monkeypatch):
    with pytest.raises(FrugalError, match="unknown speaker 'nobody'"):
        sung_voice.check_speakers(["nobody"])
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FrugalError, match=r"flite is not installed \(apt-get install flite"):
        sung_voice.check_speakers(["en_awb"])
    with pytest.raises(FrugalError, match="singer=additive"):
        sung_voice.check_speakers(["it_pc"])


@needs_one
def test_pitch_and_timing_follow_the_notes():
    """Each note's measured f0 is the requested pitch; the voice sounds during the notes and is
    silent in the rests between them."""
    bank = sung_voice.word_bank(SPEAKER)
    notes = [(0.3, 0.45, 57), (0.75, 0.6, 60), (1.6, 0.3, 52), (1.9, 0.5, 55)]   # a rest from 1.35 to 1.6 s
    style = sung_voice.Style(vib_rate=5.5, vib_depth=0.0, glide=0.02, scoop=0.0)
    start, y = sung_voice.sing_phrase(notes, bank, np.random.default_rng(1), style, SR)
    out = np.zeros(int(2.6 * SR), dtype=np.float32)
    sung_voice.add_mono(out, start, y)
    midi, t = _f0_midi(out, SR)
    for t0, d, m in notes:
        inside = (t > t0 + 0.08) & (t < t0 + d - 0.06)
        assert np.isfinite(midi[inside]).mean() > 0.6, (t0, m)
        assert abs(np.nanmedian(midi[inside]) - m) < 0.3, (t0, m, np.nanmedian(midi[inside]))
    hop = int(0.01 * SR)
    level = np.sqrt(np.mean(out[:len(out) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    frame_t = np.arange(len(level)) * 0.01
    sung = level[(frame_t > 0.35) & (frame_t < 1.3)].mean()
    # the rest is a rest (the next word's consonants may start up to 0.12 s before its note)
    assert level[(frame_t > 1.38) & (frame_t < 1.46)].max() < 0.05 * sung
    assert level[frame_t > 2.45].max() < 0.05 * sung                         # nothing after the last note
    # a longer note is a longer vowel: the same word on a 0.3 s and a 1.2 s note
    lengths = []
    for d in (0.3, 1.2):
        _, y = sung_voice.sing_phrase([(0.3, d, 57)], bank, np.random.default_rng(0), style, SR, words=[0])
        f, _ = _f0_midi(y, SR)
        lengths.append(np.isfinite(f).sum() * 0.01)
    assert lengths[1] - lengths[0] == pytest.approx(0.9, abs=0.12)


def test_a_formant_shift_moves_the_envelope_not_the_frames():
    """warp_formants moves an envelope peak by the factor in frequency, holds the last bin above the
    old band's top, and leaves the envelope alone at factor 1."""
    bins = np.arange(513)
    sp = np.stack([np.exp(-0.5 * ((bins - c) / 6.0) ** 2) + 1e-3 for c in (100, 200)])
    assert sung_voice.warp_formants(sp, 1.0) is sp
    up, down = sung_voice.warp_formants(sp, 1.2), sung_voice.warp_formants(sp, 1 / 1.2)
    assert up.shape == sp.shape and list(up.argmax(axis=1)) == [120, 240]
    assert list(down.argmax(axis=1)) == [83, 167]
    assert np.allclose(down[:, -1], sp[:, -1]) and np.allclose(down[:, 450:], sp[:, -1:], rtol=0.5)


def _stem(seed, speaker=SPEAKER, reverb=None):
    phrases = [[(0.3, 0.4, 57), (0.7, 0.5, 59), (1.2, 0.6, 60)]]
    return sung_voice.produce_vocals(phrases, speaker, int(2.2 * SR), SR, np.random.default_rng(seed),
                                     list(range(60, 72)), reverb)


@needs_one
def test_the_same_seed_gives_the_same_bytes():
    a, rec_a = _stem(3)
    b, rec_b = _stem(3)
    assert a.dtype == np.float32 and a.shape == (2, int(2.2 * SR))
    assert a.tobytes() == b.tobytes() and rec_a == rec_b
    assert not np.array_equal(a, _stem(4)[0])


@needs_one
def test_the_lead_is_centred_and_doubles_or_harmonies_widen_it():
    side_over_mid = {}
    for seed in range(40):
        stem, rec = _stem(seed)
        mid, side = stem.mean(axis=0), (stem[0] - stem[1]) / 2
        ratio = float(np.sum(side ** 2) / np.sum(mid ** 2))
        side_over_mid.setdefault(rec["double"] or rec["harmony"], []).append(ratio)
        if len(side_over_mid.get(True, [])) >= 2 and len(side_over_mid.get(False, [])) >= 2:
            break
    assert max(side_over_mid[False]) < 0.03                  # lead alone: (almost) centre
    assert min(side_over_mid[True]) > 2 * max(side_over_mid[False])


# ------------------------------------------------------------------ the built-in corpus
FLUID, TIM = "/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2"


def _params(tmp_path, **over):
    values = {"generator": "midi", "n_train": 1, "n_valid": 1, "n_test": 1, "song_seconds": 4.0, "jobs": 1,
              "soundfonts": [FLUID, TIM], "test_soundfonts": None, "singer": "speech",
              "voices": ["en_rms", "it_lp"], "test_voices": ["cs_dita"], "formant_shift": 0.2}
    return CorpusParams.from_conf(base_conf(tmp_path, default_corpus={**values, **over}))


def test_the_corpus_fingerprint_holds_the_sung_voice(tmp_path, monkeypatch):
    key = _params(tmp_path).content_key()
    assert key["singer"] == "speech" and key["sung_voice_version"] == sung_voice.GENERATOR_VERSION
    assert key["voices"] == ["en_rms", "it_lp"] and key["test_voices"] == ["cs_dita"]
    assert _params(tmp_path, test_voices=[]).content_key()["test_voices"] == ["en_rms", "it_lp"]
    assert key["test_voices_in_turn"] is True                     # held out: each speaker sings in turn
    assert "test_voices_in_turn" not in _params(tmp_path, test_voices=[]).content_key()   # the main corpus as before
    assert _params(tmp_path, singer="additive").content_key()["sung_voice_version"] == sung_voice.GENERATOR_VERSION
    monkeypatch.setattr(sung_voice, "GENERATOR_VERSION", sung_voice.GENERATOR_VERSION + 1)
    assert _params(tmp_path).content_key() != key                 # a new sung voice regenerates the corpus
    assert key["formant_shift"] == 0.2
    assert "formant_shift" not in _params(tmp_path, formant_shift=0.0).content_key()   # off: as before it existed
    with pytest.raises(FrugalError, match=r"formant_shift: 0.8 is not in \[0, 0.5\]"):
        _params(tmp_path, formant_shift=0.8)
    with pytest.raises(FrugalError, match="singer: 'choir' is not one of additive, speech, mixed"):
        _params(tmp_path, singer="choir")
    with pytest.raises(FrugalError, match="unknown speaker 'bob'"):
        _params(tmp_path, voices=["bob"])


@needs_voices
def test_corpus_songs_are_sung_by_their_split_speakers(tmp_path):
    root = tmp_path / "corpus"
    generate_corpus(root, _params(tmp_path, formant_shift=0.0), progress=False)
    records = {p.parent.name: json.loads(p.read_text())["lead_voice"] for p in root.rglob(".song.json")}
    assert len(records) == 3 and all(r["singer"] == "speech" for r in records.values())
    assert records["Frugal GM - Test 001"]["speaker"] == "cs_dita"
    assert {records[f"Frugal GM - {s} 001"]["speaker"] for s in ("Train", "Valid")} <= {"en_rms", "it_lp"}
    stamp = json.loads((root / "generator.json").read_text())["content"]
    assert stamp["sung_voice_version"] == sung_voice.GENERATOR_VERSION
    assert not any("formant" in r for r in records.values())



@needs_voices
def test_held_out_speakers_sing_the_test_songs_in_turn(tmp_path):
    """Test speakers of their own sing the test songs in turn (song i: speaker i mod n), so that each is
    tested as often, not as a draw falls; train/valid songs still draw theirs."""
    root = tmp_path / "corpus"
    held = ["cs_dita", "en_kal", "ca_ona"]
    generate_corpus(root, _params(tmp_path, formant_shift=0.0, n_train=1, n_valid=1, n_test=4, test_voices=held),
                    progress=False)
    speakers = {p.parent.name: json.loads(p.read_text())["lead_voice"]["speaker"] for p in root.rglob(".song.json")}
    assert [speakers[f"Frugal GM - Test {i:03d}"] for i in range(1, 5)] == held + held[:1]
    assert speakers["Frugal GM - Train 001"] in ("en_rms", "it_lp")


@needs_voices
def test_virtual_speakers_sing_the_training_songs_only(tmp_path):
    """formant_shift gives each train/valid song's speaker moved formants (its own random stream:
    the song is otherwise the same) and leaves the test songs, sung by the real speakers, the same
    bytes as without it."""
    roots = {}
    for shift in (0.0, 0.2):
        roots[shift] = tmp_path / f"corpus_{shift}"
        generate_corpus(roots[shift], _params(tmp_path, formant_shift=shift, song_seconds=10.0), progress=False)
    songs = sorted(p.parent.relative_to(roots[0.2]) for p in roots[0.2].rglob(".song.json"))
    assert len(songs) == 3
    sung = 0
    for song in songs:
        plain, shifted = (json.loads((roots[s] / song / ".song.json").read_text()) for s in (0.0, 0.2))
        vocals = [(roots[s] / song / "vocals.wav").read_bytes() for s in (0.0, 0.2)]
        drums = [sf.read(str(roots[s] / song / "drums.wav"))[0] for s in (0.0, 0.2)]   # (the mix's peak
        assert np.allclose(drums[0] / np.abs(drums[0]).max(), drums[1] / np.abs(drums[1]).max(),    # sets its gain)
                           atol=1e-3)
        if song.parts[0] == "test":
            assert vocals[0] == vocals[1] and plain == shifted
        else:
            factor = shifted["lead_voice"].pop("formant")
            assert 1 / 1.2 <= factor <= 1.2 and abs(np.log(factor)) > 1e-3
            assert plain == shifted                                 # all but the voice's formants
            sung += vocals[0] != vocals[1]
    assert sung >= 1                        # (a song's lead may start after its first seconds)
