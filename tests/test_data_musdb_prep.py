"""Stage 0: MUSDB18-HQ and MUSDB18 (.stem.mp4) roots, splits from musdb, atomic resumable tracks
(a full disk stops the stage in one line)."""
import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asteroid_frugal.cli.prepare_data import main
from asteroid_frugal.data import layout
from asteroid_frugal.data.layout import list_tracks, prepared_root, read_track_meta
from asteroid_frugal.data.musdb_prep import prepare_musdb
from asteroid_frugal.utils import DiskFullError, FrugalError
from data_helpers import base_conf, make_hq_root, write_wav

VALID_NAME = "Actions - One Minute Smile"   # in musdb's own validation list


@pytest.fixture
def hq_root(tmp_path):
    return make_hq_root(tmp_path / "hq", {
        "Artist A - Song One": ("train", 3.0),
        VALID_NAME: ("train", 2.0),
        "Artist B - Song Two": ("test", 2.5),
    })


def test_hq_root_splits_from_musdb_and_lossless(hq_root, tmp_path):
    conf = base_conf(tmp_path / "data", data={"musdb_root": str(hq_root)})
    summary = prepare_musdb(conf, progress=False)
    root = prepared_root(conf)
    assert root.name == "musdb18hq"
    assert summary["tracks"] == {"train": 1, "valid": 1, "test": 1}
    assert [p.name for p in list_tracks(root / "valid")] == [VALID_NAME]   # musdb's list, not ours
    assert [p.name for p in list_tracks(root / "train")] == ["Artist A - Song One"]
    track = root / "test" / "Artist B - Song Two"
    meta = read_track_meta(track)
    assert meta["n_samples"] == int(2.5 * 44100) and meta["sample_rate"] == 44100
    assert meta["sources"] == ["vocals", "drums", "bass", "other"] and meta["format"] == "PCM_16"
    for s in ("vocals", "drums", "bass", "other", "mixture"):
        ref, _ = sf.read(str(hq_root / "test" / "Artist B - Song Two" / f"{s}.wav"), dtype="float32")
        got, _ = sf.read(str(track / f"{s}.wav"), dtype="float32")
        np.testing.assert_array_equal(got, ref)
    assert (track / "levels.npz").is_file()


def test_rerun_skips_prepared_and_redoes_changed(hq_root, tmp_path):
    conf = base_conf(tmp_path / "data", data={"musdb_root": str(hq_root)})
    prepare_musdb(conf, progress=False)
    track = prepared_root(conf) / "train" / "Artist A - Song One"
    stamp = (track / "track.json").stat().st_mtime_ns
    again = prepare_musdb(conf, progress=False)
    assert again["reused"] == 3 and (track / "track.json").stat().st_mtime_ns == stamp
    # a changed input file makes that track stale
    write_wav(hq_root / "train" / "Artist A - Song One" / "vocals.wav", np.zeros((2, 3 * 44100), np.float32))
    third = prepare_musdb(conf, progress=False)
    assert third["reused"] == 2
    assert np.abs(sf.read(str(track / "vocals.wav"))[0]).max() == 0


def test_interrupted_track_never_counts_as_prepared(hq_root, tmp_path, monkeypatch):
    conf = base_conf(tmp_path / "data", data={"musdb_root": str(hq_root)})
    calls = {"n": 0}
    real_write = layout.sf.write

    def failing_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt   # killed while writing the first track's third file
        return real_write(*args, **kwargs)

    monkeypatch.setattr(layout.sf, "write", failing_write)
    monkeypatch.setattr(layout, "_try_link", lambda src, dst: False)
    with pytest.raises(KeyboardInterrupt):
        prepare_musdb(conf, progress=False)
    root = prepared_root(conf)
    leftovers = [p for p in root.rglob("*") if p.is_dir() and p.parent.name in ("train", "valid", "test")]
    assert leftovers == []      # no half-written track dir, no temporary left behind
    monkeypatch.setattr(layout.sf, "write", real_write)
    assert prepare_musdb(conf, progress=False)["tracks"] == {"train": 1, "valid": 1, "test": 1}


