"""A sung voice made from recorded speech, for the built-in corpus (:mod:`.midi_corpus`).

Real voices without a recording session: the speech synthesisers Debian ships are built from
recorded speakers (Festival diphone and HTS voices, Flite's CMU Arctic voices). Each speaker says
a bank of words of its language once per process (:func:`word_bank`); the WORLD vocoder
(``pyworld``) splits every word into f0, spectral envelope and aperiodicity. A phrase is then
*sung* (:func:`sing_phrase`): each note gets a word, its onset consonants placed just before the
note (the vowel lands on the beat), its vowel stretched to the note's length (consonants kept at
their own speed), and the voiced frames re-pitched to the melody with portamento, a scoop into
some notes, vibrato that starts after the onset and slow pitch drift; WORLD resynthesises it at
the speaker's rate, resampled to the song's. :func:`produce_vocals` turns the phrases into a
produced vocal stem: breaths between phrases, sometimes a double-tracked copy and/or an in-key
harmony voice panned to the sides, EQ (high-pass, presence boost, an exciter for the air above the
speaker's band), compression and the song's reverb; the lead sits (almost) in the centre.

Everything random comes from the caller's ``numpy`` generator and the speech synthesisers and
WORLD are deterministic: a song's voice is the same bytes on every run, whatever the number of
processes. Speakers (:data:`SPEAKERS`): 14 speakers of 5 languages, women, men and a boy; the Debian
packages are installed by ``local/setup_env.sh``.
"""
import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.signal import butter, resample_poly, sosfilt

from ..utils import FrugalError
from .singing import add_at, bandpass, highpass, midi_hz

GENERATOR_VERSION = 1
FRAME_MS = 5.0                       # WORLD analysis/synthesis frame period


@dataclass(frozen=True)
class Speaker:
    """A recorded speaker of a speech synthesiser and the sung range given to it."""

    name: str
    engine: str        # festival | flite
    voice: str         # festival: voice_<voice>; flite: -voice <voice>
    language: str      # en, it, cs, fi, ca (the word lists of WORDS)
    sex: str           # female | male
    package: str       # the Debian package holding the voice
    centre: int        # MIDI note at the middle of the sung range


SPEAKERS: Dict[str, Speaker] = {s.name: s for s in (
    Speaker("en_slt", "festival", "cmu_us_slt_arctic_hts", "en", "female", "festvox-us-slt-hts", 65),
    Speaker("en_rms", "flite", "rms", "en", "male", "flite", 55),
    Speaker("en_awb", "flite", "awb", "en", "male", "flite", 55),
    Speaker("en_kal", "festival", "kal_diphone", "en", "male", "festvox-kallpc16k", 54),
    Speaker("en_ked", "festival", "ked_diphone", "en", "male", "festvox-kdlpc16k", 53),
    Speaker("it_lp", "festival", "lp_diphone", "it", "female", "festvox-italp16k", 66),
    Speaker("it_pc", "festival", "pc_diphone", "it", "male", "festvox-itapc16k", 55),
    Speaker("cs_dita", "festival", "czech_dita", "cs", "female", "festvox-czech-dita", 65),
    Speaker("cs_machac", "festival", "czech_machac", "cs", "male", "festvox-czech-machac", 53),
    Speaker("cs_ph", "festival", "czech_ph", "cs", "male", "festvox-czech-ph", 54),
    Speaker("cs_krb", "festival", "czech_krb", "cs", "male", "festvox-czech-krb", 62),     # a boy
    Speaker("fi_mv", "festival", "hy_fi_mv_diphone", "fi", "male", "festvox-suopuhe-mv", 54),
    Speaker("fi_lj", "festival", "suo_fi_lj_diphone", "fi", "female", "festvox-suopuhe-lj", 65),
    Speaker("ca_ona", "festival", "upc_ca_ona_hts", "ca", "female", "festvox-ca-ona-hts", 66),
)}

