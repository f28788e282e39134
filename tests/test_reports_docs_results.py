"""docs/make_results.py over reports.docs_results: the sweeps' commands with --all, the times from the logs.
(The pages built from a real sweep: tests/test_sweep.py.)"""
import os
import subprocess
import sys

from asteroid_frugal.reports import docs_results
from asteroid_frugal.reports.docs_results import DEMO_SET, EXPERIMENTS, sweep_command, variant_times

from conftest import REPO


def test_make_results_all_runs_sweeps_side_by_side_on_a_share_of_the_cores():
    """--all --jobs N: each sweep's command gets cores/N threads and its targets one at a time; N=1 is unchanged;
    without --seeds each experiment keeps its own (experiment.yml's, else conf.yml's sweep.seeds)."""
    alone = sweep_command("egs/table3_musdb", "exp", DEMO_SET, 3, 1)
    assert alone[alone.index("--set") + 1] == f"{DEMO_SET} shaping.excerpt_seconds=10"
    assert alone[alone.index("--seeds") + 1] == "3"
    assert "--target_jobs" not in alone and "--jobs" not in alone
    threads = max(1, (os.cpu_count() or 1) // 2)
    beside = sweep_command("egs/sec34_variety_vs_context", "exp", DEMO_SET, None, 2)
    assert beside[beside.index("--set") + 1] == (f"{DEMO_SET} default_corpus.song_seconds=45 "
                                                 f"runtime.threads={threads}")
    assert beside[-4:] == ["--data_dir", "data/corpus_45s", "--target_jobs", "1"] and "--seeds" not in beside
    assert set(EXPERIMENTS) == {str(p.parent.relative_to(REPO)) for p in REPO.glob("egs/*/experiment.yml")}
    bad = subprocess.run([sys.executable, "docs/make_results.py", "--all", "--jobs", "0"], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --jobs 0: expected a number >= 1"


def test_variant_times_keep_the_work_not_a_later_skip(tmp_path):
    log = tmp_path / "sweep.log"
    log.write_text("x INFO variant a seed 0 done in 600 s\nx INFO variant b seed 0 done in 300 s\n"
                   "x INFO variant a seed 0 done in 40 s\nx INFO variant a seed 1 done in 500 s\n")
    assert variant_times(log) == {("a", 0): 600, ("b", 0): 300, ("a", 1): 500}


def test_page_head_reads_the_demo_budget_from_the_recipe(tmp_path):
    (tmp_path / "egs" / "demo").mkdir(parents=True)
    (tmp_path / "egs" / "demo" / "conf.yml").write_text("training: {epochs: 17}\n")
    head = docs_results.page_head(tmp_path, note="one core.")
    assert "(fewer epochs than the main job's 17," in head and "How these runs were made: one core.\n" in head
    assert "sec34_variety_vs_context `default_corpus.song_seconds=45`" in head
