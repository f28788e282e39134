"""Built-in corpus v3 (generator ``midi``): songs composed as GM MIDI, rendered with FluidSynth and
two soundfonts, with a sung lead in the song's key."""
from pathlib import Path

import numpy as np

from asteroid_frugal.config import load_config
from asteroid_frugal.data import midi_corpus
from asteroid_frugal.data.layout import frame_levels_db
from asteroid_frugal.midi_render import SynthSettings

SR = 44100
FLUID, TIM = load_config()["default_corpus"]["soundfonts"]        # FluidR3_GM and TimGM6mb
SYNTH = SynthSettings(SR, **{k: load_config()["midi_render"][k] for k in ("gain", "reverb", "chorus")})


def test_v3_soundfonts_change_the_sound_not_the_song(tmp_path):
    """One composed song rendered with each soundfont: the same notes (record), different samples;
    its vocals are sung phrases and rests, centred, with a fundamental in the singing range."""
    songs = {f: midi_corpus.generate_song(0, "train", 5, 8.0, SR, Path(f), SYNTH, tmp_path) for f in (FLUID, TIM)}
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
    for index in range(4):
        rng = np.random.default_rng([0, 0, index, 3])
        c = midi_corpus.Composer(rng, 30.0, SR)
        phrases = midi_corpus.melody(c, 53)
        notes = [n for p in phrases for n in p]
        assert len(phrases) >= 2 and len(notes) >= 10
        scale = {(c.song.key + d) % 12 for d in c.song.scale}
        assert all(m % 12 in scale for _, _, m, _ in notes)
        assert {m % 12 for m in c.chord(0, 28) + c.chord(0, 55)} <= scale        # bass and chords too
        on_beat = [(t, m) for t, _, m, _ in notes if abs(t / c.song.beat - round(t / c.song.beat)) < 0.05]
        chord_tone = [m % 12 in {x % 12 for x in c.chord(int(round(t / c.song.beat)) // 4, 53)}
                      for t, m in on_beat]
        assert np.mean(chord_tone) > 0.8