# lyrics: short singable words of each language (ASCII: the voices' front ends read Latin-1 at best)
WORDS: Dict[str, Tuple[str, ...]] = {
    "en": ("love", "night", "heart", "baby", "fire", "home", "light", "dream", "away", "tonight", "rain",
           "stay", "sky", "time", "alone", "shine", "gold", "oh", "yeah", "hold", "free", "day", "blue", "fly",
           "road", "soul", "see", "my", "you", "say"),
    "it": ("amore", "cuore", "notte", "sole", "luna", "mare", "cielo", "vita", "sogno", "bella", "ancora",
           "sempre", "stella", "vento", "canto", "piano", "cara", "via", "dolce", "fuoco", "mio", "no", "si", "ma"),
    "cs": ("laska", "noc", "srdce", "domov", "nebe", "voda", "sen", "den", "zima", "cesta", "svet", "more",
           "hora", "slunce", "mama", "jaro", "leto", "ano", "ty", "ja", "kde", "tam", "pojd", "dal"),
    "fi": ("rakkaus", "yo", "sydan", "koti", "taivas", "vesi", "uni", "paiva", "talvi", "tie", "kuu", "meri",
           "tuuli", "laulu", "kaunis", "aina", "ilta", "aamu", "sinua", "kesa", "minun", "sina", "valo", "ei"),
    "ca": ("amor", "nit", "cor", "casa", "cel", "aigua", "somni", "dia", "lluna", "mar", "vent", "cami", "sol",
           "foc", "vida", "sempre", "estel", "bella", "ara", "mai", "tu", "jo", "mon", "sola"),
}


@dataclass
class Word:
    """One spoken word as WORLD features (frames of FRAME_MS)."""

    text: str
    f0: np.ndarray     # [T] Hz, 0 = unvoiced
    sp: np.ndarray     # [T, bins] power spectral envelope
    ap: np.ndarray     # [T, bins] aperiodicity
    core: Tuple[int, int]   # the frames of the vowel that a long note stretches


@dataclass
class Bank:
    speaker: str
    sr: int
    words: List[Word]


