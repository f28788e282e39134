"""SI-SNR training loss for target-vs-rest separation, with silent references handled explicitly.

SI-SNR is undefined when the reference is silent (vocals are often absent): Asteroid's
epsilon-guarded formula then returns a constant -80 dB whatever the estimate, which
carries no gradient but drags the batch mean by tens of dB. We compute Asteroid's
``singlesrc_neg_sisdr`` per (example, source) and *exclude* pairs whose reference
energy is below ``silence_db`` (mean square, dB re full scale; conf.yml's
``training.silence_db``), averaging over the rest.
The number of excluded pairs is returned so the trainer can log it.
"""
from typing import Tuple

import torch
from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr, singlesrc_neg_sisdr


class TargetRestSISNRLoss(torch.nn.Module):
    """Negative SI-SNR (dB) over sources in fixed order (target, rest); stereo channels are
    concatenated so one scale applies to the whole stereo image.

    Args:
        pit: reorder sources with Asteroid's ``PITLossWrapper`` first (symmetric tasks only).
        silence_db: references quieter than this (mean square, dBFS) are excluded
            (``training.silence_db`` in conf.yml).
    """

    def __init__(self, pit: bool, silence_db: float):
        super().__init__()
        self.pit = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx") if pit else None
        self.silence_power = 10.0 ** (silence_db / 10.0)

    def per_source(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """``(B, S, C, T)`` x2 -> negative SI-SNR ``(B, S)``."""
        batch, n_src = ref.shape[:2]
        est, ref = est.reshape(batch, n_src, -1), ref.reshape(batch, n_src, -1)
        if self.pit is not None:
            _, est = self.pit(est, ref, return_est=True)
        return singlesrc_neg_sisdr(est.reshape(batch * n_src, -1), ref.reshape(batch * n_src, -1)).view(batch, n_src)

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> Tuple[torch.Tensor, int]:
        """Mean negative SI-SNR over non-silent references, and the number excluded.

        When every reference is silent the loss is NaN (the trainer skips such steps).
        """
        losses = self.per_source(est, ref)
        power = ref.detach().pow(2).flatten(2).mean(-1)
        keep = power > self.silence_power
        n_silent = int((~keep).sum())
        if not bool(keep.any()):
            return losses.sum() * float("nan"), n_silent
        return losses[keep].mean(), n_silent
