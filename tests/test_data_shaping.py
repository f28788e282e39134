"""Stage 2 shaping, the datasets over its manifests (through training's loader), and the manifest report."""
import numpy as np
import pytest
import soundfile as sf
import torch

from asteroid_frugal.cli.shape_trainset import main
from asteroid_frugal.data.datasets import Augment, ExcerptDataset, load_shaping, read_manifest
from asteroid_frugal.data.extra import prepare_extra, root_id
from asteroid_frugal.data.layout import write_track
from asteroid_frugal.data.shaping import assign_extra_split, excerpt_starts, shape
from asteroid_frugal.data.types import SOURCES
from asteroid_frugal.reports.data import manifest_report
from asteroid_frugal.utils import FrugalError
from data_helpers import base_conf, stem_signal, write_wav

SR = 4410                     # low rate keeps the songs small; the level frame is then 441 samples
LENGTHS = [31, 33, 35, 38, 40, 45, 50, 32, 36, 42, 12, 34, 37, 39, 41, 44, 47, 30, 48, 55]   # seconds


def _song(seconds, seed, silent=None):
    return {s: stem_signal(s, seconds, SR, seed=seed, silent=silent if s == "vocals" else None)
            for s in SOURCES}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A prepared corpus at 4410 Hz: 20 train songs (one 12 s), 2 valid, 2 test; written directly."""
    data = tmp_path_factory.mktemp("shaping") / "data"
    root = data / "prepared" / f"default_{SR}"
    for i, sec in enumerate(LENGTHS):
        write_track(root / "train" / f"Song {i:02d}", _song(sec, i), dict(name=f"Song {i:02d}", split="train",
                                                                          sample_rate=SR))
    for split, secs in (("valid", (25, 9)), ("test", (21, 30))):
        for j, sec in enumerate(secs):
            name = f"{split} {j}"
            write_track(root / split / name, _song(sec, 100 + j, silent=(0, 10)), dict(name=name, split=split,
                                                                                       sample_rate=SR))
    return data


def _conf(data, **shaping):
    conf = base_conf(data, data={"sample_rate": SR, "valid_chunk_seconds": 10}, shaping=shaping)
    return conf


def _train(data, tmp_path, name, **shaping):
    summary = shape(_conf(data, **shaping), tmp_path / name)
    return summary, read_manifest(tmp_path / name / "data" / "train.csv")


def test_fractions_are_nested(corpus, tmp_path):
    sets = []
    for frac in (0.1, 0.25, 0.5, 1.0):
        summary, rows = _train(corpus, tmp_path, f"f{frac}", database_fraction=frac, excerpt_seconds=20)
        assert summary["fraction_songs"] == max(1, round(frac * 20))
        sets.append({r["song"] for r in rows} | {s["song"].split("/")[-1] for s in summary["skipped"]})
    for small, big in zip(sets, sets[1:]):
        assert small < big
    full = load_shaping(tmp_path / "f1.0")
    assert full["n_songs"] == 19 and [s["song"] for s in full["skipped"]] == [f"default_{SR}/Song 10"]
    assert "shorter than 20.0 s" in full["skipped"][0]["reason"]


def test_excerpt_lengths_share_songs_and_centres(corpus, tmp_path):
    centres = {}
    for sec in (5, 10, 20, 30):
        summary, rows = _train(corpus, tmp_path, f"l{sec}", excerpt_seconds=sec, min_song_seconds=30)
        assert {r["length"] for r in rows} == {sec * SR}
        centres[sec] = {r["song"]: r["start"] + r["length"] / 2 for r in rows}
    assert len(centres[5]) == 19
    for sec in (10, 20, 30):
        assert centres[sec].keys() == centres[5].keys()
        for song, c in centres[sec].items():
            assert abs(c - centres[5][song]) <= 1


def test_excerpt_starts_are_non_overlapping_and_inside():
    n, length = 100_000, 9_000
    starts = excerpt_starts(n, length, 3, 12_000, [0.0, 0.5, 0.999])
    assert all(0 <= s and s + length <= n for s in starts)
    assert all(b - a >= length for a, b in zip(starts, starts[1:]))
    assert excerpt_starts(20_000, 5_000, 1, 30_000, [0.7]) == [7_500]   # shorter than align: middle


def test_several_excerpts_per_song(corpus, tmp_path):
    summary, rows = _train(corpus, tmp_path, "k3", excerpt_seconds=10, excerpts_per_song=3)
    by_song = {}
    for r in rows:
        by_song.setdefault(r["song"], []).append(r["start"])
    assert len(by_song["Song 00"]) == 3                   # 31 s: room for three 10 s excerpts
    assert len(by_song["Song 10"]) == 1                   # 12 s: room for one, reported
    assert any("room for 1 of 3" in s["reason"] for s in summary["skipped"])
    for starts in by_song.values():
        starts.sort()
        assert all(b - a >= 10 * SR for a, b in zip(starts, starts[1:]))


def test_equal_total_audio_arithmetic(corpus, tmp_path):
    ref = None
    for sec in (10, 20, 40):
        summary, rows = _train(corpus, tmp_path, f"eq{sec}", equal_total_audio=True, database_fraction=0.5,
                               reference_seconds=20, excerpt_seconds=sec)
        assert summary["n_songs"] == len(rows) == 10 * 20 // sec
        assert summary["n_songs"] * sec == 200                     # songs x excerpt length constant
        assert summary["batch_size"] * sec == 4 * 20               # audio per batch constant
        ref = ref or {r["song"] for r in rows}
    with pytest.raises(FrugalError, match="need 40 songs"):
        _train(corpus, tmp_path, "eq5", equal_total_audio=True, database_fraction=0.5, excerpt_seconds=5)


def test_short_songs_padded_when_asked(corpus, tmp_path):
    summary, rows = _train(corpus, tmp_path, "pad", excerpt_seconds=20, short_songs="pad")
    (row,) = [r for r in rows if r["song"] == "Song 10"]
    assert row["start"] == 0 and row["length"] == 20 * SR
    ds = ExcerptDataset(tmp_path / "pad" / "data" / "train.csv", "vocals", n_channels=2)
    mix, targets = ds[rows.index(row)]
    assert mix.shape == (2, 20 * SR)
    assert targets[:, :, 12 * SR:].abs().max() == 0 and targets[:, :, :12 * SR].abs().max() > 0


def test_energy_filter_moves_or_drops_silent_excerpts(tmp_path):
    data = tmp_path / "data"
    root = data / "prepared" / f"default_{SR}"
    write_track(root / "train" / "mostly silent", _song(40, 1, silent=(0, 38)), dict(name="mostly silent", sample_rate=SR))
    write_track(root / "train" / "late vocals", _song(40, 2, silent=(0, 25)), dict(name="late vocals", sample_rate=SR))
    write_track(root / "valid" / "v", _song(12, 3), dict(name="v", sample_rate=SR))
    off, rows = _train(data, tmp_path, "off", excerpt_seconds=10, align_seconds=10)
    assert min(r["target_active"] for r in rows) < 0.2
    on, rows = _train(data, tmp_path, "on", excerpt_seconds=10, align_seconds=10, energy_filter=True,
                      max_silent_fraction=0.5)
    assert [r["song"] for r in rows] == ["late vocals"] and rows[0]["target_active"] >= 0.5
    assert on["skipped"][0]["reason"].startswith("target silent")


def test_valid_and_test_chunks_cover_tracks(corpus, tmp_path):
    _train(corpus, tmp_path, "cov")
    for split, secs in (("valid", (25, 9)), ("test", (21, 30))):
        rows = read_manifest(tmp_path / "cov" / "data" / f"{split}.csv")
        assert {r["length"] for r in rows} == {10 * SR}
        for j, sec in enumerate(secs):
            mine = [r for r in rows if r["song"] == f"{split} {j}"]
            covered = np.zeros(sec * SR, bool)
            for r in mine:
                covered[r["start"]:r["start"] + r["length"]] = True
            assert covered.all()
    valid = read_manifest(tmp_path / "cov" / "data" / "valid.csv")
    assert [r["start"] for r in valid if r["song"] == "valid 0"] == [0, 10 * SR, 15 * SR]
    assert valid[0]["target_active"] == 0.0          # first 10 s of vocals are silent


def test_rerun_is_idempotent_and_records_everything(corpus, tmp_path):
    main(["--set", f"data.root={corpus}", "--set", f"data.sample_rate={SR}", "--exp_dir", str(tmp_path / "a"),
          "--no_report"])                                                          # the stage's command
    first = {p.name: p.read_bytes() for p in (tmp_path / "a" / "data").iterdir()}
    main(["--set", f"data.root={corpus}", "--set", f"data.sample_rate={SR}", "--exp_dir", str(tmp_path / "a"),
          "--no_report"])
    assert {p.name: p.read_bytes() for p in (tmp_path / "a" / "data").iterdir()} == first
    assert set(first) == {"train.csv", "valid.csv", "test.csv", "shaping.json", "conf.yml"}
    info = load_shaping(tmp_path / "a")
    assert info["target"] == "vocals" and info["seed"] == 42 and info["batch_size"] == 4
    assert info["choices"]["excerpt_seconds"] == 20 and info["n_excerpts"] == 19


def test_dataset_items_mixture_is_sum_of_stems(corpus, tmp_path):
    _train(corpus, tmp_path, "ds", excerpt_seconds=10)
    ds = ExcerptDataset(tmp_path / "ds" / "data" / "train.csv", "bass", n_channels=2)
    assert len(ds) == 20 and ds.sample_rate == SR        # the 12 s song fits a 10 s excerpt
    mix, targets = ds[3]
    assert mix.dtype == targets.dtype == torch.float32
    assert targets.shape == (2, 2, 10 * SR)
    assert torch.equal(mix, targets.sum(0))
    info = ds.get_infos(3)
    stems = {s: sf.read(f"{info['track_dir']}/{s}.wav", dtype="float32", start=info["start"],
                        frames=info["length"])[0].T for s in SOURCES}
    np.testing.assert_array_equal(targets[0].numpy(), stems["bass"])
    np.testing.assert_allclose(targets[1].numpy(), stems["vocals"] + stems["drums"] + stems["other"], atol=1e-6)
    mono = ExcerptDataset(tmp_path / "ds" / "data" / "valid.csv", "vocals", n_channels=1)
    assert mono[0][1].shape == (2, 1, 10 * SR)
    aug = ExcerptDataset(tmp_path / "ds" / "data" / "train.csv", "bass", n_channels=2,
                         augment=Augment(gain=True, gain_range=(0.25, 1.25), channel_swap=True, remix=True,
                                         eq_db=6.0, stereo=True, stereo_delay_s=0.001, stereo_width_range=(0.0, 1.5)))
    torch.manual_seed(0)
    mix, targets = aug[3]
    assert torch.equal(mix, targets.sum(0))


def test_report_counts_hours_and_silence(corpus, tmp_path):
    _train(corpus, tmp_path, "rep", excerpt_seconds=10)
    rep = manifest_report(tmp_path / "rep" / "data" / "valid.csv")
    assert rep["songs"] == 2 and rep["excerpts"] == 4
    assert rep["hours"] == pytest.approx(40 / 3600)
    assert rep["hours_per_source"]["vocals"] == pytest.approx(40 / 3600)
    # valid 0 (25 s): chunks 0-10 silent, 10-20 and 15-25 voiced; valid 1 (9 s): one padded chunk, silent
    assert rep["silent_target_share"] == pytest.approx((10 + 0 + 0 + 10) / 40, abs=0.02)


def test_extra_songs_join_train_and_test_splits(corpus, tmp_path):
    stems = tmp_path / "stems"
    for i in range(30):
        write_wav(stems / f"x{i:02d}" / "vocals.wav", stem_signal("vocals", 11, SR, seed=i), SR)
        write_wav(stems / f"x{i:02d}" / "bass.wav", stem_signal("bass", 11, SR, seed=i), SR)
    write_wav(stems / "karaoke" / "vocals.wav", stem_signal("vocals", 11, SR), SR)
    write_wav(stems / "karaoke" / "accompaniment.wav", stem_signal("accompaniment", 11, SR), SR)
    conf = _conf(corpus, excerpt_seconds=10)
    conf["data"]["extra_roots"] = [str(stems)]
    conf["data"]["extra_test_fraction"] = 0.3
    with pytest.raises(FrugalError, match="run stage 1"):
        shape(conf, tmp_path / "x")
    prepare_extra(conf, progress=False)
    voc = shape(conf, tmp_path / "xv")
    conf["data"]["target"] = "bass"
    bass = shape(conf, tmp_path / "xb")
    assert voc["test"]["extra_tracks"] > 0 and bass["test"]["extra_tracks"] > 0 and voc["n_songs"] > 19
    split = {f"x{i:02d}": assign_extra_split(f"extra/{root_id(stems)}/x{i:02d}", 0.3, 0.0, seed=0)
             for i in range(30)}
    for exp, target in (("xv", "vocals"), ("xb", "bass")):
        test_rows = read_manifest(tmp_path / exp / "data" / "test.csv")
        assert {r["song"] for r in test_rows if r["corpus"] == "extra"} == \
            {k for k, v in split.items() if v == "test"} | ({"karaoke"} & {r["song"] for r in test_rows})
    ds = ExcerptDataset(tmp_path / "xv" / "data" / "train.csv", "vocals", n_channels=2)
    rows = ds.rows
    if any(r["song"] == "karaoke" for r in rows):   # rest = the accompaniment file
        i = [r["song"] for r in rows].index("karaoke")
        acc = sf.read(rows[i]["track_dir"] + "/accompaniment.wav", dtype="float32", start=rows[i]["start"],
                      frames=rows[i]["length"])[0].T
        np.testing.assert_array_equal(ds[i][1][1].numpy(), acc)


def test_training_set_applies_the_configured_augmentations(corpus, tmp_path):
    """shaping.augment_* reach training (train.load_datasets): the training items differ from the
    manifest's audio exactly as each option says; validation items never change."""
    from asteroid_frugal.train import load_datasets

    exp = tmp_path / "aug"
    conf = _conf(corpus, excerpt_seconds=5)
    shape(conf, exp)
    plain_train, plain_valid = load_datasets(conf, exp)
    assert plain_train.augment is None

    def stems(i):
        return [t.numpy() for t in plain_train[i][1]]

    conf["shaping"].update(augment_gain=True, augment_gain_range=[0.5, 0.5], augment_channel_swap=True)
    train_set, valid_set = load_datasets(conf, exp)
    torch.manual_seed(0)
    swapped = 0
    for i in range(len(train_set)):
        mix, targets = train_set[i]
        assert torch.equal(mix, targets.sum(0))
        for got, ref in zip(targets.numpy(), stems(i)):
            if np.allclose(got, 0.5 * ref[::-1]) and not np.allclose(got, 0.5 * ref):
                swapped += 1
            else:
                np.testing.assert_allclose(got, 0.5 * ref, atol=1e-7)
    assert 0 < swapped < 2 * len(train_set)       # each stem swapped with probability 1/2
    assert valid_set.augment is None
    assert torch.equal(valid_set[0][1], plain_valid[0][1])

    conf["shaping"].update(augment_gain=False, augment_channel_swap=False, augment_remix=True)
    train_set, _ = load_datasets(conf, exp)
    rests = [stems(i)[1] for i in range(len(plain_train))]
    torch.manual_seed(0)
    other_song = 0
    for i in range(len(train_set)):
        target, rest = train_set[i][1].numpy()
        np.testing.assert_array_equal(target, stems(i)[0])     # the target stays the row's own
        match = [j for j, r in enumerate(rests) if np.array_equal(rest, r)]
        assert match                                            # the rest is some row's rest...
        other_song += i not in match                            # ...mostly another song's
    assert other_song > 0

    def pairs(**settings):
        """(augmented, plain) stem pairs of every training item, with ``settings`` on."""
        conf["shaping"].update({"augment_remix": False, "augment_eq_db": 0, "augment_stereo": False,
                                "augment_speed": 0.0, **settings})
        train_set, _ = load_datasets(conf, exp)
        torch.manual_seed(0)
        for i in range(len(train_set)):
            mix, targets = train_set[i]
            assert torch.equal(mix, targets.sum(0))
            yield from ((got, ref) for got, ref in zip(targets.numpy(), stems(i)) if np.any(ref))

    for got, ref in pairs(augment_eq_db=6.0):
        assert not np.allclose(got, ref, atol=1e-4)                     # each stem re-equalised...
        assert abs(10 * np.log10((got ** 2).sum() / (ref ** 2).sum())) <= 6.0 + 1e-3   # ...within +-6 dB
    for got, ref in pairs(augment_stereo=True):   # each stem a new stereo image, its mid (mono sum) only delayed
        assert not np.allclose(got, ref, atol=1e-4)
        assert abs(np.sum(got.sum(0) ** 2) / np.sum(ref.sum(0) ** 2) - 1) < 0.5
    for got, ref in pairs(augment_speed=0.2):     # each stem played faster or slower: its spectrum moves
        assert not np.allclose(got, ref, atol=1e-4)
        centroid = [np.sum(np.arange(a.shape[-1] // 2 + 1) * np.abs(np.fft.rfft(a.sum(0))) ** 2)
                    / np.sum(np.abs(np.fft.rfft(a.sum(0))) ** 2) for a in (got, ref)]
        assert 1 / 1.25 < centroid[0] / centroid[1] < 1.25

    conf["shaping"].update(augment_gain=True, augment_gain_range=[1.5, 0.5])
    with pytest.raises(FrugalError, match="augment_gain_range"):
        load_datasets(conf, exp)
    conf["shaping"].update(augment_gain_range=[0.5, 1.5], augment_stereo_width_range=[1.0, 0.5])
    with pytest.raises(FrugalError, match="augment_stereo_width_range"):
        load_datasets(conf, exp)


