"""Run one of the paper's experiments (every variant of an ``egs/<name>`` folder, several seeds) and tabulate it.

An experiment folder holds ``experiment.yml`` and one config overlay per variant::

    title: "Table 2: excerpt length"
    target: vocals                      # the model trained in every variant; "all": vocals, drums
                                        # and bass, scored {1} and {4} (Table 3, metric sdr)
    metric: si_snr                      # si_snr (test split, Tables 1-2, Sec. 3.4) | sdr (museval)
    varied: {key: shaping.excerpt_seconds, label: "excerpt length (s)"}   # not with target: all
    common: common.yml                  # overlay shared by every variant (e.g. the epoch budget)
    variants: [excerpt05, excerpt10, excerpt20, excerpt30]   # -> excerpt05.yml, ...
    seeds: 3                            # optional (default 3); ./run.sh --egs ... --seeds N wins
    trend_columns: [vocals, mean]       # optional: the columns whose steps are judged (default: all)
    paper:                              # the paper's numbers for this table, as printed
      note: "..."
      sign: -1                          # printed values are negative losses: SI-SNR = sign * value
      rows: {excerpt05: {vocals: -3.29, accompaniment: -13.54, mean: -8.42}, ...}
      directions: {vocals: [rises, rises, flat]}   # optional: the paper's stated direction per
                                                   # step, where it prints no numbers (Sec. 3.4)

Every variant is trained and evaluated once per seed through ``run.sh`` in
``exp/<name>/seed<k>/<variant>`` with ``training.seed=k``: the model initialisation and the
excerpt order differ between seeds, the data (split, songs, excerpt positions: ``shaping.seed``)
do not. Each stage skips what is already done, so an interrupted sweep resumes. The config
options of ``run.sh`` arrive here as ``--conf``/``--overlay``/``--set`` and are passed on
unchanged to every variant's ``run.sh`` (one mechanism: an option is declared once, in run.sh).
The table (``results.md``: mean +- standard deviation over seeds, and the neighbouring steps
judged from paired differences, :mod:`asteroid_frugal.stats`) and the plot (``results.png``,
error bars) are built from each run's own ``results/final_metrics.json`` and ``conf.yml``,
never typed.
"""
import argparse
import logging
import math
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .config import REPO_ROOT, add_config_args, get, load_yaml
from .data.types import SOURCES, TARGETS, rest_name
from .metrics import backend_name
from .results_table import TABLE3_COLUMNS
from .stats import FLAT, format_step, mean_std, paired_step, paper_direction, direction, verdict
from .utils import FrugalError, atomic_path, read_json, write_text_atomic

log = logging.getLogger("asteroid_frugal.sweep")

DEFAULT_SEEDS = 3
ALL = "all"                                   # target of Table 3: the three models, {1} and {4}
SCENARIOS = ("{1}", "{4}")


