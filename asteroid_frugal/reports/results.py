"""The evaluation report: its prose (facts about models, data and scoring), ``results.md`` in the
form of the paper's Table 3, the paper's rows beside this run's, and the
SiSEC-style figure of per-track SDR distributions."""
import datetime
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from ..config import get, load_yaml
from ..data.types import ACCOMPANIMENT, BASS, DRUMS, OTHER, SOURCES, TARGETS, VOCALS
from ..utils import atomic_path, read_json, write_text_atomic

TABLE3_COLUMNS = (VOCALS, ACCOMPANIMENT, DRUMS, BASS, OTHER, "mean")
TABLE3_HEADER = ("Vocals", "Accomp.", "Drums", "Bass", "Other", "Mean")

# The paper's Table 3 (SDR, dB, MUSDB18 test set), as printed; "-": not reported.
PAPER_TABLE3 = [
    ("Conv-TasNet", ("6.74", "-", "7.11", "7.00", "4.44", "6.32")),
    ("Spleeter", ("6.86", "12.54", "6.7", "5.51", "4.02", "5.77")),
    ("Demucs", ("7.05", "-", "7.08", "6.70", "4.47", "6.32")),
    ("DenseNet (TAK2)", ("7.16", "13.73", "6.81", "5.40", "4.80", "6.05")),
    ("D3Net", ("7.24", "13.52", "7.01", "5.25", "4.53", "6.01")),
    ("TasNet {1} (paper)", ("7.34", "13.76", "7.68", "7.04", "4.04", "6.52")),
    ("TasNet {4} (paper)", ("7.39", "-", "6.90", "7.33", "4.04", "6.42")),
    ("TasNet, 30 s excerpts {1} (paper)", ("7.43", "13.66", "-", "-", "-", "-")),
]
PAPER_TRAINING = ("the paper's TasNet rows: MUSDB18 train (100 songs) + about 300 h of extra "
                  "per-instrument recordings; other rows: as reported in the paper's Table 3")
# The paper's Tables 1 and 2 print SI-SNR as negative losses (-10.33 means 10.33 dB).
PAPER_SISNR = {
    "Table 1, 100 % of the database, 125 epochs": {VOCALS: 10.33, ACCOMPANIMENT: 13.40, "mean": 10.78},
    "Table 2, 30 s excerpts, 50 epochs": {VOCALS: 8.11, ACCOMPANIMENT: 12.44, "mean": 10.27},
}


def fmt(x, digits: int = 2) -> str:
    """A number for a table: ``-`` when missing, ``nan``/``inf`` spelled out."""
    if x is None:
        return "-"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table: the header, its rule, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def table3_rows(runs: Sequence[tuple]) -> List[List[str]]:
    """Paper rows, then ``(name, training data, {column: sdr})`` of this run (bold)."""
    rows = [[name, "paper", *values] for name, values in PAPER_TABLE3]
    for name, data, sdr in runs:
        rows.append([f"**{name}**", data, *(fmt(sdr.get(c)) if c in sdr else "-" for c in TABLE3_COLUMNS)])
    return rows


def training_data_description(conf: Optional[dict]) -> str:
    """What a model was trained on, from its experiment's ``conf.yml``, stated plainly."""
    if not conf:
        return "unknown (the experiment has no conf.yml)"
    root = get(conf, "data.musdb_root")
    if root:
        base = f"MUSDB18 train split ({root})"
    elif get(conf, "data.musdb_download"):
        base = "musdb's 7-second MUSDB18 sample"
    else:
        base = (f"the built-in procedurally generated corpus ({get(conf, 'default_corpus.n_train', '?')} "
                f"synthetic songs of {get(conf, 'default_corpus.song_seconds', '?')} s; not MUSDB18)")
    extra = get(conf, "data.extra_roots") or []
    if extra and get(conf, "shaping.use_extra"):
        base += " + extra songs from " + ", ".join(str(e) for e in extra)
    frac = get(conf, "shaping.database_fraction")
    if frac is not None and float(frac) != 1.0:
        base += f", {float(frac):.0%} of the songs"
    excerpt = get(conf, "shaping.excerpt_seconds")
    if excerpt:
        base += f", {excerpt} s excerpts"
    return base


def corpus_description(corpus: str) -> str:
    """Plain words for a prepared corpus folder name (``musdb18hq``, ``default_22050``...)."""
    base = corpus.split("_")[0] if not corpus.startswith("musdb18_7s") else "musdb18_7s"
    words = {"musdb18": "MUSDB18 (AAC stems)", "musdb18hq": "MUSDB18-HQ (WAV stems)",
             "musdb18_7s": "musdb's 7-second MUSDB18 excerpts",
             "default": "the built-in procedurally generated corpus (synthetic songs, not MUSDB18)"}
    return words.get(base, f"corpus {corpus!r}")


