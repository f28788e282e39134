"""BSS Eval v4 (museval's ``mode="v4"``) in vectorised PyTorch, on CPU or GPU.

Same definition as ``museval.metrics.bss_eval(compute_permutation=False,
framewise_filters=False, bsseval_sources_version=False)``, which museval's
``evaluate``/``eval_mus_track`` call:

* distortion filters of ``filters_len`` taps are fitted once on the whole track:
  ``C`` projects each estimate on all delayed reference channels, ``Cj`` on the
  delayed channels of its own reference (least squares, ``G + eps I``);
* each frame (``win`` samples every ``hop``) is scored with those filters applied
  to the frame's references alone (the convolution restarts at the frame start and
  its ``filters_len - 1`` tail is kept, as museval does); see :func:`frame_metrics`
  for the four ratios. Frames where any reference or estimate is silent are NaN.

What makes it fast (same numbers, different arithmetic):

* the Gram matrix and the cross-correlations need only lags ``< filters_len``:
  they are accumulated from short block FFTs (overlap-save) instead of one FFT
  per pair over the whole zero-padded track;
* one Cholesky factorisation of the ``(nsrc*nchan*filters_len)`` system serves every
  estimate (museval factorises it with LU once per estimate); on CPU it is LAPACK's
  ``dpotrf`` through SciPy, in place (see :func:`solve_symmetric`);
* frames are batched: one FFT per frame and channel, projections are products in
  the frequency domain and energies use Parseval, so no inverse FFT is needed.

float64 throughout; per-frame values match museval to well under 0.01 dB except
where a ratio's denominator is at round-off level (ratios above ~150 dB), where
both implementations report noise.
"""
import math
from typing import Sequence, Tuple

import numpy as np
import torch

EPS = float(np.finfo(float).eps)   # museval's regulariser of the filter systems