def load_experiment(egs_dir) -> Dict[str, Any]:
    """Read and check ``experiment.yml``; paths of overlays are resolved."""
    egs_dir = Path(egs_dir)
    where = egs_dir / "experiment.yml"
    spec = load_yaml(where)
    for key in ("title", "target", "metric", "variants"):
        if key not in spec:
            raise FrugalError(f"{where}: missing key {key!r}")
    if spec["metric"] not in ("si_snr", "sdr"):
        raise FrugalError(f"{where}: metric must be si_snr or sdr, got {spec['metric']!r}")
    if spec["target"] not in (*TARGETS, ALL):
        raise FrugalError(f"{where}: target must be one of {', '.join(TARGETS)} or {ALL}, got {spec['target']!r}")
    if spec["target"] == ALL and spec["metric"] != "sdr":
        raise FrugalError(f"{where}: target {ALL} ({{1}} and {{4}}) is scored with BSS Eval: metric must be sdr")
    if spec["target"] != ALL and "varied" not in spec:
        raise FrugalError(f"{where}: missing key 'varied'")
    spec["seeds"] = spec.get("seeds", DEFAULT_SEEDS)
    if not isinstance(spec["seeds"], int) or spec["seeds"] < 1:
        raise FrugalError(f"{where}: seeds must be a whole number >= 1, got {spec['seeds']!r}")
    spec["name"] = spec.get("name") or egs_dir.name
    spec["common_path"] = egs_dir / spec["common"] if spec.get("common") else None
    spec["variant_paths"] = {}
    for v in spec["variants"]:
        path = egs_dir / f"{v}.yml"
        if not path.exists():
            raise FrugalError(f"{path}: overlay of variant {v!r} not found")
        spec["variant_paths"][v] = path
    cols = columns(spec)
    unknown = [c for c in spec.get("trend_columns", []) if c not in cols]
    if unknown:
        raise FrugalError(f"{where}: trend_columns {unknown} not among the columns {cols}")
    n_steps = len(row_labels(spec)) - 1
    for col, dirs in ((spec.get("paper") or {}).get("directions") or {}).items():
        if col not in cols or len(dirs) != n_steps or any(d not in ("rises", "falls", FLAT) for d in dirs):
            raise FrugalError(f"{where}: paper.directions.{col}: expected a column of {cols} with {n_steps} "
                              f"of rises/falls/flat, got {dirs!r}")
    return spec


def columns(spec) -> List[str]:
    """The table's metric columns: target, rest, mean (Table 3: the four sources, accompaniment, mean)."""
    if spec["target"] == ALL:
        return list(TABLE3_COLUMNS)
    return [spec["target"], rest_name(spec["target"]), "mean"]


def row_labels(spec) -> List[str]:
    """One row per variant (Table 3: per variant and scenario, ``<variant> {1}``, ``<variant> {4}``)."""
    if spec["target"] == ALL:
        return [f"{v} {s}" for v in spec["variants"] for s in SCENARIOS]
    return list(spec["variants"])


def variant_overlays(spec: Dict[str, Any], variant: str, user_overlays: List[str]) -> List[str]:
    """user overlays (e.g. demo scale), then the experiment's common overlay, then the variant's."""
    out = list(user_overlays)
    if spec["common_path"]:
        out.append(str(spec["common_path"]))
    out.append(str(spec["variant_paths"][variant]))
    return out


def seed_dir(exp_dir: Path, seed: int) -> Path:
    return Path(exp_dir) / f"seed{seed}"


def found_seeds(exp_dir: Path, n_seeds: Optional[int] = None) -> List[int]:
    """Seeds with a folder under ``exp_dir`` (the first ``n_seeds`` only, when given)."""
    seeds = sorted(int(m.group(1)) for p in Path(exp_dir).glob("seed*")
                   if p.is_dir() and (m := re.fullmatch(r"seed(\d+)", p.name)))
    return [s for s in seeds if n_seeds is None or s < n_seeds]


def run_variant(spec, variant: str, seed: int, exp_dir: Path, args) -> None:
    """One variant and seed through run.sh stages (data preparation is shared and skipped once done).

    The sweep's own settings come first, the run.sh options (``args.overrides``) after them,
    the seed last."""
    sets = [*(["evaluation.bss=false"] if spec["metric"] == "si_snr" else []), *args.overrides,
            f"training.seed={seed}"]
    overlays = [o for item in args.overlay for o in str(item).split()]
    cmd = ["./run.sh", "--setup", "no", "--python", sys.executable, "--stage", str(args.stage),
           "--stop_stage", str(min(args.stop_stage, 4)), "--conf", args.conf,
           "--overlay", " ".join(variant_overlays(spec, variant, overlays)), "--set", " ".join(sets)]
    if spec["target"] == ALL:   # no tag: run.sh trains vocals, drums, bass and scores {1} and {4}
        cmd += ["--exp_dir", str(seed_dir(exp_dir, seed) / variant)]
        if getattr(args, "target_jobs", None):
            cmd += ["--target_jobs", str(args.target_jobs)]
    else:
        cmd += ["--exp_dir", str(seed_dir(exp_dir, seed)), "--tag", variant, "--target", spec["target"]]
    log.info("variant %s seed %d: %s", variant, seed, " ".join(cmd))
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO_ROOT)
    where = seed_dir(exp_dir, seed) / variant
    if proc.returncode != 0:
        raise FrugalError(f"variant {variant} seed {seed} failed (exit {proc.returncode}); see {where}"
                          f"{'/recipe' if spec['target'] == ALL else ''}/run.log; re-run the same command to resume")
    log.info("variant %s seed %d done in %.0f s", variant, seed, time.time() - t0)


