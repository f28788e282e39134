"""Stage 4: score target-vs-rest models as the paper and SiSEC do.

    evaluate(conf, "exp/vocals")                                                        # {1}
    evaluate(conf, "exp/combined", combined=["exp/vocals", "exp/drums", "exp/bass"])    # {4}

(command line: ``local/evaluate.py``, ``asteroid_frugal/cli/evaluate.py``.)

{1}: one model's target and rest scored as a two-source problem (vocals/accompaniment,
drums/no_drums, bass/no_bass), plus SI-SNR(i) on the experiment's held-out excerpts
(``<exp_dir>/data/test.csv``). {4}: vocals, drums and bass from their models, other =
mixture - (vocals + drums + bass), the four scored jointly (vocals in the 4-source problem).

Whole songs are separated with :func:`asteroid_frugal.inference.separate_stems` (chunked,
cross-faded, stereo), so the stems scored are exactly those the separation command
writes: each model's two outputs are scaled by the one least-squares gain that makes
target + rest closest to the mixture (SI-SNR training leaves the output gain free),
before any subtraction or BSS Eval.

Outputs in ``<exp_dir>/results/``: ``museval/<split>/<track>.json`` (museval's format,
validated by museval), ``scores/<track>.json`` (per-frame values, the resume marker),
``all_metrics.csv``, ``final_metrics.json``, ``si_snr.csv``, ``results.md``,
``sdr_distribution.png``, ``examples/<track>/*.wav`` (and ``references/``) with ``examples/index.html``
to listen to them, ``eval_info.json``. Tracks already
scored with the same models and settings are skipped; ``evaluation.jobs`` scores tracks in
parallel processes (bounded by memory: museval needs ~7 MB per second and source).
"""
import json
import logging
import math
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from .audio import read_audio, write_audio
from .data.layout import list_tracks, prepared_root, read_track_meta, rest_sources
from .data.types import SOURCES, TARGETS, rest_name, stem_names
from .inference import chunking, load_target_models, resolve_device, separate_long, separate_stems_array
from .lock import folder_lock
from .metrics import (BACKENDS, METRICS, aggregate, bss_eval, frames_dataframe, per_track, si_snr)
from .reports.listening import write_examples_page
from .reports.results import evaluation_facts, plot_sdr_distribution, sisnr_only_facts, table3_runs, write_results_md
from .runtime import torch_threads
from .utils import FrugalError, atomic_path, disk_full_errors, read_json, write_json_atomic, write_text_atomic

log = logging.getLogger("asteroid_frugal.evaluate")

MUSEVAL_BYTES_PER_SOURCE_SECOND = 7.5e6   # measured: 6.7 GB for a 240 s, 4-source stereo track
FAST_BYTES_PER_SOURCE_SECOND = 1.0e6


# ---------------------------------------------------------------------- set-up
def _signature(models, backend: str, mode: str, opts: dict) -> dict:
    """What a track's scores depend on: a score file with another signature is redone."""
    files = []
    for m in models:
        st = Path(m.path).stat()
        files.append([str(Path(m.path).resolve()), int(st.st_size), int(st.st_mtime_ns)])
    return dict(models=files, backend=backend, mode=mode, **{k: float(v) for k, v in opts.items()})


def _safe_name(name: str) -> str:
    return name.replace("/", "_").replace(os.sep, "_")


# --------------------------------------------------------------------- evaluate
def evaluate(conf: dict, exp_dir, combined: Optional[Sequence[str]] = None, sisnr: bool = True) -> dict:
    """Run stage 4 and write every output; returns the final metrics (flat dict of floats).

    ``exp_dir``: the experiment ({1}) or the folder of the {4} results; ``combined``: the vocals,
    drums and bass experiments of {4}; ``sisnr``: also score {1}'s held-out excerpts. Everything
    else is the config's ``evaluation`` section (split, jobs, bss_backend, max_tracks, device...).
    One run at a time per ``exp_dir``: it holds the folder's lock (:mod:`asteroid_frugal.lock`).
    """
    if combined is None and not Path(exp_dir).is_dir():
        # {1} scores the model of an existing experiment: the loader's one line names what is
        # missing; a lock would create the folder first
        return _evaluate(conf, Path(exp_dir), combined, sisnr)
    with folder_lock(exp_dir, "evaluation"):
        return _evaluate(conf, Path(exp_dir), combined, sisnr)


