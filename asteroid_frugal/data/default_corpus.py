"""The built-in corpus: seeded, generated songs in MUSDB18-HQ layout.

Two generators (``default_corpus.generator``):

* ``midi`` (corpus v3, the default; :mod:`asteroid_frugal.data.midi_corpus`): songs composed as
  multitrack General MIDI, drums, bass and other rendered with FluidSynth and real sampled
  instruments (one of ``default_corpus.soundfonts`` per song), a synthesised singing voice
  (plus GM choir patches in some songs) for vocals, or (``default_corpus.singer``) recorded
  speakers made to sing (:mod:`asteroid_frugal.data.sung_voice`, its own version);
* ``synth`` (v2, this module): everything synthesised in NumPy; about half the CPU time, kept
  as the tiny fast option for tests.

The ``synth`` songs have a key, a tempo, a chord progression and a section structure
(instrumental intro, sung sections, instrumental breaks), and four stems:

* ``vocals``: a sung melody on the song's scale: glottal-like harmonic source with
  spectral tilt, vowel formants that change from note to note, vibrato that starts
  after the note onset, portamento, pitch jitter, breath noise, sibilant/plosive
  consonant bursts, phrases separated by rests and whole silent sections; centred,
  with the song's room reverb;
* ``drums``: kick, snare, closed/open hi-hat and crash one-shots on a humanised
  groove with fills and drop-outs;
* ``bass``: plucked or sustained low notes following the chord roots;
* ``other``: harmonic accompaniment (pad, piano-like chords, plucked arpeggios) in the
  vocal register, plus a lead synth melody in some instrumental breaks.

Stems are mixed at MUSDB18-like relative levels (random per song) and written as
stereo 16-bit 44.1 kHz WAV with ``mixture.wav`` = their sum. Split layout follows
MUSDB18-HQ (``train/`` holds train and validation songs, ``test/``); the validation
songs are named in ``musdb_setup.yaml``, a copy of musdb's own setup file with its
``validation_tracks`` replaced, which stage 0 hands to ``musdb.DB(setup_file=...)``.
Song ``i`` of a split depends only on (generator and its version, seed, split, i,
song_seconds, sample_rate, and for ``midi`` its soundfont, the FluidSynth settings, the singer,
the speakers and the sung voice's version), so a
bigger corpus (``--set default_corpus.n_train=400``) keeps the existing songs; a change of
any of those (a new generator version included) regenerates the corpus, never mixes it.
"""
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import soundfile as sf
import yaml
from tqdm import tqdm

from ..config import get
from ..utils import FrugalError, disk_full_errors, read_json, write_json_atomic, write_text_atomic
from .synth_corpus import GENERATOR_VERSION, generate_song
from .types import SOURCES

log = logging.getLogger("asteroid_frugal")

SETUP_FILE = "musdb_setup.yaml"
SONG_RECORD = ".song.json"         # midi generator: programs, soundfont, tempo... of each song
GENERATORS = ("midi", "synth")
_KEYS = ("generator", "seed", "n_train", "n_valid", "n_test", "song_seconds", "jobs", "soundfonts", "test_soundfonts",
         "singer", "voices", "test_voices", "formant_shift")
_FLUIDSYNTH_KEYS = ("gain", "reverb", "chorus")     # of the midi_render section, used by the midi generator


