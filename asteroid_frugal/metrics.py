"""Evaluation metrics: SI-SNR of excerpts, BSS Eval v4 of whole tracks (museval or the fast
evaluator), SiSEC aggregation.

* SI-SNR: Asteroid's ``singlesrc_neg_sisdr`` with stereo channels concatenated (one scale
  for the whole stereo image), the exact definition of the training loss
  (:mod:`asteroid_frugal.losses`); NaN where the reference is silent (undefined).
* BSS Eval v4: museval's ``evaluate`` (the reference) or :mod:`asteroid_frugal.bsseval_fast`
  (same numbers per frame, >10x faster; stage 4's default), 1 s frames, with
  whole-track silence handled instead of crashing (:func:`bss_eval`).
* Aggregation: museval's ``EvalStore`` (median over frames, then median over tracks:
  SiSEC; and mean over frames, then over tracks).
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch

METRICS = ("SDR", "SIR", "ISR", "SAR")
BACKENDS = ("museval", "fast")
BACKEND_NAMES = {"museval": "museval", "fast": "the fast evaluator (asteroid_frugal.bsseval_fast)"}


def backend_name(backend) -> str:
    """How results pages name the BSS Eval implementation of ``eval_info.json``'s ``backend``."""
    return BACKEND_NAMES.get(backend, f"unknown implementation ({backend})")



# ---------------------------------------------------------------------------- SI-SNR
def si_snr(est: torch.Tensor, ref: torch.Tensor, silence_db: float) -> torch.Tensor:
    """SI-SNR (dB) of ``(..., C, T)`` estimates, channels concatenated; NaN where ``ref`` is quieter
    than ``silence_db`` (the training loss' threshold, ``training.silence_db``: undefined there)."""
    from .losses import TargetRestSISNRLoss

    lead = ref.shape[:-2]
    est2 = est.reshape(-1, 1, *est.shape[-2:]).float()
    ref2 = ref.reshape(-1, 1, *ref.shape[-2:]).float()
    value = -TargetRestSISNRLoss(pit=False, silence_db=silence_db).per_source(est2, ref2)[:, 0]
    power = ref2.double().pow(2).flatten(1).mean(-1)
    value = torch.where(power > 10.0 ** (silence_db / 10.0), value.double(), torch.full_like(power, math.nan))
    return value.reshape(lead)


# ------------------------------------------------------------------------ BSS Eval
def silent_sources(x: np.ndarray) -> np.ndarray:
    """museval's silence test on ``(nsrc, C, T)``: the channel sum is 0 at every sample."""
    return np.all(np.sum(x, axis=1) == 0, axis=-1)


def n_frames(n_samples: int, win: int, hop: int) -> int:
    """Number of BSS Eval frames (``museval.metrics.Framing``)."""
    return 1 if win >= n_samples else int(np.floor((n_samples - win + hop) / hop))


