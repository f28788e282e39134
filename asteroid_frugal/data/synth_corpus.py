"""The procedurally synthesised songs of the built-in corpus (generator ``synth``, v2: NumPy only,
fast; the tests' corpus) and the singing-voice synthesis that corpus v3 (:mod:`.midi_corpus`)
reuses. :mod:`.default_corpus` picks the generator and writes the corpus."""
from typing import Dict, List

import numpy as np
import scipy.fft as sfft
from scipy.signal import butter, sosfilt

GENERATOR_VERSION = 2              # part of the corpus fingerprint: a new version rebuilds the corpus
_SPLIT_IDS = {"train": 0, "valid": 1, "test": 2}
_VOWELS = {  # formant frequencies F1-F4 (Hz) of sung vowels
    "a": (800, 1150, 2900, 3900),
    "e": (450, 1800, 2750, 3700),
    "i": (320, 2250, 3000, 3800),
    "o": (480, 850, 2800, 3600),
    "u": (340, 720, 2600, 3500),
}
_FORMANT_BW = np.array([80.0, 100.0, 130.0, 170.0])
_PROGRESSIONS = [(0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 4), (0, 4, 3, 4), (5, 4, 3, 4),
                 (0, 6, 5, 4), (0, 2, 3, 4)]
_MAJOR, _MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
_MIX_DB = {"vocals": (-17.0, 2.0), "drums": (-18.0, 2.0), "bass": (-20.0, 2.0), "other": (-20.5, 2.0)}


def _midi_hz(m):
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


# cut-offs are capped below Nyquist so that low-rate corpora (tests, 8-16 kHz models) generate too
def _bandpass(x, lo, hi, sr, order=2):
    hi = min(hi, 0.45 * sr)
    lo = min(lo, 0.5 * hi)
    return sosfilt(butter(order, [lo, hi], btype="band", fs=sr, output="sos"), x).astype(np.float32)


def _highpass(x, lo, sr, order=2):
    return sosfilt(butter(order, min(lo, 0.4 * sr), btype="high", fs=sr, output="sos"), x).astype(np.float32)


def _lowpass(x, hi, sr, order=2):
    return sosfilt(butter(order, min(hi, 0.45 * sr), btype="low", fs=sr, output="sos"), x).astype(np.float32)


def _add(buf, start, sig, gains=(1.0, 1.0)):
    """Add mono ``sig`` into stereo ``buf`` at ``start`` with per-channel gains (clipped to buf)."""
    if start >= buf.shape[1]:
        return
    if start < 0:
        sig, start = sig[-start:], 0
    n = min(len(sig), buf.shape[1] - start)
    buf[0, start:start + n] += gains[0] * sig[:n]
    buf[1, start:start + n] += gains[1] * sig[:n]


def _pan(p):
    """Constant-power gains for pan position p in [-1, 1]."""
    a = (p + 1) * np.pi / 4
    return float(np.cos(a)) * np.sqrt(2), float(np.sin(a)) * np.sqrt(2)


def _additive(f0, amps, sr):
    """Sum of harmonics of a time-varying ``f0`` (Hz per sample), ``amps [K, T]`` per harmonic.

    Harmonics above 0.45 sr must already have zero amplitude (no aliasing).
    """
    phase = np.mod(2 * np.pi * np.cumsum(f0) / sr, 2 * np.pi).astype(np.float32)
    k = np.arange(1, amps.shape[0] + 1, dtype=np.float32)[:, None]
    return np.einsum("kt,kt->t", np.sin(k * phase[None, :]), amps)


def _formant_gain(freqs, vowels_a, vowels_b, mix):
    """Vocal-tract gain at ``freqs [G, K]``: a cascade of 2-pole resonators (the vowel's formants),
    morphing from ``vowels_a[g]`` to ``vowels_b[g]`` with weight ``mix[g]``."""
    fa = np.array([_VOWELS[v] for v in vowels_a], dtype=np.float64)
    fb = np.array([_VOWELS[v] for v in vowels_b], dtype=np.float64)
    mix = np.asarray(mix, dtype=np.float64)[:, None]
    fr = (fa * (1 - mix) + fb * mix)[:, None, :]            # [G, 1, 4]
    x = freqs[..., None] / fr
    mag2 = (1 - x ** 2) ** 2 + (freqs[..., None] * _FORMANT_BW / fr ** 2) ** 2
    return np.prod(1.0 / np.sqrt(mag2), axis=-1)


