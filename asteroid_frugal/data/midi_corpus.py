"""Built-in corpus v3: songs composed as multitrack MIDI and rendered with FluidSynth.

Each song (seeded by ``(seed, split, index)`` only) has a tempo, a key and mode, a chord
progression and sections (instrumental intro, sung sections, instrumental breaks) from the
v2 skeleton (:class:`synth_corpus.Song`), with a per-section intensity (velocities),
swing and humanised timing. Its parts are General MIDI:

* ``drums``: one of several GM kits (channel 10): kick/snare grooves, closed/open hi-hat or
  ride, crashes at section starts, tom and snare fills before new sections;
* ``bass``: one GM bass program (acoustic, finger, pick, fretless, slap, synth), a line
  following the chord roots with fifths, octaves and approach notes;
* ``other``: 2-4 parts drawn from a pool of keys, organs, guitars, strings, pads, brass and
  reeds (sustained chords, comping rhythms, arpeggios, a lead line in instrumental breaks),
  each with its own pan, volume and reverb send;
* ``vocals``: a sung lead melody in the song's key that lands on chord tones, synthesised as
  in v2 (glottal source and vowel formants, vibrato after the onset, portamento glides,
  jitter, breath noise and consonant bursts, breaths before phrases), centred with a room
  reverb (:mod:`.singing`), or (``default_corpus.singer``) a recorded speaker of one of five
  languages made to sing the melody, transposed by octaves into the speaker's range, produced
  as a vocal track (:mod:`.sung_voice`); in some songs GM choir/voice patches (Choir Aahs, Voice
  Oohs) add backing vowels.

The MIDI parts of each source are rendered separately by ``midi_render.fluidsynth_render``
with the song's soundfont (one of ``default_corpus.soundfonts``, by song index; test songs
may use ``test_soundfonts`` to hold a soundfont out of training). Stems get mix levels drawn
per song (vocals sometimes upfront) and the writer of v2 sums them into ``mixture.wav``.
The audio depends only on the song's seed, the soundfont, the length and the sample rate:
identical whatever the number of jobs (fluidsynth runs single-threaded).
"""
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..midi_render import DRUM_CHANNEL, SynthSettings, fluidsynth_render
from ..utils import FrugalError
from . import sung_voice
from .singing import VOWELS, bandpass, highpass, make_reverb, sing_phrase
from .synth_corpus import Song
from .types import BASS, DRUMS, OTHER, VOCALS

GENERATOR_VERSION = 3
TPB = 480                                   # MIDI ticks per beat
_SPLIT_IDS = {"train": 0, "valid": 1, "test": 2}
# General MIDI programs, 0-based as in the MIDI bytes
_KITS = (0, 8, 16, 24, 25, 32, 40)          # standard, room, power, electronic, TR-808, jazz, brush
_BASSES = (32, 33, 34, 35, 36, 38, 39)      # acoustic, finger, pick, fretless, slap 1, synth 1-2
_CHORD_PROGRAMS = (0, 1, 2, 4, 5, 16, 17, 18, 19, 24, 25, 26, 27, 28, 30, 48, 49, 50, 51, 61, 88, 89, 90)
_SUSTAIN_PROGRAMS = (16, 17, 19, 48, 49, 50, 51, 88, 89, 90, 92, 95)   # no choir/voice pads (GM 92, 95)
_ARP_PROGRAMS = (0, 4, 6, 8, 10, 11, 12, 24, 25, 26, 27, 46, 98)
_LEAD_PROGRAMS = (56, 57, 61, 64, 65, 66, 68, 71, 73, 80, 81, 22)   # brass, reeds, flute, synth leads
_BACKING_VOICES = (52, 53)                  # Choir Aahs, Voice Oohs (GM voice patches)
# mix levels (dB RMS, mean and spread) of the stems, as in MUSDB18-like productions
_MIX_DB = {VOCALS: (-17.0, 2.0), DRUMS: (-18.0, 2.0), BASS: (-20.0, 2.0), OTHER: (-19.5, 2.0)}
_VOCALS_UPFRONT = (0.3, 4.0)                # share of songs with vocals pushed forward, and by how many dB


SINGERS = ("additive", "speech", "mixed")   # default_corpus.singer


