"""Synthesised singing voice, shared by both built-in corpus generators (:mod:`.synth_corpus`,
v2, and :mod:`.midi_corpus`, v3), with the small signal helpers it and they use: filters, a
room reverb, mixing a mono signal into a stereo buffer.

The voice: a glottal-like harmonic source with spectral tilt, vowel formants that morph from
note to note, vibrato that starts after each onset, portamento, pitch jitter, breath noise and
sibilant/plosive consonant bursts (:func:`sing_phrase`). Everything is drawn from the caller's
``numpy`` generator, so a song's voice is deterministic.
"""
import numpy as np
import scipy.fft as sfft
from scipy.signal import butter, sosfilt

VOWELS = {  # formant frequencies F1-F4 (Hz) of sung vowels
    "a": (800, 1150, 2900, 3900),
    "e": (450, 1800, 2750, 3700),
    "i": (320, 2250, 3000, 3800),
    "o": (480, 850, 2800, 3600),
    "u": (340, 720, 2600, 3500),
}
FORMANT_BW = np.array([80.0, 100.0, 130.0, 170.0])   # bandwidths (Hz) of F1-F4


def midi_hz(m):
    """Frequency (Hz) of MIDI note number(s) ``m`` (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


# cut-offs are capped below Nyquist so that low-rate corpora (tests, 8-16 kHz models) generate too
def bandpass(x, lo, hi, sr, order=2):
    """Butterworth band-pass of ``x`` (float32 out)."""
    hi = min(hi, 0.45 * sr)
    lo = min(lo, 0.5 * hi)
    return sosfilt(butter(order, [lo, hi], btype="band", fs=sr, output="sos"), x).astype(np.float32)


def highpass(x, lo, sr, order=2):
    """Butterworth high-pass of ``x`` (float32 out)."""
    return sosfilt(butter(order, min(lo, 0.4 * sr), btype="high", fs=sr, output="sos"), x).astype(np.float32)


def lowpass(x, hi, sr, order=2):
    """Butterworth low-pass of ``x`` (float32 out)."""
    return sosfilt(butter(order, min(hi, 0.45 * sr), btype="low", fs=sr, output="sos"), x).astype(np.float32)


def add_at(buf, start, sig, gains=(1.0, 1.0)):
    """Add mono ``sig`` into stereo ``buf`` at ``start`` with per-channel gains (clipped to buf)."""
    if start >= buf.shape[1]:
        return
    if start < 0:
        sig, start = sig[-start:], 0
    n = min(len(sig), buf.shape[1] - start)
    buf[0, start:start + n] += gains[0] * sig[:n]
    buf[1, start:start + n] += gains[1] * sig[:n]


def additive(f0, amps, sr):
    """Sum of harmonics of a time-varying ``f0`` (Hz per sample), ``amps [K, T]`` per harmonic.

    Harmonics above 0.45 sr must already have zero amplitude (no aliasing).
    """
    phase = np.mod(2 * np.pi * np.cumsum(f0) / sr, 2 * np.pi).astype(np.float32)
    k = np.arange(1, amps.shape[0] + 1, dtype=np.float32)[:, None]
    return np.einsum("kt,kt->t", np.sin(k * phase[None, :]), amps)


def formant_gain(freqs, vowels_a, vowels_b, mix):
    """Vocal-tract gain at ``freqs [G, K]``: a cascade of 2-pole resonators (the vowel's formants),
    morphing from ``vowels_a[g]`` to ``vowels_b[g]`` with weight ``mix[g]``."""
    fa = np.array([VOWELS[v] for v in vowels_a], dtype=np.float64)
    fb = np.array([VOWELS[v] for v in vowels_b], dtype=np.float64)
    mix = np.asarray(mix, dtype=np.float64)[:, None]
    fr = (fa * (1 - mix) + fb * mix)[:, None, :]            # [G, 1, 4]
    x = freqs[..., None] / fr
    mag2 = (1 - x ** 2) ** 2 + (freqs[..., None] * FORMANT_BW / fr ** 2) ** 2
    return np.prod(1.0 / np.sqrt(mag2), axis=-1)


def sing_phrase(out, song, rng, notes, tilt, vib_rate, vib_depth, glide, breath):
    """Sing one phrase into stereo ``out`` (centred): ``notes`` are ``(start s, length s, midi, vowel)``
    on ``song``'s clock (``song.sr``, ``song.t2s``); ``tilt`` is the glottal source's spectral tilt,
    ``vib_rate`` (Hz) and ``vib_depth`` (semitones) the vibrato, ``glide`` the portamento time
    constant (s), ``breath`` the breath noise relative to the voiced level."""
    sr = song.sr
    t0 = notes[0][0]
    start = song.t2s(t0)
    length = song.t2s(notes[-1][0] + notes[-1][1] - t0) + song.t2s(0.08)
    tt = np.arange(length) / sr
    midi = np.zeros(length)
    env = np.zeros(length)
    vowel_idx = np.zeros(length, dtype=np.int64)
    vowels = []
    for i, (t, d, m, v) in enumerate(notes):
        a, b = song.t2s(t - t0), min(length, song.t2s(t - t0 + d))
        midi[a:] = m
        vowel_idx[a:] = i
        vowels.append(v)
        # syllable envelope: attack, sustain, release dip before the next note
        n = b - a
        att, rel = min(n // 3, song.t2s(rng.uniform(0.02, 0.05))), min(n // 3, song.t2s(0.06))
        e = np.ones(n)
        e[:att] = np.linspace(0.1, 1, att)
        e[n - rel:] = np.linspace(1, 0.25 if i < len(notes) - 1 else 0.0, rel)
        env[a:b] = e * rng.uniform(0.7, 1.0)
    # portamento (one-pole smoothing of the pitch), vibrato after each onset, slow jitter
    alpha = np.exp(-1.0 / (glide * sr))
    midi = sosfilt(np.array([[1 - alpha, 0, 0, 1, -alpha, 0]]), midi - midi[0]) + midi[0]
    since_onset = tt - np.repeat([n[0] - t0 for n in notes], np.diff(
        [song.t2s(n[0] - t0) for n in notes] + [length]))[:length]
    vib_env = np.clip((since_onset - 0.15) / 0.25, 0, 1)
    midi = midi + vib_depth * vib_env * np.sin(2 * np.pi * vib_rate * tt + rng.uniform(0, 6.3))
    jitter = np.interp(tt, np.arange(0, tt[-1] + 0.1, 0.05), rng.normal(0, 0.08, len(np.arange(0, tt[-1] + 0.1, 0.05))))
    f0 = midi_hz(midi + jitter)
    # harmonic amplitudes on a coarse grid: tilt x vowel formants (crossfading between notes)
    n_harm = int(min(40, 7000 / f0.max()))
    hop = 256
    grid = np.arange(0, length + hop, hop)
    grid[-1] = min(grid[-1], length - 1)
    cur = vowel_idx[grid]
    nxt_start = np.array([song.t2s(notes[min(i + 1, len(notes) - 1)][0] - t0) for i in cur])
    mix = np.clip(1 - (nxt_start - grid) / (0.06 * sr), 0, 1) * (cur < len(notes) - 1)
    k = np.arange(1, n_harm + 1)
    freqs = k[None, :] * f0[grid][:, None]
    gains = formant_gain(freqs, [vowels[c] for c in cur], [vowels[min(c + 1, len(notes) - 1)] for c in cur],
                          mix) / k[None, :] ** tilt
    pos = np.arange(length) / hop
    i0 = np.minimum(pos.astype(np.int64), len(grid) - 2)
    w = (pos - i0).astype(np.float32)
    g = gains.T.astype(np.float32)                 # [K, grid], linearly interpolated to samples
    amps = (g[:, i0] * (1 - w) + g[:, i0 + 1] * w) * env.astype(np.float32)[None, :]
    voiced = additive(f0, amps, sr)
    v_rms = float(np.sqrt(np.mean(voiced ** 2))) + 1e-9
    noise = bandpass(rng.standard_normal(length).astype(np.float32), 1000, 6000, sr) * env
    sig = voiced + noise * (breath * v_rms / (float(np.sqrt(np.mean(noise ** 2))) + 1e-9))
    # consonants: sibilant or plosive bursts just before some syllables
    for t, _, _, _ in notes:
        if rng.random() < 0.45:
            dur = rng.uniform(0.03, 0.09)
            burst = rng.standard_normal(song.t2s(dur)).astype(np.float32)
            burst = (bandpass(burst, 4000, 10000, sr) if rng.random() < 0.6 else bandpass(burst, 300, 5000, sr))
            burst *= np.hanning(len(burst)).astype(np.float32) * rng.uniform(0.3, 1.0) * v_rms / (burst.std() + 1e-9)
            a = song.t2s(t - t0) - len(burst) // 2
            if a >= 0:
                sig[a:a + len(burst)] += burst[:max(0, min(len(burst), length - a))]
    add_at(out, start, sig / v_rms * 0.1)


def make_reverb(rng, sr):
    """A stereo room impulse response (decorrelated exponentially decaying noise), as a function."""
    rt60 = rng.uniform(0.4, 1.4)
    t = np.arange(int(rt60 * sr)) / sr
    env = np.exp(-6.9 * t / rt60)
    ir = np.stack([lowpass(rng.standard_normal(len(t)), 6000, sr) * env for _ in range(2)])
    ir[:, :int(0.01 * sr)] = 0                       # pre-delay
    ir = (ir / np.sqrt((ir ** 2).sum(axis=1, keepdims=True))).astype(np.float32)
    spectra = {}

    def reverb(x):
        n = sfft.next_fast_len(x.shape[1] + ir.shape[1] - 1, True)
        if n not in spectra:
            spectra[n] = sfft.rfft(ir, n, axis=1)
        return sfft.irfft(sfft.rfft(x, n, axis=1) * spectra[n], n, axis=1)[:, :x.shape[1]].astype(np.float32)
    return reverb
