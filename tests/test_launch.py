"""Sweeps as submitit jobs (asteroid_frugal/launch.py): the sbatch script from conf.yml's launcher section,
the SLURM path for real with fake sbatch/srun/sacct/squeue on PATH, no job submitted twice, a failed job
in one line with its log, a killed job resumed, DDP ranks in one job, and the same table as a local sweep.

A stub recipe (a run.sh that "trains" in three steps and resumes from its own progress file) stands in
for the real one, so that these tests take seconds; tests/test_sweep.py runs the real recipe."""
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path

import pytest
import yaml

from asteroid_frugal import launch
from asteroid_frugal.cli.run_egs import main as run_egs
from asteroid_frugal.config import load_config
from asteroid_frugal.utils import FrugalError

from test_sweep import EXPERIMENT, make_egs

STUB_RUN_SH = r'''#!{python}
"""A stand-in for the recipe's run.sh: records its calls, "trains" in 3 steps (resumable), scores."""
import json, os, sys, time
from pathlib import Path
import yaml

args, i = {{}}, 1
while i < len(sys.argv):
    args[sys.argv[i].lstrip("-")] = sys.argv[i + 1]
    i += 2
root = Path(__file__).resolve().parent
run = Path(args["exp_dir"]) / args["tag"]
run.mkdir(parents=True, exist_ok=True)
stage, stop = int(args.get("stage", 0)), int(args["stop_stage"])
rank = os.environ.get("LOCAL_RANK", os.environ.get("SLURM_PROCID", "0"))
sets = dict(s.split("=", 1) for s in args["set"].split())
with open(run / "calls.log", "a") as f:
    f.write(json.dumps(dict(rank=rank, stages=[stage, stop], set=sets, world=os.environ.get("WORLD_SIZE"))) + "\n")
if stage <= 1:
    with open(root / "prepared.log", "a") as f:
        f.write(args["tag"] + "\n")
if stage <= 3 <= stop and rank == "0":
    progress = run / "progress"
    done = int(progress.read_text()) if progress.exists() else 0
    if done:
        with open(run / "resume.log", "a") as f:
            f.write(f"resumed at step {{done}}\n")
    for step in range(done + 1, 4):
        if step == 2 and (root / "hold").exists():
            (run / "blocked").write_text(str(os.getpid()))
            while (root / "hold").exists():
                time.sleep(0.1)
        progress.write_text(str(step))
if stage <= 4 <= stop:
    if (root / ("fail_" + args["tag"])).exists():
        print("stub: evaluation failed", file=sys.stderr)
        sys.exit(1)
    length = [yaml.safe_load(open(o)).get("shaping", {{}}).get("excerpt_seconds") for o in args["overlay"].split()]
    length = [x for x in length if x is not None][-1]
    seed = int(sets["training.seed"])
    (run / "conf.yml").write_text(yaml.safe_dump(dict(shaping=dict(excerpt_seconds=length), training=dict(seed=seed))))
    (run / "results").mkdir(exist_ok=True)
    (run / "results" / "final_metrics.json").write_text(json.dumps(
        dict(si_snr_vocals=length + 0.25 * seed, si_snr_accompaniment=2.0 * length - 0.5 * seed)))
'''