def _metric(metrics_file: Path, key: str) -> float:
    metrics = read_json(metrics_file)
    if key not in metrics:
        raise FrugalError(f"{metrics_file}: no {key!r} metric")
    return float(metrics[key])


def _seed_values(spec, vdir: Path, scenario: Optional[str]) -> Optional[Dict[str, float]]:
    """The row's metric values for one seed, from the run's own files; None if not evaluated yet."""
    if spec["target"] != ALL:
        metrics_file = vdir / "results" / "final_metrics.json"
        if not metrics_file.exists():
            return None
        prefix = "si_snr" if spec["metric"] == "si_snr" else "sdr"
        t, r = (_metric(metrics_file, f"{prefix}_{n}") for n in columns(spec)[:2])
        return {spec["target"]: t, rest_name(spec["target"]): r, "mean": (t + r) / 2}
    files = {d: vdir / d / "results" / "final_metrics.json" for d in (*TARGETS, "combined")}
    if scenario == "{4}":
        if not files["combined"].exists():
            return None
        out = {s: _metric(files["combined"], f"sdr_{s}") for s in SOURCES}
        out["mean"] = _metric(files["combined"], "sdr_mean")
        return out
    if not all(f.exists() for f in files.values()):
        return None
    # the {1} row as evaluate._table3_runs builds it for results.md: each model's own score
    out = {t: _metric(files[t], f"sdr_{t}") for t in TARGETS}
    out["accompaniment"] = _metric(files["vocals"], "sdr_accompaniment")
    out["other"] = _metric(files["combined"], "sdr_other")     # as the paper: other only exists from {4}
    out["mean"] = sum(out[s] for s in SOURCES) / len(SOURCES)
    return out


def collect(spec: Dict[str, Any], exp_dir: Path, n_seeds: Optional[int] = None) -> List[Dict]:
    """One row per variant evaluated for at least one seed, from the runs' own files.

    ``row["per_seed"][k][column]`` are the values, ``row["stats"][column]`` their ``(mean, std)``
    over the seeds; the varied value and the scale come from the first seed's ``conf.yml``,
    ``data/shaping.json`` and ``training_done.json``."""
    exp_dir = Path(exp_dir)
    seeds = found_seeds(exp_dir, n_seeds)
    paper = spec.get("paper") or {}
    rows = []
    for label in row_labels(spec):
        variant, _, scenario = label.partition(" ")
        per_seed = {}
        for k in seeds:
            values = _seed_values(spec, seed_dir(exp_dir, k) / variant, scenario or None)
            if values is not None:
                per_seed[k] = values
        if not per_seed:
            log.warning("%s: not evaluated yet for any seed in %s", label, exp_dir)
            continue
        first = seed_dir(exp_dir, min(per_seed)) / variant
        model_dirs = [first / t for t in TARGETS] if spec["target"] == ALL else [first]
        conf_file = model_dirs[0] / "conf.yml"
        if not conf_file.is_file():
            raise FrugalError(f"{conf_file}: resolved config of an evaluated run not found")
        conf = load_yaml(conf_file)
        row = dict(variant=label, model_dir=model_dirs[0], per_seed=per_seed,
                   value=get(conf, spec["varied"]["key"]) if spec.get("varied") else None,
                   stats={c: mean_std(v[c] for v in per_seed.values()) for c in columns(spec)
                          if all(c in v for v in per_seed.values())})   # {4} has no accompaniment
        epochs = sorted({read_json(d / "training_done.json").get("epochs_done")
                         for k in per_seed for d in ([seed_dir(exp_dir, k) / variant / t for t in TARGETS]
                                                     if spec["target"] == ALL else [seed_dir(exp_dir, k) / variant])
                         if (d / "training_done.json").exists()})
        row["epochs"] = epochs
        backends = {read_json(d / "results" / "eval_info.json").get("backend") for d in model_dirs
                    if (d / "results" / "eval_info.json").exists()}
        if spec["target"] == ALL and (first / "combined" / "results" / "eval_info.json").exists():
            backends.add(read_json(first / "combined" / "results" / "eval_info.json").get("backend"))
        row["bss_backends"] = sorted(b for b in backends if b)
        shaping = model_dirs[0] / "data" / "shaping.json"
        if shaping.exists():
            sh = read_json(shaping)
            row.update(n_songs=sh.get("n_songs"), hours=sh.get("hours"), batch_size=sh.get("batch_size"))
        if label in (paper.get("rows") or {}):
            sign = float(paper.get("sign", 1))
            row["paper"] = {c: sign * float(x) for c, x in paper["rows"][label].items()}
        rows.append(row)
    return rows


