"""docs/<experiment>.{md,png} and docs/results.md from sweeps already run into exp/ (command:
``docs/make_results.py``).

Every figure comes from the sweep's own files: the metrics from ``results/final_metrics.json`` of
every seed (through :func:`asteroid_frugal.reports.sweep.collect`), the scale from the runs'
resolved ``conf.yml``, ``shaping.json``, ``training_done.json`` and ``eval_info.json``, the times
from the log's ``variant X seed K done in N s`` lines, the hardware from this machine (run it
where the sweep ran). :func:`run_all` first runs the four experiments' sweeps (resumable).
"""
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..config import get, load_yaml
from ..stats import mean_std
from ..utils import FrugalError, cpu_name, read_json, write_text_atomic
from .experiment import ALL, load_experiment
from .sweep import collect, plot_results, results_markdown, steps

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
# The demo-scale budget of the published pages, alike for all variants: 10 epochs (the main job
# trains 20), to bound the CPU time of all four experiments with 3 seeds on a 2-core machine
# (measured: egs/README.md).
DEMO_SET = "training.epochs=10 evaluation.bss_backend=fast"


# ------------------------------------------------------------- the captions
def hardware() -> str:
    """This machine: CPU and GPU (or "no GPU")."""
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
    """How the table's metric was measured (test songs and chunks; BSS Eval implementation and tracks)."""
    if spec["metric"] == "si_snr":
        test = read_json(row["model_dir"] / "data" / "shaping.json")["test"]
        return (f"SI-SNR over the {test['n_tracks']} test songs cut into {test['n_chunks']} chunks of "
                f"{test['chunk_samples'] / get(conf, 'data.sample_rate'):g} s")
    info_dir = row["model_dir"].parent / "combined" if spec["target"] == ALL else row["model_dir"]
    info = read_json(info_dir / "results" / "eval_info.json")
    backend = ("museval (the reference BSS Eval v4)" if info["backend"] == "museval" else
               "the fast BSS Eval (asteroid_frugal.bsseval_fast, matches museval per frame; museval is the reference)")
    return f"SDR by {backend} on {info['n_tracks']} whole test tracks"


def corpus_text(conf) -> str:
    """The training corpus of a run in words."""
    if get(conf, "data.musdb_root"):
        return f"MUSDB18 at {get(conf, 'data.musdb_root')}"
    return (f"the built-in generated corpus ({get(conf, 'default_corpus.n_train')} train / "
            f"{get(conf, 'default_corpus.n_valid')} validation / {get(conf, 'default_corpus.n_test')} test songs "
            f"of {get(conf, 'default_corpus.song_seconds')} s, {get(conf, 'data.sample_rate')} Hz stereo)")


def times_text(rows, times: dict) -> Tuple[float, str]:
    """Total seconds of the sweep's variants, and their mean minutes per variant and seed."""
    variants = list(dict.fromkeys(r["variant"].split(" ")[0] for r in rows))
    per_variant = []
    for v in variants:
        ts = [t for (name, _), t in times.items() if name == v]
        if ts:
            per_variant.append(f"{v} {mean_std(ts)[0] / 60:.1f}")
    total = sum(t for (name, _), t in times.items() if name in variants)
    return total, ", ".join(per_variant) or "not in the log"


def caption(spec, rows, times: dict) -> str:
    """The paragraph under an experiment's table: corpus, model, budget, seeds, metric, hardware, times."""
    first = rows[0]["model_dir"]
    conf = load_yaml(first / "conf.yml")
    done = read_json(first / "training_done.json")
    model = (f"{done['n_parameters']:,}-parameter TasNet ({get(conf, 'filterbank.n_filters')} filters of "
             f"{get(conf, 'filterbank.kernel_size')} samples, {get(conf, 'masker.n_layers')} x "
             f"{get(conf, 'masker.hidden_size')} BLSTM)")
    epochs = sorted({e for r in rows for e in r["epochs"]})
    n_seeds = max(len(r["per_seed"]) for r in rows)
    total, per_variant = times_text(rows, times)
    return (f"Measured on {corpus_text(conf)}; {model}, batch {get(conf, 'training.batch_size')}, "
            f"{'/'.join(map(str, epochs))} epochs (a fixed budget for every variant; early stopping may end a run "
            f"sooner); {n_seeds} seed(s) per variant (training.seed 0..{n_seeds - 1}: initialisation and excerpt "
            f"order; same data); {evaluation_text(spec, rows[0], conf)}. "
            f"Hardware: {hardware()}. Wall time {total / 60:.0f} min for the sweep, all seeds "
            f"(per variant and seed, mean minutes, data preparation, training and evaluation: "
            f"{per_variant}). "
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


# -------------------------------------------------------------- the sweeps
def sweep_command(egs: str, exp_dir: str, sets: str, seeds: Optional[int], jobs: int) -> List[str]:
    """The ``./run.sh --egs`` command of one experiment (``seeds`` None: the experiment's own); beside
    other sweeps (``jobs`` > 1) each gets its share of the cores as threads and trains its targets
    one after the other."""
    options, overrides = EXPERIMENTS[egs]
    sets = f"{sets} {overrides}".strip()
    if jobs > 1:
        sets += f" runtime.threads={max(1, (os.cpu_count() or 1) // jobs)}"
        options = [*options, "--target_jobs", "1"]
    return ["./run.sh", "--setup", "no", "--python", sys.executable, "--egs", egs, "--exp_dir", exp_dir,
            *(["--seeds", str(seeds)] if seeds is not None else []), "--set", sets, *options]


def run_sweep(cmd: Sequence[str], recipe_root: Path, log_file: Path, echo: bool) -> None:
    """One sweep's command, run in the recipe folder, its output appended to ``log_file`` (and echoed
    when it runs alone)."""
    egs = cmd[cmd.index("--egs") + 1]
    print(f"make_results: {shlex.join(cmd)} 2>&1 | tee -a {log_file}", flush=True)
    start = time.time()
    with open(log_file, "a") as out:
        proc = subprocess.Popen(cmd, cwd=recipe_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            if echo:
                sys.stdout.write(line)
            out.write(line)
        if proc.wait() != 0:
            raise FrugalError(f"sweep {egs} failed (exit {proc.returncode}); see {log_file}; "
                              "re-run the same command to resume")
    print(f"make_results: {egs} done in {(time.time() - start) / 60:.0f} min", flush=True)


def run_all(recipe_root: Path, exp_dir: str, sets: str, seeds: Optional[int], jobs: int) -> List[str]:
    """Run the four sweeps (resumable), ``jobs`` at a time, each logged to <exp_dir>/sweeplogs/<name>.log;
    returns EGS:LOG pairs. Every sweep runs to its end (or failure) before the first failure is raised."""
    log_dir = Path(exp_dir) / "sweeplogs"
    log_dir.mkdir(parents=True, exist_ok=True)
    logs = {egs: log_dir / f"{Path(egs).name}.log" for egs in EXPERIMENTS}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_sweep, sweep_command(egs, exp_dir, sets, seeds, jobs), recipe_root, logs[egs],
                               jobs == 1) for egs in EXPERIMENTS]
        for future in futures:
            future.result()
    return [f"{egs}:{log}" for egs, log in logs.items()]