@dataclass(frozen=True)
class Vocalist:
    """Who sings the lead: ``mode`` one of SINGERS (additive: the v3 synthesiser; speech: a recorded
    speaker made to sing, :mod:`.sung_voice`; mixed: each song one of the two, half and half) and
    the speakers a song draws from; ``formant_shift`` > 0: each song's speaker has its formants
    moved by a factor drawn log-uniformly in [1 / (1 + shift), 1 + shift] (a virtual speaker);
    ``in_turn``: song ``i`` is sung by ``speakers[i % len(speakers)]`` instead of a drawn one (every
    speaker held out for the test sings as many songs, give or take one)."""

    mode: str
    speakers: Sequence[str] = ()
    formant_shift: float = 0.0
    in_turn: bool = False


class _Parts:
    """Notes of one source's MIDI file: ``channel -> set-up`` and ``(beat, beats, ch, pitch, vel)``."""

    def __init__(self):
        self.setup: Dict[int, Tuple[int, int, int, int]] = {}     # program, volume, pan, reverb send
        self.notes: List[Tuple[float, float, int, int, int]] = []

    def channel(self, ch: int, program: int, volume: int, pan: int, reverb: int) -> int:
        self.setup[ch] = (program, volume, int(np.clip(pan, 0, 127)), reverb)
        return ch

    def note(self, beat, beats, ch, pitch, vel):
        if 0 <= pitch <= 127 and beats > 0:
            self.notes.append((float(beat), float(beats), ch, int(pitch), int(np.clip(vel, 1, 127))))

    def midi(self, bpm: float, end_beat: float):
        """A type-0 ``mido.MidiFile`` (messages built from bytes: mido's per-field checks dominate
        the time otherwise; the values are in range by construction)."""
        import mido

        events = []                          # (tick, order, status, data1, data2)
        for ch, (program, volume, pan, reverb) in sorted(self.setup.items()):
            for cc, value in ((7, volume), (10, pan), (91, reverb), (93, 0)):
                events.append((0, 0, 0xB0 | ch, cc, value))
            events.append((0, 0, 0xC0 | ch, program, None))
        end = int(round(end_beat * TPB))
        for beat, beats, ch, pitch, vel in self.notes:
            on = int(round(beat * TPB))
            if on >= end:
                continue
            off = min(end, on + max(1, int(round(beats * TPB))))
            events.append((on, 2, 0x90 | ch, pitch, vel))
            events.append((off, 1, 0x80 | ch, pitch, 0))
        for ch in sorted(self.setup):       # all notes off at the end: nothing rings past the song
            events.append((end, 3, 0xB0 | ch, 123, 0))
        track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=int(round(60e6 / bpm)))])
        last = 0
        for tick, _, status, d1, d2 in sorted(events, key=lambda e: (e[0], e[1])):
            data = [status, d1] if d2 is None else [status, d1, d2]
            track.append(mido.Message.from_bytes(data, time=tick - last))
            last = tick
        mid = mido.MidiFile(type=0, ticks_per_beat=TPB)
        mid.tracks.append(track)
        return mid


class Composer:
    """The song's skeleton plus what v3 adds: section intensity, swing and humanisation."""

    def __init__(self, rng: np.random.Generator, seconds: float, sr: int):
        self.rng = rng
        self.song = Song(rng, seconds, sr)
        self.n_beats = self.song.n_bars * 4
        self.swing = float(rng.choice([0.0, 0.0, rng.uniform(0.05, 0.17)]))   # off-beat eighths delay (beats)
        self.intensity = np.ones(self.song.n_bars)
        level = rng.uniform(0.6, 0.85)
        for bar in range(self.song.n_bars):
            if self.song.section_start[bar]:
                level = float(np.clip(rng.uniform(0.55, 1.0) + (0.1 if self.song.vocal_bar[bar] else 0), 0.5, 1))
            self.intensity[bar] = level

    # v2's skeleton counts degrees from the MIDI note it is given: anchor them on a C, so that
    # every part is in the song's key whatever its register
    def chord(self, bar: int, low: int) -> List[int]:
        """Triad of ``bar``'s chord, root between the C at or below ``low`` and an octave above."""
        return self.song.chord(bar, low - low % 12)

    def scale_note(self, degree: int, low: int) -> int:
        return self.song.scale_note(degree, low - low % 12)

    def in_key(self, lo: int, hi: int) -> List[int]:
        """The MIDI notes of the song's scale within ``[lo, hi]``, ascending."""
        return [m for m in range(lo, hi + 1) if (m - self.song.key) % 12 in self.song.scale]

    def when(self, bar: int, beat: float, jitter: float = 0.01) -> float:
        """Beat position of ``beat`` in ``bar`` with swing on off-beat eighths and a little jitter."""
        frac = beat % 1
        swung = beat + (self.swing if abs(frac - 0.5) < 1e-6 else 0.0)
        return max(0.0, bar * 4 + swung + self.rng.normal(0, jitter))

    def vel(self, bar: int, base: float, spread: float = 8) -> int:
        return int(base * (0.55 + 0.45 * self.intensity[bar]) + self.rng.normal(0, spread))


