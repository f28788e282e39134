"""The fast BSS Eval v4 against museval itself, frame by frame."""
import numpy as np
import pytest
import torch
from scipy.signal import lfilter

museval = pytest.importorskip("museval")
from asteroid_frugal import bsseval_fast  # noqa: E402

SR = 8000


def _signals(nsrc, nchan, seconds, seed=0):
    """Correlated (AR(1)) references and estimates with leakage, noise and a filtering error."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    refs = lfilter([1.0], [1.0, -0.9], rng.standard_normal((nsrc, n, nchan)), axis=1)
    leak = np.roll(refs, 1, axis=0)
    delayed = np.roll(refs, 3, axis=1)
    ests = refs + 0.3 * leak + 0.2 * delayed + 0.3 * rng.standard_normal(refs.shape)
    return refs, ests


def _assert_close(expected, got, atol):
    for name, a, b in zip(("SDR", "ISR", "SIR", "SAR"), expected, got):
        assert a.shape == b.shape, name
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_allclose(b, a, atol=atol, rtol=0, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("nsrc,nchan,win,hop", [(2, 2, SR, SR), (3, 1, SR, SR // 2)])
def test_matches_museval_per_frame(nsrc, nchan, win, hop):
    refs, ests = _signals(nsrc, nchan, 2.6)
    expected = museval.evaluate(refs, ests, win=win, hop=hop)
    got = bsseval_fast.evaluate(refs, ests, win=win, hop=hop)
    assert expected[0].shape[1] >= 2
    _assert_close(expected, got, atol=1e-6)


def test_silent_frames_padding_and_single_window():
    refs, ests = _signals(2, 2, 2.5, seed=1)
    refs[1, SR:2 * SR] = 0.0              # second frame: a silent reference -> NaN for all
    ests[0, :int(0.4 * SR)] = 0.0         # partly silent estimate frame: scored
    short = ests[:, :-100]                # estimates shorter than references: zero-padded
    expected = museval.evaluate(refs, short, win=SR, hop=SR)
    got = bsseval_fast.evaluate(refs, short, win=SR, hop=SR)
    assert np.isnan(expected[0][:, 1]).all()
    _assert_close(expected, got, atol=1e-6)
    whole = museval.evaluate(refs[:, :SR], ests[:, :SR], win=4 * SR, hop=4 * SR)
    _assert_close(whole, bsseval_fast.evaluate(refs[:, :SR], ests[:, :SR], win=4 * SR, hop=4 * SR), 1e-6)


def test_museval_regression_case_random_estimates():
    """museval's own regression test: uniform random vocals/accompaniment estimates
    (``np.random.seed(0)``) on a real MUSDB18 track, within museval's 0.01 dB tolerance."""
    stempeg = pytest.importorskip("stempeg")
    try:
        stems, rate = stempeg.read_stems(stempeg.example_stem_path())
    except Exception as err:  # ffmpeg missing or the example not shipped
        pytest.skip(f"stempeg example track unavailable: {err}")
    n = 3 * rate
    vocals = stems[4, :n].astype(np.float64)
    accompaniment = stems[1:4, :n].sum(0).astype(np.float64)
    np.random.seed(0)
    estimates = np.stack([np.random.random(vocals.shape), np.random.random(vocals.shape)])
    refs = np.stack([vocals, accompaniment])
    expected = museval.evaluate(refs, estimates, win=rate, hop=rate)
    got = bsseval_fast.evaluate(refs, estimates, win=rate, hop=rate)
    _assert_close(expected, got, atol=0.01)


def test_errors_like_museval():
    refs, ests = _signals(2, 2, 1.5)
    silent = refs.copy()
    silent[1] = 0.0
    for bad in ((silent, ests), (refs, np.zeros_like(ests))):
        with pytest.raises(ValueError, match="silent"):
            museval.evaluate(*bad, win=SR, hop=SR)
        with pytest.raises(ValueError, match="silent"):
            bsseval_fast.evaluate(*bad, win=SR, hop=SR)
    with pytest.raises(ValueError, match="v4"):
        bsseval_fast.evaluate(refs, ests, mode="v3")
    with pytest.raises(ValueError, match="shape"):
        bsseval_fast.bss_eval_v4(refs, ests[:1])


def test_fast_len_is_smooth_and_large_enough():
    for n in (1, 7, 44611, 45001, 65537):
        m = bsseval_fast.fast_len(n)
        assert m >= n and m < 2 * n + 2
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        assert m == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    refs, ests = _signals(2, 2, 3.0)
    _assert_close(bsseval_fast.evaluate(refs, ests, win=SR, hop=SR),
                  bsseval_fast.evaluate(refs, ests, win=SR, hop=SR, device="cuda"), atol=1e-6)


def test_solve_fallbacks_match_torch():
    """Not positive definite: LU (as museval); exactly singular: least squares; the factorised
    matrix may be overwritten in place, so the fallbacks get it again from ``rebuild``."""
    from asteroid_frugal.bsseval_fast import solve_symmetric

    indefinite = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)
    rhs = torch.tensor([[1.0], [0.5]], dtype=torch.float64)
    got = solve_symmetric(indefinite.clone(), rhs, lambda: indefinite.clone())
    assert torch.allclose(got, torch.linalg.solve(indefinite, rhs))
    singular = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    got = solve_symmetric(singular.clone(), rhs, lambda: singular.clone())
    assert torch.allclose(got, torch.linalg.lstsq(singular, rhs, driver="gelsd").solution)
    spd = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    assert torch.allclose(solve_symmetric(spd.clone(), rhs, lambda: spd.clone()), torch.linalg.solve(spd, rhs))


def test_solve_runs_blas_with_the_evaluations_threads(monkeypatch):
    """SciPy's OpenBLAS pool is sized by the process; the filter solve limits it to torch's threads."""
    from scipy.linalg import lapack
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    real = lapack.dpotrf

    def spy(*args, **kwargs):
        seen.append([info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"])
        return real(*args, **kwargs)

    monkeypatch.setattr(lapack, "dpotrf", spy)
    A = torch.eye(64, dtype=torch.float64) * 2
    B = torch.ones(64, 3, dtype=torch.float64)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with threadpool_limits(limits=2, user_api="blas"):   # the process' pool, as runtime.threads: 2 sets it
            X = bsseval_fast.solve_symmetric(A.clone(), B, lambda: A.clone())
    finally:
        torch.set_num_threads(old)
    assert torch.allclose(X, B / 2)
    assert seen and seen[0] and set(seen[0]) == {1}
