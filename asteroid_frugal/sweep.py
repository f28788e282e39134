"""Run one of the paper's experiments: every variant of an ``egs/<name>`` folder, several seeds, then its table.

Every variant is trained and evaluated once per seed through ``run.sh`` in
``exp/<name>/seed<k>/<variant>`` with ``training.seed=k``: the model initialisation and the
excerpt order differ between seeds, the data (split, songs, excerpt positions: ``shaping.seed``)
do not. Each stage skips what is already done, so an interrupted sweep resumes. The config
options of ``run.sh`` arrive here as ``--conf``/``--overlay``/``--set`` and are passed on
unchanged to every variant's ``run.sh`` (one mechanism: an option is declared once, in run.sh).
The experiment's layout (``experiment.yml``): :mod:`asteroid_frugal.reports.experiment`; its
table and figure: :mod:`asteroid_frugal.reports.sweep`. On a cluster (``--launcher slurm``),
:mod:`asteroid_frugal.launch` runs the same :func:`variant_command` of each variant and seed as a job.
"""
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from .config import get
from .reports.experiment import ALL, seed_dir
from .reports.sweep import collect, plot_results, results_markdown
from .utils import FrugalError, write_text_atomic

log = logging.getLogger("asteroid_frugal.sweep")

EVALUATION_STAGE = 4     # the last stage of a variant's run.sh: a sweep scores its variants, it publishes none


@dataclass
class RecipeCall:
    """How every variant's ``run.sh`` is called: the recipe folder it runs in, the config arguments
    passed on unchanged, and the stages (None: run.sh's own first stage; :data:`EVALUATION_STAGE`)."""

    recipe_root: Path
    conf: str
    overlays: List[str] = field(default_factory=list)
    overrides: List[str] = field(default_factory=list)
    stage: Optional[int] = None
    stop_stage: Optional[int] = None
    target_jobs: Optional[str] = None


def recipe_root(folder) -> Path:
    """``folder`` if it holds the recipe's ``run.sh`` (run.sh starts a sweep from its own folder)."""
    folder = Path(folder)
    if not (folder / "run.sh").is_file():
        raise FrugalError(f"{folder}: no run.sh here: a sweep runs every variant through the recipe's run.sh; "
                          "start it from the recipe folder (./run.sh --egs ...)")
    return folder


def seed_count(spec: Dict[str, Any], conf: Dict[str, Any], seeds: Optional[int] = None) -> int:
    """Seeds per variant: ``seeds`` (``./run.sh --seeds``) if given, else experiment.yml's ``seeds``,
    else the config's ``sweep.seeds``."""
    if seeds is not None:
        n, name = seeds, "--seeds"
    elif spec.get("seeds") is not None:
        return spec["seeds"]                 # checked by load_experiment
    else:
        n, name = get(conf, "sweep.seeds"), "sweep.seeds"
    if not isinstance(n, int) or n < 1:
        raise FrugalError(f"{name} must be >= 1, got {n}")
    return n


def variant_overlays(spec: Dict[str, Any], variant: str, user_overlays: List[str]) -> List[str]:
    """user overlays (e.g. demo scale), then the experiment's common overlay, then the variant's."""
    out = list(user_overlays)
    if spec["common_path"]:
        out.append(str(spec["common_path"]))
    out.append(str(spec["variant_paths"][variant]))
    return out


def variant_command(spec, variant: str, seed: int, exp_dir: Path, call: RecipeCall) -> List[str]:
    """The ``run.sh`` command of one variant and seed. The sweep's own settings come first, the
    run.sh options (``call.overrides``) after them, the seed last."""
    sets = [*(["evaluation.bss=false"] if spec["metric"] == "si_snr" else []), *call.overrides,
            f"training.seed={seed}"]
    stop = EVALUATION_STAGE if call.stop_stage is None else min(call.stop_stage, EVALUATION_STAGE)
    cmd = ["./run.sh", "--setup", "no", "--python", sys.executable,
           *(["--stage", str(call.stage)] if call.stage is not None else []), "--stop_stage", str(stop),
           "--conf", call.conf, "--overlay", " ".join(variant_overlays(spec, variant, call.overlays)),
           "--set", " ".join(sets)]
    if spec["target"] == ALL:   # no tag: run.sh trains vocals, drums, bass and scores {1} and {4}
        cmd += ["--exp_dir", str(seed_dir(exp_dir, seed) / variant)]
        if call.target_jobs:
            cmd += ["--target_jobs", str(call.target_jobs)]
    else:
        cmd += ["--exp_dir", str(seed_dir(exp_dir, seed)), "--tag", variant, "--target", spec["target"]]
    return cmd


def run_variant(spec, variant: str, seed: int, exp_dir: Path, call: RecipeCall) -> None:
    """One variant and seed through run.sh's stages (data preparation is shared and skipped once done)."""
    cmd = variant_command(spec, variant, seed, exp_dir, call)
    log.info("variant %s seed %d: %s", variant, seed, " ".join(cmd))
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=call.recipe_root)
    where = seed_dir(exp_dir, seed) / variant
    if proc.returncode != 0:
        raise FrugalError(f"variant {variant} seed {seed} failed (exit {proc.returncode}); see {where}"
                          f"{'/recipe' if spec['target'] == ALL else ''}/run.log; re-run the same command to resume")
    log.info("variant %s seed %d done in %.0f s", variant, seed, time.time() - t0)


def run_experiment(spec: Dict[str, Any], exp_dir: Path, n_seeds: int, call: RecipeCall) -> None:
    """Every variant for seeds 0..n_seeds-1, seed by seed: an interrupted sweep has whole tables."""
    t0 = time.time()
    for seed in range(n_seeds):
        for v in spec["variants"]:
            run_variant(spec, v, seed, exp_dir, call)
    log.info("%s: %d variants x %d seeds in %.0f s", spec["name"], len(spec["variants"]), n_seeds,
             time.time() - t0)


def tabulate(spec: Dict[str, Any], exp_dir: Path, n_seeds: Optional[int] = None, caption: str = "") -> Path:
    """``<exp_dir>/results.md`` and ``results.png`` from the runs of the first ``n_seeds`` seeds; returns
    the table's path."""
    rows = collect(spec, exp_dir, n_seeds)
    if not rows:
        raise FrugalError(f"{exp_dir}: no evaluated variant to tabulate")
    write_text_atomic(Path(exp_dir) / "results.md", results_markdown(spec, rows, caption))
    plot_results(spec, rows, Path(exp_dir) / "results.png")
    return Path(exp_dir) / "results.md"