class _Song:
    """Musical skeleton of one song: tempo, key, chords, sections and vocal activity."""

    def __init__(self, rng: np.random.Generator, seconds: float, sr: int):
        self.rng, self.sr = rng, sr
        self.cache: Dict[tuple, np.ndarray] = {}      # synthesised tones reused within the song
        self.n = int(round(seconds * sr))
        self.bpm = rng.uniform(78, 140)
        self.beat = 60.0 / self.bpm
        self.bar = 4 * self.beat
        self.n_bars = int(np.ceil(seconds / self.bar)) + 1
        self.scale = _MAJOR if rng.random() < 0.6 else _MINOR
        self.key = int(rng.integers(0, 12))
        self.progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
        # sections of 2 or 4 bars; intro and some breaks are instrumental
        self.vocal_bar = np.zeros(self.n_bars, dtype=bool)
        self.drum_bar = np.ones(self.n_bars, dtype=bool)
        self.section_start = np.zeros(self.n_bars, dtype=bool)
        bar = int(rng.integers(1, 3))         # instrumental intro of 1-2 bars
        if rng.random() < 0.5:
            self.drum_bar[:bar] = False
        self.section_start[0] = True
        sung = True
        while bar < self.n_bars:
            length = int(rng.choice([2, 4, 4]))
            self.section_start[bar] = True
            self.vocal_bar[bar:bar + length] = sung
            if not sung and rng.random() < 0.3:
                self.drum_bar[bar:bar + length] = False       # breakdown
            bar += length
            sung = rng.random() < (0.55 if sung else 0.9)

    def t2s(self, t):
        return int(round(t * self.sr))

    def chord(self, bar: int, octave_midi: int) -> List[int]:
        """Triad (MIDI notes) of the chord of ``bar``, root near ``octave_midi``."""
        degree = self.progression[bar % len(self.progression)]
        notes = []
        for step in (0, 2, 4):
            d = degree + step
            notes.append(octave_midi + self.key + self.scale[d % 7] + 12 * (d // 7))
        return notes

    def scale_note(self, degree: int, base: int) -> int:
        return base + self.key + self.scale[degree % 7] + 12 * (degree // 7)


def _vocals(song: _Song, rng, reverb) -> np.ndarray:
    out = np.zeros((2, song.n), dtype=np.float32)
    base = int(rng.choice([48, 53, 57]))           # low / mid / high voice register (C3, F3, A3)
    tilt = rng.uniform(0.8, 1.2)                   # glottal source spectral tilt
    vib_rate, vib_depth = rng.uniform(4.8, 6.5), rng.uniform(0.2, 0.6)    # Hz, semitones
    glide = rng.uniform(0.02, 0.06)                # portamento time constant (s)
    breath = rng.uniform(0.01, 0.04)             # breath noise, relative to the voiced level
    degree = int(rng.integers(0, 5))
    durations = np.array([0.5, 1.0, 1.0, 1.5, 2.0])   # in beats
    bar = 0
    while bar < song.n_bars:
        if not song.vocal_bar[bar]:
            bar += 1
            continue
        n_phrase_bars = int(min(rng.choice([1, 2, 2]), song.n_bars - bar))
        t = bar * song.bar + song.beat * rng.choice([0.0, 0.5, 1.0])
        t_end = (bar + n_phrase_bars) * song.bar - song.beat * rng.uniform(0.5, 1.5)
        notes = []
        while t < t_end - 0.1:
            d = float(rng.choice(durations)) * song.beat
            degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3]), -2, 9))
            notes.append((t, min(d, t_end - t), song.scale_note(degree, base), str(rng.choice(list(_VOWELS)))))
            t += d
        if notes:
            _sing_phrase(out, song, rng, notes, tilt, vib_rate, vib_depth, glide, breath)
        bar += n_phrase_bars
    out = out[:, :song.n]
    wet = rng.uniform(0.12, 0.3)
    return out + wet * reverb(out)


