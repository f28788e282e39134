"""The MUSDB18-shaped rehearsal set: MUSDB18's plan (splits, validation names, lengths), files musdb
reads with its own split, stage 0 prepares them, complete-or-absent songs, resumable."""
import numpy as np
import pytest

from asteroid_frugal.config import load_config
from asteroid_frugal.data import rehearsal
from asteroid_frugal.data.layout import list_tracks, prepared_root, read_track_meta
from asteroid_frugal.data.musdb_prep import prepare_musdb
from asteroid_frugal.data.types import MIXTURE, SOURCES
from asteroid_frugal.utils import FrugalError

musdb = pytest.importorskip("musdb")
TINY = ["rehearsal.songs=4", "rehearsal.length_scale=0.012", "rehearsal.jobs=1", "rehearsal.block_seconds=0.5"]


def tiny_conf(tmp_path, *extra):
    return load_config(overrides=TINY + [f"data.root={tmp_path / 'data'}", *extra])


def test_full_plan_is_musdb18_shaped():
    params = rehearsal.RehearsalParams.from_conf(load_config())
    songs = rehearsal.plan(params)
    by_split = {s: [x for x in songs if x.split == s] for s in ("train", "valid", "test")}
    assert [len(v) for v in by_split.values()] == [86, 14, 50]
    assert {x.subset for x in by_split["valid"]} == {"train"}
    assert [x.name for x in by_split["valid"]] == rehearsal.musdb_setup()["validation_tracks"]
    seconds = np.array([x.n_samples for x in songs]) / 44100
    assert 120 <= seconds.min() < 150 and 380 < seconds.max() <= 420
    assert 9.5 < seconds.sum() / 3600 < 10.5
    for split in ("train", "test"):   # the seeded order gives every split short and long songs
        part = np.array([x.n_samples for x in by_split[split]]) / 44100
        assert part.min() < 180 and part.max() > 330
    assert len({x.name for x in songs}) == 150
    assert rehearsal.stream_order() == [MIXTURE, "drums", "bass", "other", "vocals"]   # musdb's stem_ids


@pytest.mark.parametrize("n, counts", [(3, (1, 1, 1)), (4, (2, 1, 1)), (12, (7, 1, 4))])
def test_small_sets_keep_one_song_per_split(n, counts):
    assert rehearsal.split_counts(n) == counts


def test_stem_set_read_by_musdb_with_its_split_and_prepared_by_stage_0(tmp_path):
    root = tmp_path / "rehearsal"
    conf = tiny_conf(tmp_path, f"data.musdb_root={root}")
    summary = rehearsal.make_rehearsal(conf, root, progress=False)
    assert summary["written_this_run"] == 4 and not (root / rehearsal.POOL_DIR).exists()
    planned = {t["name"]: t for t in summary["tracks"]}
    listed = {split: musdb.DB(root=str(root), subsets=sub, split=split).tracks
              for split, sub in (("train", "train"), ("valid", "train"), (None, "test"))}
    listed["test"] = listed.pop(None)
    assert {k: len(v) for k, v in listed.items()} == {"train": 2, "valid": 1, "test": 1}
    assert listed["valid"][0].name == "Actions - One Minute Smile"
    track = listed["test"][0]
    assert abs(track.duration - planned[track.name]["seconds"]) < 0.05 and track.rate == 44100
    assert track.stems.shape[0] == 5 and track.stems.shape[2] == 2
    # the decoded vocals stream is the song's planned vocals (AAC: > 15 dB SNR, same alignment)
    params = rehearsal.RehearsalParams.from_conf(conf)
    song = next(s for s in rehearsal.plan(params) if s.name == track.name)
    pool = [np.load(p) for p in rehearsal.make_pool(tmp_path / "pool", params)]
    ref = np.concatenate(list(rehearsal.song_blocks(pool, song, params.seed, 22050)), axis=-1)[SOURCES.index("vocals")]
    got = track.sources["vocals"].audio.T[:, :ref.shape[-1]]
    assert 10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum()) > 15

    prepared = prepare_musdb(conf, progress=False)
    assert prepared["tracks"] == {"train": 2, "valid": 1, "test": 1} and not prepared["skipped"]
    meta = read_track_meta(list_tracks(prepared_root(conf) / "test")[0])
    assert meta["has_mixture"] and meta["sample_rate"] == 44100


def test_hq_layout_read_by_musdb(tmp_path):
    root = tmp_path / "hq"
    rehearsal.make_rehearsal(tiny_conf(tmp_path, "rehearsal.songs=3", "rehearsal.format=hq"), root, progress=False)
    tracks = musdb.DB(root=str(root), is_wav=True, subsets="train").tracks
    assert len(tracks) == 2
    folder = root / "train" / tracks[0].name
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.wav" for s in (MIXTURE,) + SOURCES)
    mix = tracks[0].audio
    assert np.abs(mix - sum(tracks[0].sources[s].audio for s in SOURCES)).max() < 1e-3   # 16-bit rounding


def test_resumes_skipping_finished_songs_and_removes_partial_ones(tmp_path, monkeypatch):
    root = tmp_path / "rehearsal"
    conf = tiny_conf(tmp_path, "rehearsal.songs=3")
    real, calls = rehearsal.write_song, {"n": 0}

    def dies_on_second(job):
        calls["n"] += 1
        if calls["n"] == 2:   # killed while writing: a temporary file is all that is left of it
            path = job[1].path(job[0], "stem")
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / f".tmp-{path.name}").write_bytes(b"partial")
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(rehearsal, "write_song", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        rehearsal.make_rehearsal(conf, root, progress=False)
    done = [p for p in root.rglob("*.stem.mp4") if not p.name.startswith(".")]
    assert len(done) == 1
    stamp = done[0].stat().st_mtime_ns
    monkeypatch.setattr(rehearsal, "write_song", real)
    summary = rehearsal.make_rehearsal(conf, root, progress=False)
    assert summary["written_this_run"] == 2 and done[0].stat().st_mtime_ns == stamp
    assert not list(root.rglob(".tmp-*")) and len(list(root.rglob("*.stem.mp4"))) == 3


def test_other_settings_or_foreign_folder_refused(tmp_path):
    root = tmp_path / "rehearsal"
    rehearsal.make_rehearsal(tiny_conf(tmp_path, "rehearsal.songs=3"), root, progress=False)
    with pytest.raises(FrugalError, match="other settings.*songs"):
        rehearsal.make_rehearsal(tiny_conf(tmp_path), root, progress=False)
    (tmp_path / "music" / "x").mkdir(parents=True)
    with pytest.raises(FrugalError, match="not a rehearsal set"):
        rehearsal.make_rehearsal(tiny_conf(tmp_path), tmp_path / "music", progress=False)
    with pytest.raises(FrugalError, match="at least 3"):
        rehearsal.RehearsalParams.from_conf(load_config(overrides=["rehearsal.songs=2"]))


def test_subset_takes_each_splits_longest_first():
    params = rehearsal.RehearsalParams.from_conf(load_config(overrides=["rehearsal.subset=6"]))
    songs = rehearsal.plan(params)
    picked = rehearsal.subset_of(songs, 6)
    assert [s.split for s in picked] == ["train"] * 3 + ["valid"] + ["test"] * 2
    for split in ("train", "valid", "test"):
        assert max(s.n_samples for s in picked if s.split == split) == max(s.n_samples for s in songs if s.split == split)
    assert min(s.n_samples for s in picked if s.split == "test") == min(s.n_samples for s in songs if s.split == "test")
