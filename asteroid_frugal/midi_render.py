"""MIDI -> stems: render a folder of multitrack MIDI files into an extra-data corpus.

Command line: ``local/render_midi.py MIDI_DIR OUT_DIR`` (:mod:`asteroid_frugal.cli.render_midi`);
stage 1 renders ``midi_render.midi_dirs`` itself (:mod:`asteroid_frugal.data.extra`).

Each MIDI file is split (with ``mido``) into one MIDI file per MUSDB18 source: the notes of the
parts assigned to that source, every meta and sysex event, and the channel set-up (program,
controllers, pitch bend) of the channels those notes use. Each is rendered separately by the
``fluidsynth`` command line in 32-bit float; the stems are cut or padded to one length per song,
scaled by one gain per song (mixture peak -> ``peak``), and written as
``OUT_DIR/<song>[__<soundfont>]/<source>.wav`` (stage 1's layout). The mixture is their sum by
construction, and nothing clips. A part is (track, channel, program); its source is, in order:
the drum channel (10) -> ``drum_source``; a ``names`` regex on its track name (multitrack files
only); a ``programs`` range (GM numbers 1-128); else ``default``. ``skip`` drops a part.

The ``fluidsynth`` CLI rather than pyfluidsynth: its fast renderer (``-F``) plays the file with
FluidSynth's own MIDI player (tempo map, controllers, RPNs, sysex) in C, in one crash-isolated
process per stem, and needs only the Debian package; with pyfluidsynth we would drive the synth
event by event from Python (as pretty_midi's ``fluidsynth()`` does), i.e. re-implement the
player, and bind libfluidsynth through ctypes.

Songs are rendered in parallel (``midi_render.jobs``), resumably (a finished ``<song>`` folder is skipped;
songs are written in a hidden folder and renamed), deterministically (byte-identical output for
the same file, soundfont and options). Bad or empty MIDI files are reported in one line and
skipped; each soundfont is probed once before the run. Each song folder holds a hidden
``.render.json`` (its parts, their sources, the gain); ``OUT_DIR/render_report.json`` sums up a run.
"""
import bisect
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, Dict, List, Optional, Pattern, Sequence, Tuple

import numpy as np

from .data.types import SOURCES
from .utils import DiskFullError, FrugalError, disk_full_errors, disk_full_message, nearly_full, write_json_atomic

log = logging.getLogger("asteroid_frugal.midi_render")

SKIP = "skip"
DRUM_CHANNEL = 9                       # 0-based: General MIDI channel 10
MIDI_SUFFIXES = (".mid", ".midi", ".kar")
FORMATS = {"wav": "FLOAT", "flac": "PCM_24"}
REPORT = "render_report.json"
LONGEST_SONG = 3600.0                  # seconds; longer files are skipped unless max_seconds cuts them
SONG_RECORD = ".render.json"           # per song, hidden so stage 1 sees only <source>.<ext>
RELEASE_SECONDS = 2                    # FluidSynth renders on past the last note (releases): disk space estimates
OPTION_FIELDS = ("max_seconds", "tail_seconds", "sample_rate", "format", "peak", "gain", "reverb", "chorus")
RELEASE_CONTROLS = (64, 66, 123)      # sustain off, sostenuto off, all notes off
CHANNEL_EVENTS = ("program_change", "control_change", "pitchwheel", "aftertouch", "polytouch")


