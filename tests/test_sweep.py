"""egs sweeps: two tiny variants x two seeds end to end through run.sh, interrupted and resumed; the table
(mean ± std over seeds, paired steps) comes from each run's own metric files; run.sh options reach every variant."""
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
import yaml

from asteroid_frugal import sweep
from asteroid_frugal.cli.run_egs import main as run_egs
from asteroid_frugal.config import load_config
from asteroid_frugal.reports.experiment import load_experiment
from asteroid_frugal.reports.sweep import collect
from asteroid_frugal.stats import mean_std
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
seeds: 2
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


def sweep_cmd(egs, tmp_path, *options):
    return ["./run.sh", "--setup", "no", "--python", sys.executable, "--egs", str(egs),
            "--exp_dir", str(tmp_path / "exp"), "--data_dir", str(tmp_path / "data"), *options]


def cells(line):
    return [c.strip() for c in line.strip("|").split("|")]


def test_sweep_runs_seeds_resumes_and_tabulates(tmp_path):
    egs = make_egs(tmp_path)
    exp = tmp_path / "exp" / "tiny_sweep"
    first_done = exp / "seed0" / "short" / "results" / "final_metrics.json"
    proc = subprocess.Popen(sweep_cmd(egs, tmp_path), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 400
    while time.time() < deadline and not first_done.exists() and proc.poll() is None:
        time.sleep(0.5)
    assert first_done.exists(), "first variant never finished"
    os.killpg(proc.pid, signal.SIGKILL)  # interrupt the sweep during the second variant
    proc.wait()
    assert not (exp / "results.md").exists()
    trained_at = (exp / "seed0" / "short" / "training_done.json").stat().st_mtime_ns

    out = subprocess.run(sweep_cmd(egs, tmp_path), cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (exp / "seed0" / "short" / "training_done.json").stat().st_mtime_ns == trained_at  # not retrained
    # experiment.yml's seeds: 2 -> two runs per variant: same data, another initialisation and order
    for v in ("short", "long"):
        runs = [exp / f"seed{k}" / v for k in (0, 1)]
        assert [yaml.safe_load((r / "conf.yml").read_text())["training"]["seed"] for r in runs] == [0, 1]
        assert (runs[0] / "data" / "train.csv").read_text() == (runs[1] / "data" / "train.csv").read_text()
        w0, w1 = (torch.load(r / "best_model.pth", weights_only=True)["state_dict"] for r in runs)
        assert any(not torch.equal(w0[k], w1[k]) for k in w0)
    assert not (exp / "seed2").exists()
    assert (exp / "results.png").stat().st_size > 0
    table = (exp / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith(("| short |", "| long |"))]
    assert len(rows) == 2
    for line, variant, length in zip(rows, ("short", "long"), (1, 2)):
        c = cells(line)
        per_seed = [json.loads((exp / f"seed{k}" / variant / "results" / "final_metrics.json").read_text())
                    for k in (0, 1)]
        assert c[1] == str(length) and c[6] == "2"
        for cell, key in ((c[7], "si_snr_vocals"), (c[8], "si_snr_accompaniment")):
            mean, std = (float(x) for x in cell.split(" ± "))
            m, sd = mean_std(m[key] for m in per_seed)
            assert mean == pytest.approx(m, abs=0.006) and std == pytest.approx(sd, abs=0.006)
    short = cells(rows[0])
    assert float(short[10]) == 3.0 and float(short[11]) == 9.0  # paper row, sign applied
    assert "| short → long | vocals |" in table and "(n=2)" in table  # the paired step, judged
    assert not (exp / "seed0" / "short" / "results" / "all_metrics.csv").exists()  # SI-SNR only: no museval run

    # docs/make_results.py: the published page is the same table with a caption read from the run
    log = tmp_path / "sweep.log"
    log.write_text(out.stderr)
    pages = tmp_path / "pages"
    built = subprocess.run([sys.executable, "docs/make_results.py", "--exp_dir", str(tmp_path / "exp"),
                            "--out_dir", str(pages), f"{egs}:{log}", "--note", "two sweeps at once."],
                           cwd=REPO, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    page = (pages / "tiny_sweep.md").read_text()
    assert rows == [line for line in page.splitlines() if line.startswith(("| short |", "| long |"))]
    n_params = json.loads((exp / "seed0" / "short" / "training_done.json").read_text())["n_parameters"]
    assert "3 train / 1 validation / 1 test songs of 4 s, 8000 Hz" in page
    assert f"{n_params:,}-parameter TasNet (16 filters of 20 samples, 2 x 16 BLSTM)" in page
    assert "2 seed(s) per variant" in page
    assert "long " in page.split("per variant and seed")[1]  # the re-run variant's time, from the log
    assert (pages / "tiny_sweep.png").stat().st_size > 0
    summary = (pages / "results.md").read_text()
    assert "## tiny excerpt-length sweep" in summary and "| tiny_sweep | vocals | short → long |" in summary
    assert "How these runs were made: two sweeps at once." in summary
    missing = subprocess.run([sys.executable, "docs/make_results.py", "--exp_dir", str(tmp_path / "exp"),
                              "--out_dir", str(tmp_path / "none"), f"{egs}:{log}", f"{egs}:{tmp_path / 'no.log'}"],
                             cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'no.log'}: sweep log not found (the tee'd output of ./run.sh --egs ...)"]
    assert not (tmp_path / "none").exists()  # the good first sweep's page is not written either
    neither = subprocess.run([sys.executable, "docs/make_results.py"], cwd=REPO, capture_output=True, text=True)
    assert neither.returncode == 2 and neither.stderr.strip() == "error: give either --all or EGS_DIR:SWEEP_LOG pairs"


def test_every_run_sh_option_reaches_every_variant(tmp_path):
    """run.sh's options become --conf/--overlay/--set once; the sweep passes them on unchanged."""
    egs = make_egs(tmp_path)
    conf = tmp_path / "my_conf.yml"
    conf.write_text((REPO / "conf.yml").read_text().replace("  seed: 42", "  seed: 7"))
    assert "seed: 7" in conf.read_text()
    overlay = tmp_path / "user.yml"
    overlay.write_text("optim: {lr: 0.0005}\n")
    out = subprocess.run(sweep_cmd(egs, tmp_path, "--seeds", "1", "--stop_stage", "2", "--conf", str(conf),
                                   "--overlay", str(overlay), "--devices", "4", "--num_nodes", "2",
                                   "--strategy", "ddp", "--precision", "bf16-mixed",
                                   "--set", "optim.weight_decay=0.01"),
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    exp = tmp_path / "exp" / "tiny_sweep"
    assert sorted(p.name for p in exp.iterdir()) == ["seed0"]   # --seeds 1 wins over experiment.yml's 2
    for v, length in (("short", 1), ("long", 2)):
        resolved = yaml.safe_load((exp / "seed0" / v / "data" / "conf.yml").read_text())
        training = {k: resolved["training"][k] for k in ("devices", "num_nodes", "strategy", "precision", "seed")}
        assert training == {"devices": 4, "num_nodes": 2, "strategy": "ddp", "precision": "bf16-mixed", "seed": 0}
        assert resolved["shaping"]["seed"] == 7 and resolved["shaping"]["excerpt_seconds"] == length
        assert resolved["optim"]["lr"] == 0.0005 and resolved["optim"]["weight_decay"] == 0.01
        assert resolved["data"]["root"] == str(tmp_path / "data") and resolved["evaluation"]["bss"] is False
    assert not (exp / "results.md").exists()   # stopped before evaluation: no table


def test_drums_sweep_is_tabulated(tmp_path):
    """A drums experiment: evaluate writes si_snr_drums / si_snr_no_drums (data/types.py's names)
    and the sweep's table reads exactly those (it once looked for a missing si_snr_rest). Run as
    submitit jobs (./run.sh --launcher submitit_local): the data job, then the variant's, each the
    recipe's run.sh in a process of its own (tests/test_launch.py: the launcher itself)."""
    egs = make_egs(tmp_path)
    (egs / "experiment.yml").write_text(EXPERIMENT.replace("target: vocals", "target: drums")
                                        .replace("variants: [short, long]", "variants: [short]")
                                        .replace("vocals: -3.0, accompaniment: -9.0", "drums: -3.0, no_drums: -9.0"))
    out = subprocess.run(sweep_cmd(egs, tmp_path, "--seeds", "1", "--launcher", "submitit_local", "--set",
                                   "launcher.wait=true launcher.gpus_per_node=0 launcher.poll_seconds=1"),
                         cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    exp = tmp_path / "exp" / "tiny_sweep"
    jobs = json.loads((exp / "launcher" / "jobs.json").read_text())
    assert sorted(jobs) == ["prepare", "short_seed0"] and {j["cluster"] for j in jobs.values()} == {"local"}
    job_log = (exp / "launcher" / "short_seed0" / f"{jobs['short_seed0']['job_id']}_0_log.out").read_text()
    assert "== stage 3 (training, short)" in job_log and "Job completed successfully" in job_log
    saved = yaml.safe_load((exp / "seed0" / "short" / "conf.yml").read_text())["launcher"]
    assert saved["name"] == "local" and saved["wait"] is False     # launcher.* reaches no variant
    metrics = json.loads((exp / "seed0" / "short" / "results" / "final_metrics.json").read_text())
    (row,) = collect(load_experiment(egs), exp)
    assert row["per_seed"] == {0: {"drums": metrics["si_snr_drums"], "no_drums": metrics["si_snr_no_drums"],
                                   "mean": (metrics["si_snr_drums"] + metrics["si_snr_no_drums"]) / 2}}
    table = (exp / "results.md").read_text()
    (line,) = [ln for ln in table.splitlines() if ln.startswith("| short |")]
    assert float(cells(line)[7].split(" ± ")[0]) == pytest.approx(metrics["si_snr_drums"], abs=0.006)


def test_target_jobs_reaches_each_all_targets_variant(tmp_path, monkeypatch):
    """run.sh --egs ... --target_jobs N: each variant training all targets (Table 3) gets it."""
    seen = []
    monkeypatch.setattr(sweep.subprocess, "run", lambda cmd, **kw: seen.append(cmd) or types.SimpleNamespace(returncode=0))
    spec = load_experiment(REPO / "egs" / "table3_musdb")
    call = sweep.RecipeCall(REPO, "conf.yml", stage=0, stop_stage=4, target_jobs="1")
    sweep.run_variant(spec, "tasnet", 0, tmp_path, call)
    assert seen[0][seen[0].index("--target_jobs") + 1] == "1"
    run_sh = (REPO / "run.sh").read_text()
    assert '--target_jobs "$target_jobs_option"' in run_sh.split("local/run_egs.py", 1)[1].split("\n", 2)[1]


def test_variant_command_stages_and_settings(tmp_path):
    """The sweep's settings, then run.sh's options, then the seed; a variant never runs stage 5; without
    --stage/--stop_stage (run.sh always passes both) run.sh's first stage and evaluation as the last."""
    spec = load_experiment(make_egs(tmp_path))
    call = sweep.RecipeCall(REPO, "my.yml", ["demo.yml"], ["optim.lr=0.1"], stage=2, stop_stage=5)
    cmd = sweep.variant_command(spec, "long", 1, tmp_path / "exp", call)
    assert cmd[cmd.index("--stage") + 1] == "2" and cmd[cmd.index("--stop_stage") + 1] == "4"
    assert cmd[cmd.index("--set") + 1] == "evaluation.bss=false optim.lr=0.1 training.seed=1"
    assert cmd[cmd.index("--overlay") + 1] == f"demo.yml {spec['common_path']} {spec['variant_paths']['long']}"
    assert cmd[-6:] == ["--exp_dir", str(tmp_path / "exp" / "seed1"), "--tag", "long", "--target", "vocals"]
    bare = sweep.variant_command(spec, "long", 0, tmp_path / "exp", sweep.RecipeCall(REPO, "conf.yml"))
    assert "--stage" not in bare and bare[bare.index("--stop_stage") + 1] == str(sweep.EVALUATION_STAGE)


def test_seeds_from_the_command_line_the_experiment_or_the_config(tmp_path):
    egs = make_egs(tmp_path)
    spec = load_experiment(egs)
    conf = load_config()
    assert conf["sweep"]["seeds"] == 3
    assert sweep.seed_count(spec, conf) == 2 and sweep.seed_count(spec, conf, 5) == 5
    (egs / "experiment.yml").write_text(EXPERIMENT.replace("seeds: 2\n", ""))
    spec = load_experiment(egs)
    assert spec["seeds"] is None and sweep.seed_count(spec, conf) == 3
    assert sweep.seed_count(spec, load_config(overrides=["sweep.seeds=4"])) == 4
    with pytest.raises(FrugalError, match="^--seeds must be >= 1, got 0$"):
        sweep.seed_count(spec, conf, 0)
    with pytest.raises(FrugalError, match="^sweep.seeds must be >= 1, got 0$"):
        sweep.seed_count(spec, load_config(overrides=["sweep.seeds=0"]))
    (egs / "experiment.yml").write_text(EXPERIMENT.replace("seeds: 2", "seeds: 0"))
    with pytest.raises(FrugalError, match="experiment.yml: seeds must be a whole number >= 1, got 0"):
        load_experiment(egs)


def test_run_egs_collect_only_and_the_recipe_folder(tmp_path, monkeypatch, capsys):
    """--collect_only rebuilds the table from the runs' files (no run.sh needed); running variants needs
    run.sh in the current folder (run.sh starts the sweep from its own folder)."""
    egs = make_egs(tmp_path)
    for k in (0, 1):
        for v, length in (("short", 1), ("long", 2)):
            run = tmp_path / "exp" / "tiny_sweep" / f"seed{k}" / v
            (run / "results").mkdir(parents=True)
            (run / "conf.yml").write_text(f"shaping: {{excerpt_seconds: {length}}}\n")
            (run / "results" / "final_metrics.json").write_text(
                json.dumps({"si_snr_vocals": length + k, "si_snr_accompaniment": 2.0 * length}))
    monkeypatch.chdir(tmp_path)
    table = run_egs(["--egs", str(egs), "--exp_dir", "exp", "--collect_only", "--caption", "tiny."])
    assert table == Path("exp") / "tiny_sweep" / "results.md" and (table.parent / "results.png").is_file()
    assert "| short | 1 |" in table.read_text() and "\ntiny.\n" in table.read_text()
    assert capsys.readouterr().out.startswith("# tiny excerpt-length sweep")
    with pytest.raises(FrugalError, match=f"^{tmp_path}: no run.sh here"):
        run_egs(["--egs", str(egs), "--exp_dir", "exp"])
    with pytest.raises(SystemExit):
        run_egs(["--egs", str(egs)])        # --exp_dir is required: run.sh always passes it
