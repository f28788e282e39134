"""Run one of the paper's experiments (every variant of an ``egs/<name>`` folder) and tabulate it.

An experiment folder holds ``experiment.yml`` and one config overlay per variant::

    title: "Table 2: excerpt length"
    target: vocals                      # the model trained in every variant
    metric: si_snr                      # si_snr (test split, Tables 1-2, Sec. 3.4) | sdr (museval)
    varied: {key: shaping.excerpt_seconds, label: "excerpt length (s)"}
    common: common.yml                  # overlay shared by every variant (e.g. the epoch budget)
    variants: [excerpt05, excerpt10, excerpt20, excerpt30]   # -> excerpt05.yml, ...
    paper:                              # the paper's numbers for this table, as printed
      note: "..."
      sign: -1                          # printed values are negative losses: SI-SNR = sign * value
      rows: {excerpt05: {vocals: -3.29, accompaniment: -13.54, mean: -8.42}, ...}

Every variant is trained and evaluated through ``run.sh`` in ``exp/<name>/<variant>``
(each stage skips what is already done, so an interrupted sweep resumes); the table
(``results.md``) and the plot (``results.png``) are built from each variant's own
``results/final_metrics.json``, never typed.
"""
import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .config import REPO_ROOT, get, load_config, load_yaml
from .utils import FrugalError, atomic_path, read_json, write_text_atomic

log = logging.getLogger("asteroid_frugal.sweep")

REST_NAME = {"vocals": "accompaniment", "drums": "rest", "bass": "rest"}


def load_experiment(egs_dir) -> Dict[str, Any]:
    """Read and check ``experiment.yml``; paths of overlays are resolved."""
    egs_dir = Path(egs_dir)
    spec = load_yaml(egs_dir / "experiment.yml")
    for key in ("title", "target", "metric", "varied", "variants"):
        if key not in spec:
            raise FrugalError(f"{egs_dir / 'experiment.yml'}: missing key {key!r}")
    if spec["metric"] not in ("si_snr", "sdr"):
        raise FrugalError(f"{egs_dir / 'experiment.yml'}: metric must be si_snr or sdr, got {spec['metric']!r}")
    spec["name"] = spec.get("name") or egs_dir.name
    spec["common_path"] = egs_dir / spec["common"] if spec.get("common") else None
    spec["variant_paths"] = {}
    for v in spec["variants"]:
        path = egs_dir / f"{v}.yml"
        if not path.exists():
            raise FrugalError(f"{path}: overlay of variant {v!r} not found")
        spec["variant_paths"][v] = path
    return spec


def variant_overlays(spec: Dict[str, Any], variant: str, user_overlays: List[str]) -> List[str]:
    """user overlays (e.g. demo scale), then the experiment's common overlay, then the variant's."""
    out = list(user_overlays)
    if spec["common_path"]:
        out.append(str(spec["common_path"]))
    out.append(str(spec["variant_paths"][variant]))
    return out


def run_variant(spec, variant: str, exp_dir: Path, args) -> None:
    """One variant through run.sh stages (data preparation is shared and skipped once done)."""
    cmd = ["./run.sh", "--setup", "no", "--stage", str(args.stage), "--stop_stage", str(min(args.stop_stage, 4)),
           "--tag", variant, "--target", spec["target"], "--exp_dir", str(exp_dir),
           "--data_dir", args.data_dir, "--python", sys.executable,
           "--overlay", " ".join(variant_overlays(spec, variant, args.overlay.split())),
           "--set", " ".join([*(["evaluation.bss=false"] if spec["metric"] == "si_snr" else []), *args.set.split()])]
    if args.musdb_root:
        cmd += ["--musdb_root", args.musdb_root]
    if args.extra_roots:
        cmd += ["--extra_roots", args.extra_roots]
    if args.midi_dirs:
        cmd += ["--midi_dirs", args.midi_dirs]
    log.info("variant %s: %s", variant, " ".join(cmd))
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise FrugalError(f"variant {variant} failed (exit {proc.returncode}); see {exp_dir / variant}/run.log; "
                          "re-run the same command to resume")
    log.info("variant %s done in %.0f s", variant, time.time() - t0)


def collect(spec: Dict[str, Any], exp_dir: Path, overlays: List[str] = (), overrides: List[str] = ()) -> List[Dict]:
    """One row per finished variant, from its own ``results/final_metrics.json``."""
    target = spec["target"]
    rest = REST_NAME[target]
    rows = []
    for v in spec["variants"]:
        metrics_file = exp_dir / v / "results" / "final_metrics.json"
        if not metrics_file.exists():
            log.warning("variant %s: no %s yet (not evaluated)", v, metrics_file)
            continue
        metrics = read_json(metrics_file)
        prefix = "si_snr" if spec["metric"] == "si_snr" else "sdr"
        try:
            t, r = float(metrics[f"{prefix}_{target}"]), float(metrics[f"{prefix}_{rest}"])
        except KeyError as err:
            raise FrugalError(f"{metrics_file}: no {err.args[0]!r} metric") from None
        conf = load_config(overlays=variant_overlays(spec, v, list(overlays)), overrides=list(overrides))
        row = dict(variant=v, value=get(conf, spec["varied"]["key"]), target=t, rest=r, mean=(t + r) / 2)
        done = exp_dir / v / "training_done.json"
        if done.exists():
            row["epochs"] = read_json(done).get("epochs_done")
        info = exp_dir / v / "results" / "eval_info.json"
        if info.exists():
            row["bss_backend"] = read_json(info).get("backend")
        shaping = exp_dir / v / "data" / "shaping.json"
        if shaping.exists():
            sh = read_json(shaping)
            row.update(n_songs=sh.get("n_songs"), hours=sh.get("hours"), batch_size=sh.get("batch_size"))
        paper = (spec.get("paper") or {}).get("rows", {}).get(v)
        if paper:
            sign = float(spec["paper"].get("sign", 1))
            row["paper"] = {k: sign * float(x) for k, x in paper.items()}
        rows.append(row)
    return rows