def _sing_phrase(out, song, rng, notes, tilt, vib_rate, vib_depth, glide, breath):
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
    f0 = _midi_hz(midi + jitter)
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
    gains = _formant_gain(freqs, [vowels[c] for c in cur], [vowels[min(c + 1, len(notes) - 1)] for c in cur],
                          mix) / k[None, :] ** tilt
    pos = np.arange(length) / hop
    i0 = np.minimum(pos.astype(np.int64), len(grid) - 2)
    w = (pos - i0).astype(np.float32)
    g = gains.T.astype(np.float32)                 # [K, grid], linearly interpolated to samples
    amps = (g[:, i0] * (1 - w) + g[:, i0 + 1] * w) * env.astype(np.float32)[None, :]
    voiced = _additive(f0, amps, sr)
    v_rms = float(np.sqrt(np.mean(voiced ** 2))) + 1e-9
    noise = _bandpass(rng.standard_normal(length).astype(np.float32), 1000, 6000, sr) * env
    sig = voiced + noise * (breath * v_rms / (float(np.sqrt(np.mean(noise ** 2))) + 1e-9))
    # consonants: sibilant or plosive bursts just before some syllables
    for t, _, _, _ in notes:
        if rng.random() < 0.45:
            dur = rng.uniform(0.03, 0.09)
            burst = rng.standard_normal(song.t2s(dur)).astype(np.float32)
            burst = (_bandpass(burst, 4000, 10000, sr) if rng.random() < 0.6 else _bandpass(burst, 300, 5000, sr))
            burst *= np.hanning(len(burst)).astype(np.float32) * rng.uniform(0.3, 1.0) * v_rms / (burst.std() + 1e-9)
            a = song.t2s(t - t0) - len(burst) // 2
            if a >= 0:
                sig[a:a + len(burst)] += burst[:max(0, min(len(burst), length - a))]
    _add(out, start, sig / v_rms * 0.1)


def _one_shots(rng, sr) -> Dict[str, np.ndarray]:
    def decay(seconds, tau):
        t = np.arange(int(seconds * sr)) / sr
        return t, np.exp(-t / tau)

    t, e = decay(0.5, rng.uniform(0.08, 0.2))
    f = rng.uniform(45, 60) + rng.uniform(60, 120) * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(f) / sr) * e
    kick[:int(0.003 * sr)] += rng.standard_normal(int(0.003 * sr)) * 0.3
    t, e = decay(0.35, rng.uniform(0.05, 0.12))
    snare = (_bandpass(rng.standard_normal(len(t)), 1000, 8000, sr) * 1.2
             + 0.6 * np.sin(2 * np.pi * rng.uniform(170, 240) * t)) * e
    t, e = decay(0.12, rng.uniform(0.015, 0.04))
    hat = _highpass(rng.standard_normal(len(t)), 7000, sr) * e
    t, e = decay(0.6, rng.uniform(0.15, 0.3))
    open_hat = _highpass(rng.standard_normal(len(t)), 6000, sr) * e
    t, e = decay(2.0, rng.uniform(0.5, 0.9))
    crash = _highpass(rng.standard_normal(len(t)), 3500, sr) * e * 0.6
    return {k: np.asarray(v, dtype=np.float32) for k, v in
            dict(kick=kick, snare=snare, hat=hat, open_hat=open_hat, crash=crash).items()}


def _drums(song: _Song, rng, reverb) -> np.ndarray:
    sr, out = song.sr, np.zeros((2, song.n), dtype=np.float32)
    hits = _one_shots(rng, sr)
    kick_pattern = [[0, 2], [0, 1.5, 2], [0, 2.5], [0, 0.75, 2, 2.5]][int(rng.integers(4))]
    hat_step = float(rng.choice([0.5, 0.5, 0.25]))
    hat_pan = _pan(rng.uniform(-0.5, 0.5))
    swing = rng.uniform(0, 0.04) * song.beat
    for bar in range(song.n_bars):
        if not song.drum_bar[bar]:
            continue
        t_bar = bar * song.bar
        fill = bar + 1 < song.n_bars and song.section_start[bar + 1] and rng.random() < 0.6

        def hit(name, beat, vel, pan=(1.0, 1.0)):
            jitter = rng.normal(0, 0.004)
            _add(out, song.t2s(t_bar + beat * song.beat + jitter), hits[name] * vel, pan)

        if song.section_start[bar] and rng.random() < 0.7:
            hit("crash", 0, rng.uniform(0.6, 0.9), _pan(rng.uniform(-0.6, 0.6)))
        for b in kick_pattern:
            hit("kick", b, rng.uniform(0.85, 1.0))
        for b in (1, 3):
            if not (fill and b == 3):
                hit("snare", b, rng.uniform(0.75, 0.95))
        for b in np.arange(0, 4 if not fill else 3, hat_step):
            name = "open_hat" if (b % 2 == 1.5 and rng.random() < 0.3) else "hat"
            hit(name, b + (swing / song.beat if b % 1 else 0), rng.uniform(0.25, 0.55), hat_pan)
        if fill:
            for b in np.arange(3, 4, 0.25):
                hit("snare", b, rng.uniform(0.4, 0.8), _pan(rng.uniform(-0.3, 0.3)))
    out = out[:, :song.n]
    return out + rng.uniform(0.03, 0.1) * reverb(out)