def _evaluate(conf: dict, exp_dir: Path, combined: Optional[Sequence[str]], sisnr: bool) -> dict:
    results = exp_dir / "results"
    ev = conf["evaluation"]
    split, backend, max_tracks = ev["split"], ev["bss_backend"], ev["max_tracks"]
    if backend not in BACKENDS:
        raise FrugalError(f"evaluation.bss_backend: unknown backend {backend!r} (choose {', '.join(BACKENDS)})")
    jobs = int(ev["jobs"])
    if jobs < 1:
        raise FrugalError(f"evaluation.jobs must be >= 1, got {jobs}")
    device = resolve_device(ev["device"])
    opts = chunking(conf)

    if combined:
        specs = [f"{t}={d}" for t, d in zip(TARGETS, combined)]
        mode, exp_dirs = "{4}", [Path(d) for d in combined]
    else:
        specs, mode, exp_dirs = [str(exp_dir)], "{1}", [exp_dir]
    models = load_target_models(specs, device)
    targets = [m.target for m in models]
    if combined:
        names, ref_names = list(SOURCES), list(SOURCES)   # vocals, drums, bass, other
    else:
        names = [targets[0], rest_name(targets[0])]
        ref_names = names
    signature = _signature(models, backend, mode, opts)

    split_dir = prepared_root(conf) / split
    tracks = list_tracks(split_dir)
    if not tracks:
        raise FrugalError(f"{split_dir}: no prepared tracks (run stage 0, local/prepare_data.py, "
                          f"or choose another --split)")
    if max_tracks:
        tracks = tracks[:int(max_tracks)]
    n_examples = int(ev["n_examples"] or 0)
    example_tracks = {t.name: float(ev["example_seconds"]) for t in tracks[:n_examples]}
    log.info("%s %s: %d track(s) of %s, backend %s, device %s, %d job(s)", exp_dir, mode, len(tracks),
             split_dir, backend, device, jobs)

    sisnr_summary = None
    if sisnr and not combined:
        sisnr_summary = run_sisnr(models[0], exp_dir, results, opts, device, float(conf["training"]["silence_db"]))

    if not combined and not bool(ev["bss"]):
        return _write_sisnr_only(results, exp_dir, models, split_dir, sisnr_summary, opts)

    scores_dir, museval_dir = results / "scores", results / "museval" / split
    pending = [t for t in tracks if not _scored(scores_dir / f"{_safe_name(t.name)}.json", signature)]
    if len(pending) < len(tracks):
        log.info("%d track(s) already scored with these models and settings: skipped", len(tracks) - len(pending))
    started = time.time()
    _score_tracks(pending, len(tracks), models, names, ref_names, opts, backend, device, jobs,
                  signature, scores_dir, museval_dir, results / "examples", example_tracks,
                  bss_threads=conf["evaluation"]["bss_threads"])

    records = [read_json(scores_dir / f"{_safe_name(t.name)}.json") for t in tracks]
    final = _write_summaries(conf, results, records, names, mode, exp_dir, exp_dirs, models, backend, device,
                             split_dir, sisnr_summary, opts)
    write_json_atomic(results / "eval_info.json", dict(
        mode=mode, backend=backend, device=device, split=str(split_dir), n_tracks=len(tracks),
        targets=names, signature=signature, seconds_this_run=round(time.time() - started, 1)))
    log.info("results in %s (results.md, final_metrics.json)", results)
    return final


def _scored(path: Path, signature: dict) -> bool:
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("signature") == signature
    except (OSError, ValueError):
        return False