def results_markdown(spec: Dict[str, Any], rows: List[Dict], caption: str = "") -> str:
    """The paper's table layout: variant, target, rest, mean; measured next to the paper's."""
    target, rest = spec["target"], REST_NAME[spec["target"]]
    if spec["metric"] == "si_snr":
        unit = "SI-SNR (dB, test split)"
    else:
        from .metrics import backend_name

        names = sorted({backend_name(r.get("bss_backend")) for r in rows})
        unit = f"SDR (dB, BSS Eval v4 by {' and '.join(names)}, median)"
    lines = [f"# {spec['title']}", "", f"Metric: {unit}; higher is better.", ""]
    if caption:
        lines += [caption, ""]
    lines += [f"| variant | {spec['varied']['label']} | songs | hours | batch | epochs | {target} | {rest} | mean "
              f"| paper {target} | paper {rest} | paper mean |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(x, fmt="{:.2f}"):
        return "–" if x is None else fmt.format(x)

    for r in rows:
        p = r.get("paper", {})
        lines.append(f"| {r['variant']} | {r['value']} | {f(r.get('n_songs'), '{}')} | {f(r.get('hours'))} "
                     f"| {f(r.get('batch_size'), '{}')} | {f(r.get('epochs'), '{}')} | {r['target']:.2f} "
                     f"| {r['rest']:.2f} | {r['mean']:.2f} | {f(p.get(target))} | {f(p.get(rest))} "
                     f"| {f(p.get('mean'))} |")
    note = (spec.get("paper") or {}).get("note")
    if note:
        lines += ["", f"Paper values: {note}"]
    return "\n".join(lines) + "\n"


def plot_results(spec: Dict[str, Any], rows: List[Dict], path: Path) -> None:
    """Metric against the varied quantity: measured (solid) and the paper's (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target, rest = spec["target"], REST_NAME[spec["target"]]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [float(r["value"]) for r in rows]
    for key, name, color in (("target", target, "C0"), ("rest", rest, "C1"), ("mean", "mean", "C2")):
        ax.plot(xs, [r[key] for r in rows], "o-", color=color, label=f"{name} (this run)")
        paper_key = {"target": target, "rest": rest, "mean": "mean"}[key]
        px = [float(r["value"]) for r in rows if paper_key in r.get("paper", {})]
        if px:
            ax.plot(px, [r["paper"][paper_key] for r in rows if paper_key in r.get("paper", {})], "s--",
                    color=color, alpha=0.6, label=f"{name} (paper)")
    ax.set_xlabel(spec["varied"]["label"])
    ax.set_ylabel("SI-SNR (dB)" if spec["metric"] == "si_snr" else "SDR (dB)")
    ax.set_title(spec["title"], fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description="Run every variant of an egs/<experiment> folder, then tabulate it.")
    p.add_argument("--egs", required=True, help="experiment folder, e.g. egs/table2_excerpt_length")
    p.add_argument("--exp_dir", default="exp", help="experiments root (the sweep goes to <exp_dir>/<name>)")
    p.add_argument("--data_dir", default="data")
    p.add_argument("--overlay", default="", help="extra overlays applied first (e.g. egs/demo/conf.yml)")
    p.add_argument("--set", default="", help="space-separated overrides applied last (scaling knobs)")
    p.add_argument("--musdb_root", default="")
    p.add_argument("--extra_roots", default="")
    p.add_argument("--midi_dirs", default="")
    p.add_argument("--stage", type=int, default=0)
    p.add_argument("--stop_stage", type=int, default=4)
    p.add_argument("--collect_only", action="store_true", help="only rebuild results.md / results.png")
    p.add_argument("--caption", default="", help="text placed under the table (corpus, scale, hardware)")
    args = p.parse_args(argv)
    spec = load_experiment(args.egs)
    exp_dir = Path(args.exp_dir) / spec["name"]
    if not args.collect_only:
        t0 = time.time()
        for v in spec["variants"]:
            run_variant(spec, v, exp_dir, args)
        log.info("%s: %d variants in %.0f s", spec["name"], len(spec["variants"]), time.time() - t0)
    rows = collect(spec, exp_dir, args.overlay.split(), args.set.split())
    if not rows:
        raise FrugalError(f"{exp_dir}: no evaluated variant to tabulate")
    write_text_atomic(exp_dir / "results.md", results_markdown(spec, rows, args.caption))
    plot_results(spec, rows, exp_dir / "results.png")
    print((exp_dir / "results.md").read_text())
