"""The procedurally synthesised songs of the built-in corpus (generator ``synth``, v2: NumPy only,
fast; the tests' corpus), and the song skeleton (:class:`Song`) that corpus v3
(:mod:`.midi_corpus`) reuses; the singing voice is :mod:`.singing`. :mod:`.default_corpus` picks
the generator and writes the corpus."""
from typing import Dict, List

import numpy as np

from .singing import VOWELS, add_at, bandpass, highpass, lowpass, make_reverb, midi_hz, sing_phrase
from .types import BASS, DRUMS, OTHER, VOCALS

GENERATOR_VERSION = 2              # part of the corpus fingerprint: a new version rebuilds the corpus
_SPLIT_IDS = {"train": 0, "valid": 1, "test": 2}
_PROGRESSIONS = [(0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 4), (0, 4, 3, 4), (5, 4, 3, 4),
                 (0, 6, 5, 4), (0, 2, 3, 4)]
_MAJOR, _MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
_MIX_DB = {VOCALS: (-17.0, 2.0), DRUMS: (-18.0, 2.0), BASS: (-20.0, 2.0), OTHER: (-20.5, 2.0)}


def _pan(p):
    """Constant-power gains for pan position p in [-1, 1]."""
    a = (p + 1) * np.pi / 4
    return float(np.cos(a)) * np.sqrt(2), float(np.sin(a)) * np.sqrt(2)


class Song:
    """Musical skeleton of one song: tempo, key, chords, sections and vocal activity (drawn from
    ``rng``; the v3 generator builds on it too). ``t2s`` turns seconds into samples at ``sr``."""

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


def _vocals(song: Song, rng, reverb) -> np.ndarray:
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
            notes.append((t, min(d, t_end - t), song.scale_note(degree, base), str(rng.choice(list(VOWELS)))))
            t += d
        if notes:
            sing_phrase(out, song, rng, notes, tilt, vib_rate, vib_depth, glide, breath)
        bar += n_phrase_bars
    out = out[:, :song.n]
    wet = rng.uniform(0.12, 0.3)
    return out + wet * reverb(out)


def _one_shots(rng, sr) -> Dict[str, np.ndarray]:
    def decay(seconds, tau):
        t = np.arange(int(seconds * sr)) / sr
        return t, np.exp(-t / tau)

    t, e = decay(0.5, rng.uniform(0.08, 0.2))
    f = rng.uniform(45, 60) + rng.uniform(60, 120) * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(f) / sr) * e
    kick[:int(0.003 * sr)] += rng.standard_normal(int(0.003 * sr)) * 0.3
    t, e = decay(0.35, rng.uniform(0.05, 0.12))
    snare = (bandpass(rng.standard_normal(len(t)), 1000, 8000, sr) * 1.2
             + 0.6 * np.sin(2 * np.pi * rng.uniform(170, 240) * t)) * e
    t, e = decay(0.12, rng.uniform(0.015, 0.04))
    hat = highpass(rng.standard_normal(len(t)), 7000, sr) * e
    t, e = decay(0.6, rng.uniform(0.15, 0.3))
    open_hat = highpass(rng.standard_normal(len(t)), 6000, sr) * e
    t, e = decay(2.0, rng.uniform(0.5, 0.9))
    crash = highpass(rng.standard_normal(len(t)), 3500, sr) * e * 0.6
    return {k: np.asarray(v, dtype=np.float32) for k, v in
            dict(kick=kick, snare=snare, hat=hat, open_hat=open_hat, crash=crash).items()}


def _drums(song: Song, rng, reverb) -> np.ndarray:
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
            add_at(out, song.t2s(t_bar + beat * song.beat + jitter), hits[name] * vel, pan)

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


def _bass(song: Song, rng) -> np.ndarray:
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
            tone = _pluck_tone(midi_hz(note), dur + 0.05, sr, n_harm, 1.5 if sustained else 0.35,
                               0.02 if sustained else 0.08, rng, cache=song.cache)
            rel = int(0.03 * sr)
            tone[-rel:] *= np.linspace(1, 0, rel)
            add_at(out, song.t2s(bar * song.bar + b * song.beat), tone * rng.uniform(0.8, 1.0))
    return lowpass(out[:, :song.n], rng.uniform(1500, 4000), sr)


def _other(song: Song, rng, reverb) -> np.ndarray:
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
                        tone = _wavetable_tone(midi_hz(m + det), song.bar + 0.3, sr, 12, rng, cache=song.cache)
                        tone *= np.minimum(1, np.arange(len(tone)) / (0.25 * sr)).astype(np.float32)
                        tone[-int(0.3 * sr):] *= np.linspace(1, 0, int(0.3 * sr)).astype(np.float32)
                        add_at(out, song.t2s(t_bar), tone * level * 0.35, _pan((j - 1) * 0.6 + det * 3))
            elif kind == "keys":
                for b in ([0, 2] if rng.random() < 0.5 else [0, 1.5, 2.5]):
                    for m in chord:
                        tone = _pluck_tone(midi_hz(m), 1.2, sr, 12, 0.7, 0.03, rng, inharm=1e-4, cache=song.cache)
                        add_at(out, song.t2s(t_bar + b * song.beat), tone * level * 0.5, _pan(rng.uniform(-0.4, 0.4)))
            else:  # arpeggio
                notes = chord + [chord[0] + 12]
                step = float(rng.choice([0.5, 0.25]))
                for i, b in enumerate(np.arange(0, 4, step)):
                    tone = _pluck_tone(midi_hz(notes[i % len(notes)] + 12), 0.5, sr, 10, 0.2, 0.06, rng, cache=song.cache)
                    add_at(out, song.t2s(t_bar + b * song.beat), tone * level * 0.45, _pan(0.7 * np.sin(i)))
    # a lead synth melody (saw-like, no vibrato, no formants) in some instrumental breaks
    for bar in range(1, song.n_bars):
        if not song.vocal_bar[bar] and rng.random() < 0.35:
            degree = int(rng.integers(0, 7))
            for b in np.arange(0, 4, 0.5):
                degree = int(np.clip(degree + rng.choice([-1, 0, 1, 2]), 0, 10))
                tone = _pluck_tone(midi_hz(song.scale_note(degree, 60)), 0.45, sr, 16, 0.6, 0.01, rng, cache=song.cache)
                add_at(out, song.t2s(bar * song.bar + b * song.beat), tone * 0.35, _pan(rng.uniform(-0.3, 0.3)))
    out = out[:, :song.n]
    return out + rng.uniform(0.1, 0.3) * reverb(out)


def generate_song(seed: int, split: str, index: int, seconds: float, sr: int) -> Dict[str, np.ndarray]:
    """The four stems (``[2, T]`` float32) of song ``index`` of ``split``; deterministic."""
    rng = np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index), GENERATOR_VERSION])
    song = Song(rng, seconds, sr)
    reverb = make_reverb(rng, sr)
    stems = {VOCALS: _vocals(song, rng, reverb), DRUMS: _drums(song, rng, reverb),
             BASS: _bass(song, rng), OTHER: _other(song, rng, reverb)}
    for name, audio in stems.items():  # MUSDB-like relative levels, per song random
        rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2)) + 1e-9
        mean_db, spread = _MIX_DB[name]
        stems[name] = (audio * (10 ** ((mean_db + rng.normal(0, spread)) / 20) / rms)).astype(np.float32)
    peak = max(np.abs(sum(stems.values())).max(), max(np.abs(a).max() for a in stems.values()))
    if peak > 0.95:
        stems = {k: (v * (0.95 / peak)).astype(np.float32) for k, v in stems.items()}
    return stems
