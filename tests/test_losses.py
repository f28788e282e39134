"""losses.py: negative SI-SNR over (target, rest), silent references excluded and counted."""
import math

import pytest
import torch

from asteroid_frugal.losses import TargetRestSISNRLoss


def _pair(batch=3, seconds=0.25, sr=8000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, 2, int(seconds * sr), generator=g) * 0.1


def test_a_perfect_estimate_scores_far_better_than_noise():
    loss = TargetRestSISNRLoss(pit=False, silence_db=-80.0)
    ref = _pair()
    perfect, n_silent = loss(ref * 3.0, ref)   # scale-invariant: any gain is perfect
    noisy, _ = loss(ref + 0.3 * _pair(seed=1), ref)
    assert n_silent == 0 and perfect.item() < -60 and noisy.item() > perfect.item() + 40


def test_silent_references_are_excluded_and_counted():
    loss = TargetRestSISNRLoss(pit=False, silence_db=-60.0)
    ref = _pair()
    ref[0, 0] = 0.0      # no vocals in the first excerpt
    est = ref + 0.01 * _pair(seed=2)
    value, n_silent = loss(est, ref)
    kept = loss.per_source(est, ref)
    assert n_silent == 1
    assert value.item() == pytest.approx(torch.cat([kept[0, 1:], kept[1:].flatten()]).mean().item(), rel=1e-6)
    value, n_silent = loss(est, torch.zeros_like(ref))
    assert n_silent == 6 and math.isnan(value.item())


def test_fixed_order_unless_pit():
    ref = _pair()
    swapped = ref.flip(1)
    fixed, _ = TargetRestSISNRLoss(pit=False, silence_db=-80.0)(swapped, ref)
    pit, _ = TargetRestSISNRLoss(pit=True, silence_db=-80.0)(swapped, ref)
    assert pit.item() < -60 < fixed.item()