def test_corrupt_track_is_skipped_and_reported(hq_root, tmp_path):
    (hq_root / "train" / "Artist A - Song One" / "bass.wav").write_bytes(b"RIFF\x00\x00not audio")
    conf = base_conf(tmp_path / "data", data={"musdb_root": str(hq_root)})
    summary = prepare_musdb(conf, progress=False)
    assert summary["tracks"]["train"] == 0 and summary["tracks"]["test"] == 1
    (skip,) = summary["skipped"]
    assert skip["track"] == "Artist A - Song One" and "bass.wav" in skip["reason"]
    assert json.loads((prepared_root(conf) / "corpus.json").read_text())["skipped"] == summary["skipped"]


def test_not_a_musdb_root_is_a_clear_error(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    conf = base_conf(tmp_path / "data", data={"musdb_root": str(tmp_path / "empty")})
    with pytest.raises(FrugalError, match="not a MUSDB18 root"):
        prepare_musdb(conf, progress=False)


def test_real_stem_mp4_through_stage0(tmp_path):
    stempeg = pytest.importorskip("stempeg")
    src = stempeg.example_stem_path()
    root = tmp_path / "musdb18"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    shutil.copy(src, root / "test" / "The Easton Ellises - Falcon 69.stem.mp4")
    data = tmp_path / "data"
    summary = main(["--set", f"data.root={data}", "--musdb_root", str(root), "--no_progress"])   # the CLI's main
    assert summary["tracks"] == {"train": 0, "valid": 0, "test": 1} and not summary["skipped"]
    track = data / "prepared" / "musdb18" / "test" / "The Easton Ellises - Falcon 69"
    meta = read_track_meta(track)
    assert meta["n_samples"] == 268288 and meta["has_mixture"]
    stems, rate = stempeg.read_stems(src, ffmpeg_format="s16le")   # 0 mixture, 1 drums, 2 bass, 3 other, 4 vocals
    for i, name in enumerate(("mixture", "drums", "bass", "other", "vocals")):
        got, sr = sf.read(str(track / f"{name}.wav"), dtype="float32")
        assert sr == rate == 44100
        np.testing.assert_allclose(got, stems[i][:len(got)], atol=1e-4)
    # the stored mixture is musdb's mixture stream, which is not the sum of the stems
    mix = sf.read(str(track / "mixture.wav"))[0]
    total = sum(sf.read(str(track / f"{s}.wav"))[0] for s in ("vocals", "drums", "bass", "other"))
    assert np.sqrt(((mix - total) ** 2).mean() / (mix ** 2).mean()) > 0.05


def test_unreadable_mixture_header_is_a_logged_skip_naming_the_file(hq_root, tmp_path):
    (hq_root / "test" / "Artist B - Song Two" / "mixture.wav").write_bytes(b"garbage")
    conf = base_conf(tmp_path / "data", data={"musdb_root": str(hq_root)})
    summary = prepare_musdb(conf, progress=False)  # the other tracks are still prepared
    assert summary["tracks"] == {"train": 1, "valid": 1, "test": 0}
    (skip,) = summary["skipped"]
    assert "Artist B - Song Two/mixture.wav: unreadable audio header" in skip["reason"]


def test_nan_in_a_musdb18hq_stem_is_a_logged_skip(tmp_path):
    root = make_hq_root(tmp_path / "hq", {"A - One": ("train", 1.0), "B - Two": ("test", 1.0)})
    drums = sf.read(str(root / "test" / "B - Two" / "drums.wav"), dtype="float32")[0].T
    drums[0, 5] = np.inf
    write_wav(root / "test" / "B - Two" / "drums.wav", drums, subtype="FLOAT")
    summary = prepare_musdb(base_conf(tmp_path / "data", data={"musdb_root": str(root)}), progress=False)
    assert summary["tracks"]["test"] == 0 and summary["tracks"]["train"] == 1
    (skip,) = summary["skipped"]
    assert skip["track"] == "B - Two" and skip["reason"].endswith("drums.wav: contains 1 NaN or infinite sample(s)")


def test_one_unreadable_stem_mp4_is_a_logged_skip(tmp_path, caplog):
    stempeg = pytest.importorskip("stempeg")
    root = tmp_path / "musdb18"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "test" / "The Easton Ellises - Falcon 69.stem.mp4").write_bytes(
        Path(stempeg.example_stem_path()).read_bytes())
    broken = root / "test" / "Broken - Download.stem.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64)  # a damaged download: no readable header
    summary = prepare_musdb(base_conf(tmp_path / "data", data={"musdb_root": str(root)}), progress=False)
    assert summary["tracks"] == {"train": 0, "valid": 0, "test": 1}
    (skip,) = summary["skipped"]
    assert skip["track"] == "Broken - Download" and skip["reason"].startswith(f"{broken}: unreadable audio header")
    assert any("skipping Broken - Download" in r.getMessage() for r in caplog.records)


