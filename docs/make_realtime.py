#!/usr/bin/env python
"""Write docs/realtime.md: causal (real-time) models next to a bidirectional one, from the runs' own files.

    .venv/bin/python docs/make_realtime.py exp/realtime_demo/vocals_blstm exp/realtime_demo/vocals_causal

The first experiment is the reference (the paper's bidirectional model); every other one is
compared with it. Each figure comes from the experiment folders: the model and budget from the
resolved ``conf.yml`` and ``training_done.json``, SI-SNRi per test excerpt from
``results/si_snr.csv``, BSS Eval SDR from ``results/final_metrics.json``. The runs must share
their test excerpts (``data/test.csv``) and their training excerpts (``data/train.csv``): the
comparison is on the same data. The noise: mean +- standard error over the test excerpts,
and for each run the paired difference to the reference on the same excerpts.
``egs/realtime/compare.sh`` trains and scores the runs, then calls this script.
"""
import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asteroid_frugal.config import get, load_yaml  # noqa: E402
from asteroid_frugal.data.types import REST_NAMES  # noqa: E402
from asteroid_frugal.utils import FrugalError, cpu_name, read_json, run_cli, write_text_atomic  # noqa: E402

DOCS = Path(__file__).resolve().parent


def load_run(exp: Path) -> dict:
    """The facts of one experiment folder (one-line errors naming the missing file)."""
    import pandas as pd

    conf = load_yaml(exp / "conf.yml")
    done = read_json(exp / "training_done.json")
    final = read_json(exp / "results" / "final_metrics.json")
    table_path = exp / "results" / "si_snr.csv"
    if not table_path.is_file():
        raise FrugalError(f"{table_path}: not found (stage 4 writes it)")
    table = pd.read_csv(table_path)
    target = get(conf, "data.target")
    imp = (table[f"si_snr_{target}"] - table[f"input_si_snr_{target}"]).to_numpy(float)
    keys = list(zip(table["song"], table["start"]))
    causal = bool(get(conf, "masker.causal", False))
    sr = float(get(conf, "data.sample_rate"))
    return dict(exp=exp, conf=conf, done=done, final=final, target=target, causal=causal,
                imp=dict(zip(keys, imp)), sr=sr,
                latency_ms=get(conf, "filterbank.kernel_size") / sr * 1e3 if causal else None)