@dataclass
class CorpusParams:
    """Generator, size and seed of the built-in corpus (``default_corpus`` section of conf.yml)."""

    generator: str                 # midi (v3, FluidSynth) | synth (v2, NumPy only)
    seed: int
    n_train: int
    n_valid: int
    n_test: int
    song_seconds: float
    sample_rate: int
    jobs: int                      # generator processes (the audio does not depend on it)
    soundfonts: List[str]          # midi: song i of train/valid uses soundfonts[i % len]
    test_soundfonts: List[str]     # midi: the same for test songs (a held-out soundfont)
    fluidsynth: Dict[str, Any]     # midi: gain, reverb, chorus (midi_render section)
    singer: str                    # midi: additive | speech | mixed (the lead voice)
    voices: List[str]              # midi, speech/mixed: speakers of train/valid songs
    test_voices: List[str]         # midi, speech/mixed: speakers of test songs
    formant_shift: float           # midi, speech/mixed: train/valid speakers' formants moved (virtual speakers)

    @classmethod
    def from_conf(cls, conf) -> "CorpusParams":
        section = conf.get("default_corpus") or {}
        missing = [k for k in _KEYS if k not in section]
        if missing:
            raise FrugalError(f"config: default_corpus lacks {', '.join(missing)} (see conf.yml)")
        render = conf.get("midi_render") or {}
        p = cls(generator=str(section["generator"]), seed=int(section["seed"]), n_train=int(section["n_train"]),
                n_valid=int(section["n_valid"]), n_test=int(section["n_test"]),
                song_seconds=float(section["song_seconds"]), sample_rate=int(get(conf, "data.sample_rate")),
                jobs=int(section["jobs"]), soundfonts=[str(f) for f in section["soundfonts"] or []],
                test_soundfonts=[str(f) for f in (section["test_soundfonts"] or section["soundfonts"] or [])],
                fluidsynth={k: render.get(k) for k in _FLUIDSYNTH_KEYS}, singer=str(section["singer"]),
                voices=[str(v) for v in section["voices"] or []],
                test_voices=[str(v) for v in (section["test_voices"] or section["voices"] or [])],
                formant_shift=float(section["formant_shift"]))
        p.validate()
        return p

    def validate(self) -> None:
        if self.generator not in GENERATORS:
            raise FrugalError(f"default_corpus.generator: {self.generator!r} is not one of {', '.join(GENERATORS)}")
        if min(self.n_train, self.n_valid, self.n_test) < 1 or self.song_seconds < 4 or self.jobs < 1:
            raise FrugalError("default_corpus: n_train, n_valid, n_test and jobs must be >= 1 and song_seconds >= 4")
        if self.generator == "midi":
            if not self.soundfonts:
                raise FrugalError("default_corpus.soundfonts: the midi generator needs at least one soundfont")
            missing = [k for k, v in self.fluidsynth.items() if v is None]
            if missing:
                raise FrugalError(f"config: midi_render lacks {', '.join(missing)} (used by the built-in corpus)")
            from .midi_corpus import SINGERS
            from .sung_voice import SPEAKERS

            if self.singer not in SINGERS:
                raise FrugalError(f"default_corpus.singer: {self.singer!r} is not one of {', '.join(SINGERS)}")
            unknown = [v for v in self.voices + self.test_voices if v not in SPEAKERS]
            if unknown:
                raise FrugalError(f"default_corpus.voices: unknown speaker {unknown[0]!r} "
                                  f"(one of {', '.join(SPEAKERS)})")
            if not 0 <= self.formant_shift <= 0.5:
                raise FrugalError(f"default_corpus.formant_shift: {self.formant_shift} is not in [0, 0.5]")
            if self.singer != "additive" and not self.voices:
                raise FrugalError(f"default_corpus.voices: singer {self.singer} needs at least one speaker")

    def version(self) -> int:
        from .midi_corpus import GENERATOR_VERSION as MIDI_VERSION   # loaded only for the midi generator

        return GENERATOR_VERSION if self.generator == "synth" else MIDI_VERSION

    def content_key(self) -> dict:
        """What the audio of song i depends on (the counts only add or remove songs)."""
        key = dict(generator=self.generator, seed=self.seed, song_seconds=self.song_seconds,
                   sample_rate=self.sample_rate, version=self.version())
        if self.generator == "midi":
            from .sung_voice import GENERATOR_VERSION as VOICE_VERSION

            key.update(soundfonts=[Path(f).name for f in self.soundfonts],
                       test_soundfonts=[Path(f).name for f in self.test_soundfonts], fluidsynth=dict(self.fluidsynth),
                       singer=self.singer, sung_voice_version=VOICE_VERSION)
            if self.singer != "additive":
                key.update(voices=list(self.voices), test_voices=list(self.test_voices))
                if self.test_voices_held_out():
                    key.update(test_voices_in_turn=True)
                if self.formant_shift > 0:
                    key.update(formant_shift=self.formant_shift)
        return key

    def test_voices_held_out(self) -> bool:
        """Test songs sung by speakers of their own (``test_voices``): then each sings in turn, so that
        every one of them is tested on as many songs (give or take one), not as a draw falls."""
        return self.test_voices != self.voices

    def vocalist(self, split: str):
        """Who sings the lead of a ``split`` song (a ``midi_corpus.Vocalist``)."""
        from .midi_corpus import Vocalist

        if split == "test":           # test songs: the real speakers (held out: each in turn)
            return Vocalist(self.singer, tuple(self.test_voices), in_turn=self.test_voices_held_out())
        return Vocalist(self.singer, tuple(self.voices), self.formant_shift)

    def soundfont(self, split: str, index: int) -> Path:
        fonts = self.test_soundfonts if split == "test" else self.soundfonts
        return Path(fonts[index % len(fonts)]).expanduser()


