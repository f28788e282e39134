#!/usr/bin/env python
"""Rebuild docs/<experiment>.{md,png} and docs/results.md from sweeps already run into exp/.

    .venv/bin/python docs/make_results.py --set "training.epochs=20" \\
        egs/table1_database_size:exp/sweeplogs/t1.log egs/table2_excerpt_length:exp/sweeplogs/t2.log

Each argument is ``EGS_DIR:SWEEP_LOG`` (the log of ``./run.sh --egs EGS_DIR ...``). Every
figure comes from the sweep's own files: the metrics from ``results/final_metrics.json``
(through ``sweep.collect``), the scale from the variants' resolved ``conf.yml``,
``shaping.json`` and ``training_done.json``, the times from the log's ``variant X done in N s``
lines, the hardware from this machine (run it where the sweep ran).
"""
import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asteroid_frugal.config import get, load_yaml  # noqa: E402
from asteroid_frugal.data.types import rest_name  # noqa: E402
from asteroid_frugal.sweep import collect, load_experiment, plot_results, results_markdown  # noqa: E402
from asteroid_frugal.utils import FrugalError, cpu_name, read_json, run_cli, write_text_atomic  # noqa: E402

DOCS = Path(__file__).resolve().parent


def hardware() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu_name()}, {gpu}"


def variant_times(log_file: Path) -> dict:
    """``{variant: seconds}`` from the sweep log (the last run of each variant that did work)."""
    if not log_file.is_file():
        raise FrugalError(f"{log_file}: sweep log not found (the tee'd output of ./run.sh --egs ...)")
    times = {}
    for m in re.finditer(r"variant (\S+) done in (\d+) s", log_file.read_text(errors="replace")):
        times[m.group(1)] = int(m.group(2))
    return times


def caption(spec, exp_dir: Path, rows, times: dict) -> str:
    first = exp_dir / rows[0]["variant"]
    conf = load_yaml(first / "conf.yml")
    done = read_json(first / "training_done.json")
    test = read_json(first / "data" / "shaping.json")["test"]
    corpus = (f"the built-in generated corpus ({get(conf, 'default_corpus.n_train')} train / "
              f"{get(conf, 'default_corpus.n_valid')} validation / {get(conf, 'default_corpus.n_test')} test songs "
              f"of {get(conf, 'default_corpus.song_seconds')} s, {get(conf, 'data.sample_rate')} Hz stereo)"
              if not get(conf, "data.musdb_root") else f"MUSDB18 at {get(conf, 'data.musdb_root')}")
    model = (f"{done['n_parameters']:,}-parameter TasNet ({get(conf, 'filterbank.n_filters')} filters of "
             f"{get(conf, 'filterbank.kernel_size')} samples, {get(conf, 'masker.n_layers')} x "
             f"{get(conf, 'masker.hidden_size')} BLSTM)")
    epochs = sorted({r.get("epochs") for r in rows if r.get("epochs") is not None})
    per_variant = ", ".join(f"{r['variant']} {times[r['variant']] / 60:.1f}" for r in rows if r["variant"] in times)
    total = sum(times.get(r["variant"], 0) for r in rows)
    return (f"Measured on {corpus}; {model}, batch {get(conf, 'training.batch_size')}, "
            f"{'/'.join(map(str, epochs))} epochs (a fixed budget for every variant); SI-SNR over the "
            f"{test['n_tracks']} test songs cut into {test['n_chunks']} chunks of "
            f"{test['chunk_samples'] / get(conf, 'data.sample_rate'):g} s. "
            f"Hardware: {hardware()}. Wall time {total / 60:.0f} min for the sweep "
            f"(per variant, minutes, data preparation, training and evaluation: {per_variant}). "
            f"Paper values: the paper's full-size model and data, beside these for the trend only.")


def trend(spec, rows) -> str:
    """One generated sentence per column: does the metric rise with the varied quantity, by how much."""
    parts = []
    for key, name in (("target", spec["target"]), ("rest", rest_name(spec["target"]))):
        vals = [r[key] for r in rows]
        steps = [b - a for a, b in zip(vals, vals[1:])]
        shape = ("rises at every step" if all(d > 0 for d in steps) else
                 "falls at every step" if all(d < 0 for d in steps) else "is not monotonic")
        paper = [r["paper"][name] for r in rows if name in r.get("paper", {})]
        paper_txt = f"; paper {paper[-1] - paper[0]:+.2f} dB" if len(paper) == len(rows) else ""
        parts.append(f"{name} {shape}, {vals[0]:.2f} -> {vals[-1]:.2f} dB ({vals[-1] - vals[0]:+.2f} dB"
                     f"{paper_txt})")
    return f"Trend from {rows[0]['variant']} to {rows[-1]['variant']}: " + "; ".join(parts) + "."


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweeps", nargs="+", help="EGS_DIR:SWEEP_LOG pairs")
    p.add_argument("--exp_dir", default="exp")
    p.add_argument("--overlay", default="egs/demo/conf.yml", help="the overlays the sweep ran with")
    p.add_argument("--set", default="", help="the --set the sweep ran with")
    p.add_argument("--out_dir", default=str(DOCS), help="where the pages go (default: docs/)")
    args = p.parse_args(argv)
    out_dir = Path(args.out_dir)
    sweeps = [pair.partition(":")[::2] for pair in args.sweeps]  # [(egs_dir, log_file)]
    set_arg = f' --set "{args.set}"' if args.set else ""
    pages = []  # (spec, rows, markdown): every sweep is read, and can fail, before any page is written
    for egs, log_file in sweeps:
        spec = load_experiment(egs)
        exp_dir = Path(args.exp_dir) / spec["name"]
        rows = collect(spec, exp_dir, args.overlay.split(), args.set.split())
        if not rows:
            raise FrugalError(f"{exp_dir}: no evaluated variant")
        times = variant_times(Path(log_file)) if log_file else {}
        pages.append((spec, rows, results_markdown(spec, rows, caption(spec, exp_dir, rows, times))))
    sections = []
    for spec, rows, md in pages:
        write_text_atomic(out_dir / f"{spec['name']}.md", md)
        plot_results(spec, rows, out_dir / f"{spec['name']}.png")
        body = md.split("\n", 1)[1]  # the table's own title becomes a section heading
        sections.append(f"## {spec['title']}\n{body}\n{trend(spec, rows)}\n\n"
                        f"![{spec['name']}]({spec['name']}.png)\n")
        print(f"wrote {out_dir / spec['name']}.md and .png")
    head = ("# Results at demo scale\n\nThe paper's experiments rerun with `./run.sh --egs egs/<experiment>` "
            "on the built-in corpus, tabulated by the sweep from its own metric files and rebuilt with "
            "`docs/make_results.py`. Negative paper values in the egs READMEs are losses; here both are "
            "SI-SNR in dB, higher is better. Reproduce with:\n\n```bash\nmkdir -p exp/sweeplogs\n"
            + "".join(f"./run.sh --egs {egs}{set_arg} 2>&1 | tee {log_file or 'sweep.log'}\n" for egs, log_file in sweeps)
            + f".venv/bin/python docs/make_results.py{set_arg} {' '.join(args.sweeps)}\n```\n\n")
    write_text_atomic(out_dir / "results.md", head + "\n".join(sections))
    print(f"wrote {out_dir / 'results.md'}")


if __name__ == "__main__":
    run_cli(main)