# sbatch: records its call and script; with $FAKE_SLURM/run_jobs, runs the job in the background as
# SLURM would (its state in $FAKE_SLURM/state_<id>, read by sacct and squeue)
FAKE_SLURM = {
    "sbatch": r'''#!/bin/bash
dir=$(dirname "$0"); script="${@: -1}"
n=$(( $(cat "$dir/counter" 2>/dev/null || echo 1000) + 1 )); echo $n > "$dir/counter"
echo "$*" >> "$dir/sbatch_calls"; cp "$script" "$dir/script_$n.sh"
echo PENDING > "$dir/state_$n"
if [ -e "$dir/run_jobs" ]; then
  ( export SLURM_JOB_ID=$n SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NODEID=0 SLURM_NTASKS=1 SLURM_JOB_NUM_NODES=1
    echo RUNNING > "$dir/state_$n"
    if bash "$dir/script_$n.sh"; then echo COMPLETED > "$dir/state_$n"; else echo FAILED > "$dir/state_$n"; fi
  ) > /dev/null 2>&1 &
fi
echo "Submitted batch job $n"
''',
    "srun": r'''#!/bin/bash
out=/dev/null
while [ $# -gt 0 ]; do case $1 in --unbuffered) shift ;; --output|--error) [ $1 = --output ] && out=$2; shift 2 ;; *) break ;; esac; done
out=${out//%j/$SLURM_JOB_ID}; out=${out//%t/0}
exec "$@" >> "$out" 2>&1
''',
    "sacct": r'''#!/bin/bash
dir=$(dirname "$0"); echo "$*" >> "$dir/sacct_calls"
echo "JobID|State|NodeList"
while [ $# -gt 0 ]; do
  if [ "$1" = -j ] && [ -e "$dir/state_$2" ]; then echo "$2|$(cat "$dir/state_$2")|node1"; fi; shift
done
''',
    "squeue": r'''#!/bin/bash
dir=$(dirname "$0"); id=$3
case $(cat "$dir/state_$id" 2>/dev/null) in PENDING|RUNNING) cat "$dir/state_$id" ;; *) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1 ;; esac
''',
}
CLUSTER = """
launcher:
  partition: gpu
  account: frugal
  qos: high
  constraint: a100
  gpus_per_node: 4
  cpus_per_task: 8
  mem_gb: 48
  time_min: 90
  sbatch_args: ["--mail-type=END", "--exclusive"]
  setup: ["module load cuda/12.4"]
  poll_seconds: 0.2
"""


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    """A recipe folder with the stub run.sh, as the current folder (run.sh starts sweeps from its own)."""
    root = tmp_path / "recipe"
    root.mkdir()
    run_sh = root / "run.sh"
    run_sh.write_text(STUB_RUN_SH.format(python=sys.executable))
    run_sh.chmod(run_sh.stat().st_mode | stat.S_IXUSR)
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch, srun, sacct and squeue on PATH (see FAKE_SLURM)."""
    bin_dir = tmp_path / "slurm_bin"
    bin_dir.mkdir()
    for name, text in FAKE_SLURM.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def sweep_args(egs, *options):
    return ["--egs", str(egs), "--exp_dir", "exp", "--seeds", "1", *options]


def table_rows(path):
    return [line for line in Path(path).read_text().splitlines() if line.startswith(("| short |", "| long |"))]


def records(recipe):
    return json.loads((recipe / "exp" / "tiny_sweep" / "launcher" / "jobs.json").read_text())


def test_the_sbatch_script_holds_the_conf_and_nothing_is_submitted_twice(tmp_path, recipe, fake_slurm, caplog):
    egs = make_egs(tmp_path)
    cluster = tmp_path / "cluster.yml"
    cluster.write_text(CLUSTER)
    args = sweep_args(egs, "--launcher", "slurm", "--overlay", str(cluster), "--set", "launcher.time_min=95")
    assert run_egs(args) is None                    # submitted: no table yet
    calls = (fake_slurm / "sbatch_calls").read_text().splitlines()
    assert len(calls) == 3                          # the data job, then one job per variant (1 seed)
    jobs = records(recipe)
    assert {k: v["job_id"] for k, v in jobs.items()} == {"prepare": "1001", "short_seed0": "1002", "long_seed0": "1003"}
    script = (fake_slurm / "script_1002.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=frugal", "#SBATCH --qos=high",
                 "#SBATCH --constraint=a100", "#SBATCH --gpus-per-node=4", "#SBATCH --ntasks-per-node=4",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mem=48GB", "#SBATCH --time=95", "#SBATCH --nodes=1",
                 "#SBATCH --signal=USR2@120", "#SBATCH --requeue", "#SBATCH --mail-type=END", "#SBATCH --exclusive",
                 "#SBATCH --dependency=afterok:1001", "#SBATCH --kill-on-invalid-dep=yes",
                 "#SBATCH --job-name=tiny_sweep_short_seed0", "module load cuda/12.4", "export SUBMITIT_EXECUTOR=slurm"):
        assert line in script.splitlines(), line
    folder = recipe / "exp" / "tiny_sweep" / "launcher" / "short_seed0"
    assert f"#SBATCH --output={folder}/%j_0_log.out" in script.splitlines()
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert "-m submitit.core._submit" in srun and str(folder) in srun
    prepare = (fake_slurm / "script_1001.sh").read_text()
    assert "#SBATCH --gpus-per-node=1" in prepare and "--ntasks-per-node=1" in prepare and "dependency" not in prepare

    # the pickled job: DDP on 4 GPUs, the stages split at training, launcher.* on no variant's command line
    job = launch.submitit.SlurmJob(folder=folder, job_id="1002").submission().function
    assert isinstance(job, launch.VariantJob) and [every for _, every in job.phases] == [False, True, False]
    stages = [(c[c.index("--stage") + 1], c[c.index("--stop_stage") + 1]) for c, _ in job.phases]
    assert stages == [("0", "2"), ("3", "3"), ("4", "4")]
    sets = job.phases[1][0][job.phases[1][0].index("--set") + 1].split()
    assert sets == ["evaluation.bss=false", "training.strategy=ddp", "training.devices=4", "training.num_nodes=1",
                    "training.seed=0"]

    # pending or running: a re-run submits nothing
    (fake_slurm / "state_1002").write_text("RUNNING\n")
    assert run_egs(args) is None
    assert len((fake_slurm / "sbatch_calls").read_text().splitlines()) == 3
    # not in sacct's records (yet): squeue tells
    (fake_slurm / "state_1003").unlink()
    assert run_egs(args) is None
    assert len((fake_slurm / "sbatch_calls").read_text().splitlines()) == 4   # gone from both: submitted again
    assert records(recipe)["long_seed0"]["job_id"] == "1004"

    # a job that ended without a result: one line with its log, and submitted again
    (fake_slurm / "state_1002").write_text("NODE_FAIL\n")
    caplog.clear()
    assert run_egs(args) is None
    line = f"short_seed0: job 1002 failed (NODE_FAIL, no result: killed, cancelled or out of time); log: {folder}/1002_0_log.out"
    assert any(r.getMessage() == f"{line}; submitting it again (it resumes)" for r in caplog.records)
    assert records(recipe)["short_seed0"]["job_id"] == "1005"


def test_slurm_jobs_run_fail_resume_and_give_the_local_table(tmp_path, recipe, fake_slurm, caplog):
    """The SLURM path end to end (jobs run by the fake sbatch): --wait, a failed job reported with its log,
    a re-run that submits only it, and the table of the same sweep run here (--launcher local)."""
    egs = make_egs(tmp_path)
    (fake_slurm / "run_jobs").touch()
    cluster = tmp_path / "cluster.yml"
    cluster.write_text("launcher: {gpus_per_node: 0, poll_seconds: 0.2}\n")
    (recipe / "fail_long").touch()
    args = sweep_args(egs, "--launcher", "slurm", "--overlay", str(cluster), "--wait")
    with pytest.raises(FrugalError, match=r"^1 of 2 jobs failed \(above, each with its log\); re-run the same command"):
        run_egs(args)
    folder = recipe / "exp" / "tiny_sweep" / "launcher" / "long_seed0"
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert line == (f"long_seed0: job 1003 failed (FAILED, long_seed0: run.sh failed (exit 1); its run.log is in the "
                    f"variant's folder); log: {folder}/1003_0_log.out")
    assert (folder / "outcome.json").is_file()   # how it ended, said by the job (no result pickle is read back)
    log_text = (folder / "1003_0_log.out").read_text()
    assert "stub: evaluation failed" in log_text and "run.sh failed (exit 1)" in log_text

    (recipe / "fail_long").unlink()
    table = run_egs(args)
    assert (fake_slurm / "counter").read_text().strip() == "1004"     # only the failed job again
    calls = (recipe / "exp" / "tiny_sweep" / "seed0" / "short" / "calls.log").read_text().splitlines()
    assert [json.loads(c)["stages"] for c in calls].count([0, 1]) == 1      # the data job ran once
    assert run_egs(args) == table                   # all done: a re-run only writes the table
    assert (fake_slurm / "counter").read_text().strip() == "1004"
    here = run_egs(["--egs", str(egs), "--exp_dir", "here", "--seeds", "1", "--launcher", "local"])
    assert table_rows(table) == table_rows(here) and len(table_rows(table)) == 2


def descendants(pid):
    """``pid`` and every process below it (from /proc)."""
    children = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def test_a_killed_local_job_is_resumed_and_the_table_matches(tmp_path, recipe):
    """submitit's local executor runs the same jobs as processes: kill one mid-training (the whole process
    tree, as a lost node), re-run the command: the killed job is submitted again and resumes, the running
    one is left alone, and the table is the one of an uninterrupted local sweep."""
    egs = make_egs(tmp_path)
    (recipe / "hold").touch()               # the stub blocks before its second training step
    args = sweep_args(egs, "--launcher", "submitit_local", "--set", "launcher.gpus_per_node=0",
                      "--set", "launcher.poll_seconds=0.2")
    assert run_egs(args) is None
    runs = recipe / "exp" / "tiny_sweep" / "seed0"
    deadline = time.time() + 120
    while time.time() < deadline and not all((runs / v / "blocked").exists() for v in ("short", "long")):
        time.sleep(0.2)
    assert all((runs / v / "blocked").exists() for v in ("short", "long"))
    first = records(recipe)
    assert first["prepare"]["cluster"] == "local" and launch.process_alive(int(first["short_seed0"]["job_id"]))
    for pid in descendants(int(first["short_seed0"]["job_id"])):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(int(first["short_seed0"]["job_id"]), 0)      # (a child of this process: reaped here)
    assert not launch.process_alive(int(first["short_seed0"]["job_id"]))
    assert (runs / "short" / "progress").read_text() == "1"

    (recipe / "hold").unlink()
    table = run_egs([*args, "--wait"])
    again = records(recipe)
    assert again["long_seed0"]["job_id"] == first["long_seed0"]["job_id"]        # not submitted twice
    assert again["short_seed0"]["job_id"] != first["short_seed0"]["job_id"]      # submitted again...
    assert (runs / "short" / "resume.log").read_text() == "resumed at step 1\n"  # ...and resumed
    assert not (runs / "long" / "resume.log").exists()
    log_out = Path(again["short_seed0"]["folder"]) / f"{again['short_seed0']['job_id']}_0_log.out"
    assert "Job completed successfully" in log_out.read_text()
    here = run_egs(["--egs", str(egs), "--exp_dir", "here", "--seeds", "1"])      # launcher.name: local
    assert table_rows(table) == table_rows(here) and len(table_rows(table)) == 2


def test_a_preempted_job_checkpoints_and_requeues_itself(tmp_path, recipe):
    """SLURM's warning signal (USR2) to a running job: checkpoint() stops run.sh and hands submitit the job
    again, which requeues it (the local executor starts it again at once): the same job resumes."""
    egs = make_egs(tmp_path)
    (egs / "experiment.yml").write_text(EXPERIMENT.replace("variants: [short, long]", "variants: [short]"))
    (recipe / "hold").touch()
    args = sweep_args(egs, "--launcher", "submitit_local", "--set", "launcher.gpus_per_node=0",
                      "--set", "launcher.poll_seconds=0.2", "--set", "launcher.prepare_job=false")
    assert run_egs(args) is None
    run = recipe / "exp" / "tiny_sweep" / "seed0" / "short"
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "blocked").exists():
        time.sleep(0.2)
    stub_pid = int((run / "blocked").read_text())
    controller = int(records(recipe)["short_seed0"]["job_id"])
    (task,) = [p for p in descendants(controller)
               if b"submitit.core._submit" in Path(f"/proc/{p}/cmdline").read_bytes()]
    (run / "blocked").unlink()
    os.kill(task, signal.SIGUSR2)
    while time.time() < deadline and not (run / "blocked").exists():
        time.sleep(0.2)
    assert (run / "blocked").exists() and int((run / "blocked").read_text()) != stub_pid   # run.sh started again
    assert not launch.process_alive(stub_pid) and not Path(f"/proc/{stub_pid}").exists()
    (recipe / "hold").unlink()
    table = run_egs([*args, "--wait"])
    assert len(table_rows(table)) == 1 and records(recipe)["short_seed0"]["job_id"] == str(controller)
    assert (run / "resume.log").read_text() == "resumed at step 1\n"
    log_text = (run.parents[1] / "launcher" / "short_seed0" / f"{controller}_0_log.out").read_text()
    assert "this job is preempted" in log_text and "Requeued job" in log_text


def test_a_ddp_job_splits_its_stages_across_ranks(tmp_path, recipe):
    """Two tasks in one job (local executor, CPU): rank 0 prepares and shapes, both train (Lightning's
    rank variables set), rank 0 scores."""
    egs = make_egs(tmp_path)
    (egs / "experiment.yml").write_text(EXPERIMENT.replace("variants: [short, long]", "variants: [short]"))
    table = run_egs(sweep_args(egs, "--launcher", "submitit_local", "--wait", "--set", "launcher.gpus_per_node=0",
                               "--set", "launcher.tasks_per_node=2", "--set", "launcher.poll_seconds=0.2",
                               "--set", "launcher.prepare_job=false"))
    assert len(table_rows(table)) == 1
    calls = [json.loads(line) for line in (recipe / "exp" / "tiny_sweep" / "seed0" / "short" / "calls.log")
             .read_text().splitlines()]
    assert sorted((c["rank"], tuple(c["stages"])) for c in calls) == [("0", (0, 2)), ("0", (3, 3)), ("0", (4, 4)),
                                                                     ("1", (3, 3))]
    training = [c for c in calls if c["stages"] == [3, 3]]
    assert all(c["world"] == "2" and c["set"]["training.devices"] == "2" and c["set"]["training.strategy"] == "ddp"
               for c in training)


def test_the_debug_launcher_runs_the_jobs_in_this_process(tmp_path, recipe):
    egs = make_egs(tmp_path)
    (recipe / "fail_long").touch()
    args = sweep_args(egs, "--launcher", "submitit_debug")
    with pytest.raises(FrugalError, match="^1 of 2 jobs failed"):
        run_egs(args)
    assert records(recipe)["long_seed0"]["error"] == "long_seed0: run.sh failed (exit 1); its run.log is in the variant's folder"
    (recipe / "fail_long").unlink()
    assert len(table_rows(run_egs(args))) == 2


@pytest.mark.parametrize("bad, message", [
    ("launcher.name=pbs", "launcher.name='pbs': expected one of local, slurm, submitit_local, submitit_debug"),
    ("launcher.gpus_per_node=-1", "launcher.gpus_per_node=-1: expected a value >= 0"),
    ("launcher.mem_gb=0", "launcher.mem_gb=0: expected a value > 0"),
    ("launcher.sbatch_args=[3]", "launcher.sbatch_args=[3]: expected a list of non-empty strings"),
])
def test_bad_launcher_values_are_one_line_errors(bad, message):
    with pytest.raises(FrugalError) as err:
        launch.launcher_settings(load_config(overrides=[bad]))
    assert str(err.value) == message


def test_launcher_defaults_and_device_settings():
    lc = launch.launcher_settings(load_config())
    assert lc["name"] == "local" and launch.device_overrides(lc) == ([], ["training.devices=1", "training.num_nodes=1"])
    lc.update(gpus_per_node=0)
    assert launch.device_overrides(lc) == ([], [])
    lc.update(gpus_per_node=8, nodes=2)
    assert launch.world_size(lc) == 16
    assert launch.device_overrides(lc) == (["training.strategy=ddp"], ["training.devices=8", "training.num_nodes=2"])
    assert launch.sbatch_parameters(["--mail-type=END", "exclusive"]) == {"mail-type": "END", "exclusive": True}
    assert yaml.safe_load((Path(launch.__file__).parent / "conf.yml").read_text())["launcher"]["name"] == "local"