def song_name(split: str, index: int, generator: str = "synth") -> str:
    return f"Frugal {'Synth' if generator == 'synth' else 'GM'} - {split.capitalize()} {index + 1:03d}"


def corpus_plan(params: CorpusParams) -> List[Tuple[str, str, int]]:
    """``(split, name, index)`` of every song; valid songs live in ``train/`` as in MUSDB18."""
    plan = []
    for split, n in (("train", params.n_train), ("valid", params.n_valid), ("test", params.n_test)):
        plan += [(split, song_name(split, i, params.generator), i) for i in range(n)]
    return plan


# ---------------------------------------------------------------- synthesis helpers
def _write_song(folder: Path, stems: Dict[str, np.ndarray], sr: int, record: Optional[dict] = None) -> None:
    """MUSDB18-HQ song folder, written in a temporary folder then renamed (never half-written; a
    full disk is one line naming it and the space it needed); ``record`` (what the song is made of)
    goes to a hidden ``.song.json`` next to the stems."""
    needed = (len(SOURCES) + 1) * (stems[SOURCES[0]].size * 2 + 100) + 4096   # the stems and mixture, 16 bit
    with disk_full_errors(folder, needed):
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
        try:
            for name in SOURCES:
                sf.write(str(tmp / f"{name}.wav"), stems[name].T, sr, subtype="PCM_16")
            sf.write(str(tmp / "mixture.wav"), sum(stems[s] for s in SOURCES).T, sr, subtype="PCM_16")
            if record is not None:
                write_json_atomic(tmp / SONG_RECORD, record)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def synth_settings(params: CorpusParams):
    """FluidSynth settings of the midi generator: ``midi_render`` gain, reverb and chorus, at the
    corpus' sample rate (a ``midi_render.SynthSettings``, checked)."""
    from ..midi_render import SynthSettings

    settings = SynthSettings(sample_rate=int(params.sample_rate), gain=float(params.fluidsynth["gain"]),
                             reverb=bool(params.fluidsynth["reverb"]), chorus=bool(params.fluidsynth["chorus"]))
    settings.validate()
    return settings


def _generate_into(job) -> None:
    folder, split, index, params = job
    if params.generator == "synth":
        _write_song(folder, generate_song(params.seed, split, index, params.song_seconds, params.sample_rate),
                    params.sample_rate)
        return
    from . import midi_corpus

    soundfont = params.soundfont(split, index)
    render_bytes = 4 * (int(params.song_seconds * params.sample_rate) * 2 * 4 + 4096)   # four float renders
    with disk_full_errors(folder, render_bytes):    # names the song, not FluidSynth's temporary file
        folder.parent.mkdir(parents=True, exist_ok=True)
        stems, record = midi_corpus.generate_song(params.seed, split, index, params.song_seconds,
                                                  params.sample_rate, soundfont, synth_settings(params), folder.parent,
                                                  params.vocalist(split))
    _write_song(folder, stems, params.sample_rate, record)