def training_length(exp_dir: Path) -> str:
    """``N epochs (early stopping)`` from ``training_done.json`` when training finished."""
    path = Path(exp_dir) / "training_done.json"
    try:
        done = json.loads(path.read_text())
        return f"{done.get('epochs_done', '?')} epochs ({str(done.get('stop_reason', '?')).replace('_', ' ')})"
    except (OSError, ValueError):
        return "training not finished (no training_done.json)"


# ---------------------------------------------------------------- report prose
def experiment_conf(exp_dir: Path) -> Optional[dict]:
    """An experiment's resolved ``conf.yml``; None when it has none."""
    path = Path(exp_dir) / "conf.yml"
    return load_yaml(path) if path.is_file() else None


def evaluation_facts(mode, exp_dirs, models, backend, device, split_dir, n_tracks, opts) -> List[str]:
    """The facts listed above an evaluation's tables: scenario, models, data, BSS Eval, rescaling, chunking."""
    from museval.version import _version as museval_version

    facts = [f"Scenario {mode}: " + (
        "each source of the one model (target and rest) scored as a two-source problem; vocals "
        "with accompaniment." if mode == "{1}" else
        "vocals, drums and bass from their models, other = mixture - (vocals + drums + bass), "
        "the four scored jointly; vocals reported from this 4-source problem (not vocals/accompaniment).")]
    for m, d in zip(models, exp_dirs):
        facts.append(f"{m.target} model: `{m.path}`, {training_length(d)}; trained on "
                     f"{training_data_description(experiment_conf(d))}.")
    facts.append(f"Evaluation set: {n_tracks} whole track(s) of the {split_dir.name} split of "
                 f"{corpus_description(split_dir.parent.name)}, `{split_dir}`.")
    if backend == "museval":
        facts.append(f"BSS Eval v4 computed by museval {museval_version} (the reference implementation).")
    else:
        facts.append(f"BSS Eval v4 computed by the fast evaluator (`asteroid_frugal.bsseval_fast`, {device}); "
                     "it matches museval per frame (see benchmarks/README.md); museval is the reference.")
    facts.append("Rescaling: each model's two outputs are multiplied by the single least-squares gain that "
                 "makes target + rest closest to the mixture (SI-SNR training leaves the gain free), "
                 "before the subtraction giving `other` and before BSS Eval.")
    facts.append(f"Separation: chunks of {opts['chunk_seconds']:g} s, {opts['overlap_seconds']:g} s cross-fade.")
    return facts


def table3_runs(mode, exp_dir, exp_dirs, median, final) -> List[tuple]:
    """This run's rows of the Table 3 layout ({1}: one model; {4}: the combination, and the
    per-model {1} results read from each experiment's ``final_metrics.json``)."""
    data = "; ".join(sorted({training_data_description(experiment_conf(d)) for d in exp_dirs}))
    sdr = {t: median.loc[t, "SDR"] for t in median.index}
    if mode == "{1}":
        cols = {t: v for t, v in sdr.items() if t in (VOCALS, ACCOMPANIMENT, DRUMS, BASS)}
        return [(f"This run: TasNet {{1}}, {exp_dir.name}", data, cols)]
    runs = [(f"This run: TasNet {{4}}, {exp_dir.name}", data, {**sdr, "mean": final.get("sdr_mean")})]
    one = {OTHER: sdr[OTHER]}   # as the paper: other only exists from the combination
    for target, d in zip(TARGETS, exp_dirs):
        path = Path(d) / "results" / "final_metrics.json"
        if path.is_file():
            fm = read_json(path)
            one[target] = fm.get(f"sdr_{target}")
            if target == VOCALS:
                one[ACCOMPANIMENT] = fm.get(f"sdr_{ACCOMPANIMENT}")
    if all(one.get(t) is not None for t in SOURCES):
        one["mean"] = float(np.mean([one[t] for t in SOURCES]))
    if len(one) > 1:
        runs.insert(0, ("This run: TasNet {1} (per-model results; other from {4})", data, one))
    return runs


