"""An experiment's table and figure, from its runs' own files.

The table (``results.md``: mean +- standard deviation over seeds, and the neighbouring steps
judged from paired differences, :mod:`asteroid_frugal.stats`) and the plot (``results.png``,
error bars) are built from each run's own ``results/final_metrics.json`` and ``conf.yml``,
never typed. The experiment's layout: :mod:`.experiment`.
"""
import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..config import get, load_yaml
from ..data.types import ACCOMPANIMENT, OTHER, SOURCES, TARGETS, VOCALS, rest_name
from ..metrics import backend_name
from ..stats import FLAT, direction, format_step, mean_std, paired_step, paper_direction, verdict
from ..utils import FrugalError, atomic_path, read_json
from .experiment import ALL, columns, found_seeds, row_labels, seed_dir

log = logging.getLogger("asteroid_frugal.reports.sweep")


# ------------------------------------------------------------------ the rows
def _metric(metrics_file: Path, key: str) -> float:
    metrics = read_json(metrics_file)
    if key not in metrics:
        raise FrugalError(f"{metrics_file}: no {key!r} metric")
    return float(metrics[key])


def seed_values(spec, vdir: Path, scenario: Optional[str]) -> Optional[Dict[str, float]]:
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
    # the {1} row as reports.results.table3_runs builds it for results.md: each model's own score
    out = {t: _metric(files[t], f"sdr_{t}") for t in TARGETS}
    out[ACCOMPANIMENT] = _metric(files[VOCALS], f"sdr_{ACCOMPANIMENT}")
    out[OTHER] = _metric(files["combined"], f"sdr_{OTHER}")     # as the paper: other only exists from {4}
    out["mean"] = sum(out[s] for s in SOURCES) / len(SOURCES)
    return out


def model_dirs(spec, run: Path) -> List[Path]:
    """The model folders of one variant's run (Table 3: one per target)."""
    return [run / t for t in TARGETS] if spec["target"] == ALL else [run]


def run_facts(spec, exp_dir: Path, variant: str, per_seed: Dict[int, Any]) -> Dict[str, Any]:
    """Epochs of every seed's runs, the BSS Eval backends and the scale (``data/shaping.json``)."""
    first = seed_dir(exp_dir, min(per_seed)) / variant
    dirs = model_dirs(spec, first)
    epochs = sorted({read_json(d / "training_done.json").get("epochs_done")
                     for k in per_seed for d in model_dirs(spec, seed_dir(exp_dir, k) / variant)
                     if (d / "training_done.json").exists()})
    info_dirs = dirs + ([first / "combined"] if spec["target"] == ALL else [])
    backends = {read_json(d / "results" / "eval_info.json").get("backend") for d in info_dirs
                if (d / "results" / "eval_info.json").exists()}
    facts = dict(epochs=epochs, bss_backends=sorted(b for b in backends if b))
    shaping = dirs[0] / "data" / "shaping.json"
    if shaping.exists():
        sh = read_json(shaping)
        facts.update(n_songs=sh.get("n_songs"), hours=sh.get("hours"), batch_size=sh.get("batch_size"))
    return facts


def collect(spec: Dict[str, Any], exp_dir: Path, n_seeds: Optional[int] = None) -> List[Dict]:
    """One row per variant evaluated for at least one seed, from the runs' own files.

    ``row["per_seed"][k][column]`` are the values, ``row["stats"][column]`` their ``(mean, std)``
    over the seeds; the varied value and the scale come from the first seed's ``conf.yml``,
    ``data/shaping.json`` and ``training_done.json``."""
    exp_dir = Path(exp_dir)
    seeds = found_seeds(exp_dir, n_seeds)
    rows = []
    for label in row_labels(spec):
        variant, _, scenario = label.partition(" ")
        per_seed = {}
        for k in seeds:
            values = seed_values(spec, seed_dir(exp_dir, k) / variant, scenario or None)
            if values is not None:
                per_seed[k] = values
        if not per_seed:
            log.warning("%s: not evaluated yet for any seed in %s", label, exp_dir)
            continue
        rows.append(table_row(spec, exp_dir, label, per_seed))
    return rows


def table_row(spec, exp_dir: Path, label: str, per_seed: Dict[int, Dict[str, float]]) -> Dict[str, Any]:
    """One row of the table from the values of its seeds and its first seed's files."""
    variant = label.partition(" ")[0]
    first_model = model_dirs(spec, seed_dir(exp_dir, min(per_seed)) / variant)[0]
    conf_file = first_model / "conf.yml"
    if not conf_file.is_file():
        raise FrugalError(f"{conf_file}: resolved config of an evaluated run not found")
    conf = load_yaml(conf_file)
    row = dict(variant=label, model_dir=first_model, per_seed=per_seed,
               value=get(conf, spec["varied"]["key"]) if spec.get("varied") else None,
               stats={c: mean_std(v[c] for v in per_seed.values()) for c in columns(spec)
                      if all(c in v for v in per_seed.values())})   # {4} has no accompaniment
    row.update(run_facts(spec, exp_dir, variant, per_seed))
    paper = spec.get("paper") or {}
    if label in (paper.get("rows") or {}):
        sign = float(paper.get("sign", 1))
        row["paper"] = {c: sign * float(x) for c, x in paper["rows"][label].items()}
    return row


# ----------------------------------------------------------------- the steps
def stated_direction(directions: Optional[List[str]], i: int, j: int) -> Optional[str]:
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
            pdir = paper_direction(p_step, stated_direction(stated.get(col), i, j))
            measured = direction(st)
            out.append(dict(frm=a["variant"], to=b["variant"], column=col, step=st, measured=measured,
                            paper_step=p_step, paper=pdir, verdict=verdict(measured, pdir)))
    return out


