"""Seed-to-seed statistics of the sweeps: mean +- std over seeds, paired steps, trend verdicts.

A sweep trains every variant once per seed (same data, other initialisation and excerpt
order). Neighbouring variants are compared seed by seed: the step ``d_s = b_s - a_s`` removes
what a seed shares across variants, and the mean step is called a change only where it exceeds
twice its standard error ``std(d) / sqrt(n)``. With three seeds this is a loose rule (a 95 %
t-interval would need 4.3 standard errors): a "rises" is a hint that the step is real, a
"within noise" says that these seeds cannot tell it from seed-to-seed spread.
"""
import math
from typing import Dict, Iterable, Optional

RISES, FALLS, NOISE, ONE_SEED = "rises", "falls", "within noise", "not resolved (one seed)"
IDENTICAL = "identical"  # every paired difference exactly zero: both rows score the same estimates
FLAT = "flat"  # a paper direction: "no real change"


def mean_std(values: Iterable[float]):
    """``(mean, sample standard deviation)``; the std is NaN for fewer than two values."""
    v = [float(x) for x in values]
    if not v:
        return math.nan, math.nan
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, math.nan
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def paired_step(before: Dict[int, float], after: Dict[int, float]) -> dict:
    """``after - before`` over the seeds both have: ``{mean, se, n, seeds}`` (se NaN for one seed)."""
    seeds = sorted(set(before) & set(after))
    diffs = [float(after[s]) - float(before[s]) for s in seeds]
    m, sd = mean_std(diffs)
    return dict(mean=m, se=sd / math.sqrt(len(diffs)) if len(diffs) >= 2 else math.nan, n=len(diffs), seeds=seeds,
                identical=bool(diffs) and all(d == 0 for d in diffs))


def direction(step: dict, k: float = 2.0) -> str:
    """"rises" / "falls" where ``|mean| > k * se``, else "within noise"; one seed cannot tell; "identical"
    where every paired difference is exactly zero (not noise: the two rows score the same thing)."""
    if step.get("identical"):
        return IDENTICAL
    if step["n"] < 2:
        return ONE_SEED
    if abs(step["mean"]) > k * step["se"]:
        return RISES if step["mean"] > 0 else FALLS
    return NOISE


def paper_direction(delta: Optional[float] = None, stated: Optional[str] = None) -> Optional[str]:
    """The paper's direction: a stated one ("rises", "falls", "flat"), else the sign of its printed step."""
    if stated:
        if stated not in (RISES, FALLS, FLAT):
            raise ValueError(f"paper direction {stated!r}: expected rises, falls or flat")
        return stated
    if delta is None:
        return None
    return RISES if delta > 0 else FALLS if delta < 0 else FLAT


def verdict(measured: str, paper: Optional[str]) -> str:
    """agree / disagree / not resolved, of a measured direction against the paper's."""
    if paper is None:
        return "no paper value"
    if measured in (RISES, FALLS):
        return "agree" if measured == paper else "disagree"
    if measured == IDENTICAL:
        return "not comparable (same estimates)" if paper != FLAT else "agree (identical)"
    if measured == NOISE and paper == FLAT:
        return "agree (no change resolved)"
    return "not resolved"


def format_step(step: dict) -> str:
    """``+0.42 +- 0.10 dB (3 paired seeds)``."""
    if step["n"] < 2:
        return f"{step['mean']:+.2f} dB (one seed)"
    return f"{step['mean']:+.2f} +- {step['se']:.2f} dB (s.e., {step['n']} paired seeds)"
