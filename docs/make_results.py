#!/usr/bin/env python
"""Rebuild docs/<experiment>.{md,png} and docs/results.md from sweeps already run into exp/.

    .venv/bin/python docs/make_results.py --all                      # run the four sweeps, then rebuild
    .venv/bin/python docs/make_results.py egs/table1_database_size:exp/sweeplogs/table1_database_size.log ...

``--all`` refreshes all of docs/: it runs ``./run.sh --egs EGS --seeds N`` for each experiment of
``EXPERIMENTS`` (resumable: finished variants and seeds are skipped), its output tee'd to
``exp/sweeplogs/<name>.log``, then rebuilds every page. Otherwise each argument is
``EGS_DIR:SWEEP_LOG`` (the log of ``./run.sh --egs EGS_DIR ...``). Every figure comes from the
sweep's own files: the metrics from ``results/final_metrics.json`` of every seed (through
``sweep.collect``), the scale from the runs' resolved ``conf.yml``, ``shaping.json``,
``training_done.json`` and ``eval_info.json``, the times from the log's ``variant X seed K done
in N s`` lines, the hardware from this machine (run it where the sweep ran).
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asteroid_frugal.config import REPO_ROOT, get, load_yaml  # noqa: E402
from asteroid_frugal.stats import mean_std  # noqa: E402
from asteroid_frugal.sweep import (ALL, collect, load_experiment, plot_results, results_markdown,  # noqa: E402
                                   steps)
from asteroid_frugal.utils import FrugalError, cpu_name, read_json, run_cli, write_text_atomic  # noqa: E402

DOCS = Path(__file__).resolve().parent
# The four experiments of the paper: (run.sh options, overrides added to --set) each needs at demo
# scale. Sec. 3.4's 40 s excerpts need songs of at least 40 s: it gets a longer built-in corpus in
# its own data folder (the other sweeps' prepared corpus stays as it is). Table 3 trains on the main
# job's 10 s excerpts (its conf.yml's 20 s would double its time).
EXPERIMENTS = {
    "egs/table1_database_size": ([], ""),
    "egs/table2_excerpt_length": ([], ""),
    "egs/sec34_variety_vs_context": (["--data_dir", "data/corpus_45s"], "default_corpus.song_seconds=45"),
    "egs/table3_musdb": ([], "shaping.excerpt_seconds=10"),
}
# The demo-scale budget, alike for all variants: 10 epochs (the main job trains 20), to bound the CPU
# time of all four experiments with 3 seeds on a 2-core machine (measured: egs/README.md).
DEMO_SET = "training.epochs=10 evaluation.bss_backend=fast"


def hardware() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu_name()}, {gpu}"


def variant_times(log_file: Path) -> dict:
    """``{(variant, seed): seconds}`` from the sweep log: the longest run of each variant and seed (a sweep
    run again over finished variants logs their few seconds of skipping, not the work)."""
    if not log_file.is_file():
        raise FrugalError(f"{log_file}: sweep log not found (the tee'd output of ./run.sh --egs ...)")
    times = {}
    for m in re.finditer(r"variant (\S+) seed (\d+) done in (\d+) s", log_file.read_text(errors="replace")):
        key = (m.group(1), int(m.group(2)))
        times[key] = max(times.get(key, 0), int(m.group(3)))
    return times


def evaluation_text(spec, row, conf) -> str:
    if spec["metric"] == "si_snr":
        test = read_json(row["model_dir"] / "data" / "shaping.json")["test"]
        return (f"SI-SNR over the {test['n_tracks']} test songs cut into {test['n_chunks']} chunks of "
                f"{test['chunk_samples'] / get(conf, 'data.sample_rate'):g} s")
    info_dir = row["model_dir"].parent / "combined" if spec["target"] == ALL else row["model_dir"]
    info = read_json(info_dir / "results" / "eval_info.json")
    backend = ("museval (the reference BSS Eval v4)" if info["backend"] == "museval" else
               "the fast BSS Eval (asteroid_frugal.bsseval_fast, matches museval per frame; museval is the reference)")
    return f"SDR by {backend} on {info['n_tracks']} whole test tracks"


def caption(spec, rows, times: dict) -> str:
    first = rows[0]["model_dir"]
    conf = load_yaml(first / "conf.yml")
    done = read_json(first / "training_done.json")
    corpus = (f"the built-in generated corpus ({get(conf, 'default_corpus.n_train')} train / "
              f"{get(conf, 'default_corpus.n_valid')} validation / {get(conf, 'default_corpus.n_test')} test songs "
              f"of {get(conf, 'default_corpus.song_seconds')} s, {get(conf, 'data.sample_rate')} Hz stereo)"
              if not get(conf, "data.musdb_root") else f"MUSDB18 at {get(conf, 'data.musdb_root')}")
    model = (f"{done['n_parameters']:,}-parameter TasNet ({get(conf, 'filterbank.n_filters')} filters of "
             f"{get(conf, 'filterbank.kernel_size')} samples, {get(conf, 'masker.n_layers')} x "
             f"{get(conf, 'masker.hidden_size')} BLSTM)")
    epochs = sorted({e for r in rows for e in r["epochs"]})
    n_seeds = max(len(r["per_seed"]) for r in rows)
    variants = list(dict.fromkeys(r["variant"].split(" ")[0] for r in rows))
    per_variant = []
    for v in variants:
        ts = [t for (name, _), t in times.items() if name == v]
        if ts:
            per_variant.append(f"{v} {mean_std(ts)[0] / 60:.1f}")
    total = sum(t for (name, _), t in times.items() if name in variants)
    return (f"Measured on {corpus}; {model}, batch {get(conf, 'training.batch_size')}, "
            f"{'/'.join(map(str, epochs))} epochs (a fixed budget for every variant; early stopping may end a run "
            f"sooner); {n_seeds} seed(s) per variant (training.seed 0..{n_seeds - 1}: initialisation and excerpt "
            f"order; same data); {evaluation_text(spec, rows[0], conf)}. "
            f"Hardware: {hardware()}. Wall time {total / 60:.0f} min for the sweep, all seeds "
            f"(per variant and seed, mean minutes, data preparation, training and evaluation: "
            f"{', '.join(per_variant) or 'not in the log'}). "
            f"Paper values: the paper's full-size model and data, beside these for the trend only.")


def claims(pages) -> str:
    """The first -> last verdict of every judged column of every experiment, for the page's summary."""
    lines = ["| experiment | column | step | measured | paper | verdict |", "|---|---|---|---|---|---|"]
    for spec, rows, _ in pages:
        for s in steps(spec, rows):
            if s["frm"] == rows[0]["variant"] and s["to"] == rows[-1]["variant"]:
                st = s["step"]
                se = "" if st["n"] < 2 else f" ± {st['se']:.2f}"
                paper = s["paper"] or "–"
                if s["paper_step"] is not None:
                    paper += f" ({s['paper_step']:+.2f})"
                lines.append(f"| {spec['name']} | {s['column']} | {s['frm']} → {s['to']} | {s['measured']}: "
                             f"{st['mean']:+.2f}{se} dB (n={st['n']}) | {paper} | {s['verdict']} |")
    return "\n".join(lines) + "\n"