def _drums(c: Composer, parts: _Parts) -> None:
    rng, song = c.rng, c.song
    ch = parts.channel(DRUM_CHANNEL, int(rng.choice(_KITS)), int(rng.integers(95, 115)), 64, int(rng.integers(10, 50)))
    kick = [[0, 2], [0, 1.5, 2], [0, 2.5], [0, 0.75, 2, 2.5], [0, 1, 2, 3]][int(rng.integers(5))]
    snare = [[1, 3], [1, 3], [2], [1, 3, 3.5]][int(rng.integers(4))]
    cymbal = int(rng.choice([42, 42, 42, 51, 44]))          # closed hat, ride, pedal hat
    step = float(rng.choice([0.5, 0.5, 0.25, 1.0]))
    toms = [50, 48, 47, 45, 43, 41]
    for bar in range(song.n_bars):
        if not song.drum_bar[bar]:
            continue
        fill = bar + 1 < song.n_bars and song.section_start[bar + 1] and rng.random() < 0.65
        if song.section_start[bar] and rng.random() < 0.75:
            parts.note(c.when(bar, 0), 1.5, ch, int(rng.choice([49, 57])), c.vel(bar, 110))
        for b in kick:
            if not (fill and b >= 3):
                parts.note(c.when(bar, b), 0.25, ch, 36, c.vel(bar, 112))
        for b in snare:
            if not (fill and b >= 3):
                parts.note(c.when(bar, b), 0.25, ch, int(rng.choice([38, 38, 38, 40])), c.vel(bar, 105))
        for b in np.arange(0, 3 if fill else 4, step):
            pitch = 46 if (cymbal == 42 and b % 2 == 1.5 and rng.random() < 0.35) else cymbal
            parts.note(c.when(bar, b), step, ch, pitch, c.vel(bar, 80 if b % 1 == 0 else 62, 10))
        if fill:
            kind = rng.integers(3)
            for i, b in enumerate(np.arange(3, 4, 0.25)):
                pitch = 38 if kind == 0 else toms[min(i + int(rng.integers(0, 3)), len(toms) - 1)] if kind == 1 \
                    else int(rng.choice([38, 45, 43]))
                parts.note(c.when(bar, b, 0.005), 0.25, ch, pitch, c.vel(bar, 70 + 12 * i))


def _bass(c: Composer, parts: _Parts) -> None:
    rng, song = c.rng, c.song
    ch = parts.channel(0, int(rng.choice(_BASSES)), int(rng.integers(100, 120)), int(rng.integers(58, 70)),
                       int(rng.integers(0, 25)))
    octave = int(rng.choice([24, 24, 36]))      # roots C1-B1, or C2-B2
    style = rng.integers(4)          # 0 root notes, 1 eighths, 2 root-fifth, 3 syncopated with approach notes
    legato = rng.uniform(0.6, 0.95)
    for bar in range(song.n_bars):
        root = c.chord(bar, octave)[0]
        nxt = c.chord(bar + 1, octave)[0]
        if style == 0:
            hits = [(0, 2, root), (2, 2, root)]
        elif style == 1:
            hits = [(b, 0.5, root + (12 if rng.random() < 0.15 else 0)) for b in np.arange(0, 4, 0.5)]
        elif style == 2:
            hits = [(0, 1, root), (1, 1, root + 7), (2, 1, root + 12 if rng.random() < 0.4 else root), (3, 1, root + 7)]
        else:
            hits = [(0, 1.5, root), (1.5, 1, root), (2.5, 1, root + 7), (3.5, 0.5, nxt - 1 if nxt > root else nxt + 1)]
        for b, beats, pitch in hits:
            parts.note(c.when(bar, b), beats * legato, ch, pitch, c.vel(bar, 100))


