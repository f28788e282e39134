"""SI-SNR, BSS Eval with silent sources, SiSEC aggregation."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from asteroid_frugal import metrics
from asteroid_frugal.config import load_config

museval = pytest.importorskip("museval")
SR = 8000
SILENCE_DB = load_config()["training"]["silence_db"]


def test_si_snr_known_value_scale_invariance_and_silence():
    t = torch.arange(SR) / SR
    ref = torch.stack([torch.sin(2 * math.pi * 50 * t), torch.sin(2 * math.pi * 50 * t + 1.0)])
    noise = 0.1 * torch.stack([torch.cos(2 * math.pi * 50 * t), torch.cos(2 * math.pi * 50 * t + 1.0)])
    # zero-mean, orthogonal to the reference over whole periods: SI-SNR = 10 log10(|s|^2 / |n|^2) = 20 dB
    value = metrics.si_snr(ref + noise, ref, SILENCE_DB)
    assert value.shape == ()
    assert float(value) == pytest.approx(20.0, abs=1e-3)
    assert float(metrics.si_snr(3.0 * (ref + noise), ref, SILENCE_DB)) == pytest.approx(20.0, abs=1e-3)
    batch = torch.stack([torch.stack([ref + noise, ref]), torch.stack([ref, torch.zeros_like(ref)])])
    refs = torch.stack([torch.stack([ref, ref]), torch.stack([ref, torch.zeros_like(ref)])])
    out = metrics.si_snr(batch, refs, SILENCE_DB)
    assert out.shape == (2, 2)
    assert out[0, 1] > 60 and math.isnan(float(out[1, 1]))


def _pair(seed=0, seconds=2.4):
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    refs = rng.standard_normal((2, 2, n)) * np.linspace(0.2, 1.0, n)
    ests = refs + 0.4 * refs[::-1] + 0.2 * rng.standard_normal(refs.shape)
    return refs, ests


def test_bss_eval_equals_museval_on_the_same_arrays():
    refs, ests = _pair()
    values, notes = metrics.bss_eval(refs, ests, SR, backend="museval")
    sdr, isr, sir, sar = museval.evaluate(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1), win=SR, hop=SR)
    for name, expected in zip(("SDR", "ISR", "SIR", "SAR"), (sdr, isr, sir, sar)):
        np.testing.assert_array_equal(values[name], expected)
    assert notes == []
    fast, _ = metrics.bss_eval(refs, ests, SR, backend="fast")
    for name in metrics.METRICS:
        np.testing.assert_allclose(fast[name], values[name], atol=1e-6)


def test_perfect_estimate_far_above_a_model_and_silent_estimate_defined():
    refs, ests = _pair(seed=1)
    model, _ = metrics.bss_eval(refs, ests, SR, backend="fast")
    perfect, _ = metrics.bss_eval(refs, refs.copy(), SR, backend="fast")
    assert np.all(perfect["SDR"] == np.inf)
    assert np.all(perfect["SIR"] > model["SIR"] + 100) and np.all(perfect["SAR"] > model["SAR"] + 100)

    silent = ests.copy()
    silent[0] = 0.0
    for backend in ("fast", "museval"):
        values, notes = metrics.bss_eval(refs, silent, SR, backend=backend, names=["vocals", "accompaniment"])
        assert np.all(values["SDR"][0] == 0.0)
        for m in ("SIR", "ISR", "SAR"):
            assert np.isnan(values[m][0]).all()
        assert len(notes) == 1 and notes[0].startswith("vocals: silent estimate")
        # the other source's numbers depend only on its own estimate: any stand-in gives them
        stand_in = ests.copy()
        stand_in[0] = np.random.default_rng(5).standard_normal(stand_in[0].shape)
        direct = museval.evaluate(refs.transpose(0, 2, 1), stand_in.transpose(0, 2, 1), win=SR, hop=SR)
        for name, expected in zip(("SDR", "ISR", "SIR", "SAR"), direct):
            np.testing.assert_allclose(values[name][1], expected[1], atol=1e-6)


def test_silent_reference_is_nan_and_left_out():
    rng = np.random.default_rng(2)
    refs = rng.standard_normal((3, 2, int(2.2 * SR)))
    refs[1] = 0.0
    ests = refs + 0.3 * rng.standard_normal(refs.shape)
    values, notes = metrics.bss_eval(refs, ests, SR, backend="museval", names=["a", "b", "c"])
    assert np.isnan(values["SDR"][1]).all() and notes == ["b: silent reference, BSS Eval undefined (NaN)"]
    direct = museval.evaluate(refs[[0, 2]].transpose(0, 2, 1), ests[[0, 2]].transpose(0, 2, 1), win=SR, hop=SR)
    np.testing.assert_array_equal(values["SDR"][[0, 2]], direct[0])
    everything_silent, _ = metrics.bss_eval(np.zeros_like(refs), ests, SR)
    assert all(np.isnan(v).all() for v in everything_silent.values())


def test_aggregation_is_median_of_frame_medians():
    frames = []
    per_track = {"t1": [1.0, 2.0, 9.0], "t2": [4.0, np.nan, 6.0], "t3": [np.inf, 0.0, -3.0]}
    for track, sdr in per_track.items():
        values = {m: np.array([sdr]) for m in metrics.METRICS}
        frames.append(metrics.frames_dataframe(track, ["vocals"], values))
    frames = pd.concat(frames, ignore_index=True)
    med = metrics.aggregate(frames, "median")
    # frame medians 2, 5, 0 -> median over tracks 2
    assert med.loc["vocals", "SDR"] == pytest.approx(2.0)
    mean = metrics.aggregate(frames, "mean")
    assert mean.loc["vocals", "SDR"] == np.inf     # an exact frame dominates the mean
    tracks = metrics.per_track(frames)
    assert tracks.loc[("t2", "vocals"), "SDR"] == pytest.approx(5.0)
    assert list(tracks.columns) == list(metrics.METRICS)


def test_non_finite_estimates_are_a_clear_error():
    refs, ests = _pair(seed=3, seconds=1.2)
    ests[1, 0, 5] = np.nan
    with pytest.raises(ValueError, match="estimates contain NaN"):
        metrics.bss_eval(refs, ests, SR, backend="fast")


def test_bss_eval_scores_the_song_without_copying_it_when_every_source_is_scored(monkeypatch):
    """The usual case (no silent reference or estimate) hands the caller's float64 arrays to the
    scorer as they are: one song's references and estimates in memory, not two."""
    rng = np.random.default_rng(0)
    refs, ests = rng.standard_normal((2, 2, 2, 8000))
    seen = {}
    real = metrics._run_backend

    def spy(r, e, *args):
        seen.update(refs=np.shares_memory(r, refs), ests=np.shares_memory(e, ests))
        return real(r, e, *args)

    monkeypatch.setattr(metrics, "_run_backend", spy)
    metrics.bss_eval(refs, ests, 8000, "fast", "cpu")
    assert seen == {"refs": True, "ests": True}
    ests[1] = 0.0                               # a silent estimate: a stand-in copy, the caller's array untouched
    metrics.bss_eval(refs, ests, 8000, "fast", "cpu")
    assert seen["ests"] is False and not ests[1].any()
