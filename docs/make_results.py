#!/usr/bin/env python
"""Rebuild docs/<experiment>.{md,png} and docs/results.md from sweeps already run into exp/.

    .venv/bin/python docs/make_results.py --all                      # run the four sweeps, then rebuild
    .venv/bin/python docs/make_results.py egs/table1_database_size:exp/sweeplogs/table1_database_size.log ...

``--all`` refreshes all of docs/: it runs ``./run.sh --egs EGS [--seeds N]`` for each experiment of
``EXPERIMENTS`` (resumable: finished variants and seeds are skipped), its output tee'd to
``exp/sweeplogs/<name>.log``, then rebuilds every page. Otherwise each argument is
``EGS_DIR:SWEEP_LOG`` (the log of ``./run.sh --egs EGS_DIR ...``). What the pages hold and where
each figure comes from: :mod:`asteroid_frugal.reports.docs_results`.
"""
import argparse
from pathlib import Path

from asteroid_frugal.cli.common import run
from asteroid_frugal.reports.docs_results import DEMO_SET, run_all, write_pages
from asteroid_frugal.utils import FrugalError

DOCS = Path(__file__).resolve().parent
RECIPE_ROOT = DOCS.parent          # where run.sh is: this script lives in the recipe's docs/


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweeps", nargs="*", help="EGS_DIR:SWEEP_LOG pairs (not with --all)")
    p.add_argument("--all", action="store_true",
                   help="run the four experiments' sweeps (--seeds, --set) first, then rebuild every page")
    p.add_argument("--seeds", type=int, default=None,
                   help="with --all: seeds per variant (default: each experiment's, else conf.yml's sweep.seeds)")
    p.add_argument("--set", default=DEMO_SET, help="with --all: the --set every sweep runs with")
    p.add_argument("--jobs", type=int, default=1,
                   help="with --all: sweeps run at once, each on its share of the cores (output then only in the logs)")
    p.add_argument("--note", default="", help="a paragraph on how these runs were made (machine load, scheduling), "
                                              "printed under the page's introduction")
    p.add_argument("--exp_dir", default="exp")
    p.add_argument("--out_dir", default=str(DOCS), help="where the pages go (default: docs/)")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        raise FrugalError(f"--jobs {args.jobs}: expected a number >= 1")
    if args.all == bool(args.sweeps):
        raise FrugalError("give either --all or EGS_DIR:SWEEP_LOG pairs")
    pairs = run_all(RECIPE_ROOT, args.exp_dir, args.set, args.seeds, args.jobs) if args.all else args.sweeps
    written = write_pages(pairs, args.exp_dir, args.out_dir, RECIPE_ROOT, args.note)
    for name, page in written.items():
        print(f"wrote {page}" + (" and .png" if name != "results" else ""))


if __name__ == "__main__":
    run(main)
