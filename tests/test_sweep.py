"""egs sweeps: two tiny variants end to end through run.sh, interrupted and resumed; the table
comes from each variant's own metric files."""
import json
import signal
import subprocess
import sys
import time

import pytest

from asteroid_frugal.sweep import collect, load_experiment, results_markdown
from asteroid_frugal.utils import FrugalError

from conftest import REPO

COMMON = """
data: {sample_rate: 8000, valid_chunk_seconds: 1}
default_corpus: {generator: synth, n_train: 3, n_valid: 1, n_test: 1, song_seconds: 4, jobs: 1}
filterbank: {n_filters: 16, kernel_size: 20}
masker: {hidden_size: 16, n_layers: 2}
shaping: {align_seconds: 2}
training: {epochs: 1, batch_size: 2, num_workers: 0}
evaluation: {chunk_seconds: 2, overlap_seconds: 0.5, n_examples: 0, bss: false}
"""
EXPERIMENT = """
title: "tiny excerpt-length sweep"
target: vocals
metric: si_snr
varied: {key: shaping.excerpt_seconds, label: "excerpt length (s)"}
common: common.yml
variants: [short, long]
paper:
  sign: -1
  rows: {short: {vocals: -3.0, accompaniment: -9.0, mean: -6.0}}
"""


def make_egs(tmp_path):
    egs = tmp_path / "tiny_sweep"
    egs.mkdir()
    (egs / "experiment.yml").write_text(EXPERIMENT)
    (egs / "common.yml").write_text(COMMON)
    (egs / "short.yml").write_text("shaping: {excerpt_seconds: 1}\n")
    (egs / "long.yml").write_text("shaping: {excerpt_seconds: 2}\n")
    return egs


def sweep_cmd(egs, tmp_path):
    return ["./run.sh", "--setup", "no", "--python", sys.executable, "--egs", str(egs),
            "--exp_dir", str(tmp_path / "exp"), "--data_dir", str(tmp_path / "data")]


def test_sweep_runs_resumes_and_tabulates(tmp_path):
    egs = make_egs(tmp_path)
    exp = tmp_path / "exp" / "tiny_sweep"
    first_done = exp / "short" / "results" / "final_metrics.json"
    proc = subprocess.Popen(sweep_cmd(egs, tmp_path), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 400
    while time.time() < deadline and not first_done.exists() and proc.poll() is None:
        time.sleep(0.5)
    assert first_done.exists(), "first variant never finished"
    import os
    os.killpg(proc.pid, signal.SIGKILL)  # interrupt the sweep during the second variant
    proc.wait()
    assert not (exp / "results.md").exists()
    trained_at = (exp / "short" / "training_done.json").stat().st_mtime_ns

    out = subprocess.run(sweep_cmd(egs, tmp_path), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (exp / "short" / "training_done.json").stat().st_mtime_ns == trained_at  # not retrained
    assert (exp / "results.png").stat().st_size > 0
    table = (exp / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| short") or line.startswith("| long")]
    assert len(rows) == 2
    for line, variant, length in zip(rows, ("short", "long"), (1, 2)):
        cells = [c.strip() for c in line.strip("|").split("|")]
        metrics = json.loads((exp / variant / "results" / "final_metrics.json").read_text())
        assert cells[1] == str(length)
        assert float(cells[6]) == pytest.approx(metrics["si_snr_vocals"], abs=0.006)
        assert float(cells[7]) == pytest.approx(metrics["si_snr_accompaniment"], abs=0.006)
    short = [c.strip() for c in rows[0].strip("|").split("|")]
    assert float(short[9]) == 3.0 and float(short[10]) == 9.0  # paper row, sign applied
    assert not (exp / "short" / "results" / "all_metrics.csv").exists()  # SI-SNR only: no museval run

    # docs/make_results.py: the published page is the same table with a caption read from the run
    log = tmp_path / "sweep.log"
    log.write_text(out.stderr)
    pages = tmp_path / "pages"
    built = subprocess.run([sys.executable, "docs/make_results.py", "--exp_dir", str(tmp_path / "exp"),
                            "--out_dir", str(pages), f"{egs}:{log}"], cwd=REPO, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    page = (pages / "tiny_sweep.md").read_text()
    assert rows == [line for line in page.splitlines() if line.startswith(("| short", "| long"))]
    n_params = json.loads((exp / "short" / "training_done.json").read_text())["n_parameters"]
    assert "3 train / 1 validation / 1 test songs of 4 s, 8000 Hz" in page
    assert f"{n_params:,}-parameter TasNet (16 filters of 20 samples, 2 x 16 BLSTM)" in page
    assert "long " in page.split("per variant")[1]  # the re-run variant's time, from the log
    assert (pages / "tiny_sweep.png").stat().st_size > 0
    assert "## tiny excerpt-length sweep" in (pages / "results.md").read_text()
    missing = subprocess.run([sys.executable, "docs/make_results.py", "--exp_dir", str(tmp_path / "exp"),
                              "--out_dir", str(tmp_path / "none"), f"{egs}:{log}", f"{egs}:{tmp_path / 'no.log'}"],
                             cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'no.log'}: sweep log not found (the tee'd output of ./run.sh --egs ...)"]
    assert not (tmp_path / "none").exists()  # the good first sweep's page is not written either


def test_table_changes_when_a_metric_file_changes(tmp_path):
    egs = make_egs(tmp_path)
    spec = load_experiment(egs)
    exp = tmp_path / "exp"
    for v, value in (("short", 1.5), ("long", 2.5)):
        (exp / v / "results").mkdir(parents=True)
        (exp / v / "results" / "final_metrics.json").write_text(
            json.dumps({"si_snr_vocals": value, "si_snr_accompaniment": 2 * value}))
    rows = collect(spec, exp)
    assert [(r["variant"], r["target"], r["rest"], r["mean"]) for r in rows] == [
        ("short", 1.5, 3.0, 2.25), ("long", 2.5, 5.0, 3.75)]
    assert "| short | 1 |" in results_markdown(spec, rows)
    (exp / "long" / "results" / "final_metrics.json").write_text(json.dumps({"si_snr_vocals": 1.0}))
    with pytest.raises(FrugalError, match="si_snr_accompaniment"):
        collect(spec, exp)


def test_broken_experiment_folder_is_a_one_line_error(tmp_path):
    egs = make_egs(tmp_path)
    (egs / "long.yml").unlink()
    with pytest.raises(FrugalError, match="long.yml"):
        load_experiment(egs)
