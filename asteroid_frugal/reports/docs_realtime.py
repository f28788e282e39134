"""docs/realtime.md: causal (real-time) models next to a bidirectional one, from the runs' own files
(command: ``docs/make_realtime.py``).

The first experiment is the reference (the paper's bidirectional model); every other one is
compared with it. Each figure comes from the experiment folders: the model and budget from the
resolved ``conf.yml`` and ``training_done.json``, SI-SNRi per test excerpt from
``results/si_snr.csv``, BSS Eval SDR from ``results/final_metrics.json``. The runs must share
their test excerpts (``data/test.csv``) and their training excerpts (``data/train.csv``): the
comparison is on the same data. The noise: mean +- standard error over the test excerpts,
and for each run the paired difference to the reference on the same excerpts.
"""
import math
from pathlib import Path
from typing import List, Optional, Sequence

from ..config import get, load_yaml
from ..data.types import REST_NAMES
from ..utils import FrugalError, cpu_name, read_json, write_text_atomic


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
    """``(mean, standard error, n)`` of the finite values (NaN where undefined)."""
    import numpy as np

    v = np.asarray([x for x in values if math.isfinite(x)], float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan, len(v)


def model_text(run) -> str:
    """The model of a run in a few words: filters, kernel, layers and their kind."""
    c = run["conf"]
    kind = "LSTM, causal" if run["causal"] else ("BLSTM" if get(c, "masker.bidirectional") else "LSTM")
    return (f"N={get(c, 'filterbank.n_filters')}, L={get(c, 'filterbank.kernel_size')}, "
            f"{get(c, 'masker.n_layers')} x {get(c, 'masker.hidden_size')} {kind}")


def manifest_content(path: Path):
    """What a stage-2 manifest selects: (split folder, track folder, start, length) per excerpt,
    whatever folder holds it (track paths are stored relative to the manifest); other files: bytes."""
    from ..data.datasets import read_manifest

    if not path.is_file():
        return None
    try:
        return [(Path(r["track_dir"]).parent.name, Path(r["track_dir"]).name, r["start"], r["length"])
                for r in read_manifest(path)]
    except FrugalError:
        return path.read_bytes()


def check_same_data(runs) -> None:
    """Every run trained and was tested on the reference's excerpts, for the same target."""
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
    from ..data.datasets import ExcerptDataset
    from ..inference import load_model
    from ..metrics import si_snr
    from ..streaming import stream_file

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


def fmt_or_na(x, digits=2) -> str:
    """A number for the page, ``n/a`` when missing or not finite."""
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def comparison_lines(runs) -> List[str]:
    """The table: every run's model, budget, latency, SI-SNRi (paired with the reference) and SDR."""
    ref = runs[0]
    target, rest = ref["target"], REST_NAMES[ref["target"]]
    lines = [f"## Measured: causal TasNet next to the bidirectional one ({target})", "",
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
            diff = f"{d:+.2f} +- {fmt_or_na(dse)}"
        latency = f"{run['latency_ms']:.1f} ms" if run["causal"] else "offline (whole chunk)"
        f = run["final"]
        lines.append(f"| `{run['exp']}` | {model_text(run)} | {run['done'].get('n_parameters', 0):,} "
                     f"| {run['done'].get('epochs_done', 'n/a')} ({run['done'].get('stop_reason', '')}) "
                     f"| {latency} | {fmt_or_na(m)} +- {fmt_or_na(se)} (n={n}) | {diff} "
                     f"| {fmt_or_na(f.get(f'sdr_{target}'))} | {fmt_or_na(f.get(f'sdr_{rest}'))} |")
    return lines


def data_lines(ref) -> List[str]:
    """What the runs share (corpus, excerpts, budget) and how each column is measured."""
    c, target = ref["conf"], ref["target"]
    rest = REST_NAMES[target]
    corpus = (f"the built-in generated corpus ({get(c, 'default_corpus.n_train')} train / "
              f"{get(c, 'default_corpus.n_test')} test songs of {get(c, 'default_corpus.song_seconds')} s)"
              if not get(c, "data.musdb_root") else f"MUSDB18 at {get(c, 'data.musdb_root')}")
    return ["", f"Same data for every run: {corpus}, the same training and test excerpts "
            f"(`data/train.csv`, `data/test.csv` identical), {get(c, 'shaping.excerpt_seconds')} s excerpts, "
            f"batch {get(c, 'training.batch_size')}, an epoch budget of {get(c, 'training.epochs')}. "
            "SI-SNRi: mean over the test excerpts (`results/si_snr.csv`) +- its standard error; the "
            "difference is paired on the same excerpts (negative: the causal model is worse). "
            f"SDR: BSS Eval v4 (backend `{get(c, 'evaluation.bss_backend')}`), median over 1 s frames then over "
            f"tracks, {target}/{rest} scored as a pair "
            "(`results/final_metrics.json`). Latency: one segment for a causal model "
            "(`asteroid_frugal.streaming`); the bidirectional model needs the whole chunk before any output."]


def stream_lines(run, precisions: Sequence[str], block: int) -> List[str]:
    """A causal run streamed with each weight precision, paired with its offline (float32) scores."""
    lines = ["", f"Streamed in blocks of {block} samples (`asteroid_frugal.streaming`), `{run['exp']}`, "
             "by weight precision, on the same test excerpts:", "",
             f"| weights | SI-SNRi {run['target']} (dB, mean +- s.e.) | paired difference to float32 (dB) |",
             "| --- | ---: | ---: |"]
    m, se, n = mean_se(run["imp"].values())
    lines.append(f"| float32 (= offline) | {fmt_or_na(m)} +- {fmt_or_na(se)} (n={n}) | reference |")
    for precision, imp in stream_quality(run, precisions, block).items():
        m, se, n = mean_se(imp.values())
        d, dse, _ = mean_se([imp[k] - run["imp"][k] for k in imp if k in run["imp"]])
        lines.append(f"| {precision} | {fmt_or_na(m)} +- {fmt_or_na(se)} (n={n}) | {d:+.3f} +- {fmt_or_na(dse, 3)} |")
    return lines


def make(exps, out: Path, stream_precisions: Sequence[str] = (), block: Optional[int] = None) -> str:
    """Write the page to ``out`` and return it. ``stream_precisions``: also stream each causal run's
    test excerpts with these weight precisions, in blocks of ``block`` samples (None: the run's
    ``streaming.block``)."""
    runs = [load_run(Path(e)) for e in exps]
    check_same_data(runs)
    lines = comparison_lines(runs) + data_lines(runs[0])
    for run in runs:
        if run["causal"] and stream_precisions:
            lines += stream_lines(run, stream_precisions, block or int(get(run["conf"], "streaming.block")))
    lines += ["", f"Generated by `docs/make_realtime.py` on {cpu_name()} from: "
              + ", ".join(f"`{r['exp']}`" for r in runs) + "."]
    text = "\n".join(lines) + "\n"
    write_text_atomic(out, splice(out.read_text() if out.is_file() else "", text))
    return text


GENERATED_MARK = "<!-- below: generated by docs/make_realtime.py -->"


def splice(page: str, generated: str) -> str:
    """``page`` with everything after :data:`GENERATED_MARK` replaced by ``generated`` (the
    hand-written part above it kept); a page without the mark becomes the mark and ``generated``."""
    head = page.split(GENERATED_MARK, 1)[0] if GENERATED_MARK in page else ""
    return f"{head}{GENERATED_MARK}\n\n{generated}"