def _pluck_tone(f0, seconds, sr, n_harm, decay, bright_decay, rng, inharm=0.0, cache=None):
    """Additive tone whose upper harmonics decay faster (plucked string, piano, pad)."""
    key = (round(float(f0), 3), round(seconds, 2), n_harm, decay, bright_decay, inharm)
    if cache is not None and key in cache:
        return cache[key].copy()
    t = (np.arange(int(round(seconds, 2) * sr)) / sr).astype(np.float32)
    k = np.arange(1, n_harm + 1, dtype=np.float32)[:, None]
    fk = f0 * k * np.sqrt(1 + inharm * k ** 2)
    amps = (1.0 / k ** 1.2) * np.exp(-t[None, :] * (1 / decay + k * bright_decay)) * (fk < 0.45 * sr)
    ph = np.mod(fk * t[None, :], 1.0) * np.float32(2 * np.pi) + rng.uniform(0, 6.3, (n_harm, 1)).astype(np.float32)
    sig = np.einsum("kt,kt->t", np.sin(ph), amps.astype(np.float32))
    att = min(len(t), int(0.004 * sr))
    sig[:att] *= np.linspace(0, 1, att, dtype=np.float32)
    if cache is not None:
        cache[key] = sig.copy()
    return sig


def _wavetable_tone(f0, seconds, sr, n_harm, rng, cache=None):
    """Sustained tone of constant timbre (pads): one band-limited period read at ``f0``."""
    key = ("table", round(float(f0), 3), round(seconds, 2), n_harm)
    if cache is not None and key in cache:
        return cache[key].copy()
    size = 2048
    k = np.arange(1, n_harm + 1)[:, None]
    amps = (1.0 / k ** 1.2) * (f0 * k < 0.45 * sr)
    table = (np.sin(2 * np.pi * k * np.arange(size)[None, :] / size + rng.uniform(0, 6.3, (n_harm, 1)))
             * amps).sum(0).astype(np.float32)
    idx = (np.arange(int(round(seconds, 2) * sr)) * (f0 * size / sr) + rng.uniform(0, size)) % size
    sig = table[idx.astype(np.int64)]
    if cache is not None:
        cache[key] = sig.copy()
    return sig


def _bass(song: _Song, rng) -> np.ndarray:
    sr, out = song.sr, np.zeros((2, song.n), dtype=np.float32)
    octave = int(rng.choice([28, 33]))
    step = float(rng.choice([1.0, 0.5, 2.0]))
    sustained = rng.random() < 0.35
    n_harm = int(rng.integers(8, 20))
    for bar in range(song.n_bars):
        root = song.chord(bar, octave)[0]
        for b in np.arange(0, 4, step):
            note = root + (12 if rng.random() < 0.12 else 7 if rng.random() < 0.12 else 0)
            dur = step * song.beat * (0.95 if sustained else rng.uniform(0.5, 0.9))
            dur = round(dur / 0.05) * 0.05
            tone = _pluck_tone(_midi_hz(note), dur + 0.05, sr, n_harm, 1.5 if sustained else 0.35,
                               0.02 if sustained else 0.08, rng, cache=song.cache)
            rel = int(0.03 * sr)
            tone[-rel:] *= np.linspace(1, 0, rel)
            _add(out, song.t2s(bar * song.bar + b * song.beat), tone * rng.uniform(0.8, 1.0))
    return _lowpass(out[:, :song.n], rng.uniform(1500, 4000), sr)