def _other(c: Composer, parts: _Parts) -> List[int]:
    """2-4 accompaniment parts on channels 0-4 (never the drum channel); returns their programs."""
    rng, song = c.rng, c.song
    roles = ["chords"] + list(rng.choice(["pad", "arp", "chords", "lead"], size=int(rng.integers(1, 4)), replace=False))
    programs = []
    for i, role in enumerate(roles):
        pool = {"chords": _CHORD_PROGRAMS, "pad": _SUSTAIN_PROGRAMS, "arp": _ARP_PROGRAMS, "lead": _LEAD_PROGRAMS}[role]
        program = int(rng.choice(pool))
        programs.append(program)
        pan = 64 + int(rng.uniform(-50, 50)) if role != "lead" else 64 + int(rng.uniform(-20, 20))
        ch = parts.channel(i, program, int(rng.integers(70, 110)), pan, int(rng.integers(30, 90)))
        octave = int(rng.choice([48, 48, 60]))
        rhythm = [[0], [0, 2], [0, 1.5, 2.5], [0, 1, 2, 3], [0.5, 1.5, 2.5, 3.5]][int(rng.integers(5))]
        arp_step = float(rng.choice([0.5, 0.25]))
        degree = int(rng.integers(0, 7))
        for bar in range(song.n_bars):
            chord = c.chord(bar, octave)
            if role == "chords":
                for b in rhythm:
                    length = (rhythm + [4])[rhythm.index(b) + 1] - b
                    for m in chord:
                        parts.note(c.when(bar, b, 0.008), length * 0.9, ch, m, c.vel(bar, 80))
            elif role == "pad":
                for m in chord:
                    parts.note(bar * 4, 4.0, ch, m, c.vel(bar, 70, 4))
            elif role == "arp":
                notes = chord + [chord[0] + 12]
                for j, b in enumerate(np.arange(0, 4, arp_step)):
                    parts.note(c.when(bar, b, 0.006), arp_step * 1.5, ch, notes[j % len(notes)] + 12, c.vel(bar, 78))
            elif not song.vocal_bar[bar] and bar > 0:      # lead line in instrumental bars only
                for b in np.arange(0, 4, float(rng.choice([0.5, 1.0]))):
                    degree = int(np.clip(degree + rng.choice([-2, -1, 0, 1, 1, 2]), 0, 11))
                    parts.note(c.when(bar, b), 0.45, ch, c.scale_note(degree, 60), c.vel(bar, 92))
    return programs


