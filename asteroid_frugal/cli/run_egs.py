"""Sweeps: run every variant of an egs/<experiment> folder for several seeds, then tabulate it.

    ./run.sh --egs egs/table2_excerpt_length --seeds 3       # run.sh calls local/run_egs.py
    ./run.sh --egs egs/table2_excerpt_length --launcher slurm  # one SLURM job each; again: the table
    local/run_egs.py --egs egs/table2_excerpt_length --exp_dir exp --collect_only   # the table only

run.sh passes its options as --conf/--overlay/--set; they reach every variant's run.sh unchanged
(see :mod:`asteroid_frugal.sweep`). The table goes to ``<exp_dir>/<name>/results.md`` (and .png).
``--launcher`` (``launcher.name``): here in turn (``local``), or one submitit job per variant and seed
(``slurm``...; :mod:`asteroid_frugal.launch`, docs/cluster.md); ``launcher.*`` reaches no variant.
"""
import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from ..launch import LAUNCHERS, launch_experiment, launcher_settings
from ..reports.experiment import load_experiment
from ..sweep import EVALUATION_STAGE, RecipeCall, recipe_root, run_experiment, seed_count, tabulate
from .common import add_config_args, config_from_args, overrides_from_args, run

log = logging.getLogger("asteroid_frugal.sweep")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(p, "run_egs")
    p.add_argument("--egs", required=True, help="experiment folder, e.g. egs/table2_excerpt_length")
    p.add_argument("--exp_dir", required=True, help="experiments root (the sweep goes to <exp_dir>/<name>)")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per variant (default: experiment.yml's seeds, else conf.yml's sweep.seeds)")
    p.add_argument("--stage", type=int, default=None, help="first run.sh stage of every variant (default: run.sh's)")
    p.add_argument("--stop_stage", type=int, default=None,
                   help=f"last run.sh stage of every variant, at most {EVALUATION_STAGE} (default: {EVALUATION_STAGE}, "
                        "evaluation; a sweep publishes nothing); below it, no table")
    p.add_argument("--collect_only", action="store_true", help="only rebuild results.md / results.png")
    p.add_argument("--caption", default=None, help="text placed under the table (corpus, scale, hardware)")
    p.add_argument("--target_jobs", default=None,
                   help="run.sh --target_jobs of each variant that trains all targets (Table 3; default: run.sh's)")
    p.add_argument("--launcher", default=None, choices=list(LAUNCHERS),
                   help="where each variant x seed runs: local (here, in turn), slurm (one job each), submitit_local, "
                        "submitit_debug (default: conf.yml's launcher.name)")
    p.add_argument("--wait", action="store_true",
                   help="with a job launcher: wait for the jobs, then write the table (sets launcher.wait=true)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> Optional[Path]:
    args = build_parser().parse_args(argv)
    if args.launcher:
        args.overrides.append(f"launcher.name={args.launcher}")
    if args.wait:
        args.overrides.append("launcher.wait=true")
    conf = config_from_args(args)
    launcher = launcher_settings(conf)["name"]
    spec = load_experiment(args.egs)
    n_seeds = seed_count(spec, conf, args.seeds)
    exp_dir = Path(args.exp_dir) / spec["name"]
    if not args.collect_only:
        overrides = [o for o in overrides_from_args(args) if not o.strip().startswith("launcher.")]
        call = RecipeCall(recipe_root(Path.cwd()), args.conf, [o for item in args.overlay for o in str(item).split()],
                          overrides, args.stage, args.stop_stage, args.target_jobs)
        if launcher == "local":
            run_experiment(spec, exp_dir, n_seeds, call)
        elif not launch_experiment(spec, exp_dir, n_seeds, call, conf):
            return None      # jobs pending or running: a re-run of the command writes the table
        if args.stop_stage is not None and args.stop_stage < EVALUATION_STAGE:
            log.info("stop_stage %d < %d: nothing evaluated, no table", args.stop_stage, EVALUATION_STAGE)
            return None
    table = tabulate(spec, exp_dir, n_seeds, args.caption or "")
    print(table.read_text())
    return table


def cli() -> None:
    """Entry point (local/run_egs.py, python -m asteroid_frugal.cli.run_egs)."""
    run(main)


if __name__ == "__main__":
    cli()