# ---------------------------------------------------------------- speakers and speech synthesis
def pyworld():
    """The ``pyworld`` module (WORLD vocoder), imported without its setuptools deprecation warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import pyworld as pw
    return pw


def _festival_voice_dirs() -> List[Path]:
    return [p for p in Path("/usr/share/festival/voices").glob("*/*") if p.is_dir()]


def speaker_available(name: str) -> Optional[str]:
    """None if speaker ``name`` can speak here, else the reason (what to install)."""
    s = SPEAKERS.get(name)
    if s is None:
        return f"unknown speaker {name!r} (one of {', '.join(SPEAKERS)})"
    try:
        pyworld()
    except ImportError:
        return "the Python package pyworld is not installed (local/setup_env.sh installs it)"
    if shutil.which(s.engine) is None:
        return f"{s.engine} is not installed (apt-get install {s.engine} {s.package})"
    if s.engine == "festival" and not any(d.name == s.voice for d in _festival_voice_dirs()):
        return f"festival voice {s.voice} is not installed (apt-get install {s.package})"
    return None


def available_speakers() -> List[str]:
    """The speakers of :data:`SPEAKERS` that can speak on this machine."""
    return [name for name in SPEAKERS if speaker_available(name) is None]


def check_speakers(names: Sequence[str]) -> None:
    """One clear line (:class:`FrugalError`) naming what is missing for any of ``names``."""
    if not names:
        raise FrugalError("default_corpus.voices: the sung voice needs at least one speaker "
                          f"(any of {', '.join(SPEAKERS)})")
    for name in names:
        why = speaker_available(name)
        if why:
            raise FrugalError(f"sung voice speaker {name}: {why}; or set default_corpus.singer=additive")


def _speak(speaker: Speaker, words: Sequence[str], folder: Path) -> List[Path]:
    """Each of ``words`` said by ``speaker`` into its own WAV file under ``folder``."""
    paths = [folder / f"{i:03d}.wav" for i in range(len(words))]
    if speaker.engine == "flite":
        for word, path in zip(words, paths):
            subprocess.run(["flite", "-voice", speaker.voice, "-t", word, "-o", str(path)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    else:
        script = [f"(voice_{speaker.voice})"]
        script += [f'(utt.save.wave (utt.synth (Utterance Text "{w}")) "{p}" \'riff)' for w, p in zip(words, paths)]
        (folder / "words.scm").write_text("\n".join(script) + "\n")
        subprocess.run(["festival", "--batch", str(folder / "words.scm")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FrugalError(f"sung voice speaker {speaker.name}: {speaker.engine} wrote no audio for "
                          f"{len(missing)} words (is {speaker.package} complete?)")
    return paths


def _analyse(x: np.ndarray, sr: int, text: str) -> Optional[Word]:
    pw = pyworld()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim > 1:
        x = x.mean(axis=1)
    # trim the synthesiser's silences (frames 45 dB under the word's peak)
    hop = int(sr * FRAME_MS / 1000)
    frames = len(x) // hop
    if frames < 8:
        return None
    rms = np.sqrt(np.mean(x[:frames * hop].reshape(frames, hop) ** 2, axis=1)) + 1e-12
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > -45)[0]
    x = x[max(0, loud[0] - 2) * hop:min(frames, loud[-1] + 3) * hop]
    x = x / (np.abs(x).max() + 1e-9) * 0.5
    f0, t = pw.dio(x, sr, f0_floor=60.0, f0_ceil=500.0, frame_period=FRAME_MS)
    f0 = pw.stonemask(x, f0, t, sr)
    sp = pw.cheaptrick(x, f0, t, sr)
    ap = pw.d4c(x, f0, t, sr)
    voiced = f0 > 0
    if voiced.sum() < 6:
        return None
    # the vowel a long note holds: the voiced run around the loudest voiced frame, within 6 dB of it
    energy = 10 * np.log10(sp.sum(axis=1) + 1e-20)
    peak = int(np.argmax(np.where(voiced, energy, -np.inf)))
    a = b = peak
    while a > 0 and voiced[a - 1] and energy[a - 1] > energy[peak] - 6:
        a -= 1
    while b + 1 < len(f0) and voiced[b + 1] and energy[b + 1] > energy[peak] - 6:
        b += 1
    return Word(text, f0.astype(np.float64), sp.astype(np.float64), ap.astype(np.float64), (a, b + 1))


@functools.lru_cache(maxsize=None)
def word_bank(name: str) -> Bank:
    """The words of the speaker's language said by speaker ``name``, analysed by WORLD: synthesised
    once per process (a corpus build reuses it for every song of that speaker)."""
    import soundfile as sf

    check_speakers([name])
    speaker = SPEAKERS[name]
    words = WORDS[speaker.language]
    folder = Path(tempfile.mkdtemp(prefix="frugal-voice-"))
    try:
        bank, rate = [], None
        for word, path in zip(words, _speak(speaker, words, folder)):
            x, sr = sf.read(str(path), dtype="float64")
            rate = sr if rate is None else rate
            if sr != rate:
                raise FrugalError(f"sung voice speaker {name}: words at {rate} and {sr} Hz")
            analysed = _analyse(x, sr, word)
            if analysed is not None:
                bank.append(analysed)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if len(bank) < len(words) // 2:
        raise FrugalError(f"sung voice speaker {name}: only {len(bank)} of {len(words)} words have a voice")
    return Bank(name, int(rate), bank)


def range_shift(speaker: str, pitches: Sequence[int]) -> int:
    """Octaves (in semitones) that bring a melody with ``pitches`` nearest the speaker's sung range."""
    centre = SPEAKERS[speaker].centre
    mean = float(np.mean(pitches))
    return int(min((12 * k for k in range(-3, 4)), key=lambda s: (abs(mean + s - centre), s)))


# ---------------------------------------------------------------- singing
@dataclass
class Style:
    """How a voice sings: vibrato (Hz, semitones), portamento time constant (s), scoop probability."""

    vib_rate: float
    vib_depth: float
    glide: float
    scoop: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Style":
        return cls(float(rng.uniform(4.8, 6.5)), float(rng.uniform(0.15, 0.55)), float(rng.uniform(0.02, 0.07)),
                   float(rng.uniform(0.1, 0.5)))


def _take(word: Word, n_on: int, n_body: int, stretch_limit: float = 0.4) -> np.ndarray:
    """Source frame positions (float) of a word said as ``n_on`` onset frames then ``n_body``
    frames: onset consonants at their own speed (squeezed when too long), the vowel core stretched
    or squeezed to fill, the rest of the word at its own speed (squeezed if needed)."""
    a, b = word.core
    T = len(word.f0)
    onset = np.linspace(0, a, n_on, endpoint=False) if n_on > 0 else np.zeros(0)
    tail_len = T - b
    core_len = b - a
    body_tail = min(tail_len, int(n_body * stretch_limit))
    n_core = max(1, n_body - body_tail)
    core = a + np.linspace(0, core_len, n_core, endpoint=False)
    tail = b + (np.linspace(0, tail_len, body_tail, endpoint=False) if body_tail > 0 else np.zeros(0))
    return np.concatenate([onset, core, tail])


