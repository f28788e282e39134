"""run.sh: option parsing, error paths, the targets as parallel jobs, failure and resume."""
import subprocess
import sys

from conftest import REPO
from test_system import plant


def _run(*args):
    return subprocess.run(["./run.sh", "--setup", "no", *args], cwd=REPO, capture_output=True, text=True)


def test_run_sh_help_lists_options():
    out = _run("--help")
    assert out.returncode == 0
    for name in ("--stage", "--stop_stage", "--tag", "--musdb_root", "--extra_roots", "--devices", "--seeds"):
        assert name in out.stdout


def test_run_sh_rejects_unknown_option_and_target(tmp_path):
    out = _run("--no_such_option", "1")
    assert out.returncode != 0 and "unknown option --no_such_option" in out.stderr
    out = _run("--tag", "piano", "--exp_dir", str(tmp_path))
    assert out.returncode != 0 and "--target" in out.stderr


def test_run_sh_target_list_is_types_targets():
    """run.sh keeps its one shell copy of the target list; it must equal data/types.py's."""
    from asteroid_frugal.data.types import TARGETS

    lines = [line for line in (REPO / "run.sh").read_text().splitlines() if line.startswith("all_targets=")]
    assert len(lines) == 1 and lines[0].split('"')[1].split() == list(TARGETS)
    out = _run("--target", "piano", "--exp_dir", "/nonexistent/x", "--stage", "9")
    assert out.returncode != 0 and f"unknown target 'piano' ({', '.join(TARGETS)})" in out.stderr


TINY_RECIPE = """
data: {sample_rate: 8000, valid_chunk_seconds: 1}
default_corpus: {generator: synth, n_train: 3, n_valid: 1, n_test: 1, song_seconds: 4, jobs: 1}
filterbank: {n_filters: 16, kernel_size: 20}
masker: {hidden_size: 16, n_layers: 2}
shaping: {excerpt_seconds: 1, align_seconds: 2}
training: {epochs: 1, batch_size: 2, num_workers: 0}
evaluation: {chunk_seconds: 2, overlap_seconds: 0.5, n_examples: 0, bss: false}
"""


def tiny_recipe(tmp_path, *options):
    overlay = tmp_path / "tiny.yml"
    overlay.write_text(TINY_RECIPE)
    return subprocess.run(["./run.sh", "--setup", "no", "--python", sys.executable, "--overlay", str(overlay),
                           "--data_dir", str(tmp_path / "data"), "--exp_dir", str(tmp_path / "exp"), *options],
                          cwd=REPO, capture_output=True, text=True, timeout=1200)