STEPS_INTRO = ("\"rises\"/\"falls\" only where the mean step exceeds twice its standard error, else "
               "\"within noise\". The paper's direction is that of its printed values, or of its text where the "
               "experiment states one (paper.directions: flat = no real change). \"identical\": every paired "
               "difference is exactly zero, the two rows score the same estimates.")


def steps_markdown(spec, rows) -> List[str]:
    """The judged steps as a table, and one sentence per column (first -> last)."""
    judged = steps(spec, rows)
    if not judged:
        return []
    n_seeds = max(len(r["per_seed"]) for r in rows)
    lines = [f"Steps between neighbouring rows, paired by seed (same seed, both rows; {n_seeds} seed(s)): "
             + STEPS_INTRO, "",
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


# ----------------------------------------------------------------- the table
def plus_minus(stat, fmt="{:.2f}") -> str:
    """``mean ± std`` of a ``(mean, std)`` pair (the mean alone when std is NaN, ``–`` when missing)."""
    if stat is None:
        return "–"
    m, sd = stat
    return fmt.format(m) if math.isnan(sd) else f"{fmt.format(m)} ± {sd:.2f}"


def _cell(x, fmt="{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def unit_text(spec, rows) -> str:
    """The table's metric in words (SDR: with the BSS Eval implementation(s) the runs used)."""
    if spec["metric"] == "si_snr":
        return "SI-SNR (dB, test split)"
    names = sorted({backend_name(b) for r in rows for b in (r.get("bss_backends") or [None])})
    return f"SDR (dB, BSS Eval v4 by {' and '.join(names)}, median over frames and tracks)"


def results_markdown(spec: Dict[str, Any], rows: List[Dict], caption: str = "") -> str:
    """The paper's table layout, mean ± std over seeds, measured next to the paper's; then the steps."""
    cols = columns(spec)
    lines = [f"# {spec['title']}", "", f"Metric: {unit_text(spec, rows)}; higher is better. Cells: mean ± "
             f"standard deviation over seeds (training.seed; same data)."
             + (" {1}: each model's own two-source score (vocals against accompaniment); {4}: the three models "
                "together, other = mixture - (vocals + drums + bass), vocals from the 4-source problem; "
                "other in the {1} row is the {4} value, as in the paper." if spec["target"] == ALL else ""), ""]
    if caption:
        lines += [caption, ""]
    varied = [spec["varied"]["label"]] if spec.get("varied") else []
    head = ["variant", *varied, "songs", "hours", "batch", "epochs", "seeds", *cols,
            *(f"paper {c}" for c in cols)]
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        p = r.get("paper", {})
        epochs = "–" if not r["epochs"] else "/".join(map(str, r["epochs"]))
        cells = [r["variant"], *([str(r["value"])] if varied else []), _cell(r.get("n_songs"), "{}"),
                 _cell(r.get("hours")), _cell(r.get("batch_size"), "{}"), epochs, str(len(r["per_seed"])),
                 *(plus_minus(r["stats"].get(c)) for c in cols), *(_cell(p.get(c)) for c in cols)]
        lines.append("| " + " | ".join(cells) + " |")
    note = (spec.get("paper") or {}).get("note")
    if note:
        lines += ["", f"Paper values: {note}"]
    judged = steps_markdown(spec, rows)
    if judged:
        lines += ["", *judged]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the figure
def _std(stat) -> float:
    return 0 if math.isnan(stat[1]) else stat[1]


def plot_bars(ax, cols: List[str], rows: List[Dict]) -> None:
    """Table 3: bars per source, this run's (error bars) beside the paper's (hatched), per row."""
    width = 0.8 / (2 * len(rows))
    for i, r in enumerate(rows):
        xs = [j + (2 * i) * width - 0.4 + width / 2 for j in range(len(cols))]
        have = [j for j, c in enumerate(cols) if c in r["stats"]]
        ax.bar([xs[j] for j in have], [r["stats"][cols[j]][0] for j in have], width,
               yerr=[_std(r["stats"][cols[j]]) for j in have],
               capsize=3, color=f"C{i}", label=f"{r['variant']} (this run)")
        pc = [j for j, c in enumerate(cols) if c in r.get("paper", {})]
        if pc:
            ax.bar([xs[j] + width for j in pc], [r["paper"][cols[j]] for j in pc], width, color=f"C{i}",
                   alpha=0.35, hatch="//", label=f"{r['variant']} (paper)")
    ax.set_xticks(range(len(cols)), cols)
    ax.axhline(0, color="k", lw=0.5)


def plot_trend(ax, spec, cols: List[str], rows: List[Dict]) -> None:
    """The metric against the varied quantity, error bars over seeds, the paper's values dashed."""
    xs = [float(r["value"]) for r in rows]
    for c, color in zip(cols, ("C0", "C1", "C2")):
        ax.errorbar(xs, [r["stats"][c][0] for r in rows], yerr=[_std(r["stats"][c]) for r in rows],
                    fmt="o-", capsize=3, color=color, label=f"{c} (this run)")
        px = [float(r["value"]) for r in rows if c in r.get("paper", {})]
        if px:
            ax.plot(px, [r["paper"][c] for r in rows if c in r.get("paper", {})], "s--",
                    color=color, alpha=0.6, label=f"{c} (paper)")
    ax.set_xlabel(spec["varied"]["label"])


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
        plot_bars(ax, cols, rows)
    else:
        plot_trend(ax, spec, cols, rows)
    ax.set_ylabel(("SI-SNR (dB)" if spec["metric"] == "si_snr" else "SDR (dB)")
                  + f", mean ± std over {n_seeds} seed(s)")
    ax.set_title(spec["title"], fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