def evaluate(references, estimates, win: int = 44100, hop: int = 44100, mode: str = "v4",
             padding: bool = True, device=None) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Drop-in for ``museval.evaluate``: ``(nsrc, nsampl, nchan)`` arrays -> ``SDR, ISR, SIR, SAR``.

    Each output is ``(nsrc, nwin)``. Only ``mode="v4"`` (museval's default) exists here.
    """
    if mode != "v4":
        raise ValueError(f"bsseval_fast implements BSS Eval mode 'v4' only, got {mode!r}")
    references = np.asarray(references, dtype=np.float64)
    estimates = np.asarray(estimates, dtype=np.float64)
    if padding and references.shape[1] != estimates.shape[1]:   # as museval.pad_or_truncate
        n = references.shape[1]
        if estimates.shape[1] > n:
            estimates = estimates[:, :n]
        else:
            estimates = np.pad(estimates, [(0, 0), (0, n - estimates.shape[1]), (0, 0)])
    return bss_eval_v4(references, estimates, win=win, hop=hop, device=device)


def bss_eval_v4(references, estimates, win=44100, hop=44100, filters_len: int = 512, device=None):
    """BSS Eval v4 images metrics, ``(nsrc, nsampl[, nchan])`` arrays -> ``SDR, ISR, SIR, SAR`` ``(nsrc, nwin)``.

    ``device``: torch device (default CPU); on CUDA, blocks and frames are batched more.
    """
    refs = np.atleast_3d(np.asarray(references, dtype=np.float64))
    ests = np.atleast_3d(np.asarray(estimates, dtype=np.float64))
    _validate(refs, ests)
    nsrc, nsampl, nchan = refs.shape
    device = torch.device(device or "cpu")
    gpu = device.type == "cuda"
    L = int(filters_len)

    # (sources*channels, samples): row p = source * nchan + channel
    ref_t = torch.from_numpy(np.ascontiguousarray(refs.transpose(0, 2, 1))).to(device).reshape(nsrc * nchan, nsampl)
    est_t = torch.from_numpy(np.ascontiguousarray(ests.transpose(0, 2, 1))).to(device).reshape(nsrc * nchan, nsampl)

    corr = lag_correlations(ref_t, est_t, L, n_fft=fast_len(64 * L if gpu else 8 * L))
    C, Cj = distortion_filters(corr, nsrc, nchan, L)
    starts, width = framing(win, hop, nsampl)
    out = np.full((4, nsrc, len(starts)), np.nan)
    if len(starts):
        out[:] = frame_metrics(ref_t, est_t, C, Cj, starts, width, nsrc, nchan, L,
                                frames_per_step=32 if gpu else 1)
    sdr, isr, sir, sar = out
    return sdr, isr, sir, sar


def _validate(refs: np.ndarray, ests: np.ndarray) -> None:
    """museval's checks (same conditions, same ValueError) so callers see the same failures."""
    if refs.shape != ests.shape:
        raise ValueError(f"The shape of estimated sources and the true sources should match. "
                         f"reference_sources.shape = {refs.shape}, estimated_sources.shape = {ests.shape}")
    if refs.ndim != 3 or refs.size == 0:
        raise ValueError(f"expected non-empty (nsrc, nsampl, nchan) arrays, got {refs.shape}")
    if _silent_sources(refs).any():
        raise ValueError("All the reference sources should be non-silent (not all-zeros), "
                         "but at least one of the reference sources is all 0s")
    if _silent_sources(ests).any():
        raise ValueError("All the estimated sources should be non-silent (not all-zeros), "
                         "but at least one of the estimated sources is all 0s")


def _silent_sources(x: np.ndarray) -> np.ndarray:
    """museval's test: a source is silent when its channel sum is 0 at every sample."""
    return np.all(np.sum(x, axis=2) == 0, axis=1)


def framing(win, hop, nsampl: int) -> Tuple[Sequence[int], int]:
    """Frame starts and width exactly as ``museval.metrics.Framing``."""
    if not np.isfinite(win) or win >= nsampl:
        return [0], nsampl
    win, hop = float(win), float(hop)
    nwin = int(np.floor((nsampl - win + hop) / hop))
    starts = [int(np.floor(t * hop)) for t in range(nwin)]
    return starts, int(np.floor(win))


def fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (sizes the FFT libraries handle fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


def lag_correlations(ref: torch.Tensor, est: torch.Tensor, L: int, n_fft: int) -> torch.Tensor:
    """``R[m, n, k] = sum_t z_m[t + k] ref_n[t]`` for ``k < L``, ``z = [ref; est]``: ``(2M, M, L)``.

    Overlap-save: each block of ``B = n_fft - L + 1`` samples of ``ref_n`` against the
    ``n_fft`` samples of ``z_m`` from the same start; cross-spectra are summed over
    blocks and inverse-transformed once. One block at a time keeps the working set
    in cache (a batched ``einsum`` over blocks is several times slower on CPU).
    """
    M, nsampl = ref.shape
    B = n_fft - L + 1
    nblocks = -(-nsampl // B)
    F = n_fft // 2 + 1
    acc = torch.zeros(2 * M, M, F, dtype=torch.complex128, device=ref.device)
    # buffers reused for every block: fresh multi-MB tensors per block cost more in page
    # faults (mmap/munmap by the allocator) than the FFTs themselves on CPU
    seg = torch.zeros(2 * M, n_fft, dtype=ref.dtype, device=ref.device)
    blk = torch.zeros(M, n_fft, dtype=ref.dtype, device=ref.device)
    zf = torch.empty(2 * M, F, dtype=acc.dtype, device=ref.device)
    rf = torch.empty(M, F, dtype=acc.dtype, device=ref.device)
    for b in range(nblocks):
        a0 = b * B
        n_seg, n_blk = min(n_fft, nsampl - a0), min(B, nsampl - a0)
        if n_seg < n_fft:                                         # the end of the track: zeros after it
            seg.zero_()
            blk.zero_()
        seg[:M, :n_seg].copy_(ref[:, a0:a0 + n_seg])
        seg[M:, :n_seg].copy_(est[:, a0:a0 + n_seg])
        blk[:, :n_blk].copy_(ref[:, a0:a0 + n_blk])
        torch.fft.rfft(seg, out=zf)
        torch.fft.rfft(blk, out=rf)
        rf.conj_physical_()
        acc.addcmul_(zf[:, None, :], rf[None])
    return torch.fft.irfft(acc, n=n_fft)[..., :L]


def distortion_filters(corr: torch.Tensor, nsrc: int, nchan: int, L: int):
    """Least-squares filters: ``C (M, L, E)`` on all references, ``Cj (nsrc, nchan, L, nchan)`` own reference.

    ``G[(p,a),(q,b)]`` is the inner product of reference channel ``p`` delayed by ``a``
    with channel ``q`` delayed by ``b`` (museval's ``_compute_reference_correlations``),
    ``D[(p,a), e]`` that of ``p`` delayed by ``a`` with estimate channel ``e``.
    """
    M = nsrc * nchan
    D = corr[M:].permute(1, 2, 0).reshape(M * L, M)               # D[(p,a), e]
    G = _gram(corr[:M], L)
    # own-reference systems: diagonal (source) blocks of G and D (copied: the big solve overwrites G)
    G4 = G.view(nsrc, nchan * L, nsrc, nchan * L)
    D4 = D.reshape(nsrc, nchan * L, nsrc, nchan)
    idx = torch.arange(nsrc, device=G.device)
    Gjj = G4[idx, :, idx, :]                                      # (nsrc, nchan*L, nchan*L)
    Djj = D4[idx, :, idx, :]                                      # (nsrc, nchan*L, nchan)
    Gjj.diagonal(dim1=-2, dim2=-1).add_(EPS)
    Cj = torch.stack([solve_symmetric(Gjj[j], Djj[j], lambda j=j: _with_eps(G4[j, :, j, :].clone())) for j in range(nsrc)])
    Cj = Cj.reshape(nsrc, nchan, L, nchan)
    G.diagonal().add_(EPS)                                        # museval's G + eps I, in place
    C = solve_symmetric(G, D, lambda: _with_eps(_gram(corr[:M], L)))
    return C.reshape(M, L, M), Cj


def _gram(R: torch.Tensor, L: int) -> torch.Tensor:
    """``G[(p,a),(q,b)]`` from the ref-ref lags ``R (M, M, L)``: ``(M*L, M*L)``.

    Toeplitz blocks ``G[p, q][a, b] = seq[p, q][L - 1 + b - a]``; the zero-lag value of a
    pair is taken from one ordering only, so G is exactly symmetric (as museval's).
    Built one block row at a time (no second full-size temporary).
    """
    M = R.shape[0]
    upper = torch.triu(torch.ones(M, M, dtype=torch.bool, device=R.device))
    zero_lag = torch.where(upper, R[..., 0], R.transpose(0, 1)[..., 0])
    seq = torch.cat([R.transpose(0, 1)[..., 1:].flip(-1), zero_lag[..., None], R[..., 1:]], -1)
    G = torch.empty(M * L, M * L, dtype=R.dtype, device=R.device)
    G4 = G.view(M, L, M, L)
    for p in range(M):
        G4[p].copy_(seq[p].unfold(-1, L, 1).flip(-2).permute(1, 0, 2))
    return G


def _with_eps(G: torch.Tensor) -> torch.Tensor:
    G.diagonal().add_(EPS)
    return G


def solve_symmetric(A: torch.Tensor, B: torch.Tensor, rebuild) -> torch.Tensor:
    """Solve the symmetric system ``A X = B``: Cholesky (half of museval's LU work), LU when
    ``A`` is not numerically positive definite, least squares when exactly singular (as museval).

    On CPU the Cholesky factorisation is LAPACK's ``dpotrf`` through SciPy (OpenBLAS), in
    place: it needs about 0.6x the CPU time of ``torch.linalg.cholesky`` (MKL, which is slow
    on AMD CPUs, and zeroes the other triangle in a further pass) and no copy of ``A``.
    ``A`` may be overwritten; ``rebuild()`` gives it again for the fallbacks.
    """
    if A.device.type == "cpu" and A.dtype == torch.float64:
        from scipy.linalg import lapack
        from threadpoolctl import threadpool_limits

        # A is symmetric: its C-ordered buffer is the Fortran-ordered A, factorised in place.
        # SciPy's OpenBLAS keeps its own thread pool, sized by the process (runtime.threads), not by
        # torch's threads of this evaluation (evaluation.bss_threads): limited here to the same number
        # (its spinning threads beside torch's OpenMP ones cost more than they gain: benchmarks/README.md)
        a = A.numpy().T
        with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
            factor, info = lapack.dpotrf(a, lower=1, clean=0, overwrite_a=1)
            if info == 0:
                x, info = lapack.dpotrs(factor, B.cpu().numpy(), lower=1)
        if info == 0:
            return torch.from_numpy(x)
        A = rebuild()
    else:
        chol, info = torch.linalg.cholesky_ex(A)
        if not bool((info != 0).any()):
            return torch.cholesky_solve(B, chol)
    try:
        return torch.linalg.solve(A, B)
    except RuntimeError:   # torch.linalg.LinAlgError: exactly singular
        return torch.linalg.lstsq(A.cpu(), B.cpu(), driver="gelsd").solution.to(A.device)


def frame_metrics(ref, est, C, Cj, starts, width, nsrc, nchan, L, frames_per_step) -> np.ndarray:
    """Per-frame ``(4, nsrc, nwin)`` SDR, ISR, SIR, SAR with museval's frame-local projections.

    With ``s`` the reference, ``e`` the estimate, ``P_j`` its projection on its own
    delayed reference and ``P`` on all references (all over ``width + L - 1`` samples):
    ``SDR = |s|^2/|e-s|^2``, ``ISR = |s|^2/|P_j-s|^2``, ``SIR = |P_j|^2/|P-P_j|^2``,
    ``SAR = |P|^2/|e-P|^2`` (museval's ``_bss_decomp_mtifilt`` + ``_bss_crit``).
    Projections are products in the frequency domain; energies use Parseval.
    """
    M = nsrc * nchan
    n_fft = fast_len(width + L - 1)
    F = n_fft // 2 + 1
    weight = torch.full((F,), 2.0 / n_fft, dtype=torch.float64, device=ref.device)  # Parseval (rfft)
    weight[0] = 1.0 / n_fft
    if n_fft % 2 == 0:
        weight[-1] = 1.0 / n_fft
    CF = torch.fft.rfft(C.permute(0, 2, 1), n=n_fft)            # (M, E, F): all references
    CjF = torch.fft.rfft(Cj.permute(0, 1, 3, 2), n=n_fft)       # (nsrc, c', c, F): own reference

    weight = weight.repeat_interleave(2)                          # over (real, imag) pairs
    step = min(frames_per_step, len(starts))
    # buffers reused for every frame (see lag_correlations)
    real = dict(dtype=ref.dtype, device=ref.device)
    cplx = dict(dtype=torch.complex128, device=ref.device)
    sbuf, ebuf = torch.zeros(step, M, n_fft, **real), torch.zeros(step, M, n_fft, **real)
    work = torch.empty(step, M, n_fft, **real)
    chan_sum = torch.empty(step, nsrc, n_fft, **real)
    SF, EF, P, Pj, D = (torch.empty(step, M, F, **cplx) for _ in range(5))
    squares = torch.empty(step, M, 2 * F, **real)

    def energy(X):                                                # (t, M, F) -> (t, nsrc)
        sq = squares[:X.shape[0]]
        xr = torch.view_as_real(X).view(X.shape[0], M, 2 * F)
        torch.mul(xr, xr, out=sq)
        return (sq @ weight).view(X.shape[0], nsrc, nchan).sum(-1)

    def silent(x):                                                # some source all-zero in the frame
        cs = chan_sum[:x.shape[0]]
        torch.sum(x.view(x.shape[0], nsrc, nchan, n_fft), dim=2, out=cs)
        return (torch.count_nonzero(cs, dim=-1) == 0).any(-1)

    out = []
    for i in range(0, len(starts), step):
        chunk = starts[i:i + step]
        nt = len(chunk)
        s, e, w = sbuf[:nt], ebuf[:nt], work[:nt]
        sf, ef, p, pj, d = SF[:nt], EF[:nt], P[:nt], Pj[:nt], D[:nt]
        for k, a in enumerate(chunk):                             # frames, zero-padded to n_fft
            s[k, :, :width].copy_(ref[:, a:a + width])
            e[k, :, :width].copy_(est[:, a:a + width])
        frame_silent = silent(s) | silent(e)
        torch.mul(s, s, out=w)
        s_s = w.view(nt, nsrc, -1).sum(-1)
        torch.sub(e, s, out=w)
        w.mul_(w)
        e_s = w.view(nt, nsrc, -1).sum(-1)                        # SDR in the time domain, as museval
        torch.fft.rfft(s, out=sf)
        torch.fft.rfft(e, out=ef)
        # contractions as multiply-adds: torch.einsum is ~5x slower here on CPU
        torch.mul(sf[:, 0, None], CF[0], out=p)
        for m in range(1, M):
            p.addcmul_(sf[:, m, None], CF[m])
        sfj, pjv = sf.view(nt, nsrc, nchan, F), pj.view(nt, nsrc, nchan, F)
        torch.mul(sfj[:, :, 0, None], CjF[:, 0], out=pjv)
        for k in range(1, nchan):
            pjv.addcmul_(sfj[:, :, k, None], CjF[:, k])
        vals = torch.stack([
            _db(s_s, e_s),
            _db(s_s, energy(torch.sub(pj, sf, out=d))),
            _db(energy(pj), energy(torch.sub(p, pj, out=d))),
            _db(energy(p), energy(torch.sub(ef, p, out=d))),
        ])                                                        # (4, t, nsrc)
        vals[:, frame_silent] = float("nan")
        out.append(vals.permute(0, 2, 1).cpu())
    return torch.cat(out, dim=-1).numpy()


def _db(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``10 log10(num / den)``, +inf where ``den == 0`` (museval's ``_safe_db``)."""
    val = 10 * torch.log10(num / den)
    return torch.where(den == 0, torch.full_like(val, math.inf), val)
