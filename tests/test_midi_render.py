"""MIDI -> stems renderer: source assignment, stems that sum to the song, equal lengths,
determinism, resumability, bad files skipped, a full disk (one line, the run stops, resumes). MIDI files are written here with mido."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from asteroid_frugal import midi_render as mr
from asteroid_frugal.config import load_config
from asteroid_frugal.data.types import SOURCES
from asteroid_frugal.utils import DiskFullError, FrugalError

from conftest import REPO
from disk_helpers import resize, small_disk

SR = 22050           # a low rate keeps the renders quick
SECTION = load_config()["midi_render"]
FLUID = Path(SECTION["soundfonts"][0])      # conf.yml's soundfont: FluidR3_GM
pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None or not FLUID.is_file(),
                                reason="fluidsynth and fluid-soundfont-gm are needed (local/setup_env.sh)")


def _track(name, channel, program, notes, tpb):
    """A MIDI track: ``notes`` are (start beat, length in beats, pitch, velocity)."""
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
    if program is not None:
        track.append(mido.Message("program_change", channel=channel, program=program))
    track.append(mido.Message("control_change", channel=channel, control=7, value=110))
    events = []
    for start, length, pitch, velocity in notes:
        events.append((int(start * tpb), 1, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
        events.append((int((start + length) * tpb), 0, mido.Message("note_off", channel=channel, note=pitch)))
    last = 0
    for tick, _, msg in sorted(events, key=lambda e: e[:2]):
        track.append(msg.copy(time=tick - last))
        last = tick
    return track


def write_song(path, beats=4, tempo_bpm=120, tpb=480):
    """Drums, a finger bass, a lead line named 'Lead Vocal', piano chords, a 'Voice Oohs' pad."""
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("track_name", name="Song title with Melody in it"),
                                      mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm))]))
    mid.tracks.append(_track("Drum kit", 9, None,
                             [(b / 2, 0.25, 36 if b % 2 == 0 else 38, 110) for b in range(beats * 2)], tpb))
    mid.tracks.append(_track("Bass", 1, 33, [(b, 0.9, 40 + 2 * (b % 3), 100) for b in range(beats)], tpb))
    mid.tracks.append(_track("Lead Vocal", 2, 73, [(b, 0.5, 72 + (5 * b) % 7, 100) for b in range(beats)], tpb))
    mid.tracks.append(_track("Keys", 3, 0, [(0, beats, p, 80) for p in (60, 64, 67)], tpb))
    mid.tracks.append(_track("Pad", 4, 53, [(0, beats, 76, 60)], tpb))        # GM 54 Voice Oohs
    mid.save(str(path))
    return path


def _opts(**kw):
    """RenderOptions of conf.yml's midi_render section at ``SR``, with ``kw`` changed."""
    return mr.RenderOptions.from_conf({**SECTION, "sample_rate": SR, **kw})