def _frames_at(word: Word, pos: np.ndarray):
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, len(word.f0) - 1)
    i1 = np.minimum(i0 + 1, len(word.f0) - 1)
    w = (pos - np.floor(pos))[:, None]
    sp = word.sp[i0] * (1 - w) + word.sp[i1] * w
    ap = word.ap[i0] * (1 - w) + word.ap[i1] * w
    return word.f0[np.rint(pos).astype(np.int64).clip(0, len(word.f0) - 1)] > 0, sp, ap


def warp_formants(sp: np.ndarray, factor: float) -> np.ndarray:
    """The spectral envelopes ``sp`` (``[T, bins]``, 0 to Nyquist) with every formant moved by
    ``factor`` in frequency (the envelope at ``f`` becomes the old one at ``f / factor``): a
    shorter (> 1) or longer (< 1) vocal tract, the same speaker's articulation. Above the old
    band's top the envelope's last bin is held."""
    if factor == 1.0:
        return sp
    bins = sp.shape[1]
    src = np.minimum(np.arange(bins) / float(factor), bins - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, bins - 1)
    w = src - i0
    return sp[:, i0] * (1 - w) + sp[:, i1] * w


def sing_phrase(notes: Sequence[Tuple[float, float, int]], bank: Bank, rng: np.random.Generator, style: Style,
                sr: int, words: Optional[Sequence[int]] = None, detune: float = 0.0,
                formant: float = 1.0) -> Tuple[int, np.ndarray]:
    """Sing ``notes`` (``(start s, length s, midi)``, in order) with words of ``bank``: returns the
    sample (at ``sr``) where the audio starts and the mono audio. ``words`` (indices into the
    bank, one per note) repeats a lyric (double tracks and harmonies sing the lead's words);
    ``formant`` moves the speaker's formants (:func:`warp_formants`)."""
    pw = pyworld()
    fp = FRAME_MS / 1000
    pre = 0.25                                          # room for the first onset consonants and a scoop
    origin = notes[0][0] - pre
    starts = [int(round((t - origin) / fp)) for t, _, _ in notes]
    ends = [int(round((t + d - origin) / fp)) for t, d, _ in notes]
    total = ends[-1] + int(0.12 / fp)
    bins = bank.words[0].sp.shape[1]
    floor = min(float(w.sp.min()) for w in bank.words) * 1e-4     # silence between words
    F0 = np.zeros(total)
    SP = np.full((total, bins), floor)
    AP = np.ones((total, bins))
    target = np.full(total, float(notes[0][2]))
    onset_frame = np.zeros(total)
    gain = np.zeros(total)
    chosen = list(words) if words is not None else [int(rng.integers(len(bank.words))) for _ in notes]
    for k, (t, d, m) in enumerate(notes):
        word = bank.words[chosen[k]]
        s = starts[k]
        on_len = min(word.core[0], int(0.12 / fp))
        if k > 0:                                       # never before the previous note's own start
            on_len = min(on_len, max(0, s - starts[k - 1] - 4))
        nxt = bank.words[chosen[k + 1]] if k + 1 < len(notes) else None
        end = ends[k]
        if nxt is not None and starts[k + 1] - ends[k] < 4:     # legato: the next onset cuts in
            end = starts[k + 1] - min(nxt.core[0], int(0.12 / fp))
        n_body = max(2, end - s)
        pos = _take(word, on_len, n_body)
        lo = s - on_len
        voiced, sp, ap = _frames_at(word, pos)
        hi = min(total, lo + len(pos))
        n = hi - lo
        # note dynamics: an accent, a slow decay on long notes, a short release
        env = np.full(n, float(rng.uniform(0.75, 1.0)))
        body = np.arange(n) - on_len
        env *= np.where(body > 0, np.exp(-np.maximum(body, 0) * fp / rng.uniform(2.0, 6.0)), 1.0)
        rel = min(n // 3, int(0.04 / fp))
        if rel > 0 and (nxt is None or starts[k + 1] - ends[k] >= 4):
            env[n - rel:] *= np.linspace(1, 0.05, rel)
        SP[lo:hi] = sp[:n] * (env[:, None] ** 2)
        AP[lo:hi] = ap[:n]
        F0[lo:hi] = voiced[:n].astype(np.float64)       # voicing now, pitch below
        target[s:] = m
        onset_frame[s:] = s
        gain[lo:hi] = 1
    # pitch: note targets through a portamento (one-pole), a scoop into some notes, vibrato after
    # each onset, slow drift; the speaker's voicing decides where there is a pitch at all
    tt = np.arange(total) * fp
    alpha = np.exp(-fp / style.glide)
    curve = sosfilt(np.array([[1 - alpha, 0, 0, 1, -alpha, 0]]), target - target[0]) + target[0]
    for k, s in enumerate(starts):
        if k > 0 and rng.random() < style.scoop:
            n = min(int(0.08 / fp), total - s)
            curve[s:s + n] -= rng.uniform(0.3, 1.0) * np.linspace(1, 0, n)
    since = tt - onset_frame * fp
    vib = style.vib_depth * np.clip((since - rng.uniform(0.12, 0.3)) / 0.25, 0, 1)
    curve = curve + vib * np.sin(2 * np.pi * style.vib_rate * tt + rng.uniform(0, 2 * np.pi))
    knots = np.arange(0, tt[-1] + 0.2, 0.1)
    curve = curve + np.interp(tt, knots, rng.normal(0, 0.06, len(knots))) + detune
    F0 = np.where(F0 > 0, midi_hz(curve), 0.0)
    SP = warp_formants(SP, formant)
    y = pw.synthesize(np.ascontiguousarray(F0), np.ascontiguousarray(SP), np.ascontiguousarray(AP), bank.sr,
                      FRAME_MS)
    g = gcd(int(sr), int(bank.sr))
    y = resample_poly(y, sr // g, bank.sr // g).astype(np.float32)
    return int(round(origin * sr)), y


# ---------------------------------------------------------------- production
def _peaking(x, f0, gain_db, q, sr):
    """RBJ peaking equaliser."""
    f0 = min(f0, 0.4 * sr)
    a = 10 ** (gain_db / 40)
    w = 2 * np.pi * f0 / sr
    alpha = np.sin(w) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w), 1 - alpha / a])
    sos = np.concatenate([b / den[0], den / den[0]])[None, :]
    return sosfilt(sos, x).astype(np.float32)