# ------------------------------------------------------------------ track loop
def load_track(track_dir: Path, ref_names: Sequence[str], combined: bool):
    """``(mixture [C, T], references {name: [C, T]}, sample_rate)`` of a prepared track.

    The mixture is ``mixture.wav`` when the corpus has one (MUSDB18: what models are
    given), else the sum of the stems; "the rest" reference is the sum of the other stems.
    The references (float64, BSS Eval's precision) are the rows of one array
    (:func:`stacked_references` hands it on without a copy), filled one stem file at a
    time: the memory of a song's references plus one stem, whatever the number of stems.
    """
    meta = read_track_meta(track_dir)
    sources = meta["sources"]
    if combined:
        missing = [s for s in SOURCES if s not in sources]
        if missing:
            raise FrugalError(f"{track_dir}: no {', '.join(missing)} stem: cannot score the four sources")
        names, parts = list(SOURCES), [[s] for s in SOURCES]
    else:
        target = ref_names[0]
        rest = rest_sources(target, sources)
        if rest is None:
            raise FrugalError(f"{track_dir}: has no {target} stem (sources: {', '.join(sources)})")
        names, parts = list(ref_names[:2]), [[target], list(rest)]
    array = None
    for row, files in enumerate(parts):
        for k, name in enumerate(files):
            audio = read_audio(track_dir / f"{name}.wav")[0]
            if array is None:
                array = np.empty((len(parts),) + audio.shape, dtype=np.float64)
            if k == 0:
                array[row] = audio
            else:
                array[row] += audio      # float64 sum, stem after stem (as summing float64 copies)
            del audio
    refs = {name: array[row] for row, name in enumerate(names)}
    if meta.get("has_mixture"):
        mixture = read_audio(track_dir / "mixture.wav")[0]
    else:
        mixture = array[0].copy()
        for row in array[1:]:
            mixture += row
        mixture = mixture.astype(np.float32)
    return mixture, refs, int(meta["sample_rate"])