def _stems(song_dir):
    return {p.stem: sf.read(str(p), dtype="float32", always_2d=True)[0].T
            for p in sorted(song_dir.iterdir()) if p.stem in SOURCES}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One corpus: two good songs (one in a sub-folder), a corrupt file, an empty file, a note-less file."""
    root = tmp_path_factory.mktemp("midi")
    write_song(root / "song_a.mid")
    (root / "sub").mkdir()
    write_song(root / "sub" / "b.midi", beats=6, tempo_bpm=90)
    (root / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x10\x00\x90")
    (root / "empty.mid").write_bytes(b"")
    silent = mido.MidiFile()
    silent.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)]))
    silent.save(str(root / "no_notes.mid"))
    out = tmp_path_factory.mktemp("out")
    report = mr.render_midi_dir(root, out, _opts(), progress=False)
    return root, out, report


def test_tracks_are_assigned_to_sources_by_channel_name_and_program(rendered):
    _, out, _ = rendered
    record = json.loads((out / "song_a" / mr.SONG_RECORD).read_text())
    by_name = {p["name"]: p["source"] for p in record["parts"]}
    assert by_name == {"Drum kit": "drums", "Bass": "bass", "Lead Vocal": "vocals",
                       "Keys": "other", "Pad": "vocals"}
    assert sorted(p.name for p in (out / "song_a").iterdir() if not p.name.startswith(".")) == \
        ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]


def test_split_files_hold_only_their_sources_notes(tmp_path):
    split = mr.split_midi(write_song(tmp_path / "s.mid"), _opts().rules, None)
    notes = {s: {(m.channel, m.note) for t in f.tracks for m in t if m.type == "note_on" and m.velocity}
             for s, f in split.files.items()}
    assert {ch for ch, _ in notes["drums"]} == {9}
    assert {ch for ch, _ in notes["bass"]} == {1}
    assert {ch for ch, _ in notes["vocals"]} == {2, 4}
    assert {ch for ch, _ in notes["other"]} == {3}
    # each source keeps the tempo and its channels' set-up (program, volume), not the others'
    for source, f in split.files.items():
        msgs = [m for t in f.tracks for m in t]
        assert any(m.type == "set_tempo" for m in msgs)
        assert {m.channel for m in msgs if m.type == "control_change"} == {ch for ch, _ in notes[source]}
    assert split.seconds == pytest.approx(2.0)      # 4 beats at 120 bpm


def test_stems_have_equal_length_do_not_clip_and_sum_to_the_song(rendered, tmp_path):
    root, out, _ = rendered
    stems = _stems(out / "song_a")
    lengths = {a.shape for a in stems.values()}
    assert lengths == {(2, int(round((2.0 + 1.0) * SR)))}           # song + 1 s tail, stereo
    assert all(sf.info(str(out / "song_a" / f"{s}.wav")).subtype == "FLOAT" for s in stems)
    mixture = np.sum(list(stems.values()), axis=0)
    assert np.abs(mixture).max() == pytest.approx(0.9, abs=1e-5)  # one gain per song: mixture peak 0.9
    assert max(np.abs(a).max() for a in stems.values()) <= 0.9 + 1e-6
    assert all(np.sqrt(np.mean(a ** 2)) > 1e-3 for a in stems.values())
    # the stems add up to the whole file rendered at once (FluidSynth is linear per voice)
    record = json.loads((out / "song_a" / mr.SONG_RECORD).read_text())
    full = mr.fluidsynth_render(root / "song_a.mid", FLUID, tmp_path / "full.wav", _opts())
    full = full[:, :mixture.shape[1]] * record["gain"]
    assert np.linalg.norm(mixture - full) / np.linalg.norm(full) < 0.02


def test_bad_files_are_reported_and_skipped(rendered):
    _, out, report = rendered
    reasons = {Path(s["midi"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"corrupt.mid", "empty.mid", "no_notes.mid"}
    assert "no notes" in reasons["no_notes.mid"] and "empty" in reasons["empty.mid"]
    assert all(name in reason and "\n" not in reason for name, reason in reasons.items())
    assert report["rendered"] == 2 and sorted(p.name for p in out.iterdir()) == \
        ["render_report.json", "song_a", "sub_b"]                   # no partial leftovers
    assert report["stem_hours"] == pytest.approx((3.0 + 5.0) * 4 / 3600, rel=1e-3)


def test_rendering_is_deterministic_and_resumable(rendered, tmp_path):
    root, out, _ = rendered
    again = tmp_path / "again"
    report = mr.render_midi_dir(root, again, _opts(jobs=2), progress=False)   # parallel this time
    for song in ("song_a", "sub_b"):
        for f in sorted((out / song).iterdir()):
            assert f.read_bytes() == (again / song / f.name).read_bytes(), f"{song}/{f.name} differs"
    stamp = (again / "song_a" / "bass.wav").stat().st_mtime_ns
    resumed = mr.render_midi_dir(root, again, _opts(), progress=False)
    assert report["rendered"] == 2 and resumed["rendered"] == 0 and resumed["already_rendered"] == 2
    assert (again / "song_a" / "bass.wav").stat().st_mtime_ns == stamp


def test_max_seconds_flac_and_several_soundfonts(tmp_path):
    midi = tmp_path / "midi"
    midi.mkdir()
    write_song(midi / "long.mid", beats=8)                          # 4 s
    fonts = [tmp_path / "gm_one.sf2", tmp_path / "gm_two.sf2"]
    for font in fonts:
        font.symlink_to(FLUID)
    opts = _opts(soundfonts=[str(f) for f in fonts], max_seconds=1.5, format="flac")
    mr.render_midi_dir(midi, tmp_path / "out", opts, progress=False)
    for tag in ("gm_one", "gm_two"):
        song = tmp_path / "out" / f"long__{tag}"
        infos = [sf.info(str(p)) for p in sorted(song.glob("*.flac"))]
        assert len(infos) == 4 and {(i.frames, i.subtype) for i in infos} == {(int(1.5 * SR), "PCM_24")}


def test_source_rules_precedence_and_overrides():
    rules = _opts().rules
    assert rules.source_of(9, 33, "Lead Vocal") == "drums"           # drum channel first
    assert rules.source_of(0, 33, "Melody") == "vocals"              # then names
    assert rules.source_of(0, 33, "") == "bass"                      # then GM programs 33-40
    assert rules.source_of(0, 52, "") == "vocals"                    # Choir Aahs
    assert rules.source_of(0, 0, "Piano") == "other"
    custom = _opts(names={}, programs={"1-8": "skip", 34: "other"}, default="other").rules
    assert custom.source_of(0, 0, "Lead Vocal") == "skip" and custom.source_of(0, 33, "") == "other"


@pytest.mark.parametrize("bad, match", [
    ({"programs": {"0-3": "bass"}}, "within 1-128"),
    ({"names": {"(": "vocals"}}, "bad regex"),
    ({"default": "guitar"}, "not one of"),
    ({"format": "mp3"}, "format"),
    ({"soundfonts": ["/nonexistent/font.sf2"]}, "font.sf2"),
    ({"soundfonts": []}, "midi_render.soundfonts is empty"),
    ({"gain": 12}, "0 < gain < 10"),
    ({"sample_rate": 4000}, "8000-96000"),
])
def test_bad_options_are_one_line_errors(bad, match):
    with pytest.raises(FrugalError, match=match) as err:
        _opts(**bad)
    assert "\n" not in str(err.value)


def test_options_come_from_a_whole_section():
    """Unknown keys are the config's errors; a partial section is a one-line error, not a KeyError."""
    with pytest.raises(FrugalError, match="unknown config key 'speed'"):
        load_config(overrides=["midi_render.speed=2"])
    with pytest.raises(FrugalError, match="missing key 'tail_seconds'"):
        mr.RenderOptions.from_conf({k: v for k, v in SECTION.items() if k != "tail_seconds"})
    opts = _opts(gain=0.5, reverb=False)
    assert opts.synth == mr.SynthSettings(sample_rate=SR, gain=0.5, reverb=False, chorus=True)
    assert opts.soundfonts == [FLUID] and opts.jobs == 1 and opts.format == "wav"