def _pm(stat, fmt="{:.2f}") -> str:
    if stat is None:
        return "–"
    m, sd = stat
    return fmt.format(m) if math.isnan(sd) else f"{fmt.format(m)} ± {sd:.2f}"


def _stated_direction(directions: Optional[List[str]], i: int, j: int) -> Optional[str]:
    """The paper's stated direction from row i to row j: flat if every step between is flat, else the
    one non-flat direction they share (None if they mix rises and falls, or none is stated)."""
    if not directions:
        return None
    moving = set(directions[i:j]) - {FLAT}
    return FLAT if not moving else moving.pop() if len(moving) == 1 else None


def steps(spec, rows) -> List[dict]:
    """Every neighbouring step (and first -> last) of every judged column, paired over seeds.

    Each step: ``{frm, to, column, step, measured, paper_step, paper, verdict}``."""
    cols = spec.get("trend_columns") or columns(spec)
    stated = (spec.get("paper") or {}).get("directions") or {}
    labels = row_labels(spec)
    out = []
    pairs = list(zip(rows, rows[1:]))
    if len(rows) > 2:
        pairs.append((rows[0], rows[-1]))
    for col in cols:
        for a, b in pairs:
            st = paired_step({k: v[col] for k, v in a["per_seed"].items() if col in v},
                             {k: v[col] for k, v in b["per_seed"].items() if col in v})
            if st["n"] == 0:
                continue
            pa, pb = a.get("paper", {}).get(col), b.get("paper", {}).get(col)
            p_step = pb - pa if pa is not None and pb is not None else None
            i, j = labels.index(a["variant"]), labels.index(b["variant"])
            p_stated = _stated_direction(stated.get(col), i, j)
            pdir = paper_direction(p_step, p_stated)
            measured = direction(st)
            out.append(dict(frm=a["variant"], to=b["variant"], column=col, step=st, measured=measured,
                            paper_step=p_step, paper=pdir, verdict=verdict(measured, pdir)))
    return out


