"""An experiment's table and figure (reports.sweep, reports.experiment): the rows come from each run's own
metric files, mean ± std over seeds, paired steps, the paper's values beside them."""
import json
import math

import pytest

from asteroid_frugal.reports.experiment import load_experiment
from asteroid_frugal.reports.sweep import collect, plot_results, results_markdown, steps
from asteroid_frugal.utils import FrugalError
from test_sweep import make_egs

from conftest import REPO


def test_table_changes_when_a_metric_file_changes(tmp_path):
    egs = make_egs(tmp_path)
    spec = load_experiment(egs)
    exp = tmp_path / "exp"
    for k, offset in ((0, 0.0), (1, 1.0)):
        for v, length, value in (("short", 1, 1.5), ("long", 2, 2.5)):
            run = exp / f"seed{k}" / v
            (run / "results").mkdir(parents=True)
            (run / "conf.yml").write_text(f"shaping: {{excerpt_seconds: {length}}}\n")
            (run / "results" / "final_metrics.json").write_text(
                json.dumps({"si_snr_vocals": value + offset, "si_snr_accompaniment": 2 * value}))
    rows = collect(spec, exp)
    assert [(r["variant"], r["value"], r["stats"]["vocals"], r["stats"]["accompaniment"][0]) for r in rows] == [
        ("short", 1, (2.0, math.sqrt(0.5)), 3.0), ("long", 2, (3.0, math.sqrt(0.5)), 5.0)]
    assert rows[0]["per_seed"][1] == {"vocals": 2.5, "accompaniment": 3.0, "mean": 2.75}
    assert "| short | 1 |" in results_markdown(spec, rows)
    assert [r["variant"] for r in collect(spec, exp, n_seeds=1)] == ["short", "long"]
    assert len(collect(spec, exp, n_seeds=1)[0]["per_seed"]) == 1
    (exp / "seed1" / "long" / "results" / "final_metrics.json").write_text(json.dumps({"si_snr_vocals": 1.0}))
    with pytest.raises(FrugalError, match="seed1/long/results/final_metrics.json: no 'si_snr_accompaniment'"):
        collect(spec, exp)


def test_table3_rows_from_the_three_models_and_the_combination(tmp_path):
    spec = load_experiment(REPO / "egs" / "table3_musdb")
    exp = tmp_path / "exp"
    for k in (0, 1):
        run = exp / f"seed{k}" / "tasnet"
        for d, metrics in (("vocals", {"sdr_vocals": 3.0 + k, "sdr_accompaniment": 9.0}),
                           ("drums", {"sdr_drums": 4.0, "sdr_no_drums": 8.0}), ("bass", {"sdr_bass": 2.0}),
                           ("combined", {"sdr_vocals": 3.5 + 2 * k, "sdr_drums": 3.0, "sdr_bass": 2.5,
                                         "sdr_other": 1.0, "sdr_mean": 2.5 + k / 2})):
            (run / d / "results").mkdir(parents=True)
            (run / d / "results" / "final_metrics.json").write_text(json.dumps(metrics))
        (run / "vocals" / "conf.yml").write_text("shaping: {excerpt_seconds: 20}\n")
    rows = collect(spec, exp)
    assert [r["variant"] for r in rows] == ["tasnet {1}", "tasnet {4}"]
    one, four = rows
    assert one["per_seed"][1] == {"vocals": 4.0, "accompaniment": 9.0, "drums": 4.0, "bass": 2.0, "other": 1.0,
                                  "mean": (4.0 + 4.0 + 2.0 + 1.0) / 4}
    assert four["per_seed"][0] == {"vocals": 3.5, "drums": 3.0, "bass": 2.5, "other": 1.0, "mean": 2.5}
    assert one["paper"]["drums"] == 7.68 and four["paper"]["drums"] == 6.90
    judged = {s["column"]: s for s in steps(spec, rows)}
    assert set(judged) == {"vocals", "drums", "bass", "mean"}      # other of {1} is the {4} value: no step
    assert judged["drums"]["step"]["mean"] == -1.0 and judged["drums"]["measured"] == "falls"
    assert judged["drums"]["paper"] == "falls" and judged["drums"]["verdict"] == "agree"
    md = results_markdown(spec, rows)
    assert "| tasnet {1} | – | – | – | – | 2 | 3.50 ± 0.71 | 9.00 ± 0.00 | 4.00 ± 0.00 |" in md
    plot_results(spec, rows, tmp_path / "t3.png")
    assert (tmp_path / "t3.png").stat().st_size > 0
    (exp / "seed1" / "tasnet" / "combined" / "results" / "final_metrics.json").unlink()
    assert [len(r["per_seed"]) for r in collect(spec, exp)] == [1, 1]   # seed 1 incomplete: left out


def test_sdr_table_names_the_bss_eval_backend():
    spec = {"title": "t", "target": "vocals", "metric": "sdr", "varied": {"key": "k", "label": "x"},
            "variants": ["a", "b"]}
    rows = [dict(variant="a", value=1, per_seed={}, stats={}, epochs=[1], bss_backends=["fast"]),
            dict(variant="b", value=2, per_seed={}, stats={}, epochs=[1], bss_backends=["museval"])]
    assert "SDR (dB, BSS Eval v4 by museval and the fast evaluator" in results_markdown(spec, rows)
    assert "BSS Eval v4 by museval, median" in results_markdown(spec, rows[1:])