# --------------------------------------------------------------------------- options
@dataclass
class SourceRules:
    """Track-to-source mapping (see the module docstring for the precedence)."""

    drum_source: str
    names: List[Tuple[Pattern, str]]
    programs: List[Tuple[int, int, str]]   # GM 1-128, inclusive
    default: str

    def source_of(self, channel: int, program: int, name: str) -> str:
        """Source of a part: ``channel`` and ``program`` 0-based as in the MIDI bytes."""
        if channel == DRUM_CHANNEL:
            return self.drum_source
        for pattern, source in self.names:
            if name and pattern.search(name):
                return source
        for low, high, source in self.programs:
            if low <= program + 1 <= high:
                return source
        return self.default

    @classmethod
    def from_conf(cls, section: Dict[str, Any]) -> "SourceRules":
        """From ``drum_source``, ``names``, ``programs``, ``default`` of a ``midi_render`` section."""
        allowed = set(SOURCES) | {SKIP}

        def check(where: str, source: Any) -> str:
            if source not in allowed:
                raise FrugalError(f"midi_render.{where} = {source!r} is not one of {', '.join(sorted(allowed))}")
            return source

        names = []
        for regex, source in (section.get("names") or {}).items():
            try:
                names.append((re.compile(str(regex), re.IGNORECASE), check(f"names[{regex}]", source)))
            except re.error as err:
                raise FrugalError(f"midi_render.names: bad regex {regex!r} ({err})") from None
        programs = []
        for key, source in (section.get("programs") or {}).items():
            match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(key))
            low, high = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (0, 0)
            if not (1 <= low <= high <= 128):
                raise FrugalError(f"midi_render.programs: {key!r} is not a GM program or range within 1-128")
            programs.append((low, high, check(f"programs[{key}]", source)))
        return cls(drum_source=check("drum_source", section["drum_source"]),
                   names=names, programs=programs, default=check("default", section["default"]))


@dataclass(frozen=True)
class SynthSettings:
    """What a FluidSynth rendering depends on besides the MIDI file and the soundfont (the
    ``midi_render`` keys of that name; the built-in corpus renders at ``data.sample_rate``)."""

    sample_rate: int
    gain: float
    reverb: bool
    chorus: bool

    def validate(self) -> None:
        if not 8000 <= self.sample_rate <= 96000:
            raise FrugalError(f"midi_render: sample_rate {self.sample_rate} outside FluidSynth's 8000-96000")
        if not 0 < self.gain < 10:
            raise FrugalError(f"midi_render: gain {self.gain} must be in (0, 10)")


@dataclass
class RenderOptions:
    """Everything a rendering depends on (the ``midi_render`` config section, resolved)."""

    soundfonts: List[Path]
    rules: SourceRules
    max_seconds: Optional[float]
    tail_seconds: float
    sample_rate: int
    format: str
    peak: float
    gain: float
    reverb: bool
    chorus: bool
    jobs: int

    @classmethod
    def from_conf(cls, section: Dict[str, Any]) -> "RenderOptions":
        """From a whole ``midi_render`` config section (as :func:`config.load_config` gives it)."""
        try:
            fonts = [Path(str(p)).expanduser() for p in (section["soundfonts"] or [])]
            opts = cls(soundfonts=fonts, rules=SourceRules.from_conf(section),
                       max_seconds=None if section["max_seconds"] is None else float(section["max_seconds"]),
                       tail_seconds=float(section["tail_seconds"]), sample_rate=int(section["sample_rate"]),
                       format=str(section["format"]), peak=float(section["peak"]), gain=float(section["gain"]),
                       reverb=bool(section["reverb"]), chorus=bool(section["chorus"]), jobs=int(section["jobs"]))
        except KeyError as err:
            raise FrugalError(f"midi_render config: missing key {err.args[0]!r} "
                              "(the whole section is needed)") from None
        opts.validate()
        return opts

    @property
    def synth(self) -> SynthSettings:
        return SynthSettings(self.sample_rate, self.gain, self.reverb, self.chorus)

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise FrugalError(f"midi_render: format {self.format!r} is not one of {', '.join(FORMATS)}")
        if not 0 < self.peak <= 1:
            raise FrugalError(f"midi_render: peak {self.peak} must be in (0, 1] (stems must not clip)")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise FrugalError(f"midi_render: max_seconds {self.max_seconds} must be positive (or null)")
        if self.tail_seconds < 0 or not 0 < self.gain < 10 or self.jobs < 1:
            raise FrugalError("midi_render: need tail_seconds >= 0, 0 < gain < 10 and jobs >= 1")
        self.synth.validate()
        if not self.soundfonts:
            raise FrugalError("midi_render.soundfonts is empty: name at least one .sf2/.sf3 file "
                              "(--soundfont FILE.sf2)")
        tags = [soundfont_tag(p) for p in self.soundfonts]
        for path in self.soundfonts:
            if not path.exists():
                raise FrugalError(f"{path}: soundfont not found: install it (Debian: sudo apt-get install "
                                  "fluid-soundfont-gm timgm6mb-soundfont, as local/setup_env.sh does) "
                                  "or pass --soundfont FILE.sf2")
            check_soundfont(path)
        if len(set(tags)) != len(tags):
            raise FrugalError("midi_render: soundfonts with the same file name: "
                              + ", ".join(map(str, self.soundfonts)))