def steps_markdown(spec, rows) -> List[str]:
    """The judged steps as a table, and one sentence per column (first -> last)."""
    judged = steps(spec, rows)
    if not judged:
        return []
    n_seeds = max(len(r["per_seed"]) for r in rows)
    lines = [f"Steps between neighbouring rows, paired by seed (same seed, both rows; {n_seeds} seed(s)): "
             "\"rises\"/\"falls\" only where the mean step exceeds twice its standard error, else "
             "\"within noise\". The paper's direction is that of its printed values, or of its text where the "
             "experiment states one (paper.directions: flat = no real change). \"identical\": every paired "
             "difference is exactly zero, the two rows score the same estimates.", "",
             "| step | column | mean step ± s.e. | measured | paper step | paper | verdict |",
             "|---|---|---:|---|---:|---|---|"]
    for s in judged:
        st = s["step"]
        se = "" if math.isnan(st["se"]) else f" ± {st['se']:.2f}"
        p_step = "–" if s["paper_step"] is None else f"{s['paper_step']:+.2f}"
        lines.append(f"| {s['frm']} → {s['to']} | {s['column']} | {st['mean']:+.2f}{se} (n={st['n']}) "
                     f"| {s['measured']} | {p_step} | {s['paper'] or '–'} | {s['verdict']} |")
    lines.append("")
    last = [s for s in judged if s["frm"] == rows[0]["variant"] and s["to"] == rows[-1]["variant"]]
    for s in last:
        paper = "" if s["paper"] is None else f"; paper: {s['paper']}" + (
            "" if s["paper_step"] is None else f" ({s['paper_step']:+.2f} dB)") + f": {s['verdict']}"
        lines.append(f"- {s['column']}, {s['frm']} → {s['to']}: {s['measured']}, {format_step(s['step'])}{paper}.")
    return lines


def results_markdown(spec: Dict[str, Any], rows: List[Dict], caption: str = "") -> str:
    """The paper's table layout, mean ± std over seeds, measured next to the paper's; then the steps."""
    cols = columns(spec)
    if spec["metric"] == "si_snr":
        unit = "SI-SNR (dB, test split)"
    else:
        names = sorted({backend_name(b) for r in rows for b in (r.get("bss_backends") or [None])})
        unit = f"SDR (dB, BSS Eval v4 by {' and '.join(names)}, median over frames and tracks)"
    lines = [f"# {spec['title']}", "", f"Metric: {unit}; higher is better. Cells: mean ± standard deviation "
             f"over seeds (training.seed; same data)."
             + (" {1}: each model's own two-source score (vocals against accompaniment); {4}: the three models "
                "together, other = mixture - (vocals + drums + bass), vocals from the 4-source problem; "
                "other in the {1} row is the {4} value, as in the paper." if spec["target"] == ALL else ""), ""]
    if caption:
        lines += [caption, ""]
    varied = [spec["varied"]["label"]] if spec.get("varied") else []
    head = ["variant", *varied, "songs", "hours", "batch", "epochs", "seeds", *cols,
            *(f"paper {c}" for c in cols)]
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]

    def f(x, fmt="{:.2f}"):
        return "–" if x is None else fmt.format(x)

    for r in rows:
        p = r.get("paper", {})
        epochs = "–" if not r["epochs"] else "/".join(map(str, r["epochs"]))
        cells = [r["variant"], *([str(r["value"])] if varied else []), f(r.get("n_songs"), "{}"), f(r.get("hours")),
                 f(r.get("batch_size"), "{}"), epochs, str(len(r["per_seed"])),
                 *(_pm(r["stats"].get(c)) for c in cols), *(f(p.get(c)) for c in cols)]
        lines.append("| " + " | ".join(cells) + " |")
    note = (spec.get("paper") or {}).get("note")
    if note:
        lines += ["", f"Paper values: {note}"]
    judged = steps_markdown(spec, rows)
    if judged:
        lines += ["", *judged]
    return "\n".join(lines) + "\n"


