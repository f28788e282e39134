"""Sweeps as jobs: every variant x seed of an ``egs/<experiment>`` as its own submitit job (SLURM).

``./run.sh --egs egs/<name> --launcher slurm`` hands each variant and seed to submitit
(``submitit.AutoExecutor``: ``sbatch`` on a SLURM cluster; its local executor, processes of this
machine, or its debug executor, in this process, elsewhere) instead of running them one after the
other here (:mod:`asteroid_frugal.sweep`). A job runs the very ``run.sh`` command of the local
sweep (:func:`asteroid_frugal.sweep.variant_command`), so it resumes from the stages' own
checkpoints and outputs; the resources are the ``launcher`` section of ``conf.yml``::

    exp/<name>/launcher/jobs.json             the jobs submitted: id, cluster, folder, command
    exp/<name>/launcher/prepare/              stages 0-1 (the data), once, before the variants' jobs
    exp/<name>/launcher/<variant>_seed<k>/    submitit's files of that job: <id>_submission.sh (the
                                              sbatch script), <id>_0_log.out (run.sh's output), result

Re-running the same command submits only what is neither done nor pending/running (sacct/squeue
on SLURM; the process id on this machine), reports each failed job in one line with its log and
submits it again (it resumes), and, once every job is done, the caller writes the table.

A job is a :class:`VariantJob`, a ``submitit.helpers.Checkpointable``: on SLURM's warning signal
(``launcher.signal_delay_s`` before the time limit) or a preemption, it stops its ``run.sh`` and
``checkpoint()`` hands submitit a ``DelayedSubmission`` of itself, which is requeued and starts the
same command again. ``launcher.requeue`` also lets SLURM requeue a job on a failed node.

Several GPUs (``launcher.gpus_per_node`` > 1, or several nodes): one task per GPU (``srun``) and
Lightning's DDP in the job (its ``SLURMEnvironment`` reads the ranks from SLURM's variables;
``training.devices``/``num_nodes`` are set to match). Rank 0 runs stages up to 2 (data,
shaping), every rank then runs stage 3 (training) once rank 0 is ready, rank 0 alone stage 4.
"""
import logging
import os
import shlex
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import submitit
from submitit.helpers import Checkpointable

from .sweep import EVALUATION_STAGE, RecipeCall, variant_command
from .utils import FrugalError, read_json, write_json_atomic, write_text_atomic

log = logging.getLogger("asteroid_frugal.launch")

# launcher.name -> submitit's cluster (None: the sweep's own loop, asteroid_frugal.sweep)
LAUNCHERS = {"local": None, "slurm": "slurm", "submitit_local": "local", "submitit_debug": "debug"}
DATA_STAGE = 1                    # the last stage every variant shares (data preparation, extra data)
TRAINING_STAGE = 3                # the stage every DDP rank runs
PREPARE = "prepare"               # the job of the shared stages
RECORD = "jobs.json"
# a job's outcome, written by the job itself beside its barrier: read instead of submitit's result
# pickle, so that looking at the jobs never unpickles a file
OUTCOME = "outcome.json"
# SLURM states of a job that is not over (sacct/squeue); submitit's own list, and the others sacct shows
ACTIVE_STATES = {"READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED", "CONFIGURING",
                 "RESIZING", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}
STOP_GRACE_S = 60                 # a run.sh told to stop (SIGTERM) gets this long before SIGKILL


# ----------------------------------------------------------------------------- settings