# --------------------------------------------------------------- the pages
def read_pages(pairs: Sequence[str], exp_dir) -> list:
    """``(spec, rows, markdown)`` of every ``EGS_DIR:SWEEP_LOG`` pair: every sweep is read, and can
    fail, before any page is written."""
    pages = []
    for egs, log_file in (pair.partition(":")[::2] for pair in pairs):
        spec = load_experiment(egs)
        sweep_dir = Path(exp_dir) / spec["name"]
        rows = collect(spec, sweep_dir)
        if not rows:
            raise FrugalError(f"{sweep_dir}: no evaluated variant")
        times = variant_times(Path(log_file)) if log_file else {}
        pages.append((spec, rows, results_markdown(spec, rows, caption(spec, rows, times))))
    return pages


def page_head(recipe_root: Path, note: str = "") -> str:
    """The introduction of docs/results.md: how the pages are made, the demo budget, the note."""
    epochs = get(load_yaml(Path(recipe_root) / "egs/demo/conf.yml"), "training.epochs")
    per_experiment = "; ".join(f"{Path(e).name} `{o}`" for e, (_, o) in EXPERIMENTS.items() if o)
    return ("# Results at demo scale\n\nThe paper's experiments rerun with `./run.sh --egs egs/<experiment> "
            "--seeds N` on the built-in corpus, tabulated by the sweep from its own metric files and rebuilt "
            "with `docs/make_results.py`. Negative paper values in the egs READMEs are losses; here both are "
            "SI-SNR (or SDR) in dB, higher is better. Each variant is trained once per seed on the same data; "
            "a step between two variants is called a rise or a fall only where its mean over the paired seeds "
            "exceeds twice its standard error. Refresh every page (resumable; `--jobs 2` runs two sweeps at once "
            "on one core each) with:\n\n```bash\n"
            ".venv/bin/python docs/make_results.py --all --jobs 2\n```\n\n"
            f"Demo-scale budget of `--all`, alike for every variant: `--set \"{DEMO_SET}\"` (fewer epochs than the "
            f"main job's {epochs}, to bound the sweeps' CPU time; the measured times are in each experiment's "
            f"caption), plus per experiment: {per_experiment}.\n\n"
            + (f"How these runs were made: {note}\n\n" if note else "") +
            "## The paper's claims at demo scale\n\nFirst against last variant of each experiment "
            "(Table 3: {1} against {4}); every step is on the experiment's own page.\n\n")


def write_pages(pairs: Sequence[str], exp_dir, out_dir, recipe_root: Path, note: str = "") -> Dict[str, Path]:
    """``<out_dir>/<experiment>.{md,png}`` per sweep and ``<out_dir>/results.md``; returns the pages written
    (``{experiment name: its .md}``, then ``"results"``)."""
    pages = read_pages(pairs, exp_dir)
    out_dir = Path(out_dir)
    written, sections = {}, []
    for spec, rows, md in pages:
        write_text_atomic(out_dir / f"{spec['name']}.md", md)
        plot_results(spec, rows, out_dir / f"{spec['name']}.png")
        body = md.split("\n", 1)[1]  # the table's own title becomes a section heading
        sections.append(f"## {spec['title']}\n{body}\n![{spec['name']}]({spec['name']}.png)\n")
        written[spec["name"]] = out_dir / f"{spec['name']}.md"
    write_text_atomic(out_dir / "results.md", page_head(recipe_root, note) + claims(pages) + "\n"
                      + "\n".join(sections))
    written["results"] = out_dir / "results.md"
    return written