def mean_se(values):
    import numpy as np

    v = np.asarray([x for x in values if math.isfinite(x)], float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan, len(v)


def model_text(run) -> str:
    c = run["conf"]
    kind = "LSTM, causal" if run["causal"] else ("BLSTM" if get(c, "masker.bidirectional") else "LSTM")
    return (f"N={get(c, 'filterbank.n_filters')}, L={get(c, 'filterbank.kernel_size')}, "
            f"{get(c, 'masker.n_layers')} x {get(c, 'masker.hidden_size')} {kind}")


def manifest_content(path: Path):
    """What a stage-2 manifest selects: (split folder, track folder, start, length) per excerpt,
    whatever folder holds it (track paths are stored relative to the manifest); other files: bytes."""
    from asteroid_frugal.data.datasets import read_manifest

    if not path.is_file():
        return None
    try:
        return [(Path(r["track_dir"]).parent.name, Path(r["track_dir"]).name, r["start"], r["length"])
                for r in read_manifest(path)]
    except FrugalError:
        return path.read_bytes()


def check_same_data(runs) -> None:
    ref = runs[0]["exp"]
    for name in ("train.csv", "test.csv"):
        want = manifest_content(ref / "data" / name)
        for run in runs[1:]:
            path = run["exp"] / "data" / name
            if want is None or manifest_content(path) != want:
                raise FrugalError(f"{path}: not the same {name} as {ref / 'data' / name}: "
                                  f"the comparison needs the same data")
    for run in runs[1:]:
        if run["target"] != runs[0]["target"]:
            raise FrugalError(f"{run['exp']}: target {run['target']!r}, reference {runs[0]['target']!r}")


def stream_quality(run, precisions, block: int) -> dict:
    """SI-SNRi per test excerpt of a causal run streamed block by block with each weight
    precision (``asteroid_frugal.streaming.stream_file``): ``{precision: {(song, start): dB}}``.
    float32 streamed equals the offline model (tests/test_streaming.py), so the offline
    ``si_snr.csv`` is the float32 row and each precision is paired with it."""
    from asteroid_frugal.data.datasets import ExcerptDataset
    from asteroid_frugal.inference import load_model
    from asteroid_frugal.metrics import si_snr
    from asteroid_frugal.streaming import stream_file

    model = load_model(run["exp"], "cpu")
    dataset = ExcerptDataset(run["exp"] / "data" / "test.csv", run["target"],
                             n_channels=int(getattr(model, "n_channels", 2)))
    silence_db = float(get(run["conf"], "training.silence_db"))
    out = {}
    for precision in precisions:
        imp = {}
        for i in range(len(dataset)):
            mixture, refs = dataset[i]
            est = stream_file(model, mixture.numpy(), int(run["sr"]), block, precision)["estimates"]
            info = dataset.get_infos(i)
            gain = si_snr(est, refs, silence_db)[0] - si_snr(mixture.expand_as(refs), refs, silence_db)[0]
            imp[(info["song"], info["start"])] = float(gain)
        out[precision] = imp
    return out


def fmt(x, digits=2):
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def make(exps, out: Path, stream_precisions=(), block: int = 256) -> str:
    runs = [load_run(Path(e)) for e in exps]
    check_same_data(runs)
    ref = runs[0]
    target, rest = ref["target"], REST_NAMES[ref["target"]]
    lines = [f"# Real time: causal TasNet next to the bidirectional one ({target})", "",
             "| experiment | model | parameters | epochs | algorithmic latency | SI-SNRi " + target +
             " (dB, mean +- s.e.) | difference to the reference (paired, dB) | SDR " + target +
             " (dB) | SDR " + rest + " (dB) |",
             "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for run in runs:
        m, se, n = mean_se(run["imp"].values())
        if run is ref:
            diff = "reference"
        else:
            common = [k for k in ref["imp"] if k in run["imp"]]
            d, dse, _ = mean_se([run["imp"][k] - ref["imp"][k] for k in common])
            diff = f"{d:+.2f} +- {fmt(dse)}"
        latency = f"{run['latency_ms']:.1f} ms" if run["causal"] else "offline (whole chunk)"
        f = run["final"]
        lines.append(f"| `{run['exp']}` | {model_text(run)} | {run['done'].get('n_parameters', 0):,} "
                     f"| {run['done'].get('epochs_done', 'n/a')} ({run['done'].get('stop_reason', '')}) "
                     f"| {latency} | {fmt(m)} +- {fmt(se)} (n={n}) | {diff} "
                     f"| {fmt(f.get(f'sdr_{target}'))} | {fmt(f.get(f'sdr_{rest}'))} |")
    c = ref["conf"]
    corpus = (f"the built-in generated corpus ({get(c, 'default_corpus.n_train')} train / "
              f"{get(c, 'default_corpus.n_test')} test songs of {get(c, 'default_corpus.song_seconds')} s)"
              if not get(c, "data.musdb_root") else f"MUSDB18 at {get(c, 'data.musdb_root')}")
    lines += ["", f"Same data for every run: {corpus}, the same training and test excerpts "
              f"(`data/train.csv`, `data/test.csv` identical), {get(c, 'shaping.excerpt_seconds')} s excerpts, "
              f"batch {get(c, 'training.batch_size')}, an epoch budget of {get(c, 'training.epochs')}. "
              "SI-SNRi: mean over the test excerpts (`results/si_snr.csv`) +- its standard error; the "
              "difference is paired on the same excerpts (negative: the causal model is worse). "
              f"SDR: BSS Eval v4 (backend `{get(c, 'evaluation.bss_backend')}`), median over 1 s frames then over "
              f"tracks, {target}/{rest} scored as a pair "
              "(`results/final_metrics.json`). Latency: one segment for a causal model "
              "(`asteroid_frugal.streaming`); the bidirectional model needs the whole chunk before any output.",
              ]
    for run in runs:
        if not (run["causal"] and stream_precisions):
            continue
        lines += ["", f"Streamed in blocks of {block} samples (`asteroid_frugal.streaming`), `{run['exp']}`, "
                  "by weight precision, on the same test excerpts:", "",
                  f"| weights | SI-SNRi {target} (dB, mean +- s.e.) | paired difference to float32 (dB) |",
                  "| --- | ---: | ---: |"]
        m, se, n = mean_se(run["imp"].values())
        lines.append(f"| float32 (= offline) | {fmt(m)} +- {fmt(se)} (n={n}) | reference |")
        for precision, imp in stream_quality(run, stream_precisions, block).items():
            m, se, n = mean_se(imp.values())
            d, dse, _ = mean_se([imp[k] - run["imp"][k] for k in imp if k in run["imp"]])
            lines.append(f"| {precision} | {fmt(m)} +- {fmt(se)} (n={n}) | {d:+.3f} +- {fmt(dse, 3)} |")
    lines += ["", f"Generated by `docs/make_realtime.py` on {cpu_name()} from: "
              + ", ".join(f"`{r['exp']}`" for r in runs) + "."]
    text = "\n".join(lines) + "\n"
    write_text_atomic(out, text)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+", help="reference (bidirectional) experiment first, then causal ones")
    parser.add_argument("--out", default=str(DOCS / "realtime.md"))
    parser.add_argument("--stream_precisions", nargs="*", default=["int8"],
                        help="also stream each causal run's test excerpts with these weight precisions "
                             "(float32 streamed = offline; default: int8, the fast CPU path)")
    parser.add_argument("--block", type=int, default=256, help="block size of the streamed rows (samples)")
    args = parser.parse_args(argv)
    if len(args.experiments) < 2:
        raise FrugalError("give the reference experiment and at least one causal experiment")
    print(make(args.experiments, Path(args.out), args.stream_precisions, args.block), end="")


if __name__ == "__main__":
    run_cli(main)
