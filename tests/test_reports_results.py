"""The evaluation report (reports.results): numbers and tables, the facts about models and data, Table 3's
rows beside the paper's, results.md with and without BSS Eval, the per-track figure."""
import json
import math
import types

import pandas as pd
import pytest

from asteroid_frugal.config import load_config
from asteroid_frugal.reports.results import (PAPER_TABLE3, TABLE3_COLUMNS, corpus_description, evaluation_facts, fmt,
                                             markdown_table, plot_sdr_distribution, sisnr_only_facts, table3_rows,
                                             table3_runs, training_data_description, training_length,
                                             write_results_md)

OPTS = dict(chunk_seconds=30.0, overlap_seconds=1.0)


def test_numbers_and_tables():
    assert [fmt(None), fmt(float("nan")), fmt(math.inf), fmt(-math.inf), fmt(1.234), fmt(2, 1)] == [
        "-", "nan", "inf", "-inf", "1.23", "2.0"]
    assert markdown_table(("a", "b"), [[1, "x"]]) == "| a | b |\n|---|---|\n| 1 | x |"
    rows = table3_rows([("run", "data", {"vocals": 7.0, "mean": float("nan")})])
    assert rows[:len(PAPER_TABLE3)] == [[name, "paper", *values] for name, values in PAPER_TABLE3]
    assert rows[-1] == ["**run**", "data", "7.00", "-", "-", "-", "-", "nan"]
    assert len(rows[-1]) == 2 + len(TABLE3_COLUMNS)


def test_training_data_and_corpus_in_words(tmp_path):
    assert training_data_description(None) == "unknown (the experiment has no conf.yml)"
    conf = load_config()
    assert training_data_description(conf) == (
        f"the built-in procedurally generated corpus ({conf['default_corpus']['n_train']} synthetic songs of "
        f"{conf['default_corpus']['song_seconds']} s; not MUSDB18), {conf['shaping']['excerpt_seconds']} s excerpts")
    conf = load_config(overrides=["data.musdb_root=/m", 'data.extra_roots=["/x"]', "shaping.database_fraction=0.5",
                                  "shaping.excerpt_seconds=10"])
    assert training_data_description(conf) == ("MUSDB18 train split (/m) + extra songs from /x, 50% of the songs, "
                                               "10 s excerpts")
    assert training_data_description(load_config(overrides=["data.musdb_download=true"])).startswith(
        "musdb's 7-second MUSDB18 sample")
    assert corpus_description("musdb18hq") == "MUSDB18-HQ (WAV stems)"
    assert corpus_description("musdb18_7s_44100") == "musdb's 7-second MUSDB18 excerpts"
    assert corpus_description("default_22050").startswith("the built-in procedurally generated corpus")
    assert corpus_description("mine") == "corpus 'mine'"
    assert training_length(tmp_path) == "training not finished (no training_done.json)"
    (tmp_path / "training_done.json").write_text(json.dumps({"epochs_done": 12, "stop_reason": "early_stopping"}))
    assert training_length(tmp_path) == "12 epochs (early stopping)"


def test_table3_runs_of_one_model_and_of_the_combination(tmp_path):
    median = pd.DataFrame({"SDR": [7.0, 13.0]}, index=["vocals", "accompaniment"])
    (run,) = table3_runs("{1}", tmp_path / "vocals", [tmp_path / "vocals"], median, {})
    assert run == ("This run: TasNet {1}, vocals", "unknown (the experiment has no conf.yml)",
                   {"vocals": 7.0, "accompaniment": 13.0})
    dirs = [tmp_path / t for t in ("vocals", "drums", "bass")]
    median = pd.DataFrame({"SDR": [6.0, 5.0, 4.0, 3.0]}, index=["vocals", "drums", "bass", "other"])
    assert [r[0] for r in table3_runs("{4}", tmp_path / "combined", dirs, median, {"sdr_mean": 4.5})] == [
        "This run: TasNet {4}, combined"]
    for d, metrics in zip(dirs, ({"sdr_vocals": 7.0, "sdr_accompaniment": 12.0}, {"sdr_drums": 6.0},
                                 {"sdr_bass": 5.0})):
        (d / "results").mkdir(parents=True)
        (d / "results" / "final_metrics.json").write_text(json.dumps(metrics))
    one, four = table3_runs("{4}", tmp_path / "combined", dirs, median, {"sdr_mean": 4.5})
    assert one[2] == {"other": 3.0, "vocals": 7.0, "accompaniment": 12.0, "drums": 6.0, "bass": 5.0,
                      "mean": (7.0 + 6.0 + 5.0 + 3.0) / 4}
    assert four[2] == {"vocals": 6.0, "drums": 5.0, "bass": 4.0, "other": 3.0, "mean": 4.5}