def test_run_sh_with_a_mistyped_tag_leaves_no_experiment_folder(tmp_path):
    exp = tmp_path / "exp"
    (exp / "vocals").mkdir(parents=True)
    out = subprocess.run(["./run.sh", "--setup", "no", "--stage", "4", "--tag", "vocals_typo", "--exp_dir", str(exp),
                          "--data_dir", str(tmp_path / "data")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert f"{exp}/vocals_typo: no such experiment (mistyped --tag? existing: vocals" in out.stderr
    # the built-in corpus' default overlays: the demo's, then its vocals training (--egs: the demo's alone,
    # test_sweep.py's variants would not run with the vocals excerpts)
    assert "built-in corpus with the demo configuration (egs/demo/conf.yml egs/demo/vocals.yml)" in out.stdout
    # a run whose stage fails before making anything removes the folder it made (a stage that fails
    # at once stands in for stage 3 refusing a tag without training data: python = false)
    out = subprocess.run(["./run.sh", "--setup", "no", "--stage", "3", "--stop_stage", "3", "--tag", "vocals_typo",
                          "--exp_dir", str(exp), "--data_dir", str(tmp_path / "data"), "--python", "false"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "== stage 3" in out.stdout
    assert sorted(p.name for p in exp.iterdir()) == ["vocals"]
    (exp / "vocals" / "keep.txt").write_text("an existing experiment's folder stays, whatever happens")
    out = subprocess.run(["./run.sh", "--setup", "no", "--stage", "3", "--stop_stage", "3", "--tag", "vocals",
                          "--exp_dir", str(exp), "--python", "false"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0 and (exp / "vocals" / "keep.txt").exists()


def test_run_sh_parallel_targets_a_failure_then_the_resumed_run(tmp_path):
    """Stages 2-4 of the three targets as background jobs, 2 at a time, each with an explicit
    thread count and passive waiting, its output in exp/recipe/<target>.log. One target fails
    (a planted checkpoint is refused): the others finish, run.sh names the failed target and its
    log, exits 1 and runs no {4}. Re-run without the bad file: only drums trains, then {4}."""
    import os

    bad = plant(tmp_path / "exp" / "drums" / "checkpoints" / "last.ckpt", tmp_path / "marker")
    out = tiny_recipe(tmp_path, "--stop_stage", "4", "--target_jobs", "2")
    text = out.stdout + out.stderr   # run.sh's own output goes through its log (tee)
    assert out.returncode == 1, text[-3000:]
    threads = max(1, os.cpu_count() // 2)
    assert (f"== stages 2-4 of vocals drums bass: 2 at a time, --set runtime.threads={threads} "
            "--set runtime.omp_wait_policy=passive") in text
    log = tmp_path / "exp" / "recipe" / "drums.log"
    assert f"run.sh: target drums failed; the end of {log}:" in text
    assert "refused" in text and text.strip().splitlines()[-1] == (
        "run.sh: failed: drums (re-run the same command to resume)")
    exp = tmp_path / "exp"
    for t in ("vocals", "bass"):
        assert (exp / t / "best_model.pth").is_file() and (exp / t / "results" / "final_metrics.json").is_file()
        assert (f"runtime: torch threads {threads}, OMP wait policy passive (threads and wait policy from --set)"
                in (exp / "recipe" / f"{t}.log").read_text())
    assert not (exp / "combined").exists() and not (tmp_path / "marker").exists()
    trained = {t: (exp / t / "best_model.pth").stat().st_mtime_ns for t in ("vocals", "bass")}
    import shlex   # each model's train_command.txt is the user's command, re-runnable as written (quoted)
    assert shlex.split((exp / "vocals" / "train_command.txt").read_text()) == [
        "./run.sh", "--setup", "no", "--python", sys.executable, "--overlay", str(tmp_path / "tiny.yml"),
        "--data_dir", str(tmp_path / "data"), "--exp_dir", str(exp), "--stop_stage", "4", "--target_jobs", "2"]

    bad.unlink()
    out = tiny_recipe(tmp_path, "--stage", "2", "--stop_stage", "4", "--target_jobs", "3")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "== stages 2-4 of vocals drums bass: 3 at a time" in out.stdout
    assert {t: (exp / t / "best_model.pth").stat().st_mtime_ns for t in trained} == trained   # not retrained
    assert (exp / "drums" / "best_model.pth").is_file() and "   drums: " in out.stdout
    assert (exp / "combined" / "results" / "final_metrics.json").is_file()
    assert out.stdout.index("== stage 4 (evaluation {4}") > out.stdout.index("== stages 2-4")
    wrong = tiny_recipe(tmp_path, "--stage", "4", "--target_jobs", "two")
    assert wrong.returncode == 1 and wrong.stderr.strip() == "run.sh: --target_jobs two: expected auto or a number >= 1"



def test_run_sh_error_paths_without_exp_print_their_message(tmp_path):
    """A fresh clone has no exp/: a mistyped --tag at stage 4 or 5 said nothing (`ls -d */` failed
    under set -e first). Every error path prints its one line, creates nothing, and exits 1 (run.sh's
    own checks) or 2 (a stage's error)."""
    missing, empty = tmp_path / "no_such_folder", tmp_path / "empty"
    empty.mkdir()

    def run(*args):
        return subprocess.run(["./run.sh", "--setup", "no", "--python", sys.executable, "--data_dir",
                               str(tmp_path / "data"), *args], cwd=REPO, capture_output=True, text=True, timeout=300)

    for exp in (missing, empty):
        for stage in ("4", "5"):
            out = run("--stage", stage, "--tag", "vocals_typo", "--exp_dir", str(exp))
            assert out.returncode == 1, out.stderr
            assert out.stderr.strip().splitlines()[-1] == (
                f"run.sh: {exp}/vocals_typo: no such experiment (mistyped --tag? existing: none)")
    # a stage's own error (stage 5 of a target that was never trained), the folders it made removed
    out = run("--stage", "5", "--target", "vocals", "--exp_dir", str(missing))
    text = out.stdout + out.stderr   # (after its checks, run.sh's output goes through its log)
    assert out.returncode == 2 and "Traceback" not in text
    assert f"error: {missing}/vocals: experiment folder not found" in text
    out = run("--stage", "three", "--exp_dir", str(missing))
    assert out.returncode == 1 and out.stderr.strip() == "run.sh: --stage three: expected a number (stages 0-5)"
    out = run("--stage", "3", "--tag", "vocals", "--exp_dir", str(missing), "--python", str(tmp_path / "nopython"))
    assert out.returncode == 1 and out.stderr.strip() == (
        f"run.sh: --python {tmp_path / 'nopython'}: not found (run without --setup no to create .venv, or give --python)")
    assert not missing.exists() and list(empty.iterdir()) == []


def test_run_sh_names_a_stage_killed_by_a_signal(tmp_path):
    killer = tmp_path / "python"
    killer.write_text("#!/bin/sh\nkill -9 $$\n")
    killer.chmod(0o755)
    out = subprocess.run(["./run.sh", "--setup", "no", "--python", str(killer), "--stage", "3", "--stop_stage", "3",
                          "--tag", "vocals", "--exp_dir", str(tmp_path / "exp")], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 137
    assert "run.sh: stage 3 (training, vocals) killed by signal 9" in out.stdout + out.stderr


def test_run_sh_refuses_in_one_line_while_another_run_holds_the_experiment(tmp_path):
    """A stage of another run holds exp/vocals (asteroid_frugal/lock.py): run.sh refuses before it
    writes anything (its run.log included), naming the holder; once the holder is killed, its lock
    file left behind, the next run goes on."""
    import signal

    exp = tmp_path / "exp"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1])\n"
        "from asteroid_frugal.lock import folder_lock\n"
        "with folder_lock(sys.argv[2], 'training'):\n"
        "    print('held', flush=True); time.sleep(120)"), str(REPO), str(exp / "vocals")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (exp / "vocals" / "run.log").write_text("the first run's log\n")
        args = ["./run.sh", "--setup", "no", "--stage", "3", "--stop_stage", "3", "--tag", "vocals",
                "--exp_dir", str(exp), "--data_dir", str(tmp_path / "data")]
        out = subprocess.run([*args, "--python", sys.executable], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 1 and "== stage" not in out.stdout, out.stdout
        assert out.stderr.strip() == (f"run.sh: {exp}/vocals is in use by pid {holder.pid} on host "
                                      f"{__import__('socket').gethostname()} since "
                                      f"{__import__('json').loads((exp / 'vocals' / '.lock').read_text())['started']} "
                                      f"(training: -c {REPO} {exp / 'vocals'}); wait for it to finish or stop it")
        assert (exp / "vocals" / "run.log").read_text() == "the first run's log\n"
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert (exp / "vocals" / ".lock").exists()
        out = subprocess.run([*args, "--python", "false"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert "== stage 3 (training, vocals)" in out.stdout and "in use" not in out.stderr
    finally:
        holder.kill()
        holder.wait()
