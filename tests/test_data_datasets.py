"""Datasets over stage-2 manifests: manifests round-trip, items read only their excerpt, the rest is
the other stems (or the accompaniment file), and the random equaliser / stereo image / speed augmentations."""
import numpy as np
import pytest
import torch

from asteroid_frugal.data.datasets import (EQ_CENTRES_HZ, ExcerptDataset, change_speed, random_eq, random_stereo,
                                           read_at_speed, read_manifest, read_segment, write_manifest)
from asteroid_frugal.data.layout import write_track
from asteroid_frugal.utils import FrugalError
from data_helpers import stem_signal, write_wav

SR = 8000


def _track(root, name, sources, seconds=2.0, seed=0):
    stems = {s: stem_signal(s, seconds, SR, seed=seed) for s in sources}
    write_track(root / name, stems, dict(name=name, sample_rate=SR))
    return stems


def test_manifest_round_trip_with_relative_track_dirs(tmp_path):
    rows = [{"track_dir": str(tmp_path / "prepared" / "a"), "start": 10, "length": 80, "song": "a",
             "split": "train", "corpus": "default", "target_active": 0.123456}]
    write_manifest(tmp_path / "exp" / "data" / "train.csv", rows)
    text = (tmp_path / "exp" / "data" / "train.csv").read_text()
    assert "../../prepared/a" in text and "0.1235" in text                  # relative, 4 decimals
    (row,) = read_manifest(tmp_path / "exp" / "data" / "train.csv")
    assert row["track_dir"] == str((tmp_path / "prepared" / "a").resolve())
    assert (row["start"], row["length"], row["target_active"]) == (10, 80, 0.1235)


