"""Seed statistics on hand-made numbers: mean +- std, paired steps, directions, verdicts, step tables."""
import math

import pytest

from asteroid_frugal import stats
from asteroid_frugal.reports.sweep import results_markdown, stated_direction, steps


def test_mean_std_is_the_sample_std():
    assert stats.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    m, sd = stats.mean_std([5.0])
    assert m == 5.0 and math.isnan(sd)
    assert all(math.isnan(x) for x in stats.mean_std([]))


def test_paired_step_mean_and_standard_error():
    st = stats.paired_step({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 2.7, 2: 3.4})   # diffs 0.5, 0.7, 0.4
    assert st["n"] == 3 and st["seeds"] == [0, 1, 2]
    assert st["mean"] == pytest.approx(1.6 / 3)
    assert st["se"] == pytest.approx(math.sqrt(0.14 / 3 / 2) / math.sqrt(3))   # squared deviations: 0.14/3
    assert stats.direction(st) == stats.RISES


def test_pairing_removes_what_a_seed_shares():
    # seeds far apart (std 5 dB) but every seed gains 0.3-0.4 dB: a rise, resolved by pairing
    st = stats.paired_step({0: 0.0, 1: 5.0, 2: 10.0}, {0: 0.3, 1: 5.3, 2: 10.4})
    assert stats.direction(st) == stats.RISES
    assert stats.direction(stats.paired_step({0: 0.3, 1: 5.3, 2: 10.4}, {0: 0.0, 1: 5.0, 2: 10.0})) == stats.FALLS


def test_a_step_inside_twice_its_standard_error_is_noise():
    st = stats.paired_step({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 1.5, 2: 3.2})     # diffs 1.0, -0.5, 0.2
    assert st["mean"] == pytest.approx(0.7 / 3)
    assert st["se"] == pytest.approx(0.4333, abs=1e-4)
    assert stats.direction(st) == stats.NOISE
    assert stats.direction(st, k=0.5) == stats.RISES       # the threshold is k standard errors


def test_only_seeds_present_on_both_sides_are_paired():
    st = stats.paired_step({0: 1.0, 1: 2.0}, {1: 3.0, 2: 4.0})
    assert st["n"] == 1 and st["mean"] == 1.0 and math.isnan(st["se"])
    assert stats.direction(st) == stats.ONE_SEED
    assert stats.format_step(st) == "+1.00 dB (one seed)"
    assert stats.format_step(stats.paired_step({0: 0.0, 1: 0.0}, {0: 1.0, 1: 2.0})) == \
        "+1.50 +- 0.50 dB (s.e., 2 paired seeds)"


def test_exactly_equal_rows_are_identical_not_noise():
    st = stats.paired_step({0: 7.1, 1: 6.9}, {0: 7.1, 1: 6.9})
    assert st["identical"] and stats.direction(st) == stats.IDENTICAL
    assert stats.verdict(stats.IDENTICAL, "falls") == "not comparable (same estimates)"
    assert stats.verdict(stats.IDENTICAL, "flat") == "agree (identical)"
    assert stats.direction(stats.paired_step({0: 7.0}, {0: 7.0})) == stats.IDENTICAL
    assert not stats.paired_step({0: 1.0, 1: 1.0}, {0: 1.0, 1: 1.5})["identical"]


def test_paper_direction_and_verdict():
    assert stats.paper_direction(1.42) == "rises" and stats.paper_direction(-0.08) == "falls"
    assert stats.paper_direction(0.0) == "flat" and stats.paper_direction(None) is None
    assert stats.paper_direction(1.0, stated="flat") == "flat"
    with pytest.raises(ValueError):
        stats.paper_direction(stated="up")
    assert stats.verdict("rises", "rises") == "agree"
    assert stats.verdict("falls", "rises") == "disagree"
    assert stats.verdict("rises", "flat") == "disagree"
    assert stats.verdict("within noise", "rises") == "not resolved"
    assert stats.verdict("within noise", "flat") == "agree (no change resolved)"
    assert stats.verdict(stats.ONE_SEED, "rises") == "not resolved"
    assert stats.verdict("rises", None) == "no paper value"


def test_stated_directions_between_rows():
    d = ["rises", "rises", "flat", "flat"]
    assert stated_direction(d, 0, 1) == "rises" and stated_direction(d, 2, 3) == "flat"
    assert stated_direction(d, 0, 4) == "rises" and stated_direction(d, 2, 4) == "flat"
    assert stated_direction(["rises", "falls"], 0, 2) is None and stated_direction(None, 0, 1) is None


def _row(variant, value, per_seed, paper=None):
    row = dict(variant=variant, value=value, epochs=[2], per_seed=per_seed,
               stats={c: stats.mean_std(v[c] for v in per_seed.values()) for c in ("vocals", "accompaniment", "mean")})
    if paper:
        row["paper"] = paper
    return row


def test_steps_table_from_hand_made_rows():
    spec = dict(title="t", target="vocals", metric="si_snr", variants=["a", "b", "c"],
                varied={"key": "shaping.excerpt_seconds", "label": "len"}, trend_columns=["vocals", "accompaniment"])

    def seeds(vocals, accomp):
        return {k: {"vocals": v, "accompaniment": a, "mean": (v + a) / 2}
                for k, (v, a) in enumerate(zip(vocals, accomp))}

    rows = [_row("a", 5, seeds([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]), {"vocals": 3.0, "accompaniment": 13.5}),
            _row("b", 10, seeds([1.5, 2.7, 3.4], [4.1, 3.8, 4.2]), {"vocals": 5.0, "accompaniment": 12.7}),
            _row("c", 20, seeds([2.5, 3.6, 4.5], [3.0, 2.9, 3.1]))]
    judged = {(s["frm"], s["to"], s["column"]): s for s in steps(spec, rows)}
    assert set(judged) == {(a, b, c) for a, b in (("a", "b"), ("b", "c"), ("a", "c"))
                           for c in ("vocals", "accompaniment")}
    ab = judged[("a", "b", "vocals")]
    assert (ab["measured"], ab["paper"], ab["verdict"]) == ("rises", "rises", "agree")
    assert ab["paper_step"] == pytest.approx(2.0)
    acc = judged[("a", "b", "accompaniment")]                        # diffs 0.1, -0.2, 0.2: noise
    assert (acc["measured"], acc["paper"], acc["verdict"]) == ("within noise", "falls", "not resolved")
    assert judged[("b", "c", "accompaniment")]["measured"] == "falls"
    assert judged[("a", "c", "vocals")]["verdict"] == "no paper value"   # no paper value for c
    md = results_markdown(spec, rows)
    assert "| a | 5 | – | – | – | 2 | 3 | 2.00 ± 1.00 | 4.00 ± 0.00 | 3.00 ± 0.50 | 3.00 | 13.50 | – |" in md
    assert "| a → b | vocals | +0.53 ± 0.09 (n=3) | rises | +2.00 | rises | agree |" in md
    assert "- vocals, a → c: rises, +1.53 +- 0.03 dB (s.e., 3 paired seeds)." in md