def launcher_settings(conf: Dict[str, Any]) -> Dict[str, Any]:
    """The ``launcher`` section, checked (one line naming the key on a bad value)."""
    lc = dict(conf["launcher"])
    if lc["name"] not in LAUNCHERS:
        raise FrugalError(f"launcher.name={lc['name']!r}: expected one of {', '.join(LAUNCHERS)}")
    for key, low in (("nodes", 1), ("gpus_per_node", 0), ("tasks_per_node", 0), ("cpus_per_task", 1),
                     ("time_min", 1), ("signal_delay_s", 0), ("max_num_timeout", 0)):
        if lc[key] < low:
            raise FrugalError(f"launcher.{key}={lc[key]}: expected a value >= {low}")
    for key in ("mem_gb", "poll_seconds"):
        if lc[key] <= 0:
            raise FrugalError(f"launcher.{key}={lc[key]}: expected a value > 0")
    for key in ("sbatch_args", "setup"):
        if not all(isinstance(item, str) and item.strip() for item in lc[key]):
            raise FrugalError(f"launcher.{key}={lc[key]!r}: expected a list of non-empty strings")
    if lc["name"] == "submitit_local" and lc["nodes"] > 1:
        raise FrugalError(f"launcher.nodes={lc['nodes']}: the local executor runs on one machine (nodes: 1)")
    return lc


def tasks_per_node(lc: Dict[str, Any]) -> int:
    """Processes (DDP ranks) per node: ``tasks_per_node``, else one per GPU (one without GPUs)."""
    return lc["tasks_per_node"] or max(lc["gpus_per_node"], 1)


def world_size(lc: Dict[str, Any]) -> int:
    return tasks_per_node(lc) * lc["nodes"]


def device_overrides(lc: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """``--set`` assignments that make Lightning use what the job holds: (before the user's, after them).
    The devices and nodes must match the job's tasks (Lightning's SLURMEnvironment checks it), so they
    come last; DDP is the strategy with several ranks unless the user chose another one."""
    if lc["gpus_per_node"] == 0 and world_size(lc) == 1:
        return [], []
    before = ["training.strategy=ddp"] if world_size(lc) > 1 else []
    return before, [f"training.devices={tasks_per_node(lc)}", f"training.num_nodes={lc['nodes']}"]


def sbatch_parameters(items: Sequence[str]) -> Dict[str, Any]:
    """``["--mail-type=END", "--exclusive"]`` -> submitit's ``additional_parameters``
    ``{"mail-type": "END", "exclusive": True}``."""
    out: Dict[str, Any] = {}
    for item in items:
        key, eq, value = item.strip().lstrip("-").partition("=")
        out[key] = value if eq else True
    return out


def make_executor(lc: Dict[str, Any], folder: Path, job_name: str, n_tasks: int, n_nodes: int, gpus: int,
                  after: Optional[str] = None) -> submitit.AutoExecutor:
    """submitit's executor of one job: SLURM's sbatch options, or the same job on this machine."""
    cluster = LAUNCHERS[lc["name"]]
    kwargs = {"slurm_max_num_timeout": lc["max_num_timeout"], "local_max_num_timeout": lc["max_num_timeout"]}
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster,
                                     **{k: v for k, v in kwargs.items() if k.startswith(cluster + "_")})
    if cluster == "debug":
        return executor
    params: Dict[str, Any] = dict(name=job_name, timeout_min=int(lc["time_min"]), nodes=n_nodes,
                                  tasks_per_node=n_tasks, cpus_per_task=int(lc["cpus_per_task"]),
                                  gpus_per_node=gpus or None, mem_gb=lc["mem_gb"], stderr_to_stdout=True)
    if cluster == "slurm":
        extra = {**({"requeue": True} if lc["requeue"] else {}), **sbatch_parameters(lc["sbatch_args"])}
        if after:   # the data job: the variants start once it succeeded, and are dropped if it failed
            params["slurm_dependency"] = f"afterok:{after}"
            extra["kill-on-invalid-dep"] = "yes"
        params.update(slurm_signal_delay_s=int(lc["signal_delay_s"]), slurm_additional_parameters=extra)
        for key in ("partition", "account", "qos", "constraint"):
            if lc[key]:
                params[f"slurm_{key}"] = lc[key]
        if lc["setup"]:
            params["slurm_setup"] = list(lc["setup"])
    elif lc["setup"]:
        params["local_setup"] = list(lc["setup"])
    executor.update_parameters(**params)
    return executor