def _check_soundfonts(params: CorpusParams) -> None:
    """fluidsynth present and every soundfont usable: one clear error before any song is generated."""
    from ..midi_render import check_soundfont, probe_soundfont, require_fluidsynth

    require_fluidsynth()
    for font in dict.fromkeys(params.soundfonts + params.test_soundfonts):
        path = Path(font).expanduser()
        check_soundfont(path)
        probe_soundfont(path, synth_settings(params))


def write_musdb_setup(root: Path, validation_tracks: List[str]) -> None:
    """musdb's own setup file with ``validation_tracks`` replaced (read by ``musdb.DB(setup_file=...)``)."""
    import musdb

    setup = yaml.safe_load((Path(musdb.__path__[0]) / "configs" / "mus.yaml").read_text())
    setup["validation_tracks"] = list(validation_tracks)
    write_text_atomic(root / SETUP_FILE, "# written by asteroid_frugal.data.default_corpus: musdb setup "
                      "with this corpus's validation songs\n" + yaml.safe_dump(setup, sort_keys=False))


def generate_corpus(root, params: CorpusParams, progress: bool = True) -> Path:
    """Generate (or complete) the built-in corpus in MUSDB18-HQ layout under ``root``.

    Songs already there with the same content parameters are kept; songs no longer in
    the plan are removed; if the content parameters changed, everything is regenerated.
    """
    root = Path(root)
    stamp = root / "generator.json"
    if stamp.is_file():
        old = read_json(stamp)
        if old.get("content") != params.content_key():
            log.info("default corpus parameters changed (%s -> %s): regenerating %s",
                     old.get("content"), params.content_key(), root)
            for sub in ("train", "test"):
                shutil.rmtree(root / sub, ignore_errors=True)
    elif root.exists() and any(root.iterdir()):
        raise FrugalError(f"{root}: exists but was not written by the corpus generator (no generator.json); "
                          "move it away or set data.root elsewhere")
    root.mkdir(parents=True, exist_ok=True)
    plan = corpus_plan(params)
    wanted = {("test" if split == "test" else "train", name) for split, name, _ in plan}
    for sub in ("train", "test"):
        if (root / sub).is_dir():
            for p in (root / sub).iterdir():
                if p.name.startswith(".tmp-") or (p.is_dir() and (sub, p.name) not in wanted):
                    shutil.rmtree(p, ignore_errors=True)
    write_json_atomic(stamp, {"content": params.content_key(), "params": asdict(params)})
    todo = [(root / ("test" if s == "test" else "train") / n, s, i) for s, n, i in plan]
    todo = [(folder, s, i) for folder, s, i in todo if not (folder / "mixture.wav").is_file()]
    if params.generator == "midi" and todo:
        _check_soundfonts(params)
        if params.singer != "additive":      # festival/flite, the voices and pyworld: one line before any song
            from .sung_voice import check_speakers

            check_speakers(list(dict.fromkeys(params.voices + params.test_voices)))
    bar = tqdm(total=len(todo), desc=f"generating built-in corpus ({params.generator} v{params.version()})",
               unit="song", disable=not progress or not todo)
    if params.jobs > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(params.jobs, len(todo))) as pool:
            for _ in pool.map(_generate_into, [(f, s, i, params) for f, s, i in todo]):
                bar.update(1)
    else:
        for folder, split, index in todo:
            _generate_into((folder, split, index, params))
            bar.update(1)
    bar.close()
    write_musdb_setup(root, [name for split, name, _ in plan if split == "valid"])
    return root