def sweep_command(egs: str, args, jobs: int) -> list:
    """The ``./run.sh --egs`` command of one experiment; beside other sweeps (``jobs`` > 1) each gets
    its share of the cores as threads and trains its targets one after the other."""
    options, overrides = EXPERIMENTS[egs]
    sets = f"{args.set} {overrides}".strip()
    if jobs > 1:
        sets += f" runtime.threads={max(1, (os.cpu_count() or 1) // jobs)}"
        options = [*options, "--target_jobs", "1"]
    return ["./run.sh", "--setup", "no", "--python", sys.executable, "--egs", egs, "--exp_dir", args.exp_dir,
            "--seeds", str(args.seeds), "--set", sets, *options]


def run_sweep(egs: str, args, log_file: Path, echo: bool) -> None:
    """One sweep, its output appended to ``log_file`` (and echoed when it runs alone)."""
    cmd = sweep_command(egs, args, args.jobs)
    print(f"make_results: {shlex.join(cmd)} 2>&1 | tee -a {log_file}", flush=True)
    start = time.time()
    with open(log_file, "a") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            if echo:
                sys.stdout.write(line)
            out.write(line)
        if proc.wait() != 0:
            raise FrugalError(f"sweep {egs} failed (exit {proc.returncode}); see {log_file}; "
                              "re-run the same command to resume")
    print(f"make_results: {egs} done in {(time.time() - start) / 60:.0f} min", flush=True)