def test_items_are_target_vs_the_sum_of_the_rest(tmp_path):
    stems = _track(tmp_path, "four", ("vocals", "drums", "bass", "other"))
    karaoke = _track(tmp_path, "karaoke", ("vocals", "accompaniment"), seed=1)
    rows = [dict(track_dir=str(tmp_path / name), start=start, length=SR, song=name)
            for name, start in (("four", 4000), ("karaoke", 0))]
    write_manifest(tmp_path / "m.csv", rows)
    ds = ExcerptDataset(tmp_path / "m.csv", "vocals", n_channels=2)
    assert len(ds) == 2 and ds.sample_rate == SR and ds.segment_samples == SR
    mix, targets = ds[0]
    tol = 1 / 32768                                                        # 16-bit storage
    np.testing.assert_allclose(targets[0].numpy(), stems["vocals"][:, 4000:4000 + SR], atol=tol)
    rest = stems["drums"] + stems["bass"] + stems["other"]
    np.testing.assert_allclose(targets[1].numpy(), rest[:, 4000:4000 + SR], atol=3 * tol)
    assert torch.equal(mix, targets.sum(0))
    np.testing.assert_allclose(ds[1][1][1].numpy(), karaoke["accompaniment"][:, :SR], atol=tol)
    mono = ExcerptDataset(tmp_path / "m.csv", "vocals", n_channels=1)
    np.testing.assert_allclose(mono[0][1].numpy(), targets.numpy().mean(axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(FrugalError, match="cannot serve target 'drums'"):
        ExcerptDataset(tmp_path / "m.csv", "drums", n_channels=2)         # karaoke has no drums stem


def test_read_segment_pads_past_the_end(tmp_path):
    audio = stem_signal("bass", 1.0, SR)
    path = write_wav(tmp_path / "bass.wav", audio, SR, subtype="FLOAT")
    seg = read_segment(path, SR - 100, 300, SR)
    np.testing.assert_array_equal(seg[:, :100], audio[:, -100:])
    assert seg.shape == (2, 300) and not seg[:, 100:].any()


def test_bad_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "m.csv").write_text("a,b\n1,2\n")
    with pytest.raises(FrugalError, match="not a manifest"):
        ExcerptDataset(tmp_path / "m.csv", "vocals", n_channels=2)
    with pytest.raises(FrugalError, match="manifest not found"):
        ExcerptDataset(tmp_path / "none.csv", "vocals", n_channels=2)


def test_random_eq_gives_each_band_its_gain():
    """A sine at each band centre comes out scaled by that band's gain (and only that band's: the
    curve is linear in dB over log frequency between centres, flat beyond the ends); channels share
    one filter; a sine between two centres gets the dB mean of their gains."""
    sr = 16000
    t = np.arange(2 * sr) / sr
    freqs = [f for f in EQ_CENTRES_HZ if f < sr / 2]
    gains = np.array([-12.0, 6.0, -3.0, 9.0, 0.0, -6.0, 3.0, 12.0])
    sines = np.stack([np.stack([np.sin(2 * np.pi * f * t), 0.5 * np.cos(2 * np.pi * f * t)]) for f in freqs])
    out = random_eq(sines.astype(np.float32), np.tile(gains, (len(freqs), 1)), sr)
    assert out.shape == sines.shape and out.dtype == np.float32
    mid = slice(sr // 4, -sr // 4)
    measured = 10 * np.log10((out[..., mid] ** 2).mean(-1) / (sines[..., mid] ** 2).mean(-1))
    np.testing.assert_allclose(measured, np.repeat(gains[:len(freqs), None], 2, axis=1), atol=0.05)
    between = np.sqrt(EQ_CENTRES_HZ[1] * EQ_CENTRES_HZ[2])             # geometric middle of bands 1 and 2
    sine = np.sin(2 * np.pi * between * t)[None].astype(np.float32)
    got = random_eq(sine, gains, sr)
    assert 10 * np.log10((got[:, mid] ** 2).mean() / (sine[:, mid] ** 2).mean()) == pytest.approx(1.5, abs=0.1)
    np.testing.assert_allclose(random_eq(sines.astype(np.float32), np.zeros((len(freqs), 8)), sr), sines, atol=1e-5)


def test_random_stereo_delays_then_sets_the_width():
    """The right channel lags the left by the delay asked (a 0.5 ms lag is 8 samples at 16 kHz, found
    by cross-correlation); width 0 leaves the mid signal on both channels (mono), width 1 only the
    delay, width 2 doubles the side signal; the stem's mid is untouched by the width."""
    sr = 16000
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(sr).astype(np.float32)
    mono = np.stack([noise, noise])[None]
    delayed = random_stereo(mono, np.array([0.0005]), np.array([1.0]), sr)[0]
    lag = np.argmax(np.correlate(delayed[0, 100:-100], delayed[1, 100:-100], "full")) - (sr - 201)
    assert lag == -8 and not np.allclose(delayed[0], delayed[1])
    np.testing.assert_allclose(delayed[0], np.roll(noise, -4), atol=1e-4)    # exact, circular, half each way
    np.testing.assert_allclose(delayed[1], np.roll(noise, 4), atol=1e-4)
    wide = rng.standard_normal((2, 2, sr)).astype(np.float32)
    out = random_stereo(wide, np.zeros(2), np.array([0.0, 2.0]), sr)
    mid, side = wide.mean(1), (wide[:, 0] - wide[:, 1]) / 2
    np.testing.assert_allclose(out[0, 0], mid[0], atol=1e-5)
    np.testing.assert_allclose(out[0, 1], mid[0], atol=1e-5)
    np.testing.assert_allclose((out[1, 0] - out[1, 1]) / 2, 2 * side[1], atol=1e-5)
    np.testing.assert_allclose(out.mean(1), mid, atol=1e-5)


def _peak_hz(audio, sr):
    return np.argmax(np.abs(np.fft.rfft(audio))) * sr / len(audio)


def test_change_speed_moves_every_frequency_by_the_factor():
    """11/10 of a second played in one second: a 1000 Hz tone comes out at 1100 Hz with its level,
    a 3000 Hz one slowed to 2/3 at 2000 Hz; a tone above the new Nyquist frequency is dropped."""
    sr = 8000
    t = np.arange(int(1.1 * sr)) / sr
    tone = np.stack([np.sin(2 * np.pi * 1000 * t), 0.5 * np.sin(2 * np.pi * 1000 * t)]).astype(np.float32)
    fast = change_speed(tone, sr)
    assert fast.shape == (2, sr) and fast.dtype == np.float32
    assert _peak_hz(fast[0], sr) == pytest.approx(1100, abs=1)
    np.testing.assert_allclose(np.abs(fast).max(axis=1), [1.0, 0.5], atol=0.01)
    t = np.arange(sr) / sr
    slow = change_speed(np.sin(2 * np.pi * 3000 * t)[None].astype(np.float32), int(1.5 * sr))
    assert _peak_hz(slow[0], sr) == pytest.approx(2000, abs=1)
    high = change_speed(np.sin(2 * np.pi * 3900 * t)[None].astype(np.float32), int(0.5 * sr))
    assert np.abs(high).max() < 1e-3                                        # 7800 Hz: above 4 kHz, gone
    np.testing.assert_array_equal(change_speed(tone, tone.shape[1]), tone)


def test_read_at_speed_reads_around_the_excerpt(tmp_path):
    """The excerpt's centre stays where it was (a click there stays in the middle); near the song's
    start the read begins at sample 0; speed 1 is read_segment's exact bytes."""
    click = np.zeros((2, SR), dtype=np.float32)
    click[:, SR // 2] = 1.0
    path = write_wav(tmp_path / "vocals.wav", click, SR, subtype="FLOAT")
    np.testing.assert_array_equal(read_at_speed(path, 2000, 4000, SR, 1.0), read_segment(path, 2000, 4000, SR))
    for speed in (0.8, 1.25):
        got = read_at_speed(path, 2000, 4000, SR, speed)
        assert got.shape == (2, 4000) and abs(int(np.argmax(got[0])) - 2000) <= 1
    early = read_at_speed(path, 0, 4000, SR, 1.25)           # samples 0-5000 into 4000: the click (4000) at 3200
    assert abs(int(np.argmax(early[0])) - 3200) <= 1