def test_a_full_disk_stops_stage0_in_one_line_instead_of_skipping_every_track(hq_root, tmp_path, monkeypatch):
    conf = base_conf(tmp_path / "data", data={"musdb_root": str(hq_root)})
    real_savez, calls = layout.np.savez, []

    def full_on_the_second_track(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(path, *args, **kwargs)

    monkeypatch.setattr(layout.np, "savez", full_on_the_second_track)
    with pytest.raises(DiskFullError, match=r": disk full: needed [\d.]+ kB, "):   # stems linked: levels, record
        prepare_musdb(conf, progress=False)
    root = prepared_root(conf)
    assert len([t for s in ("train", "valid", "test") for t in list_tracks(root / s)]) == 1
    assert not (root / "corpus.json").exists() and not [p for p in root.rglob(".*")]   # no skip list, no partial
    monkeypatch.undo()
    summary = prepare_musdb(conf, progress=False)
    assert summary["tracks"] == {"train": 1, "valid": 1, "test": 1} and summary["reused"] == 1


def test_stem_mp4_streams_decode_to_musdbs_samples_in_bounded_memory(tmp_path):
    """decode_stream gives musdb's samples (float32, bit for bit) without musdb's float64 copies:
    the peak of decoding a whole track is the five float32 streams plus one stream's transients
    (36 bytes per sample and channel through musdb's .audio, 20 of them held; 28 now)."""
    import tracemalloc

    import musdb
    stempeg = pytest.importorskip("stempeg")
    from asteroid_frugal.data.musdb_prep import decode_stream, decode_track

    root = tmp_path / "musdb18"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    shutil.copy(stempeg.example_stem_path(), root / "test" / "The Easton Ellises - Falcon 69.stem.mp4")
    track = musdb.DB(root=str(root), subsets="test").tracks[0]
    vocals = track.sources["vocals"]
    np.testing.assert_array_equal(decode_stream(track, vocals.stem_id),
                                  np.asarray(vocals.audio, dtype=np.float32).T)
    tracemalloc.start()
    stems, mixture = decode_track(track, 44100)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 32 * mixture.size and set(stems) == {"vocals", "drums", "bass", "other"}


def test_one_song_in_memory_at_a_time(hq_root, tmp_path, monkeypatch):
    """A track's audio is freed before the next track is decoded (stage 0's peak is one song's,
    not the previous song's plus the next one's)."""
    import weakref

    from asteroid_frugal.data import musdb_prep

    real, previous, held = musdb_prep.decode_track, [], []

    def decode(track, sample_rate):
        held.append(any(r() is not None for r in previous))   # the previous track's arrays still alive?
        stems, mixture = real(track, sample_rate)
        previous[:] = [weakref.ref(mixture)] + [weakref.ref(a) for a in stems.values()]
        return stems, mixture

    monkeypatch.setattr(musdb_prep, "decode_track", decode)
    prepare_musdb(base_conf(tmp_path / "data", data={"musdb_root": str(hq_root)}), progress=False)
    assert held == [False, False, False]