# ----------------------------------------------------------------------------- the job

class VariantJob(Checkpointable):
    """One variant and seed: its ``run.sh`` command(s), run in the recipe folder.

    ``phases``: ``[(command, every_rank)]``; with one task, a single phase (the local sweep's
    command). With several (DDP), rank 0 runs the phases of its own, every rank the others, once
    rank 0 has written ``ready`` into ``barrier`` (its earlier phases done). Picklable: submitit
    stores it and, on requeue, the :meth:`checkpoint` copy of it."""

    def __init__(self, name: str, phases: List[Tuple[List[str], bool]], recipe_root, barrier) -> None:
        self.name = name
        self.phases = phases
        self.recipe_root = str(recipe_root)
        self.barrier = str(barrier)
        self._proc: Optional[subprocess.Popen] = None

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_proc"] = None
        return state

    def __call__(self) -> str:
        try:
            env: Optional[submitit.JobEnvironment] = submitit.JobEnvironment()
        except RuntimeError:       # called outside a job (the debug executor's submission, a test)
            env = None
        rank, world = (env.global_rank, env.num_tasks) if env is not None else (0, 1)
        extra = rank_environment(env) if world > 1 else {}
        key = attempt_key(env) if world > 1 else ""
        met = False
        try:
            for command, every_rank in self.phases:
                if every_rank and world > 1 and not met:
                    self.meet(rank, key)
                    met = True
                elif rank > 0 and not every_rank:
                    continue
                try:
                    self.run(command, extra)
                except BaseException:
                    if rank == 0 and world > 1 and not met:
                        write_text_atomic(self.barrier, f"failed {key}\n")
                    raise
        except Exception as err:    # not a stop to be requeued (SystemExit): the job has failed
            if rank == 0:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                write_json_atomic(self.outcome_path(), {"outcome": "failed", "error": first})
            raise
        if rank == 0:
            write_json_atomic(self.outcome_path(), {"outcome": "done"})
        return self.name

    def outcome_path(self) -> Path:
        """Where the job says how it ended (:data:`OUTCOME`, beside its barrier)."""
        return Path(self.barrier).with_name(OUTCOME)

    def meet(self, rank: int, key: str) -> None:
        """Rank 0 says it is ready; the other ranks wait for it (or stop if it failed)."""
        if rank == 0:
            write_text_atomic(self.barrier, f"ready {key}\n")
            return
        while True:
            try:
                state, _, seen = Path(self.barrier).read_text().strip().partition(" ")
            except FileNotFoundError:
                state, seen = "", ""
            if seen == key and state == "ready":
                return
            if seen == key and state == "failed":
                raise FrugalError(f"{self.name}: rank 0 failed before training; see its log (task 0)")
            time.sleep(2)

    def run(self, command: List[str], extra: Dict[str, str]) -> None:
        log.info("%s: %s", self.name, shlex.join(command))
        # its own process group: a stop (requeue, cancel) ends run.sh and every stage it started
        self._proc = subprocess.Popen(command, cwd=self.recipe_root, env={**os.environ, **extra},
                                      start_new_session=True)
        try:
            code = self._proc.wait()
        finally:
            if self._proc is not None and self._proc.poll() is None:
                stop_process_group(self._proc.pid)
            self._proc = None
        if code != 0:
            raise FrugalError(f"{self.name}: run.sh failed (exit {code}); its run.log is in the variant's folder")

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Time limit or preemption: stop run.sh (the stages resume from their own files), and requeue
        this same job (submitit dumps the returned submission and requeues it)."""
        if self._proc is not None:
            log.info("%s: stopping run.sh (pid %d) to be requeued", self.name, self._proc.pid)
            stop_process_group(self._proc.pid)
        return super().checkpoint(*args, **kwargs)


def stop_process_group(pid: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM to the process group led by ``pid``, SIGKILL to what is left after ``grace_s``. Safe
    inside a signal handler (reaps the leader with ``os.waitpid``, not ``Popen.wait``)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + grace_s
    while time.time() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def rank_environment(env: submitit.JobEnvironment) -> Dict[str, str]:
    """The variables Lightning reads to join a DDP run started outside it. On SLURM none: Lightning's
    SLURMEnvironment reads SLURM's own. With the local executor: its LightningEnvironment's."""
    if env.cluster == "slurm":
        return {}
    return {"LOCAL_RANK": str(env.local_rank), "NODE_RANK": str(env.node), "WORLD_SIZE": str(env.num_tasks),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(20000 + int(env.job_id) % 20000)}


def attempt_key(env: submitit.JobEnvironment) -> str:
    """The same for every rank of one run of a job, another after a requeue (SLURM's restart count;
    submitit rewrites the job's pickle when it requeues it)."""
    pickle = env.paths.submitted_pickle
    stamp = pickle.stat().st_mtime_ns if pickle.exists() else 0
    return f"{env.job_id}:{os.environ.get('SLURM_RESTART_COUNT', '0')}:{stamp}"


def job_phases(spec, variant: str, seed: int, exp_dir: Path, call: RecipeCall,
               world: int) -> List[Tuple[List[str], bool]]:
    """The ``run.sh`` command(s) of one job: the local sweep's, or split at training for DDP ranks."""
    if world == 1:
        return [(variant_command(spec, variant, seed, exp_dir, call), False)]
    first = call.stage or 0
    last = EVALUATION_STAGE if call.stop_stage is None else min(call.stop_stage, EVALUATION_STAGE)
    call = replace(call, target_jobs="1")     # the ranks train the targets in turn, together
    phases = []
    for low, high, every in ((first, TRAINING_STAGE - 1, False), (TRAINING_STAGE, TRAINING_STAGE, True),
                             (TRAINING_STAGE + 1, last, False)):
        low, high = max(low, first), min(high, last)
        if low <= high:
            phases.append((variant_command(spec, variant, seed, exp_dir, replace(call, stage=low, stop_stage=high)),
                           every))
    return phases


# ----------------------------------------------------------------------------- jobs on record

def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live submitit process of this machine (not a zombie, not a reused id)."""
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X") and b"submitit" in (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError, OverflowError, ValueError):
        return False
    return not proc.parent.is_dir()   # no /proc here: trust kill(0)


def squeue_state(job_id: str) -> Optional[str]:
    """SLURM's state of a job still in its queue; "" when it is not there; None when squeue cannot tell."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return "" if "invalid job id" in out.stderr.lower() else None
    return out.stdout.split()[0] if out.stdout.split() else ""


def read_outcome(path: Path) -> Optional[Dict[str, Any]]:
    """A job's :data:`OUTCOME` (None when it wrote none, or an unreadable one)."""
    try:
        outcome = read_json(path)
    except (FrugalError, OSError):
        return None
    return outcome if isinstance(outcome, dict) else None


class JobBook:
    """``jobs.json``: what was submitted, and each job's state now (one sacct call for all)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records: Dict[str, Dict[str, Any]] = read_json(self.path) if self.path.exists() else {}
        self.live: Dict[str, submitit.Job] = {}    # jobs submitted by this process

    def save(self) -> None:
        write_json_atomic(self.path, self.records)

    def job(self, key: str) -> submitit.Job:
        rec = self.records[key]
        if key in self.live:
            return self.live[key]
        cls = {"slurm": submitit.SlurmJob, "local": submitit.LocalJob}.get(rec["cluster"], submitit.LocalJob)
        return cls(folder=rec["folder"], job_id=rec["job_id"])

    def log_path(self, key: str) -> Path:
        return self.job(key).paths.stdout

    def states(self) -> Dict[str, Tuple[str, str]]:
        """``{key: (status, detail)}``, status one of active, done, failed."""
        jobs = {key: self.job(key) for key, rec in self.records.items() if rec["cluster"] != "debug"}
        if any(rec["cluster"] == "slurm" for rec in self.records.values()):
            submitit.SlurmJob.watcher.clear()       # fresh states (a finished job may have been requeued)
            submitit.SlurmJob.watcher.update()      # sacct, once for every job
        out = {}
        for key, rec in self.records.items():
            if rec["cluster"] == "debug":
                out[key] = (rec["outcome"], rec.get("error", ""))
                continue
            job = jobs[key]
            if rec["cluster"] == "slurm":
                state = job.watcher.get_state(job.job_id, mode="cache")
                if state == "UNKNOWN":       # not (yet, or any longer) in sacct's records
                    queued = squeue_state(job.job_id)
                    state = "UNKNOWN" if queued is None else (queued or "ENDED")
                state = state.split()[0].upper()     # "CANCELLED by 123"
                if state in ACTIVE_STATES:
                    out[key] = ("active", state)
                    continue
            elif key in self.live and self.live[key].get_info().get("jobState") == "RUNNING":
                out[key] = ("active", "RUNNING")
                continue
            elif key not in self.live and process_alive(int(rec["job_id"])):
                out[key] = ("active", "RUNNING")
                continue
            else:
                state = "ENDED"
            outcome = read_outcome(Path(rec["folder"]) / OUTCOME)
            if outcome is not None:
                out[key] = ("done", state) if outcome.get("outcome") == "done" else \
                    ("failed", f"{state}, {outcome.get('error') or 'error'}")
            else:
                out[key] = ("failed", f"{state}, no result: killed, cancelled or out of time")
        return out

    def submit(self, key: str, job: VariantJob, executor: submitit.AutoExecutor, cluster: str,
               command: List[str]) -> str:
        job.outcome_path().unlink(missing_ok=True)     # an earlier attempt's
        submitted = executor.submit(job)
        rec = dict(cluster=cluster, job_id=str(submitted.job_id), folder=str(executor.folder), command=command,
                   submitted=time.strftime("%Y-%m-%d %H:%M:%S"))
        if cluster == "debug":              # ran in this process: its outcome now (not through pdb)
            try:
                submitted.submission().result()
                rec["outcome"] = "done"
            except Exception as err:        # noqa: BLE001  (the job's error, reported in one line)
                rec.update(outcome="failed", error=str(err).splitlines()[0] if str(err) else type(err).__name__)
        else:
            self.live[key] = submitted
        self.records[key] = rec
        self.save()
        return rec["job_id"]


# ----------------------------------------------------------------------------- the sweep

def launch_experiment(spec: Dict[str, Any], exp_dir: Path, n_seeds: int, call: RecipeCall,
                      conf: Dict[str, Any]) -> bool:
    """Submit what is neither done nor queued; True when every job is done (the table can be written).

    A job found failed is one line with its log, and is submitted again (it resumes). With
    ``launcher.wait``: wait for the jobs; one that fails meanwhile is one line too, and the sweep stops
    with a :class:`FrugalError` counting them."""
    lc = launcher_settings(conf)
    cluster = LAUNCHERS[lc["name"]]
    if cluster is None:
        raise FrugalError("launcher.name=local runs the sweep in this process (asteroid_frugal.sweep), not as jobs")
    root = Path(exp_dir).absolute() / "launcher"
    book = JobBook(root / RECORD)
    before, after = device_overrides(lc)
    call = replace(call, overrides=[*before, *call.overrides, *after])
    states = book.states()

    def ensure(key: str, make_job, make_executor_, command: List[str]) -> Optional[str]:
        """Submit ``key`` unless it is queued, running, or done with the same command; its job id if active."""
        rec = book.records.get(key)
        status, detail = states.get(key, ("new", ""))
        if status == "active":
            log.info("%s: job %s %s", key, rec["job_id"], detail.lower())
            return rec["job_id"]
        if status == "done" and rec["command"] == command:
            return None
        if status == "failed":
            line = failure_line(book, key, detail)
            log.warning("%s; submitting it again (it resumes)", line)
        job_id = book.submit(key, make_job(), make_executor_(), cluster, command)
        log.info("%s: submitted job %s (%s)", key, job_id, lc["name"])
        if cluster == "debug":     # it has run already
            rec = book.records[key]
            states[key] = (rec["outcome"], rec.get("error", ""))
            return None
        states[key] = ("active", "SUBMITTED")
        return job_id

    n_tasks, n_nodes, world = tasks_per_node(lc), lc["nodes"], world_size(lc)
    variants = [(v, k) for k in range(n_seeds) for v in spec["variants"]]
    data_job = None
    if lc["prepare_job"] and (call.stage or 0) <= DATA_STAGE:
        v0, _ = variants[0]
        last = DATA_STAGE if call.stop_stage is None else min(call.stop_stage, DATA_STAGE)
        command = variant_command(spec, v0, 0, exp_dir, replace(call, stop_stage=last))
        data_job = ensure(PREPARE, lambda: VariantJob(PREPARE, [(command, False)], call.recipe_root,
                                                      root / PREPARE / "barrier"),
                          lambda: make_executor(lc, root / PREPARE, f"{spec['name']}_{PREPARE}", 1, 1,
                                                min(lc["gpus_per_node"], 1)), command)
        if data_job and cluster != "slurm":   # no dependencies here: the variants start after it
            data_job = None
            wait_for(book, [PREPARE], lc, states)
        if states[PREPARE][0] == "failed":
            raise FrugalError(f"{failure_line(book, PREPARE, states[PREPARE][1])}; re-run the same command to retry")
    for variant, seed in variants:
        key = f"{variant}_seed{seed}"
        phases = job_phases(spec, variant, seed, exp_dir, call, world)
        command = [arg for cmd, _ in phases for arg in cmd]
        ensure(key, lambda: VariantJob(key, phases, call.recipe_root, root / key / "barrier"),
               lambda: make_executor(lc, root / key, f"{spec['name']}_{key}", n_tasks, n_nodes, lc["gpus_per_node"],
                                     after=data_job), command)
    keys = [f"{v}_seed{k}" for v, k in variants]
    if lc["wait"]:
        wait_for(book, keys, lc, states)
    failed_lines = [failure_line(book, key, states[key][1]) for key in keys if states[key][0] == "failed"]
    if failed_lines:
        for line in failed_lines:
            log.error(line)
        raise FrugalError(f"{len(failed_lines)} of {len(keys)} jobs failed (above, each with its log); "
                          "re-run the same command to submit them again (they resume)")
    active = [key for key in keys if states[key][0] == "active"]
    if active:
        log.info("%s: %d of %d jobs pending or running (%s); re-run the same command when they are done to "
                 "write the table (launcher.wait=true waits for them)", spec["name"], len(active), len(keys), book.path)
        return False
    return True


def failure_line(book: JobBook, key: str, detail: str) -> str:
    rec = book.records[key]
    where = "" if rec["cluster"] == "debug" else f"; log: {book.log_path(key)}"
    return f"{key}: job {rec['job_id']} failed ({detail}){where}"


def wait_for(book: JobBook, keys: List[str], lc: Dict[str, Any], states: Dict[str, Tuple[str, str]]) -> bool:
    """Poll until none of ``keys`` is active (``states`` updated in place); True when all are done."""
    seen = {key: states[key] for key in keys}
    while any(states[key][0] == "active" for key in keys):
        time.sleep(lc["poll_seconds"])
        states.update({k: v for k, v in book.states().items() if k in keys})
        for key in keys:
            if states[key] != seen[key]:
                log.info("%s: job %s %s", key, book.records[key]["job_id"],
                         states[key][1].lower() if states[key][0] == "active" else states[key][0])
                seen[key] = states[key]
    return all(states[key][0] == "done" for key in keys)