def _compress(x, sr, rng):
    """A gentle RMS compressor (ratio 2-4 above a threshold 6-14 dB under the peak level)."""
    env = np.sqrt(sosfilt(butter(1, 8.0, fs=sr, output="sos"), x.astype(np.float64) ** 2).clip(0)) + 1e-9
    top = np.percentile(env, 99)
    thr = top * 10 ** (-rng.uniform(6, 14) / 20)
    ratio = rng.uniform(2, 4)
    over = np.maximum(env / thr, 1.0)
    return (x * over ** (1 / ratio - 1)).astype(np.float32)


def _eq(x, sr, rng):
    """The engineer's chain: high-pass, low-mid cut, presence boost, air from a soft exciter."""
    x = highpass(x, rng.uniform(80, 140), sr)
    x = _peaking(x, rng.uniform(250, 500), -rng.uniform(0, 4), 1.0, sr)
    x = _peaking(x, rng.uniform(2500, 5000), rng.uniform(1, 5), 0.8, sr)
    if sr > 20000:        # the speakers' recordings stop at 8-16 kHz: harmonics of the upper band
        drive = highpass(x, 3000, sr, order=2)
        drive = drive / (np.abs(drive).max() + 1e-9)
        air = highpass(np.tanh(3 * drive) - 0.5 * drive, 7000, sr, order=4)
        x = x + air * float(np.sqrt(np.mean(x ** 2)) / (np.sqrt(np.mean(air ** 2)) + 1e-9)) \
            * 10 ** (-rng.uniform(16, 24) / 20)
    return x.astype(np.float32)


def _breath(rng, sr):
    n = int(sr * rng.uniform(0.15, 0.35))
    inhale = bandpass(rng.standard_normal(n).astype(np.float32), 600, 5000, sr)
    return inhale * np.hanning(n).astype(np.float32) / (inhale.std() + 1e-9)


def _pan(p):
    """Constant-power gains (left, right) of pan ``p`` in [-1, 1]."""
    a = (p + 1) * np.pi / 4
    return float(np.cos(a) * np.sqrt(2)), float(np.sin(a) * np.sqrt(2))