def _other(song: _Song, rng, reverb) -> np.ndarray:
    sr, out = song.sr, np.zeros((2, song.n), dtype=np.float32)
    kinds = list(rng.choice(["pad", "keys", "arp"], size=int(rng.integers(1, 3)), replace=False))
    for kind in kinds:
        octave = int(rng.choice([52, 55, 57, 60]))
        level = rng.uniform(0.5, 1.0)
        for bar in range(song.n_bars):
            chord = song.chord(bar, octave)
            t_bar = bar * song.bar
            if kind == "pad":
                for j, m in enumerate(chord):
                    for det in (-0.08, 0.08):
                        tone = _wavetable_tone(_midi_hz(m + det), song.bar + 0.3, sr, 12, rng, cache=song.cache)
                        tone *= np.minimum(1, np.arange(len(tone)) / (0.25 * sr)).astype(np.float32)
                        tone[-int(0.3 * sr):] *= np.linspace(1, 0, int(0.3 * sr)).astype(np.float32)
                        _add(out, song.t2s(t_bar), tone * level * 0.35, _pan((j - 1) * 0.6 + det * 3))
            elif kind == "keys":
                for b in ([0, 2] if rng.random() < 0.5 else [0, 1.5, 2.5]):
                    for m in chord:
                        tone = _pluck_tone(_midi_hz(m), 1.2, sr, 12, 0.7, 0.03, rng, inharm=1e-4, cache=song.cache)
                        _add(out, song.t2s(t_bar + b * song.beat), tone * level * 0.5, _pan(rng.uniform(-0.4, 0.4)))
            else:  # arpeggio
                notes = chord + [chord[0] + 12]
                step = float(rng.choice([0.5, 0.25]))
                for i, b in enumerate(np.arange(0, 4, step)):
                    tone = _pluck_tone(_midi_hz(notes[i % len(notes)] + 12), 0.5, sr, 10, 0.2, 0.06, rng, cache=song.cache)
                    _add(out, song.t2s(t_bar + b * song.beat), tone * level * 0.45, _pan(0.7 * np.sin(i)))
    # a lead synth melody (saw-like, no vibrato, no formants) in some instrumental breaks
    for bar in range(1, song.n_bars):
        if not song.vocal_bar[bar] and rng.random() < 0.35:
            degree = int(rng.integers(0, 7))
            for b in np.arange(0, 4, 0.5):
                degree = int(np.clip(degree + rng.choice([-1, 0, 1, 2]), 0, 10))
                tone = _pluck_tone(_midi_hz(song.scale_note(degree, 60)), 0.45, sr, 16, 0.6, 0.01, rng, cache=song.cache)
                _add(out, song.t2s(bar * song.bar + b * song.beat), tone * 0.35, _pan(rng.uniform(-0.3, 0.3)))
    out = out[:, :song.n]
    return out + rng.uniform(0.1, 0.3) * reverb(out)


def _make_reverb(rng, sr):
    """A stereo room impulse response (decorrelated exponentially decaying noise), as a function."""
    rt60 = rng.uniform(0.4, 1.4)
    t = np.arange(int(rt60 * sr)) / sr
    env = np.exp(-6.9 * t / rt60)
    ir = np.stack([_lowpass(rng.standard_normal(len(t)), 6000, sr) * env for _ in range(2)])
    ir[:, :int(0.01 * sr)] = 0                       # pre-delay
    ir = (ir / np.sqrt((ir ** 2).sum(axis=1, keepdims=True))).astype(np.float32)
    spectra = {}

    def reverb(x):
        n = sfft.next_fast_len(x.shape[1] + ir.shape[1] - 1, True)
        if n not in spectra:
            spectra[n] = sfft.rfft(ir, n, axis=1)
        return sfft.irfft(sfft.rfft(x, n, axis=1) * spectra[n], n, axis=1)[:, :x.shape[1]].astype(np.float32)
    return reverb


def generate_song(seed: int, split: str, index: int, seconds: float, sr: int = 44100) -> Dict[str, np.ndarray]:
    """The four stems (``[2, T]`` float32) of song ``index`` of ``split``; deterministic."""
    rng = np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index), GENERATOR_VERSION])
    song = _Song(rng, seconds, sr)
    reverb = _make_reverb(rng, sr)
    stems = {"vocals": _vocals(song, rng, reverb), "drums": _drums(song, rng, reverb),
             "bass": _bass(song, rng), "other": _other(song, rng, reverb)}
    for name, audio in stems.items():  # MUSDB-like relative levels, per song random
        rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2)) + 1e-9
        mean_db, spread = _MIX_DB[name]
        stems[name] = (audio * (10 ** ((mean_db + rng.normal(0, spread)) / 20) / rms)).astype(np.float32)
    peak = max(np.abs(sum(stems.values())).max(), max(np.abs(a).max() for a in stems.values()))
    if peak > 0.95:
        stems = {k: (v * (0.95 / peak)).astype(np.float32) for k, v in stems.items()}
    return stems
