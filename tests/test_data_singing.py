"""The synthesised singing voice and its signal helpers (shared by both built-in corpus generators)."""
from types import SimpleNamespace

import numpy as np
import pytest

from asteroid_frugal.data.singing import (VOWELS, add_at, bandpass, formant_gain, highpass, lowpass, make_reverb,
                                          midi_hz, sing_phrase)

SR = 16000


def _song(sr=SR):
    """What sing_phrase needs of a song: its rate and its seconds -> samples."""
    return SimpleNamespace(sr=sr, t2s=lambda t: int(round(t * sr)))


def _level_db(x, f, sr=SR):
    t = np.arange(len(x)) / sr
    return 10 * np.log10(np.mean(x[sr // 4:] ** 2) / np.mean(np.sin(2 * np.pi * f * t[sr // 4:]) ** 2))


def test_midi_hz():
    np.testing.assert_allclose(midi_hz([57, 69, 81]), [220.0, 440.0, 880.0])


@pytest.mark.parametrize("f, band, high, low", [(100, -20, -20, 0), (2000, 0, 0, -10), (7000, -3, 0, -30)])
def test_filters_pass_and_stop_what_they_say(f, band, high, low):
    x = np.sin(2 * np.pi * f * np.arange(SR) / SR)
    assert bandpass(x, 1000, 5000, SR).dtype == np.float32
    checks = ((bandpass(x, 1000, 5000, SR), band), (highpass(x, 1000, SR), high), (lowpass(x, 1000, SR), low))
    for y, expected in checks:   # 0: passed (within 3 dB); negative: at least that much cut (12 dB/octave)
        level = _level_db(y, f)
        assert (abs(level) < 3) if expected == 0 else (level < expected), (f, expected, level)


def test_add_at_mixes_with_gains_and_clips_to_the_buffer():
    buf = np.zeros((2, 10), dtype=np.float32)
    add_at(buf, 8, np.ones(5, dtype=np.float32), gains=(1.0, 0.5))
    add_at(buf, -3, np.full(5, 2.0, dtype=np.float32))
    add_at(buf, 12, np.ones(5, dtype=np.float32))                      # past the end: nothing
    np.testing.assert_array_equal(buf[0], [2, 2, 0, 0, 0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(buf[1], [2, 2, 0, 0, 0, 0, 0, 0, 0.5, 0.5])


def test_formant_gain_peaks_at_the_vowels_formants():
    freqs = np.arange(100.0, 5000.0, 10.0)[None, :]
    for vowel, formants in VOWELS.items():
        gain = formant_gain(freqs, [vowel], [vowel], [0.0])[0]
        peak = freqs[0, np.argmax(gain * (freqs[0] < 0.5 * (formants[0] + formants[1])))]
        assert abs(peak - formants[0]) < 0.1 * formants[0], (vowel, peak)
    a_to_i = formant_gain(freqs, ["a"], ["i"], [1.0])
    np.testing.assert_allclose(a_to_i, formant_gain(freqs, ["i"], ["i"], [0.0]))   # morph weight 1: the target


def test_sung_phrase_is_centred_pitched_and_deterministic():
    notes = [(0.1, 0.4, 57, "a"), (0.5, 0.4, 60, "o")]                 # A3 then C4
    outs = []
    for _ in range(2):
        out = np.zeros((2, SR), dtype=np.float32)
        sing_phrase(out, _song(), np.random.default_rng(3), notes, tilt=1.0, vib_rate=5.0, vib_depth=0.3,
                    glide=0.03, breath=0.02)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    out = outs[0]
    np.testing.assert_array_equal(out[0], out[1])                      # dry voice: centred
    assert not out[:, :int(0.05 * SR)].any() and not out[:, int(0.99 * SR):].any()   # silent outside the phrase
    frame = out[0, int(0.25 * SR):int(0.25 * SR) + 4096] * np.hanning(4096)
    spec = np.abs(np.fft.rfft(frame, 32768))
    freqs = np.fft.rfftfreq(32768, 1 / SR)
    f0 = freqs[np.argmax(spec * (freqs < 300))]
    assert abs(12 * np.log2(f0 / 220.0)) < 1                          # within a semitone of A3 (vibrato)


def test_reverb_is_seeded_causal_and_keeps_the_level():
    x = np.zeros((2, SR), dtype=np.float32)
    x[:, 100] = 1.0
    wet = make_reverb(np.random.default_rng(0), SR)(x)
    again = make_reverb(np.random.default_rng(0), SR)(x)
    np.testing.assert_array_equal(wet, again)
    assert wet.shape == x.shape and wet.dtype == np.float32
    assert np.abs(wet[:, :100 + int(0.01 * SR)]).max() < 1e-6        # nothing before the impulse + pre-delay (FFT)
    np.testing.assert_allclose((wet.astype(np.float64) ** 2).sum(axis=1), 1.0, rtol=0.05)   # unit-energy IR
    assert np.corrcoef(wet[0], wet[1])[0, 1] < 0.5                     # decorrelated channels