def produce_vocals(phrases: Sequence[Sequence[Tuple[float, float, int]]], speaker: str, n: int, sr: int,
                   rng: np.random.Generator, scale_notes: Sequence[int], reverb=None,
                   formant: float = 1.0) -> Tuple[np.ndarray, dict]:
    """The vocal stem ``[2, n]`` of a song sung by ``speaker``: ``phrases`` of ``(start s, length s,
    midi)`` notes (already in the speaker's range), ``scale_notes`` the song's scale as MIDI notes
    (for a harmony voice), ``reverb`` the song's room (a function of ``[2, T]``), or None;
    ``formant``: the speaker's formants moved by this factor (a virtual speaker, :func:`warp_formants`).
    Returns the stem and what it is made of."""
    bank = word_bank(speaker)
    style = Style.draw(rng)
    lead = np.zeros(n, dtype=np.float32)
    double = rng.random() < 0.3
    harmony = rng.random() < 0.25
    extra = {"double": np.zeros(n, dtype=np.float32), "harmony": np.zeros(n, dtype=np.float32)}
    for notes in phrases:
        notes = [(float(t), float(d), int(m)) for t, d, m in notes]
        lyric = [int(rng.integers(len(bank.words))) for _ in notes]
        start, y = sing_phrase(notes, bank, rng, style, sr, words=lyric, formant=formant)
        add_mono(lead, start, y)
        if rng.random() < 0.6:           # an audible breath in before the phrase
            b = _breath(rng, sr) * rng.uniform(0.01, 0.04)
            add_mono(lead, int(notes[0][0] * sr) - len(b) - int(0.03 * sr), b)
        if double:
            shift = rng.uniform(0.012, 0.035)
            moved = [(t + shift + rng.normal(0, 0.008), d, m) for t, d, m in notes]
            s2, y2 = sing_phrase(moved, bank, rng, Style.draw(rng), sr, words=lyric, detune=rng.normal(0, 0.08),
                                 formant=formant)
            add_mono(extra["double"], s2, y2)
        if harmony:
            up = [(t, d, _third_above(m, scale_notes)) for t, d, m in notes]
            s3, y3 = sing_phrase(up, bank, rng, style, sr, words=lyric, detune=rng.normal(0, 0.05), formant=formant)
            add_mono(extra["harmony"], s3, y3)
    level = float(np.sqrt(np.mean(lead.astype(np.float64) ** 2))) + 1e-9
    out = np.zeros((2, n), dtype=np.float32)
    lead = _compress(_eq(lead / level * 0.1, sr, rng), sr, rng)
    add_at(out, 0, lead, _pan(float(np.clip(rng.normal(0, 0.06), -0.15, 0.15))))
    for name, on in (("double", double), ("harmony", harmony)):
        if on:
            y = _compress(_eq(extra[name] / level * 0.1, sr, rng), sr, rng) * 10 ** (-rng.uniform(4, 10) / 20)
            side = rng.uniform(0.3, 0.8) * (1 if rng.random() < 0.5 else -1)
            if name == "double":          # a double track is split left and right
                add_at(out, 0, y * 0.7, _pan(side))
                add_at(out, int(rng.uniform(0.005, 0.015) * sr), y * 0.7, _pan(-side))
            else:
                add_at(out, 0, y, _pan(side))
    if reverb is not None:
        out = out + rng.uniform(0.1, 0.3) * reverb(out)
    record = {"speaker": speaker, "language": SPEAKERS[speaker].language, "sex": SPEAKERS[speaker].sex,
              "double": bool(double), "harmony": bool(harmony), "sung_voice_version": GENERATOR_VERSION}
    if formant != 1.0:
        record["formant"] = round(float(formant), 4)
    return out.astype(np.float32), record


def add_mono(buf: np.ndarray, start: int, sig: np.ndarray) -> None:
    """Add ``sig`` into mono ``buf`` at ``start`` (clipped to buf)."""
    if start < 0:
        sig, start = sig[-start:], 0
    m = max(0, min(len(sig), len(buf) - start))
    buf[start:start + m] += sig[:m]


def _third_above(m: int, scale_notes: Sequence[int]) -> int:
    """The scale note two scale steps above ``m`` (a diatonic third), any octave."""
    pcs = sorted({int(p) % 12 for p in scale_notes})
    cands = [x for x in range(m + 1, m + 6) if x % 12 in pcs]
    return cands[1] if len(cands) > 1 else m + 4