def test_facts_name_models_data_and_scoring(tmp_path):
    model = types.SimpleNamespace(target="vocals", path=tmp_path / "vocals" / "best_model.pth")
    split = tmp_path / "musdb18hq" / "test"
    fast = evaluation_facts("{1}", [tmp_path / "vocals"], [model], "fast", "cpu", split, 50, OPTS)
    assert fast[0].startswith("Scenario {1}: each source of the one model")
    assert fast[1].startswith(f"vocals model: `{model.path}`, training not finished")
    assert fast[2] == f"Evaluation set: 50 whole track(s) of the test split of MUSDB18-HQ (WAV stems), `{split}`."
    assert "fast evaluator (`asteroid_frugal.bsseval_fast`, cpu)" in fast[3]
    assert fast[-1] == "Separation: chunks of 30 s, 1 s cross-fade."
    museval = evaluation_facts("{4}", [tmp_path / "vocals"], [model], "museval", "cpu", split, 50, OPTS)
    assert museval[0].startswith("Scenario {4}") and museval[3].startswith("BSS Eval v4 computed by museval ")
    only = sisnr_only_facts(model, tmp_path / "vocals", split, OPTS)
    assert only[1] == f"SI-SNR only (evaluation.bss: false): BSS Eval was not run on `{split}`."


def test_results_md_with_and_without_bss_eval(tmp_path):
    median = pd.DataFrame({"SDR": [7.0, 13.0], "SIR": [15.0, 20.0], "ISR": [12.0, 18.0], "SAR": [8.0, 14.0]},
                          index=["vocals", "accompaniment"])
    sisnr = {"SI-SNR": {"vocals": 9.5, "accompaniment": 12.25}}
    path = tmp_path / "results.md"
    write_results_md(path, title="Evaluation of vocals", facts=["fact one"],
                     table3=[("run", "data", {"vocals": 7.0})], metrics_median=median, metrics_mean=median * 0.5,
                     n_tracks={"vocals": 3, "accompaniment": 3}, sisnr=sisnr, notes=["a note"], figure="sdr.png")
    text = path.read_text()
    assert text.startswith("# Evaluation of vocals\n\nWritten ") and "- fact one\n" in text
    assert "## SDR in the form of the paper's Table 3" in text and "| **run** | data | 7.00 | - |" in text
    assert "| vocals | 3 | 7.00 | 15.00 | 12.00 | 8.00 | 3.50 | 7.50 | 6.00 | 4.00 |" in text
    assert "|  | vocals | accompaniment |\n|---|---|---|\n| SI-SNR | 9.50 | 12.25 |" in text
    assert "Table 1, 100 % of the database, 125 epochs: vocals 10.33" in text
    assert "![per-track SDR distributions](sdr.png)" in text and "## Notes\n\n- a note\n" in text
    write_results_md(path, title="t", facts=[], table3=[], metrics_median=None, metrics_mean=None, n_tracks={},
                     sisnr=sisnr)
    text = path.read_text()
    assert "Table 3" not in text and "All BSS Eval metrics" not in text and "| SI-SNR | 9.50 |" in text


def test_per_track_figure(tmp_path):
    tracks = pd.DataFrame({"target": ["vocals", "vocals", "bass"], "SDR": [5.0, float("nan"), 3.0]})
    plot_sdr_distribution(tracks, tmp_path / "sdr.png", "per track", ["vocals", "bass"])
    plot_sdr_distribution(tracks, tmp_path / "none.png", "nothing finite", ["drums"])
    assert (tmp_path / "sdr.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "none.png").stat().st_size > 0


@pytest.mark.parametrize("module", ["results", "sweep", "experiment", "model_card", "data", "docs_results",
                                    "docs_generalisation", "docs_realtime"])
def test_reports_import_no_stage_module_at_import_time(module):
    """The report modules are leaves: the stages (evaluate, sweep, publish) import them, never the reverse
    at import time."""
    import ast

    from conftest import REPO

    tree = ast.parse((REPO / "asteroid_frugal" / "reports" / f"{module}.py").read_text())
    top = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.level]
    assert not [n.module for n in top if n.level == 2 and (n.module or "").split(".")[0] in (
        "evaluate", "sweep", "publish", "train", "separate", "cli")]