def melody(c: Composer, base: int) -> List[List[Tuple[float, float, int, str]]]:
    """Phrases of the sung lead: ``(seconds, seconds, midi, vowel)`` notes on the song's scale, landing
    on a chord tone on strong beats, a repeated rhythm motif per section."""
    rng, song = c.rng, c.song
    phrases, bar, motif = [], 0, None
    pitches = c.in_key(base - 3, base + 14)             # the voice's range, in the key
    current = c.scale_note(int(rng.integers(0, 5)), base)
    while bar < song.n_bars:
        if not song.vocal_bar[bar]:
            bar, motif = bar + 1, None
            continue
        n_bars = int(min(rng.choice([1, 2, 2]), song.n_bars - bar))
        if motif is None or rng.random() < 0.3:
            motif = [float(x) for x in rng.choice([0.5, 1.0, 1.0, 1.5, 2.0], size=8)]
        beat = float(rng.choice([0.0, 0.5, 1.0]))
        end = n_bars * 4 - rng.uniform(0.5, 1.5)
        notes, k = [], 0
        while beat < end - 0.25:
            dur = min(motif[k % len(motif)], end - beat)
            k += 1
            b_abs = bar * 4 + beat
            chord_bar = int(b_abs // 4)
            if beat % 1 == 0:          # strong beat: nearest chord tone (any octave) to the current pitch
                chord = {m % 12 for m in c.chord(chord_bar, base)}
                aim = current + int(rng.choice([-2, 0, 2]))
                current = min((m for m in pitches if m % 12 in chord), key=lambda m: (abs(m - aim), m))
            else:                      # passing note: a scale step
                step = int(rng.choice([-2, -1, -1, 1, 1, 2]))
                idx = int(np.argmin([abs(m - current) for m in pitches]))
                current = pitches[int(np.clip(idx + step, 0, len(pitches) - 1))]
            t = (c.when(bar, beat, 0.005)) * song.beat
            notes.append((t, dur * song.beat, current, str(rng.choice(list(VOWELS)))))
            beat += dur
        if notes:
            phrases.append(notes)
        bar += n_bars
    return phrases


def _sung_vocals(c: Composer, phrases, reverb) -> np.ndarray:
    """The lead voice (v2's singing synthesis on the composed phrases) with breaths before phrases."""
    rng, song = c.rng, c.song
    out = np.zeros((2, song.n), dtype=np.float32)
    tilt = rng.uniform(0.7, 1.2)
    vib_rate, vib_depth = rng.uniform(4.8, 6.5), rng.uniform(0.2, 0.7)
    glide = rng.uniform(0.02, 0.08)
    breath = rng.uniform(0.01, 0.05)
    for notes in phrases:
        sing_phrase(out, song, rng, notes, tilt, vib_rate, vib_depth, glide, breath)
        if rng.random() < 0.6:           # an audible breath in before the phrase
            n = song.t2s(rng.uniform(0.15, 0.35))
            start = song.t2s(notes[0][0]) - n - song.t2s(0.03)
            if start >= 0 and n > 8:
                inhale = bandpass(rng.standard_normal(n).astype(np.float32), 600, 5000, song.sr)
                inhale *= np.hanning(n).astype(np.float32) * rng.uniform(0.005, 0.02) / (inhale.std() + 1e-9)
                m = max(0, min(n, out.shape[1] - start))
                out[:, start:start + m] += inhale[None, :m]
    out = out[:, :song.n]
    return out + rng.uniform(0.12, 0.3) * reverb(out)


def _backing(c: Composer, parts: _Parts, base: int) -> bool:
    """GM voice patches holding chord tones in some sung sections (backing vowels); False if none."""
    rng, song = c.rng, c.song
    if rng.random() >= 0.4:
        return False
    program = int(rng.choice(_BACKING_VOICES))
    chs = [parts.channel(0, program, 90, 30, 60), parts.channel(1, program, 90, 98, 60)]
    used, sing = False, False
    for bar in range(song.n_bars):
        if song.section_start[bar]:
            sing = bool(song.vocal_bar[bar]) and rng.random() < 0.6
        if sing and song.vocal_bar[bar]:
            chord = c.chord(bar, base - 5)
            for i, m in enumerate(chord[:2] if rng.random() < 0.5 else chord[1:]):
                parts.note(bar * 4, 3.9, chs[i % 2], m, c.vel(bar, 70, 5))
            used = True
    return used


def _formant(vocalist: Vocalist, seed: int, split: str, index: int) -> float:
    """The formant factor of a song's speaker, from its own stream (the rest of the song is the same
    bytes whatever ``formant_shift``)."""
    if vocalist.formant_shift <= 0:
        return 1.0
    frng = np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index), GENERATOR_VERSION,
                                  2000 + sung_voice.GENERATOR_VERSION])
    return float(np.exp(frng.uniform(-1.0, 1.0) * np.log1p(vocalist.formant_shift)))