def check_soundfont(path: Path) -> None:
    """A readable SoundFont 2 (.sf2, or .sf3 with compressed samples): RIFF ``sfbk`` header."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError as err:
        raise FrugalError(f"{path}: cannot read soundfont ({err.strerror})") from None
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise FrugalError(f"{path}: not a SoundFont (.sf2/.sf3) file")


def soundfont_tag(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem)


def require_fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise FrugalError("fluidsynth not found on PATH: install it (sudo apt-get install fluidsynth)")
    return exe


# --------------------------------------------------------------------------- splitting
@dataclass
class Part:
    """One instrument of a MIDI file: the notes of one (track, channel, program)."""

    track: int
    channel: int          # 0-based; 9 is the GM drum channel
    program: int          # 0-based GM program at the part's notes
    name: str             # its track's name ("" in single-track files)
    source: str
    n_notes: int = 0

    def describe(self) -> Dict[str, Any]:
        return {"track": self.track, "channel": self.channel + 1, "gm_program": self.program + 1,
                "name": self.name, "source": self.source, "notes": self.n_notes}


@dataclass
class SplitSong:
    """A MIDI file split by source: per-source MIDI files, its parts, and its length."""

    files: Dict[str, Any]         # source -> mido.MidiFile
    parts: List[Part]
    seconds: float                # up to the last event (after the max_seconds cut)


class TempoMap:
    """Ticks <-> seconds of a MIDI file (its set_tempo events, from any track)."""

    def __init__(self, ticks_per_beat: int, changes: Sequence[Tuple[int, int]]):
        self.tpb = ticks_per_beat
        self.ticks, self.tempos, self.starts = [0], [500000], [0.0]
        for tick, tempo in sorted(changes):
            if tick == self.ticks[-1]:
                self.tempos[-1] = tempo
                continue
            self.starts.append(self.seconds(tick))
            self.ticks.append(tick)
            self.tempos.append(tempo)

    def seconds(self, tick: int) -> float:
        i = bisect.bisect_right(self.ticks, tick) - 1
        return self.starts[i] + (tick - self.ticks[i]) * self.tempos[i] / (1e6 * self.tpb)

    def tick_at(self, seconds: float) -> int:
        i = bisect.bisect_right(self.starts, seconds) - 1
        return self.ticks[i] + int((seconds - self.starts[i]) * 1e6 * self.tpb / self.tempos[i])


def load_midi(path):
    """``mido.MidiFile`` of ``path``; a one-line error naming it when it is not usable."""
    import mido

    if Path(path).stat().st_size == 0:
        raise FrugalError(f"{path}: empty file, not a MIDI file")
    try:
        mid = mido.MidiFile(str(path), clip=True)
    except Exception as err:  # mido raises OSError, EOFError, ValueError, KeyError... on bad bytes
        msg = str(err).splitlines()[0] if str(err) else f"truncated or corrupt: {type(err).__name__}"
        raise FrugalError(f"{path}: not a readable MIDI file ({msg})") from None
    if mid.type == 2:
        raise FrugalError(f"{path}: MIDI type 2 (independent sequences) is not supported")
    if mid.ticks_per_beat <= 0:
        raise FrugalError(f"{path}: SMPTE time division is not supported")
    return mid


def split_midi(path, rules: SourceRules, max_seconds: Optional[float]) -> SplitSong:
    """Split a MIDI file into one MIDI file per source (see the module docstring)."""
    import mido

    mid = load_midi(path)
    events = []                                   # (tick, track, index, message)
    names: Dict[int, str] = {}
    tempo_changes = []
    for ti, track in enumerate(mid.tracks):
        tick = 0
        for idx, msg in enumerate(track):
            tick += msg.time
            events.append((tick, ti, idx, msg))
            if msg.type == "set_tempo":
                tempo_changes.append((tick, msg.tempo))
            elif msg.type in ("track_name", "instrument_name") and ti not in names:
                names[ti] = str(msg.name).strip()
    events.sort(key=lambda e: e[:3])
    tempo = TempoMap(mid.ticks_per_beat, tempo_changes)
    use_names = len(mid.tracks) > 1              # a single track's name is the song's, not a part's
    end_tick = max((e[0] for e in events), default=0)
    if max_seconds is not None:
        end_tick = min(end_tick, tempo.tick_at(max_seconds))

    program = [0] * 16
    parts: Dict[Tuple[int, int, int], Part] = {}
    pending: Dict[Tuple[int, int], deque] = defaultdict(deque)
    routed: Dict[Tuple[int, int], Any] = {}       # (track, index) -> source | ("channel", ch)
    channel_sources: Dict[int, set] = defaultdict(set)
    for tick, ti, idx, msg in events:
        if tick > end_tick:
            break
        if msg.is_meta or msg.type == "sysex":
            continue                               # kept in every source's file
        if msg.type == "note_on" and msg.velocity > 0:
            key = (ti, msg.channel, program[msg.channel])
            if key not in parts:
                name = names.get(ti, "") if use_names else ""
                parts[key] = Part(ti, msg.channel, key[2], name, rules.source_of(msg.channel, key[2], name))
            part = parts[key]
            part.n_notes += 1
            pending[(msg.channel, msg.note)].append(part.source)
            routed[(ti, idx)] = part.source
            channel_sources[msg.channel].add(part.source)
        elif msg.type in ("note_off", "note_on"):
            queue = pending[(msg.channel, msg.note)]
            routed[(ti, idx)] = queue.popleft() if queue else None
        else:
            if msg.type == "program_change":
                program[msg.channel] = msg.program
            if msg.type in CHANNEL_EVENTS:
                routed[(ti, idx)] = ("channel", msg.channel)
    sources = [s for s in SOURCES if any(p.source == s and p.n_notes for p in parts.values())]
    if not sources:
        raise FrugalError(f"{path}: no notes to render" + (" (all parts mapped to skip)" if parts else ""))

    files = {}
    for source in sources:
        out = mido.MidiFile(type=1, ticks_per_beat=mid.ticks_per_beat)
        for ti, track in enumerate(mid.tracks):
            kept, tick = [], 0
            for idx, msg in enumerate(track):
                tick += msg.time
                if tick > end_tick or msg.type == "end_of_track":
                    continue
                route = routed.get((ti, idx), "all") if not (msg.is_meta or msg.type == "sysex") else "all"
                if (route == "all" or route == source
                        or (isinstance(route, tuple) and source in channel_sources[route[1]])):
                    kept.append((tick, msg))
            out.tracks.append(_delta_track(kept, end_tick))
        # a last track releases everything at the end (after any same-tick note-on of the
        # tracks before it), or notes held past a cut would ring and fluidsynth never stop
        release = [(end_tick, mido.Message("control_change", channel=ch, control=cc, value=0))
                   for ch in sorted(c for c, s in channel_sources.items() if source in s)
                   for cc in RELEASE_CONTROLS]
        out.tracks.append(_delta_track(release, end_tick))
        files[source] = out
    ordered = sorted(parts.values(), key=lambda p: (p.track, p.channel, p.program))
    return SplitSong(files=files, parts=ordered, seconds=tempo.seconds(end_tick))


def _delta_track(events, end_tick: int):
    """A ``mido.MidiTrack`` from (absolute tick, message) pairs, ending at ``end_tick``."""
    import mido

    track, last = mido.MidiTrack(), 0
    for tick, msg in events:
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=end_tick - last))
    return track


# --------------------------------------------------------------------------- rendering
def fluidsynth_render(midi_path: Path, soundfont: Path, out_wav: Path, opts: SynthSettings,
                      seconds: float = 600.0) -> np.ndarray:
    """Render one MIDI file with the fluidsynth CLI; returns float32 ``(2, samples)``.

    ``opts``: a :class:`SynthSettings` (or :class:`RenderOptions`, which has the same fields);
    ``seconds`` (the song's length) bounds the time allowed: at least 0.25x real time.
    """
    import soundfile as sf

    empty_conf = out_wav.with_suffix(".conf")     # shields the render from ~/.fluidsynth
    needed = int((seconds + RELEASE_SECONDS) * opts.sample_rate) * 2 * 4 + 4096      # the float stereo render
    with disk_full_errors(out_wav, needed):
        empty_conf.write_text("")
    cmd = [require_fluidsynth(), "-n", "-i", "-q", "-f", str(empty_conf), "-F", str(out_wav),
           "-T", "wav", "-O", "float", "-r", str(opts.sample_rate), "-g", str(opts.gain),
           "-R", "1" if opts.reverb else "0", "-C", "1" if opts.chorus else "0",
           # dynamic sample loading reads only the samples the file uses: same audio, 1/4 the RAM
           "-o", "synth.cpu-cores=1", "-o", "synth.dynamic-sample-loading=1", str(soundfont), str(midi_path)]
    limit = 60 + 4 * seconds
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        raise FrugalError(f"{midi_path}: fluidsynth did not finish in {limit:.0f} s") from None
    # fluidsynth exits 0 when it cannot load the soundfont, and then plays its built-in default
    # soundfont instead: its "Failed to load" message is the only sign. On a full disk it says
    # "Audio file write error: ... No space left on device", also exits 0, and leaves a truncated
    # file (which must not become a song with a silent end).
    said = (proc.stderr + proc.stdout).lower()
    failed = "failed to load" in said or "write error" in said
    if proc.returncode != 0 or failed or not out_wav.is_file():
        if any(w in said for w in ("no space left", "quota exceeded")) or nearly_full(out_wav.parent):
            raise DiskFullError(disk_full_message(out_wav, needed))
        lines = [l for l in (proc.stderr + proc.stdout).splitlines() if "error" in l.lower() or "failed" in l.lower()]
        raise FrugalError(f"{midi_path}: fluidsynth failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    audio, _ = sf.read(str(out_wav), dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T)


def probe_soundfont(soundfont: Path, opts: SynthSettings) -> None:
    """Render one note with ``soundfont``: a one-line error now rather than one per song later."""
    import mido

    with tempfile.TemporaryDirectory() as tmp:
        mid = mido.MidiFile()
        mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=100),
                                          mido.Message("note_off", note=60, time=mid.ticks_per_beat)]))
        mid.save(str(Path(tmp) / "probe.mid"))
        try:
            audio = fluidsynth_render(Path(tmp) / "probe.mid", soundfont, Path(tmp) / "probe.wav", opts, seconds=1)
        except DiskFullError:
            raise
        except FrugalError as err:
            raise FrugalError(f"{soundfont}: unusable soundfont ({str(err).split(': ', 1)[-1]})") from None
    if not np.any(audio):
        raise FrugalError(f"{soundfont}: has no General MIDI piano (program 1, bank 0): a GM soundfont is needed")


def write_stem(path: Path, audio: np.ndarray, sample_rate: int, fmt: str) -> None:
    """Write ``(channels, samples)`` float32 as float WAV or 24-bit FLAC, byte-reproducibly."""
    if fmt == "wav":
        # libsndfile stamps float WAVs with a PEAK chunk holding the time of writing, so two
        # renderings of the same song would differ in their headers; scipy writes no PEAK chunk.
        from scipy.io import wavfile

        wavfile.write(str(path), sample_rate, np.ascontiguousarray(audio.T, dtype=np.float32))
    else:
        import soundfile as sf

        sf.write(str(path), audio.T, sample_rate, subtype=FORMATS[fmt], format="FLAC")


def render_song(midi_path, soundfont, out_song_dir, opts: RenderOptions, work_root=None) -> Dict[str, Any]:
    """Render one MIDI file with one soundfont into ``out_song_dir/<source>.<ext>`` (atomically).

    Returns the song's record (parts and their sources, stems, seconds), also written as
    ``out_song_dir/.render.json``. A full disk is a :class:`DiskFullError` naming ``out_song_dir``
    and the space the song needed (nothing of it left).
    """
    midi_path, out_song_dir = Path(midi_path), Path(out_song_dir)
    split = split_midi(midi_path, opts.rules, opts.max_seconds)
    if split.seconds > LONGEST_SONG:
        raise FrugalError(f"{midi_path}: {split.seconds / 3600:.1f} h long (a broken file?); "
                          "set midi_render.max_seconds (--max_seconds) to cut it")
    n = int(round((split.seconds + opts.tail_seconds) * opts.sample_rate))
    if opts.max_seconds is not None:
        n = min(n, int(round(opts.max_seconds * opts.sample_rate)))
    # every source's render and its stem (float at most): a full disk's message names it
    needed = len(split.files) * (int(2 * n + RELEASE_SECONDS * opts.sample_rate) * 2 * 4 + 8192)
    with disk_full_errors(out_song_dir, needed):
        work = Path(tempfile.mkdtemp(prefix=".song-", dir=work_root or out_song_dir.parent))
        try:
            stems = {}
            for source, mid in split.files.items():
                mid.save(str(work / f"{source}.mid"))
                try:
                    audio = fluidsynth_render(work / f"{source}.mid", Path(soundfont), work / f"{source}.raw.wav",
                                              opts, seconds=n / opts.sample_rate)
                except DiskFullError:
                    raise
                except FrugalError as err:       # name the user's file, not the temporary one
                    raise FrugalError(f"{midi_path} ({source} parts, {Path(soundfont).name}): "
                                      f"{str(err).split(': ', 1)[-1]}") from None
                stems[source] = np.pad(audio[:, :n], ((0, 0), (0, max(0, n - audio.shape[1]))))
            silent = [s for s, a in stems.items() if not np.any(a)]
            for source in silent:
                log.info("%s: the %s parts render to silence with %s; stem left out", midi_path, source, soundfont)
                del stems[source]
            if not stems:
                raise FrugalError(f"{midi_path}: renders to silence with {soundfont}")
            mixture = sum(stems.values())
            peak = max(float(np.abs(mixture).max()), *(float(np.abs(a).max()) for a in stems.values()))
            gain = np.float32(opts.peak / peak)
            song = work / "song"
            song.mkdir()
            for source, audio in stems.items():
                write_stem(song / f"{source}.{opts.format}", audio * gain, opts.sample_rate, opts.format)
            record = {"song": out_song_dir.name, "midi": str(midi_path), "soundfont": str(soundfont),
                      "seconds": n / opts.sample_rate, "sample_rate": opts.sample_rate, "gain": float(gain),
                      "stems": sorted(stems), "parts": [p.describe() for p in split.parts]}
            (song / SONG_RECORD).write_text(json.dumps(record, indent=2) + "\n")
            os.rename(song, out_song_dir)              # the song appears complete or not at all
            return record
        finally:
            shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- corpus
def find_midi_files(midi_dir) -> List[Tuple[str, Path]]:
    """(song name, path) of the MIDI files under ``midi_dir`` (recursive; sub-folders joined by _)."""
    midi_dir = Path(midi_dir)
    if not midi_dir.is_dir():
        raise FrugalError(f"{midi_dir}: MIDI folder not found")
    found, seen = [], {}
    for path in sorted(midi_dir.rglob("*")):
        rel = path.relative_to(midi_dir)
        if path.suffix.lower() not in MIDI_SUFFIXES or any(p.startswith(".") for p in rel.parts) \
                or not path.is_file():
            continue
        name = "_".join(rel.with_suffix("").parts).lstrip(".") or "song"
        if name in seen:
            log.warning("%s: same song name %r as %s; skipped", path, name, seen[name])
            continue
        seen[name] = path
        found.append((name, path))
    if not found:
        raise FrugalError(f"{midi_dir}: no MIDI files ({', '.join(MIDI_SUFFIXES)}) found")
    return found


def _render_task(task) -> Dict[str, Any]:
    """One (song, soundfont) job, in a worker: a record, or a skip reason; never raises."""
    name, midi_path, soundfont, out_song_dir, opts, work_root = task
    start = time.process_time()
    try:
        record = render_song(midi_path, soundfont, out_song_dir, opts, work_root)
        return {"status": "rendered", **record}
    except DiskFullError:
        raise           # every later song would fail too: the run stops, the next run resumes
    except FrugalError as err:
        return {"status": "skipped", "song": name, "midi": str(midi_path), "reason": str(err)}
    except Exception as err:  # a bug or an OS problem on one file must not stop a long run
        log.debug("render %s", midi_path, exc_info=True)
        return {"status": "skipped", "song": name, "midi": str(midi_path),
                "reason": f"{midi_path}: {type(err).__name__}: {err}"}
    finally:
        log.debug("%s: %.1f s CPU in Python", name, time.process_time() - start)


def _pool_context():
    """fork where there is one: workers run only mido, numpy and fluidsynth subprocesses (no torch
    threads), and spawn would re-import the package (torch, asteroid) in every worker."""
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


def _clean_stale_work_dirs(out_dir: Path) -> None:
    """Remove ``.partial-<pid>-*`` folders left by killed runs (their pid is gone)."""
    for work in out_dir.glob(".partial-*"):
        try:
            pid = int(work.name.split("-")[1])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            shutil.rmtree(work, ignore_errors=True)
        except PermissionError:
            pass


def render_midi_dir(midi_dir, out_dir, opts: RenderOptions, progress: bool = True) -> Dict[str, Any]:
    """Render every MIDI file under ``midi_dir`` with every soundfont into ``out_dir``.

    Resumable: songs whose folder exists are kept. Returns (and writes as
    ``out_dir/render_report.json``) counts, skipped files with reasons, and hours of stems.
    """
    from tqdm import tqdm

    require_fluidsynth()
    out_dir = Path(out_dir)
    songs = find_midi_files(midi_dir)
    for soundfont in opts.soundfonts:
        probe_soundfont(soundfont, opts)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale_work_dirs(out_dir)
    work_root = Path(tempfile.mkdtemp(prefix=f".partial-{os.getpid()}-", dir=out_dir))
    several = len(opts.soundfonts) > 1
    tasks, existing = [], 0
    for name, path in songs:
        for sf2 in opts.soundfonts:
            song_dir = out_dir / (f"{name}__{soundfont_tag(sf2)}" if several else name)
            if song_dir.is_dir():
                existing += 1
            else:
                tasks.append((song_dir.name, path, sf2, song_dir, opts, work_root))
    log.info("%d MIDI file(s) x %d soundfont(s): %d to render, %d already rendered in %s",
             len(songs), len(opts.soundfonts), len(tasks), existing, out_dir)
    wall, records = time.time(), []
    try:
        bar = tqdm(total=len(tasks), unit="song", desc="render MIDI", disable=not progress or not tasks)
        if opts.jobs == 1 or len(tasks) <= 1:
            results = map(_render_task, tasks)
            pool = None
        else:
            pool = ProcessPoolExecutor(opts.jobs, mp_context=_pool_context())
            results = pool.map(_render_task, tasks, chunksize=1)
        try:
            for record in results:
                records.append(record)
                if record["status"] == "skipped":
                    log.warning("skipped: %s", record["reason"])
                bar.update(1)
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    rendered = [r for r in records if r["status"] == "rendered"]
    report = {"midi_dir": str(midi_dir), "out_dir": str(out_dir),
              "soundfonts": [str(p) for p in opts.soundfonts],
              "options": {k: getattr(opts, k) for k in OPTION_FIELDS},
              "rendered": len(rendered), "already_rendered": existing,
              "skipped": [{"midi": r["midi"], "reason": r["reason"]} for r in records if r["status"] == "skipped"],
              "song_hours": sum(r["seconds"] for r in rendered) / 3600,
              "stem_hours": sum(r["seconds"] * len(r["stems"]) for r in rendered) / 3600,
              "wall_seconds": time.time() - wall}
    write_json_atomic(out_dir / REPORT, report)
    log.info("rendered %d song(s) (%.2f h of stems), %d skipped, %d already there; report: %s",
             len(rendered), report["stem_hours"], len(report["skipped"]), existing, out_dir / REPORT)
    return report


def rendering_group(song_dir: Path) -> str:
    """The MIDI song a rendered folder comes from: ``<song>__<soundfont>`` -> ``<song>`` when
    its corpus was rendered with several soundfonts (they must share a held-out split)."""
    report = song_dir.parent / REPORT
    try:
        several = len(json.loads(report.read_text()).get("soundfonts", [])) > 1
    except (OSError, ValueError):
        several = False
    name = song_dir.name
    return name.rsplit("__", 1)[0] if several and "__" in name else name