def stacked_references(refs: Dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """``[len(names), C, T]``: the references in ``names`` order; the one array :func:`load_track`
    filled (no copy) when they are its rows in this order, else a stacked copy."""
    base = refs[names[0]].base
    if (base is not None and base.ndim == 3 and base.shape[0] == len(names)
            and all(refs[n].ctypes.data == base[i].ctypes.data and refs[n].shape == base[i].shape
                    for i, n in enumerate(names))):
        return base
    return np.stack([refs[n] for n in names])


def _score_tracks(pending, n_total, models, names, ref_names, opts, backend, device, jobs, signature,
                  scores_dir, museval_dir, examples_dir, example_tracks, bss_threads=None) -> None:
    """Separate each pending track here; score it here (``jobs == 1``) or in a worker process."""
    from tqdm import tqdm

    if not pending:
        return
    combined = len(models) > 1
    if jobs > 1 and device.startswith("cuda") and backend == "fast":
        log.info("fast backend on %s: tracks are scored one at a time on the GPU", device)
        jobs = 1
    if jobs > 1:
        jobs = _memory_bounded_jobs(pending, jobs, backend, len(names))
    bar = tqdm(total=n_total, initial=n_total - len(pending), unit="track", desc="evaluation")
    pool, in_flight = None, set()
    if jobs > 1:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = "1"   # each worker single-threaded: parallelism is over tracks
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"))
    try:
        for track_dir in pending:
            bar.set_postfix_str(track_dir.name[:40])
            mixture, refs, sr = load_track(track_dir, ref_names, combined)
            made = stem_names([tm.target for tm in models])   # the stems, held once: the scored ones are a view
            est = separate_stems_array(models, mixture, sr, made, precision="float32", progress=True,
                                       desc=track_dir.name[:30], **opts)
            stems = dict(zip(made, est))
            if track_dir.name in example_tracks:
                _write_examples(examples_dir / _safe_name(track_dir.name), mixture, stems, sr,
                                example_tracks[track_dir.name], refs)
            task = dict(track=track_dir.name, names=list(names), sample_rate=sr, backend=backend,
                        device=device if backend == "fast" else None, signature=signature,
                        threads=bss_threads if backend == "fast" and pool is None else None,
                        references=stacked_references(refs, ref_names),
                        estimates=est[:len(names)] if list(names) == made[:len(names)]
                        else np.stack([stems[n] for n in names]),
                        score_path=str(scores_dir / f"{_safe_name(track_dir.name)}.json"),
                        museval_path=str(museval_dir / f"{_safe_name(track_dir.name)}.json"))
            del mixture, refs, stems, est
            if pool is None:
                result = score_track(task)
                del task   # this song's references and estimates, freed before the next song is read
                _log_notes(result)
                bar.update()
                continue
            in_flight.add(pool.submit(score_track, task))
            del task
            while len(in_flight) >= jobs:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in done:
                    _log_notes(fut.result())
                    bar.update()
        for fut in in_flight:
            _log_notes(fut.result())
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _memory_bounded_jobs(pending, jobs: int, backend: str, n_sources: int) -> int:
    """Fewer workers when the longest track's BSS Eval would not fit ``jobs`` times in free memory."""
    longest = max(read_track_meta(t)["n_samples"] / read_track_meta(t)["sample_rate"] for t in pending)
    per_source = MUSEVAL_BYTES_PER_SOURCE_SECOND if backend == "museval" else FAST_BYTES_PER_SOURCE_SECOND
    need = per_source * n_sources * longest + 5e8
    available = _available_memory()
    if available is None:
        return jobs
    fit = max(1, int(0.8 * available // need))
    if fit < jobs:
        log.warning("--jobs %d lowered to %d: BSS Eval (%s) of a %.0f s track needs about %.1f GB and "
                    "%.1f GB are available", jobs, fit, backend, longest, need / 1e9, available / 1e9)
    return min(jobs, fit)


def _available_memory() -> Optional[float]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def score_track(task: dict) -> dict:
    """BSS Eval of one track (run in a worker with ``--jobs``): writes the museval JSON, then
    the score file (which marks the track done). Returns ``{track, notes}``."""
    import museval

    start = time.time()
    try:
        with torch_threads(task.get("threads")):   # evaluation.bss_threads (workers have one thread each)
            values, notes = bss_eval(task["references"], task["estimates"], task["sample_rate"],
                                     task["backend"], task["device"], names=task["names"])
    except (ValueError, RuntimeError, MemoryError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FrugalError(f"{task['track']}: BSS Eval failed ({first[:300]})") from None
    notes = [f"{task['track']}: {n}" for n in notes]
    store = museval.TrackStore(track_name=task["track"], win=1.0, hop=1.0)
    for j, name in enumerate(task["names"]):
        store.add_target(target_name=name, values={m: values[m][j].tolist() for m in METRICS})
    store.validate()
    write_text_atomic(task["museval_path"], store.json)
    record = dict(track=task["track"], targets=task["names"], backend=task["backend"],
                  signature=task["signature"], seconds=round(time.time() - start, 2), notes=notes,
                  values={m: values[m].tolist() for m in METRICS})
    write_text_atomic(task["score_path"], json.dumps(record))   # NaN/Infinity kept (Python's JSON)
    return dict(track=task["track"], notes=notes)


def _log_notes(result: dict) -> None:
    for note in result["notes"]:
        log.warning("%s", note)


def _write_examples(folder: Path, mixture: np.ndarray, stems: Dict[str, np.ndarray], sr: int,
                    seconds: float, refs: Dict[str, np.ndarray]) -> None:
    """A listenable excerpt (``seconds`` from the middle) of the mixture, each stem and, in
    ``references/``, each reference stem."""
    n = mixture.shape[-1]
    length = min(n, int(seconds * sr))
    start = max(0, (n - length) // 2)
    files = 1 + len(stems) + len(refs)
    needed = files * (length * mixture.shape[0] * 2 + 44)   # 16-bit PCM and a WAV header per file
    with disk_full_errors(folder, needed_bytes=needed):
        write_audio(folder / "mixture.wav", np.clip(mixture[:, start:start + length], -1, 1), sr, subtype="PCM_16")
        for name, audio in stems.items():
            write_audio(folder / f"{name}.wav", np.clip(audio[:, start:start + length], -1, 1), sr, subtype="PCM_16")
        for name, audio in refs.items():
            write_audio(folder / "references" / f"{name}.wav", np.clip(audio[:, start:start + length], -1, 1), sr,
                        subtype="PCM_16")


# ---------------------------------------------------------------------- SI-SNR
def run_sisnr(tm, exp_dir: Path, results: Path, opts: dict, device: str,
              silence_db: float) -> Optional[Dict[str, Dict[str, float]]]:
    """SI-SNR(i) of the model on ``<exp_dir>/data/test.csv`` (the training corpus' held-out
    excerpts); writes ``si_snr.csv``. Returns ``{"SI-SNR": {..}, "SI-SNRi": {..}}`` or None."""
    from tqdm import tqdm

    from .data.datasets import ExcerptDataset

    manifest = exp_dir / "data" / "test.csv"
    if not manifest.is_file():
        log.warning("%s: no test manifest (stage 2 writes it): SI-SNR not computed", manifest)
        return None
    dataset = ExcerptDataset(manifest, tm.target, n_channels=int(getattr(tm.model, "n_channels", 2)))
    model_sr = int(round(float(tm.model.sample_rate)))
    if dataset.sample_rate != model_sr:
        raise FrugalError(f"{manifest}: excerpts at {dataset.sample_rate} Hz, model at {model_sr} Hz")
    rest = rest_name(tm.target)
    rows = []
    for i in tqdm(range(len(dataset)), desc="SI-SNR", unit="excerpt", leave=False):
        mixture, refs = dataset[i]
        est = separate_long(tm.model, mixture, opts["chunk_seconds"], opts["overlap_seconds"],
                            opts["batch_chunks"], device=device)
        out = si_snr(est, refs, silence_db).tolist()
        inp = si_snr(mixture.expand_as(refs), refs, silence_db).tolist()
        info = dataset.get_infos(i)
        rows.append(dict(song=info["song"], start=info["start"], length=info["length"],
                         **{f"si_snr_{tm.target}": out[0], f"si_snr_{rest}": out[1],
                            f"input_si_snr_{tm.target}": inp[0], f"input_si_snr_{rest}": inp[1]}))
    table = pd.DataFrame(rows)
    with atomic_path(results / "si_snr.csv") as tmp:
        table.to_csv(tmp, index=False)
    if table.empty:
        return None
    summary: Dict[str, Dict[str, float]] = {"SI-SNR": {}, "SI-SNRi": {}}
    both_out, both_imp = [], []
    for name in (tm.target, rest):
        out = table[f"si_snr_{name}"].to_numpy(dtype=float)
        imp = out - table[f"input_si_snr_{name}"].to_numpy(dtype=float)
        summary["SI-SNR"][name] = float(np.nanmean(out)) if np.isfinite(out).any() else math.nan
        summary["SI-SNRi"][name] = float(np.nanmean(imp)) if np.isfinite(imp).any() else math.nan
        both_out.append(out)
        both_imp.append(imp)
    out, imp = np.concatenate(both_out), np.concatenate(both_imp)
    summary["SI-SNR"]["mean"] = float(np.nanmean(out)) if np.isfinite(out).any() else math.nan
    summary["SI-SNRi"]["mean"] = float(np.nanmean(imp)) if np.isfinite(imp).any() else math.nan
    summary["SI-SNR"]["excerpts"] = float(len(table))
    summary["SI-SNRi"]["excerpts"] = float(len(table))
    return summary


# -------------------------------------------------------------------- summaries
def _write_sisnr_only(results: Path, exp_dir: Path, models, split_dir: Path, sisnr_summary, opts) -> dict:
    """``evaluation.bss: false``: the SI-SNR outputs alone (Tables 1-2 sweeps need no BSS Eval)."""
    if not sisnr_summary:
        raise FrugalError(f"{exp_dir}: evaluation.bss is false and there is no SI-SNR to compute "
                          f"(no test excerpts in {exp_dir / 'data' / 'test.csv'})")
    final = {f"{prefix}_{name}": value
             for key, prefix in (("SI-SNR", "si_snr"), ("SI-SNRi", "si_snri"))
             for name, value in sisnr_summary[key].items()
             if name != "excerpts" and math.isfinite(value)}
    final["n_excerpts"] = float(sisnr_summary["SI-SNR"]["excerpts"])
    write_json_atomic(results / "final_metrics.json", final)
    facts = sisnr_only_facts(models[0], exp_dir, split_dir, opts)
    write_results_md(results / "results.md", title=f"Evaluation of {exp_dir.name}", facts=facts,
                     table3=(), metrics_median=None, metrics_mean=None, n_tracks={}, sisnr=sisnr_summary)
    write_json_atomic(results / "eval_info.json", dict(mode="si-snr", split=str(exp_dir / "data" / "test.csv"),
                                                       n_excerpts=final["n_excerpts"]))
    log.info("results in %s (SI-SNR only: results.md, final_metrics.json)", results)
    return final


def _write_summaries(conf, results: Path, records: List[dict], names, mode, exp_dir, exp_dirs, models,
                     backend, device, split_dir, sisnr_summary, opts) -> dict:
    frames = pd.concat([frames_dataframe(r["track"], r["targets"], {m: np.array(r["values"][m], dtype=float)
                                                                    for m in METRICS}) for r in records],
                       ignore_index=True)
    tracks_table = per_track(frames).reset_index()
    counts = frames[frames["metric"] == "SDR"].groupby(["track", "target"])["score"]
    tracks_table = tracks_table.merge(counts.size().rename("frames").reset_index(), on=["track", "target"])
    tracks_table = tracks_table.merge(counts.apply(lambda s: int(s.notna().sum())).rename("scored_frames")
                                      .reset_index(), on=["track", "target"])
    tracks_table["target"] = pd.Categorical(tracks_table["target"], names, ordered=True)
    tracks_table = tracks_table.sort_values(["track", "target"])
    with atomic_path(results / "all_metrics.csv") as tmp:
        tracks_table.to_csv(tmp, index=False)

    median = aggregate(frames, "median").reindex(index=names, columns=list(METRICS))
    mean = aggregate(frames, "mean").reindex(index=names, columns=list(METRICS))
    n_tracks = {n: int(tracks_table[(tracks_table["target"] == n) & tracks_table["SDR"].notna()].shape[0])
                for n in names}
    final: Dict[str, float] = {}
    if sisnr_summary:
        for key, prefix in (("SI-SNR", "si_snr"), ("SI-SNRi", "si_snri")):
            for name, value in sisnr_summary[key].items():
                if name != "excerpts":
                    final[f"{prefix}_{name}"] = value
    for target in names:
        for m in METRICS:
            final[f"{m.lower()}_{target}"] = median.loc[target, m]
            final[f"{m.lower()}_{target}_mean"] = mean.loc[target, m]
    if mode == "{4}":
        final["sdr_mean"] = float(np.mean([median.loc[t, "SDR"] for t in SOURCES]))
    final["n_tracks"] = float(len(records))
    dropped = sorted(k for k, v in final.items() if not math.isfinite(float(v)))
    final = {k: float(v) for k, v in final.items() if math.isfinite(float(v))}
    write_json_atomic(results / "final_metrics.json", final)

    figure = "sdr_distribution.png"
    title = f"{exp_dir.name} {mode}: per-track SDR\n{len(records)} tracks of {split_dir.parent.name}/{split_dir.name}"
    plot_sdr_distribution(tracks_table, results / figure, title, names)

    table3 = table3_runs(mode, exp_dir, exp_dirs, median, final)
    facts = evaluation_facts(mode, exp_dirs, models, backend, device, split_dir, len(records), opts)
    notes = [n for r in records for n in r.get("notes", [])]
    if dropped:
        notes.append("not in final_metrics.json (not finite): " + ", ".join(dropped))
    write_results_md(results / "results.md", title=f"Evaluation of {exp_dir.name} {mode}", facts=facts,
                     table3=table3, metrics_median=median, metrics_mean=mean, n_tracks=n_tracks,
                     sisnr=sisnr_summary, notes=notes, figure=figure)
    write_examples_page(results / "examples", tracks_table, facts)   # examples/index.html, to listen
    return final