def generate_song(seed: int, split: str, index: int, seconds: float, sr: int, soundfont: Path,
                  synth: SynthSettings, work_dir: Path,
                  vocalist: Optional[Vocalist] = None) -> Tuple[Dict[str, np.ndarray], dict]:
    """Stems (``[2, T]`` float32) and a description of song ``index`` of ``split``, rendered with
    ``soundfont`` and FluidSynth's ``synth`` settings in a temporary folder under ``work_dir``, the
    lead sung by ``vocalist`` (None: the v3 additive singer); deterministic."""
    rng = np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index), GENERATOR_VERSION])
    # the sung voice's own stream: which singer and speaker, and everything the speaker does
    vrng = np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index), GENERATOR_VERSION,
                                  1000 + sung_voice.GENERATOR_VERSION])
    c = Composer(rng, seconds, sr)
    song = c.song
    n = song.n
    drums, bass, other, backing = _Parts(), _Parts(), _Parts(), _Parts()
    _drums(c, drums)
    _bass(c, bass)
    programs = _other(c, other)
    voice_base = int(rng.choice([48, 53, 57]))
    phrases = melody(c, voice_base)
    has_backing = _backing(c, backing, voice_base)
    reverb = make_reverb(rng, sr)
    mode = vocalist.mode if vocalist is not None else "additive"
    if mode == "mixed":
        mode = "speech" if vrng.random() < 0.5 else "additive"
    voice_record = {"singer": mode}
    if mode == "additive":
        lead = _sung_vocals(c, phrases, reverb)
    else:
        speaker = vocalist.speakers[int(vrng.integers(len(vocalist.speakers)))]   # drawn either way: the
        if vocalist.in_turn:                                        # rest of the voice's stream is the same
            speaker = vocalist.speakers[int(index) % len(vocalist.speakers)]
        shift = sung_voice.range_shift(speaker, [m for p in phrases for _, _, m, _ in p] or [voice_base])
        lead, described = sung_voice.produce_vocals([[(t, d, m + shift) for t, d, m, _ in p] for p in phrases],
                                                    speaker, n, sr, vrng, c.in_key(0, 127), reverb,
                                                    formant=_formant(vocalist, seed, split, index))
        voice_record.update(described)
    end_beat = seconds / song.beat
    work = Path(tempfile.mkdtemp(prefix=".tmp-render-", dir=work_dir))
    try:
        rendered = {}
        for name, parts in ((DRUMS, drums), (BASS, bass), (OTHER, other), ("backing", backing)):
            if name == "backing" and not has_backing:
                continue
            parts.midi(song.bpm, end_beat).save(str(work / f"{name}.mid"))
            audio = fluidsynth_render(work / f"{name}.mid", Path(soundfont), work / f"{name}.wav", synth, seconds)
            audio = np.pad(audio[:, :n], ((0, 0), (0, max(0, n - audio.shape[1]))))
            rendered[name] = highpass(audio, 20, sr)    # some samples (808 kicks) carry a DC offset
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name in (DRUMS, BASS, OTHER):
        if not np.any(rendered[name]):
            raise FrugalError(f"{soundfont}: the {name} parts of song {split} {index + 1} render to silence "
                              "(a General MIDI soundfont with drum kits is needed)")
    vocals = lead
    if has_backing:
        lead_rms = float(np.sqrt(np.mean(lead.astype(np.float64) ** 2))) + 1e-9
        back_rms = float(np.sqrt(np.mean(rendered["backing"].astype(np.float64) ** 2))) + 1e-9
        vocals = lead + rendered["backing"] * (lead_rms / back_rms * 10 ** (rng.uniform(-14, -7) / 20))
    stems = {VOCALS: vocals, DRUMS: rendered[DRUMS], BASS: rendered[BASS], OTHER: rendered[OTHER]}
    upfront = rng.random() < _VOCALS_UPFRONT[0]
    for name, audio in stems.items():
        rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2)) + 1e-9
        mean_db, spread = _MIX_DB[name]
        db = mean_db + rng.normal(0, spread) + (_VOCALS_UPFRONT[1] if upfront and name == VOCALS else 0.0)
        stems[name] = (audio * (10 ** (db / 20) / rms)).astype(np.float32)
    peak = max(np.abs(sum(stems.values())).max(), max(np.abs(a).max() for a in stems.values()))
    if peak > 0.95:
        stems = {k: (v * (0.95 / peak)).astype(np.float32) for k, v in stems.items()}
    record = {"generator_version": GENERATOR_VERSION, "soundfont": Path(soundfont).name, "bpm": round(song.bpm, 2),
              "key": song.key, "mode": "major" if song.scale[2] == 4 else "minor", "swing": round(c.swing, 3),
              "drum_kit": drums.setup[DRUM_CHANNEL][0] + 1, "bass_program": bass.setup[0][0] + 1,
              "other_programs": [p + 1 for p in programs], "backing_vocals": has_backing,
              "backing_program": backing.setup[0][0] + 1 if has_backing else None, "vocals_upfront": bool(upfront),
              "lead_voice": voice_record}
    return stems, record