def bss_eval(references: np.ndarray, estimates: np.ndarray, sample_rate: int, backend: str = "museval",
             device=None, names: Optional[Sequence[str]] = None, win_seconds: float = 1.0,
             hop_seconds: float = 1.0) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """BSS Eval v4 of ``(nsrc, C, T)`` arrays scored jointly -> ``({metric: (nsrc, nframes)}, notes)``.

    Same call as ``museval.eval_mus_track`` makes (``win``/``hop`` in seconds), but a
    whole-track silent source, which museval rejects, gets a defined result:

    * silent reference: BSS Eval is undefined for it (all NaN); it is left out of the
      joint problem, which changes nothing for the others (a zero reference adds
      nothing to the subspace they are projected on);
    * silent estimate: ``SDR = 10 log10(|s|^2 / |0 - s|^2) = 0 dB`` on every frame with
      a non-silent reference (the SDR formula museval uses), SIR/ISR/SAR undefined
      (NaN); the other sources are scored as usual (in BSS Eval v4 a source's numbers
      depend on all references but only on its own estimate; a stand-in is passed).

    ``notes`` explains each such case in one line (``names``: source names). Frames where some reference or
    estimate is silent are NaN, as in museval.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown BSS Eval backend {backend!r} (choose from {', '.join(BACKENDS)})")
    refs = np.asarray(references, dtype=np.float64)
    ests = np.asarray(estimates, dtype=np.float64)
    if refs.shape != ests.shape or refs.ndim != 3:
        raise ValueError(f"references {refs.shape} and estimates {ests.shape} must both be (nsrc, C, T)")
    for what, x in (("references", refs), ("estimates", ests)):
        if not np.isfinite(x).all():
            raise ValueError(f"the {what} contain NaN or infinite samples")
    nsrc, _, n_samples = refs.shape
    names = list(names) if names is not None else [f"source {j}" for j in range(nsrc)]
    win, hop = int(win_seconds * sample_rate), int(hop_seconds * sample_rate)
    nwin = n_frames(n_samples, win, hop)
    out = {m: np.full((nsrc, nwin), np.nan) for m in METRICS}
    notes = []
    silent_ref, silent_est = silent_sources(refs), silent_sources(ests)
    scored = [j for j in range(nsrc) if not silent_ref[j]]
    for j in np.flatnonzero(silent_ref):
        notes.append(f"{names[j]}: silent reference, BSS Eval undefined (NaN)")
    if not scored:
        return out, notes
    if len(scored) == nsrc and not silent_est[scored].any():   # the usual case: no copy of the song
        sub_refs, sub_est = refs, ests
    else:
        sub_refs, sub_est = refs[scored], ests[scored].copy()
        stand_in = sub_refs.sum(0)
        for k, j in enumerate(scored):
            if silent_est[j]:
                sub_est[k] = stand_in if not silent_sources(stand_in[None])[0] else 1.0
    values = _run_backend(sub_refs.transpose(0, 2, 1), sub_est.transpose(0, 2, 1),
                          win, hop, backend, device)
    for m, v in zip(METRICS, values):
        out[m][scored] = v
    for j in scored:
        if silent_est[j]:
            notes.append(f"{names[j]}: silent estimate, SDR 0 dB (error = reference), SIR/ISR/SAR NaN")
            frame_energy = _frame_energy(refs[j], win, hop, nwin)
            for m in METRICS:
                out[m][j] = np.nan
            out["SDR"][j] = np.where(frame_energy > 0, 0.0, np.nan)
    return out, notes


def _run_backend(refs: np.ndarray, ests: np.ndarray, win: int, hop: int, backend: str, device):
    """``(nsrc, T, C)`` arrays -> SDR, ISR, SIR, SAR ``(nsrc, nwin)``, in museval's order."""
    if backend == "fast":
        from .bsseval_fast import evaluate
        sdr, isr, sir, sar = evaluate(refs, ests, win=win, hop=hop, device=device)
    else:
        import museval
        sdr, isr, sir, sar = museval.evaluate(refs, ests, win=win, hop=hop, mode="v4")
    return sdr, sir, isr, sar   # METRICS order


def _frame_energy(x: np.ndarray, win: int, hop: int, nwin: int) -> np.ndarray:
    """Energy of ``[C, T]`` in each BSS Eval frame."""
    n = x.shape[-1]
    starts = [0] if win >= n else [int(np.floor(t * hop)) for t in range(nwin)]
    width = n if win >= n else win
    return np.array([float(np.sum(x[:, s:s + width] ** 2)) for s in starts])


# --------------------------------------------------------------------- aggregation
def frames_dataframe(track: str, targets: Sequence[str], values: Dict[str, np.ndarray],
                     hop_seconds: float = 1.0) -> pd.DataFrame:
    """Long table (museval's ``json2df`` columns): ``time, target, metric, score, track``."""
    rows = []
    for m in METRICS:
        for j, name in enumerate(targets):
            for t, v in enumerate(np.asarray(values[m][j], dtype=float)):
                rows.append((t * hop_seconds, name, m, float(v), track))
    return pd.DataFrame(rows, columns=["time", "target", "metric", "score", "track"])


def aggregate(frames: pd.DataFrame, how: str = "median") -> pd.DataFrame:
    """``how`` over frames then over tracks (museval ``EvalStore``): ``target x metric`` table.

    ``how="median"`` is SiSEC's aggregation; ``"mean"`` the mean of per-track means.
    NaN frames (silent) are skipped, +inf (an exact estimate) is kept.
    """
    import museval

    store = museval.EvalStore(frames_agg=how, tracks_agg=how)
    store.df = frames
    return store.agg_frames_tracks_scores().unstack("metric")


def per_track(frames: pd.DataFrame) -> pd.DataFrame:
    """Median over frames of each track: rows ``(track, target)``, one column per metric."""
    import museval

    store = museval.EvalStore(frames_agg="median")
    store.df = frames
    table = store.agg_frames_scores().unstack("metric")
    return table.reindex(columns=list(METRICS))