def test_a_soundfont_fluidsynth_cannot_load_stops_the_run_before_any_song(tmp_path):
    # fluidsynth exits 0 on it and would quietly play its default soundfont instead
    broken = tmp_path / "broken.sf2"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00sfbk" + bytes(16))
    write_song(tmp_path / "x.mid")
    with pytest.raises(FrugalError, match="broken.sf2: unusable soundfont.*Failed to load"):
        mr.render_midi_dir(tmp_path, tmp_path / "out", _opts(soundfonts=[str(broken)]), progress=False)
    assert not (tmp_path / "out" / "x").exists()


def test_cli_renders_and_fails_cleanly(tmp_path):
    midi = tmp_path / "midi"
    midi.mkdir()
    write_song(midi / "x.mid")
    cmd = [sys.executable, str(REPO / "local" / "render_midi.py"), str(midi), str(tmp_path / "out"),
           "--sample_rate", str(SR), "--max_seconds", "1", "--set", "midi_render.reverb=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert sf.info(str(tmp_path / "out" / "x" / "drums.wav")).frames == SR
    (midi / "x.mid").write_bytes(b"not midi at all")
    cmd[3] = str(tmp_path / "out2")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "x.mid: not a readable MIDI file" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in proc.stderr


def test_stage1_reads_the_rendered_corpus(tmp_path):
    """midi_render.midi_dirs (stage 1's option) -> extra root that stage 1 lists and decodes."""
    from asteroid_frugal.config import load_config
    from asteroid_frugal.data.extra import decode_extra_song, iter_extra_songs, render_configured_midi_dirs

    midi = tmp_path / "midi"
    midi.mkdir()
    write_song(midi / "x.mid")
    conf = load_config(overrides=[f"data.root={tmp_path / 'data'}", f"midi_render.midi_dirs=[{midi}]",
                                  f"midi_render.sample_rate={SR}", "midi_render.max_seconds=1"])
    (root,) = render_configured_midi_dirs(conf, progress=False)
    assert root.parent == tmp_path / "data" / "midi_rendered"
    (song,) = list(iter_extra_songs(root, conf["slakh"]))   # .render.json and the report are ignored
    assert song.name == "x" and sorted(song.stems) == sorted(SOURCES)
    decoded = decode_extra_song(song, SR)
    assert {a.shape for a in decoded.values()} == {(2, SR)}
    assert render_configured_midi_dirs(load_config()) == []   # the option is off by default


def test_missing_soundfont_says_what_to_install(tmp_path):
    missing = tmp_path / "FluidR3_GM.sf2"
    with pytest.raises(FrugalError, match=f"{missing}: soundfont not found.*apt-get install fluid-soundfont-gm"
                                          ".*--soundfont"):
        _opts(soundfonts=[str(missing)])


def test_stage1_renders_midi_dirs_and_soundfont_renderings_share_a_split(tmp_path):
    """prepare_extra renders midi_render.midi_dirs itself; shaping sees those songs as extra data,
    and the renderings of one MIDI song with two soundfonts are never split across train/test."""
    from asteroid_frugal.data.extra import prepare_extra
    from asteroid_frugal.data.musdb_prep import prepare_musdb
    from asteroid_frugal.data.shaping import collect_songs
    from data_helpers import base_conf, make_hq_root

    midi = tmp_path / "midi"
    midi.mkdir()
    for i in range(8):
        write_song(midi / f"s{i}.mid", beats=2)
    fonts = [tmp_path / "gm_one.sf2", tmp_path / "gm_two.sf2"]
    for font in fonts:
        font.symlink_to(FLUID)
    hq = make_hq_root(tmp_path / "hq", {"a": ("train", 2.0), "b": ("test", 2.0)}, sr=SR)
    conf = base_conf(tmp_path / "data", data={"musdb_root": str(hq), "sample_rate": SR,
                                              "extra_test_fraction": 0.5},
                     midi_render={"midi_dirs": [str(midi)], "soundfonts": [str(f) for f in fonts],
                                  "sample_rate": SR, "max_seconds": 1})
    prepare_musdb(conf, progress=False)
    index = prepare_extra(conf, progress=False)
    assert len(index["songs"]) == 16 and index["skipped"] == []
    songs = collect_songs(conf, "drums")
    split_of = {}
    for split, items in songs.items():
        for s in items:
            if s.corpus == "extra":
                split_of.setdefault(s.name.rsplit("__", 1)[0], set()).add(split)
    assert len(split_of) == 8 and all(len(v) == 1 for v in split_of.values()), split_of
    assert {"train", "test"} <= set().union(*split_of.values())   # the hash does split the songs


# ------------------------------------------------------------------------------ a full disk
def test_a_render_cut_short_by_a_full_disk_is_never_a_song(tmp_path, monkeypatch):
    """FluidSynth exits 0 on a full disk, with a truncated file: not a render with a silent end."""
    def full_disk_render(cmd, **kw):
        Path(cmd[cmd.index("-F") + 1]).write_bytes(b"RIFF")
        return subprocess.CompletedProcess(cmd, 0, "", "fluidsynth: error: Audio file write error: System error : "
                                                       "No space left on device.\n")

    write_song(tmp_path / "song.mid")
    (tmp_path / "out").mkdir()
    monkeypatch.setattr(mr.subprocess, "run", full_disk_render)
    with pytest.raises(DiskFullError) as err:
        mr.render_song(tmp_path / "song.mid", FLUID, tmp_path / "out" / "song", _opts())
    # 4 sources, each a float stereo render (3 s and releases) and its stem (3 s), at 22.05 kHz
    assert str(err.value).startswith(f"{tmp_path / 'out' / 'song'}: disk full: needed 5.7 MB, ")
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.setattr(mr, "render_song", lambda *a: (_ for _ in ()).throw(DiskFullError("disk full")))
    with pytest.raises(DiskFullError):           # the run stops: every later song would fail too
        mr.render_midi_dir(tmp_path, tmp_path / "out", _opts(), progress=False)


def test_a_full_disk_stops_the_rendering_and_the_next_run_completes_it(tmp_path):
    midi = tmp_path / "midi"
    midi.mkdir()
    write_song(midi / "a.mid")
    write_song(midi / "b.mid")
    with small_disk(tmp_path / "disk", 6000) as disk:     # room for one song's renders and stems, 5.2 MB
        with pytest.raises(DiskFullError, match=f"^{disk}/out/b: disk full: needed 5.7 MB, [34].[0-9] MB free there"):
            mr.render_midi_dir(midi, disk / "out", _opts(), progress=False)
        assert [p.name for p in (disk / "out").iterdir()] == ["a"]          # no partial song, no work folder
        assert sorted(p.name for p in (disk / "out" / "a").iterdir()) == [
            mr.SONG_RECORD, "bass.wav", "drums.wav", "other.wav", "vocals.wav"]
        resize(disk, 12000)
        report = mr.render_midi_dir(midi, disk / "out", _opts(), progress=False)
        assert report["rendered"] == 1 and report["already_rendered"] == 1 and not report["skipped"]