def sisnr_only_facts(model, exp_dir: Path, split_dir: Path, opts) -> List[str]:
    """The facts listed above an SI-SNR-only evaluation (``evaluation.bss: false``)."""
    return [f"{model.target} model: `{model.path}`, {training_length(exp_dir)}; trained on "
            f"{training_data_description(experiment_conf(exp_dir))}.",
            f"SI-SNR only (evaluation.bss: false): BSS Eval was not run on `{split_dir}`.",
            f"Separation: chunks of {opts['chunk_seconds']:g} s, {opts['overlap_seconds']:g} s cross-fade."]


def bss_sections(table3, metrics_median, metrics_mean, n_tracks) -> List[str]:
    """The BSS Eval parts of results.md: Table 3 layout and all metrics."""
    out = ["## SDR in the form of the paper's Table 3", "",
           "dB, BSS Eval v4 images, median over 1 s frames then median over tracks (SiSEC). "
           f"Training data: {PAPER_TRAINING}; this run: see the list above. "
           "Paper rows are on the MUSDB18 test set; this run's on the evaluation set named above.", ""]
    out += [markdown_table(("Method", "Training data", *TABLE3_HEADER), table3_rows(table3)), ""]
    out += ["## All BSS Eval metrics of this run", ""]
    header = ("Target", "Tracks", "SDR", "SIR", "ISR", "SAR", "SDR mean", "SIR mean", "ISR mean", "SAR mean")
    rows = []
    for target in metrics_median.index:
        med = metrics_median.loc[target]
        mean = metrics_mean.loc[target] if target in metrics_mean.index else {}
        rows.append([target, n_tracks.get(target, 0), *(fmt(med.get(m)) for m in ("SDR", "SIR", "ISR", "SAR")),
                     *(fmt(mean.get(m)) if len(mean) else "-" for m in ("SDR", "SIR", "ISR", "SAR"))])
    out += [markdown_table(header, rows), "",
            "Columns without 'mean': median over frames, then over tracks; 'mean': mean over "
            "frames, then over tracks. Frames where a reference or estimate is silent are skipped "
            "(NaN), as in museval.", ""]
    return out


def write_results_md(path, *, title: str, facts: Sequence[str], table3: Sequence[tuple],
                     metrics_median: Optional[pd.DataFrame], metrics_mean: Optional[pd.DataFrame],
                     n_tracks: Dict[str, int],
                     sisnr: Optional[Dict[str, Dict[str, float]]] = None, notes: Sequence[str] = (),
                     figure: Optional[str] = None) -> None:
    """Write ``results.md``: facts, Table 3 with the paper's rows, all BSS Eval metrics (unless
    ``metrics_median`` is None: an SI-SNR-only evaluation), SI-SNR."""
    out = [f"# {title}", "", f"Written {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}.", ""]
    out += [f"- {f}" for f in facts] + [""]
    if metrics_median is not None:
        out += bss_sections(table3, metrics_median, metrics_mean, n_tracks)
    if sisnr:
        out += ["## SI-SNR on the test split of the training corpus (the paper's Tables 1 and 2)", ""]
        cols = list(next(iter(sisnr.values())).keys())
        out += [markdown_table(("", *cols), [[k, *(fmt(v.get(c)) for c in cols)] for k, v in sisnr.items()]), ""]
        out += ["SI-SNR in dB (higher is better), mean over excerpts whose reference is not silent; "
                "SI-SNRi: improvement over the unprocessed mixture. The paper prints SI-SNR as negative "
                "losses; in dB its values are: "
                + "; ".join(f"{k}: " + ", ".join(f"{c} {v:.2f}" for c, v in row.items())
                            for k, row in PAPER_SISNR.items()) + ".", ""]
    if figure:
        out += ["## Per-track SDR", "", f"![per-track SDR distributions]({figure})", ""]
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    write_text_atomic(path, "\n".join(out))


def plot_sdr_distribution(track_sdr: pd.DataFrame, path, title: str, targets: Sequence[str]) -> None:
    """Box plot + points of per-track SDR (median over frames) per target, SiSEC style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, labels = [], []
    for target in targets:
        values = track_sdr[track_sdr["target"] == target]["SDR"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if values.size:
            data.append(values)
            labels.append(f"{target}\n(n={values.size})")
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 + 1.4 * len(data)), 4.2))
    if data:
        ax.boxplot(data, vert=True, showfliers=False, widths=0.55)
        ax.set_xticks(range(1, len(labels) + 1), labels)
        rng = np.random.default_rng(0)
        for i, values in enumerate(data, start=1):
            ax.scatter(i + rng.uniform(-0.15, 0.15, values.size), values, s=10, alpha=0.6, color="tab:blue")
    else:
        ax.text(0.5, 0.5, "no finite per-track SDR", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("SDR (dB), median over 1 s frames")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