def plot_results(spec: Dict[str, Any], rows: List[Dict], path: Path) -> None:
    """Metric against the varied quantity with ±1 std error bars over seeds (paper dashed);
    Table 3: bars per source, {1} and {4}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = columns(spec)
    n_seeds = max(len(r["per_seed"]) for r in rows)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if spec["target"] == ALL:
        width = 0.8 / (2 * len(rows))
        for i, r in enumerate(rows):
            xs = [j + (2 * i) * width - 0.4 + width / 2 for j in range(len(cols))]
            have = [j for j, c in enumerate(cols) if c in r["stats"]]
            ax.bar([xs[j] for j in have], [r["stats"][cols[j]][0] for j in have], width,
                   yerr=[0 if math.isnan(r["stats"][cols[j]][1]) else r["stats"][cols[j]][1] for j in have],
                   capsize=3, color=f"C{i}", label=f"{r['variant']} (this run)")
            pc = [j for j, c in enumerate(cols) if c in r.get("paper", {})]
            if pc:
                ax.bar([xs[j] + width for j in pc], [r["paper"][cols[j]] for j in pc], width, color=f"C{i}",
                       alpha=0.35, hatch="//", label=f"{r['variant']} (paper)")
        ax.set_xticks(range(len(cols)), cols)
        ax.axhline(0, color="k", lw=0.5)
    else:
        xs = [float(r["value"]) for r in rows]
        for c, color in zip(cols, ("C0", "C1", "C2")):
            ax.errorbar(xs, [r["stats"][c][0] for r in rows],
                        yerr=[0 if math.isnan(r["stats"][c][1]) else r["stats"][c][1] for r in rows],
                        fmt="o-", capsize=3, color=color, label=f"{c} (this run)")
            px = [float(r["value"]) for r in rows if c in r.get("paper", {})]
            if px:
                ax.plot(px, [r["paper"][c] for r in rows if c in r.get("paper", {})], "s--",
                        color=color, alpha=0.6, label=f"{c} (paper)")
        ax.set_xlabel(spec["varied"]["label"])
    ax.set_ylabel(("SI-SNR (dB)" if spec["metric"] == "si_snr" else "SDR (dB)")
                  + f", mean ± std over {n_seeds} seed(s)")
    ax.set_title(spec["title"], fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description="Run every variant of an egs/<experiment> folder for several seeds, "
                                "then tabulate it (./run.sh --egs passes its options as --conf/--overlay/--set).")
    p.add_argument("--egs", required=True, help="experiment folder, e.g. egs/table2_excerpt_length")
    p.add_argument("--exp_dir", default="exp", help="experiments root (the sweep goes to <exp_dir>/<name>)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per variant (default: experiment.yml's seeds)")
    add_config_args(p)
    p.add_argument("--stage", type=int, default=0)
    p.add_argument("--stop_stage", type=int, default=4)
    p.add_argument("--collect_only", action="store_true", help="only rebuild results.md / results.png")
    p.add_argument("--caption", default="", help="text placed under the table (corpus, scale, hardware)")
    p.add_argument("--target_jobs", default=None,
                   help="run.sh --target_jobs of each variant that trains all targets (Table 3; default: run.sh's)")
    args = p.parse_args(argv)
    spec = load_experiment(args.egs)
    n_seeds = spec["seeds"] if args.seeds is None else args.seeds
    if n_seeds < 1:
        raise FrugalError(f"--seeds must be >= 1, got {n_seeds}")
    exp_dir = Path(args.exp_dir) / spec["name"]
    if not args.collect_only:
        t0 = time.time()
        for seed in range(n_seeds):          # seed by seed: an interrupted sweep has whole tables
            for v in spec["variants"]:
                run_variant(spec, v, seed, exp_dir, args)
        log.info("%s: %d variants x %d seeds in %.0f s", spec["name"], len(spec["variants"]), n_seeds,
                 time.time() - t0)
        if args.stop_stage < 4:
            log.info("stop_stage %d < 4: nothing evaluated, no table", args.stop_stage)
            return
    rows = collect(spec, exp_dir, n_seeds)
    if not rows:
        raise FrugalError(f"{exp_dir}: no evaluated variant to tabulate")
    write_text_atomic(exp_dir / "results.md", results_markdown(spec, rows, args.caption))
    plot_results(spec, rows, exp_dir / "results.png")
    print((exp_dir / "results.md").read_text())
