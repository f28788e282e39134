#!/usr/bin/env python
"""Benchmark of the MIDI-to-stems renderer: hours of stems produced per hour of CPU.

Generates ``--songs`` multitrack MIDI songs (seeded: drums, a bass, chords, a lead line named
"Melody", an arpeggio; 5 parts, 4 sources) of ``--seconds`` each, renders them with
``asteroid_frugal.midi_render`` and reports the CPU time of this process and all its children
(the fluidsynth processes included)::

    .venv/bin/python benchmarks/bench_midi_render.py --songs 6 --seconds 60 [--jobs 2] [--json out.json]
"""
import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mido  # noqa: E402

from asteroid_frugal.config import load_config  # noqa: E402
from asteroid_frugal.midi_render import RenderOptions, render_midi_dir  # noqa: E402

PROGRESSIONS = [(0, 7, 9, 5), (0, 5, 7, 5), (9, 5, 0, 7), (0, 9, 5, 7)]   # I-V-vi-IV and friends
MAJOR = (0, 2, 4, 5, 7, 9, 11)


def _track(name, channel, program, notes, tpb):
    """``notes``: (start beat, length in beats, pitch, velocity)."""
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
    if program is not None:
        track.append(mido.Message("program_change", channel=channel, program=program))
    events = []
    for start, length, pitch, velocity in notes:
        events.append((int(start * tpb), 1, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
        events.append((int((start + length) * tpb), 0, mido.Message("note_off", channel=channel, note=pitch)))
    last = 0
    for tick, _, msg in sorted(events, key=lambda e: e[:2]):
        track.append(msg.copy(time=tick - last))
        last = tick
    return track


def generate_song(path: Path, seconds: float, seed: int, tpb: int = 480) -> None:
    """A plausible pop-like multitrack MIDI song (GM programs, drum channel 10)."""
    rng = random.Random(seed)
    bpm = rng.randint(85, 140)
    beats = int(seconds * bpm / 60)
    key = rng.randint(0, 11)
    prog = rng.choice(PROGRESSIONS)
    chord_root = [key + prog[(b // 4) % 4] for b in range(beats)]
    drums, bass, chords, lead, arp = [], [], [], [], []
    for b in range(beats):
        root = chord_root[b]
        drums += [(b, 0.2, 36 if b % 2 == 0 else 38, 110), (b, 0.2, 42, 70), (b + 0.5, 0.2, 42, 60)]
        if b % 16 == 15:
            drums += [(b + k / 4, 0.2, 45 + k, 100) for k in range(4)]
        bass += [(b, 0.45, 36 + root % 12, 100), (b + 0.5, 0.45, 36 + root % 12 + rng.choice((0, 7, 12)), 90)]
        if b % 4 == 0:
            third = 3 if prog[(b // 4) % 4] == 9 else 4
            chords += [(b, 4, 60 + (root + iv) % 12, 70) for iv in (0, third, 7)]
        if rng.random() < 0.8:
            lead.append((b, rng.choice((0.5, 1.0)), 72 + key % 12 + rng.choice(MAJOR), 100))
        arp += [(b + k / 4, 0.25, 72 + (root + iv) % 12, 60) for k, iv in enumerate((0, 4, 7, 12))]
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))]))
    mid.tracks.append(_track("Drums", 9, None, drums, tpb))
    mid.tracks.append(_track("Bass", 1, rng.randint(32, 39), bass, tpb))
    mid.tracks.append(_track("Chords", 2, rng.choice((0, 4, 16, 24, 48, 88)), chords, tpb))
    mid.tracks.append(_track("Melody", 3, rng.choice((56, 65, 73, 80)), lead, tpb))
    mid.tracks.append(_track("Arpeggio", 4, rng.choice((8, 11, 46, 98)), arp, tpb))
    mid.save(str(path))


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (fluidsynth, pool workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--jobs", type=int, default=None, help="default: conf.yml's midi_render.jobs")
    parser.add_argument("--sample_rate", type=int, default=None, help="default: conf.yml's midi_render.sample_rate")
    parser.add_argument("--format", default=None, choices=("wav", "flac"),
                        help="default: conf.yml's midi_render.format")
    parser.add_argument("--soundfont", action="append", default=None,
                        help="default: conf.yml's midi_render.soundfonts")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    given = {"soundfonts": args.soundfont, "jobs": args.jobs, "sample_rate": args.sample_rate, "format": args.format}
    opts = RenderOptions.from_conf({**load_config()["midi_render"],
                                    **{k: v for k, v in given.items() if v is not None}})
    with tempfile.TemporaryDirectory() as tmp:
        midi_dir = Path(tmp) / "midi"
        midi_dir.mkdir()
        for i in range(args.songs):
            generate_song(midi_dir / f"song{i:03d}.mid", args.seconds, seed=i)
        cpu0, wall0 = cpu_seconds(), time.time()
        report = render_midi_dir(midi_dir, Path(tmp) / "out", opts)
        cpu, wall = cpu_seconds() - cpu0, time.time() - wall0
    result = {"songs": report["rendered"], "song_seconds": args.seconds, "jobs": opts.jobs,
              "sample_rate": opts.sample_rate, "format": opts.format, "soundfonts": report["soundfonts"],
              "stem_hours": report["stem_hours"], "song_hours": report["song_hours"],
              "cpu_seconds": cpu, "wall_seconds": wall,
              "stem_hours_per_cpu_hour": report["stem_hours"] * 3600 / cpu,
              "song_hours_per_cpu_hour": report["song_hours"] * 3600 / cpu,
              "stem_hours_per_wall_hour": report["stem_hours"] * 3600 / wall}
    print(f"{result['songs']} songs x {args.seconds:g} s, {len(report['soundfonts'])} soundfont(s), jobs "
          f"{opts.jobs}: {result['stem_hours']:.3f} h of stems in {cpu:.1f} s CPU ({wall:.1f} s wall)\n"
          f"  {result['stem_hours_per_cpu_hour']:.0f} h of stems per CPU hour "
          f"({result['song_hours_per_cpu_hour']:.0f} h of songs; 300 h of stems ~ "
          f"{300 / result['stem_hours_per_cpu_hour']:.1f} CPU hours)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    from asteroid_frugal.cli.common import setup_process

    setup_process(sys.argv[1:])   # the threading policy, set as every command sets it
    main()