def run_all(args) -> list:
    """Run the four sweeps (resumable), ``args.jobs`` at a time, each logged to exp/sweeplogs/<name>.log;
    returns EGS:LOG pairs. Every sweep runs to its end (or failure) before the first failure is raised."""
    log_dir = Path(args.exp_dir) / "sweeplogs"
    log_dir.mkdir(parents=True, exist_ok=True)
    logs = {egs: log_dir / f"{Path(egs).name}.log" for egs in EXPERIMENTS}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_sweep, egs, args, logs[egs], args.jobs == 1) for egs in EXPERIMENTS]
        for future in futures:
            future.result()
    return [f"{egs}:{log}" for egs, log in logs.items()]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweeps", nargs="*", help="EGS_DIR:SWEEP_LOG pairs (not with --all)")
    p.add_argument("--all", action="store_true",
                   help="run the four experiments' sweeps (--seeds, --set) first, then rebuild every page")
    p.add_argument("--seeds", type=int, default=3, help="with --all: seeds per variant")
    p.add_argument("--set", default=DEMO_SET, help="with --all: the --set every sweep runs with")
    p.add_argument("--jobs", type=int, default=1,
                   help="with --all: sweeps run at once, each on its share of the cores (output then only in the logs)")
    p.add_argument("--note", default="", help="a paragraph on how these runs were made (machine load, scheduling), "
                                              "printed under the page's introduction")
    p.add_argument("--exp_dir", default="exp")
    p.add_argument("--out_dir", default=str(DOCS), help="where the pages go (default: docs/)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        raise FrugalError(f"--jobs {args.jobs}: expected a number >= 1")
    if args.all == bool(args.sweeps):
        raise FrugalError("give either --all or EGS_DIR:SWEEP_LOG pairs")
    pairs = run_all(args) if args.all else args.sweeps
    out_dir = Path(args.out_dir)
    sweeps = [pair.partition(":")[::2] for pair in pairs]  # [(egs_dir, log_file)]
    pages = []  # (spec, rows, markdown): every sweep is read, and can fail, before any page is written
    for egs, log_file in sweeps:
        spec = load_experiment(egs)
        exp_dir = Path(args.exp_dir) / spec["name"]
        rows = collect(spec, exp_dir)
        if not rows:
            raise FrugalError(f"{exp_dir}: no evaluated variant")
        times = variant_times(Path(log_file)) if log_file else {}
        pages.append((spec, rows, results_markdown(spec, rows, caption(spec, rows, times))))
    sections = []
    for spec, rows, md in pages:
        write_text_atomic(out_dir / f"{spec['name']}.md", md)
        plot_results(spec, rows, out_dir / f"{spec['name']}.png")
        body = md.split("\n", 1)[1]  # the table's own title becomes a section heading
        sections.append(f"## {spec['title']}\n{body}\n![{spec['name']}]({spec['name']}.png)\n")
        print(f"wrote {out_dir / spec['name']}.md and .png")
    head = ("# Results at demo scale\n\nThe paper's experiments rerun with `./run.sh --egs egs/<experiment> "
            "--seeds N` on the built-in corpus, tabulated by the sweep from its own metric files and rebuilt "
            "with `docs/make_results.py`. Negative paper values in the egs READMEs are losses; here both are "
            "SI-SNR (or SDR) in dB, higher is better. Each variant is trained once per seed on the same data; "
            "a step between two variants is called a rise or a fall only where its mean over the paired seeds "
            "exceeds twice its standard error. Refresh every page (resumable; `--jobs 2` runs two sweeps at once "
            "on one core each) with:\n\n```bash\n"
            ".venv/bin/python docs/make_results.py --all --jobs 2\n```\n\n"
            f"Demo-scale budget of `--all`, alike for every variant: `--set \"{DEMO_SET}\"` (fewer epochs than the "
            f"main job's {get(load_yaml(REPO_ROOT / 'egs/demo/conf.yml'), 'training.epochs')}, to bound the sweeps' CPU "
            "time; the measured times are in each experiment's caption), plus per "
            "experiment: " + "; ".join(f"{Path(e).name} `{o}`" for e, (_, o) in EXPERIMENTS.items() if o) + ".\n\n"
            + (f"How these runs were made: {args.note}\n\n" if args.note else "") +
            "## The paper's claims at demo scale\n\nFirst against last variant of each experiment "
            "(Table 3: {1} against {4}); every step is on the experiment's own page.\n\n"
            + claims(pages) + "\n")
    write_text_atomic(out_dir / "results.md", head + "\n".join(sections))
    print(f"wrote {out_dir / 'results.md'}")


if __name__ == "__main__":
    run_cli(main)
