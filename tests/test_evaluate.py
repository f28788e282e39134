"""Stage 4 end to end on a small prepared corpus with tiny untrained models."""
import errno
import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from asteroid_frugal import evaluate as stage
from asteroid_frugal.cli.evaluate import build_parser, main
from asteroid_frugal.config import load_config
from asteroid_frugal.data.datasets import write_manifest
from asteroid_frugal.data.layout import prepared_root, write_track
from asteroid_frugal.model import FrugalTasNet
from asteroid_frugal.inference import load_target_models, separate_stems
from asteroid_frugal.utils import DiskFullError, FrugalError, human_bytes

from test_reports_listening import check_page

museval = pytest.importorskip("museval")
SR = 8000
TRACKS = ("song a", "song b")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two 2.2 s stereo songs (prepared layout) and one tiny model per target."""
    root = tmp_path_factory.mktemp("eval")
    overrides = [f"data.root={root / 'data'}", f"data.sample_rate={SR}", "evaluation.chunk_seconds=1",
                 "evaluation.overlap_seconds=0.25", "evaluation.n_examples=1"]
    conf = load_config(overrides=overrides)
    rng = np.random.default_rng(0)
    t = np.arange(int(2.2 * SR)) / SR
    for i, name in enumerate(TRACKS):
        env = 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t + i)
        stems = {
            "vocals": np.stack([np.sin(2 * np.pi * (300 + 40 * i) * t), 0.7 * np.sin(2 * np.pi * (300 + 40 * i) * t)]) * env,
            "drums": rng.standard_normal((2, t.size)) * (np.sin(2 * np.pi * 2 * t) > 0.6),
            "bass": np.stack([np.sin(2 * np.pi * 70 * t)] * 2) * env[::-1],
            "other": np.stack([np.sin(2 * np.pi * 520 * t + 1), np.sin(2 * np.pi * 530 * t)]),
        }
        stems = {k: (0.2 * v + 0.01 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in stems.items()}
        write_track(prepared_root(conf) / "test" / name, stems, dict(name=name, sample_rate=SR),
                    mixture=sum(stems.values()))
    exps = {}
    for k, target in enumerate(("vocals", "drums", "bass")):
        torch.manual_seed(k)
        model = FrugalTasNet(n_src=2, n_filters=16, kernel_size=20, stride=None, n_channels=2, hidden_size=8,
                             n_layers=2, bidirectional=True, skip_every=1, dropout=0.0, mask_act="softmax",
                             causal=False, sample_rate=SR)
        exp = root / "exp" / target
        exp.mkdir(parents=True)
        torch.save(model.serialize(), exp / "best_model.pth")
        exp_conf = load_config(overrides=overrides + [f"data.target={target}"])
        (exp / "conf.yml").write_text(yaml.safe_dump(exp_conf))
        exps[target] = exp
    split = prepared_root(conf) / "test"
    write_manifest(exps["vocals"] / "data" / "test.csv",
                   [dict(track_dir=str(split / n), start=s, length=SR) for n in TRACKS for s in (0, SR)])
    return dict(root=root, overrides=overrides, conf=conf, exps=exps, split=split)


def _args(corpus, *extra):
    return [a for o in corpus["overrides"] for a in ("--set", o)] + list(extra)


def _frames(museval_json, target, metric):
    data = json.loads(museval_json.read_text())
    target = next(t for t in data["targets"] if t["name"] == target)
    return np.array([f["metrics"][metric] for f in target["frames"]], dtype=float)


def _table_rows(markdown, heading):
    block = markdown.split(heading, 1)[1].split("\n\n")[2]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()]


def test_single_model_matches_museval_called_directly(corpus):
    exp = corpus["exps"]["vocals"]
    final = main(_args(corpus, "--exp_dir", str(exp), "--backend", "museval"))
    results = exp / "results"
    models = load_target_models([str(exp)], "cpu")
    for name in TRACKS:
        track = corpus["split"] / name
        mixture, refs, sr = stage.load_track(track, ["vocals", "accompaniment"], combined=False)
        stems = separate_stems(models, mixture, sr, chunk_seconds=1, overlap_seconds=0.25)
        assert sorted(stems) == ["accompaniment", "vocals"]
        direct = museval.evaluate(np.stack([refs["vocals"], refs["accompaniment"]]).transpose(0, 2, 1),
                                  np.stack([stems["vocals"], stems["accompaniment"]]).transpose(0, 2, 1),
                                  win=SR, hop=SR)
        path = results / "museval" / "test" / f"{name}.json"
        jsonschema.validate(json.loads(path.read_text()), museval.aggregate.TrackStore(name).schema)
        for j, target in enumerate(("vocals", "accompaniment")):
            for metric, values in zip(("SDR", "ISR", "SIR", "SAR"), direct):
                np.testing.assert_allclose(_frames(path, target, metric), values[j], atol=1e-4)
    # SiSEC aggregation, recomputed from the museval JSON files
    medians = [np.nanmedian(_frames(results / "museval" / "test" / f"{n}.json", "vocals", "SDR")) for n in TRACKS]
    assert final["sdr_vocals"] == pytest.approx(float(np.median(medians)), abs=1e-4)
    on_disk = json.loads((results / "final_metrics.json").read_text())
    assert on_disk == final and all(type(v) is float for v in on_disk.values())
    assert {"sdr_accompaniment", "sir_vocals", "sar_vocals", "isr_vocals", "sdr_vocals_mean",
            "si_snr_vocals", "si_snri_accompaniment", "si_snr_mean"} <= set(final)
    sisnr = np.genfromtxt(results / "si_snr.csv", delimiter=",", names=True, dtype=None, encoding=None)
    assert len(sisnr) == 4
    assert final["si_snri_vocals"] == pytest.approx(
        float(np.mean(sisnr["si_snr_vocals"] - sisnr["input_si_snr_vocals"])), abs=1e-6)
    csv_lines = (results / "all_metrics.csv").read_text().splitlines()
    assert csv_lines[0] == "track,target,SDR,SIR,ISR,SAR,frames,scored_frames" and len(csv_lines) == 5
    assert sorted(p.name for p in (results / "examples" / TRACKS[0]).iterdir()) == \
        ["accompaniment.wav", "mixture.wav", "references", "vocals.wav"]
    assert sorted(p.name for p in (results / "examples" / TRACKS[0] / "references").iterdir()) == \
        ["accompaniment.wav", "vocals.wav"]
    assert not (results / "examples" / TRACKS[1]).exists()
    page = check_page(results / "examples" / "index.html")     # the page to listen to the examples
    assert sum(tag == "audio" for tag, _ in page.links) == 5 and TRACKS[0] in "".join(page.text)
    sdr = pd.read_csv(results / "all_metrics.csv").set_index(["track", "target"])["SDR"]
    assert f"{sdr[(TRACKS[0], 'vocals')]:.2f}" in "".join(page.text)
    assert (results / "sdr_distribution.png").read_bytes()[:4] == b"\x89PNG"
    md = (results / "results.md").read_text()
    rows = _table_rows(md, "## SDR in the form of the paper's Table 3")
    assert rows[0] == ["Method", "Training data", "Vocals", "Accomp.", "Drums", "Bass", "Other", "Mean"]
    assert all(len(r) == len(rows[0]) for r in rows)
    assert any(r[0] == "Conv-TasNet" and r[2] == "6.74" for r in rows)
    ours = [r for r in rows if r[0].startswith("**This run")]
    assert len(ours) == 1 and ours[0][2] == f"{final['sdr_vocals']:.2f}" and ours[0][4] == "-"
    assert "not MUSDB18" in ours[0][1] and "museval 0.4.1" in md


def test_combined_four_sources_and_other_is_exact(corpus):
    exps = corpus["exps"]
    out = corpus["root"] / "exp" / "combined"
    final = main(_args(corpus, "--combined", str(exps["vocals"]), str(exps["drums"]), str(exps["bass"]),
                             "--exp_dir", str(out), "--backend", "fast", "--max_tracks", "1"))
    data = json.loads((out / "results" / "museval" / "test" / f"{TRACKS[0]}.json").read_text())
    assert [t["name"] for t in data["targets"]] == ["vocals", "drums", "bass", "other"]
    assert {f"sdr_{s}" for s in ("vocals", "drums", "bass", "other")} | {"sdr_mean"} <= set(final)
    assert not any(k.startswith("si_snr") for k in final) and final["n_tracks"] == 1.0
    md = (out / "results" / "results.md").read_text()
    assert "fast evaluator" in md and "4-source problem" in md
    rows = _table_rows(md, "## SDR in the form of the paper's Table 3")
    assert all(len(r) == len(rows[0]) for r in rows)
    four = [r for r in rows if r[0].startswith("**This run: TasNet {4}")]
    assert four and four[0][3] == "-" and four[0][7] == f"{final['sdr_mean']:.2f}"

    # other = mixture - (vocals + drums + bass), sample-exact, after the least-squares rescaling
    models = load_target_models([f"{t}={exps[t]}" for t in ("vocals", "drums", "bass")], "cpu")
    mixture, _, sr = stage.load_track(corpus["split"] / TRACKS[0], ["vocals", "drums", "bass", "other"], True)
    stems = separate_stems(models, mixture, sr, chunk_seconds=1, overlap_seconds=0.25)
    assert list(stems) == ["vocals", "drums", "bass", "other", "accompaniment"]
    np.testing.assert_array_equal(stems["other"], mixture - stems["vocals"] - stems["drums"] - stems["bass"])
    raw = torch.from_numpy(separate_stems(models[:1], mixture, sr, 1, 0.25)["vocals"])
    mix = torch.from_numpy(mixture).double()
    recon = torch.from_numpy(stems["vocals"] + stems["accompaniment"]).double()
    assert abs(float((mix - recon).flatten() @ recon.flatten())) < 1e-3 * float(recon.pow(2).sum())
    np.testing.assert_allclose(raw.numpy(), stems["vocals"], rtol=1e-6)
    # the numbers in the stage's files come from these very stems
    values, _ = stage.bss_eval(np.stack([stage.load_track(corpus["split"] / TRACKS[0], list(stems)[:4], True)[1][s]
                                         for s in list(stems)[:4]]),
                               np.stack([stems[s] for s in list(stems)[:4]]), sr, backend="fast")
    np.testing.assert_allclose(_frames(out / "results" / "museval" / "test" / f"{TRACKS[0]}.json", "other", "SDR"),
                               values["SDR"][3], atol=1e-4)


def test_interrupted_evaluation_resumes(corpus, monkeypatch):
    exp = corpus["exps"]["bass"]
    calls = []
    real = stage.score_track

    def flaky(task):
        assert task["threads"] == 1   # evaluation.bss_threads: the fast evaluator scores with one thread
        calls.append(task["track"])
        if len(calls) == 2:
            raise RuntimeError("killed")   # the process dies while scoring the second track
        return real(task)

    monkeypatch.setattr(stage, "score_track", flaky)
    args = _args(corpus, "--exp_dir", str(exp), "--backend", "fast", "--no_sisnr")
    with pytest.raises(RuntimeError, match="killed"):
        main(args)
    scores = exp / "results" / "scores"
    assert [p.stem for p in scores.glob("*.json")] == [TRACKS[0]]
    assert not (exp / "results" / "final_metrics.json").exists()
    first = (scores / f"{TRACKS[0]}.json").stat().st_mtime_ns
    calls.clear()
    final = main(args)
    assert calls == [TRACKS[1]] and (scores / f"{TRACKS[0]}.json").stat().st_mtime_ns == first
    assert final["n_tracks"] == 2.0 and "sdr_no_bass" in final
    # another backend: every track is scored again, here by two worker processes
    monkeypatch.setattr(stage, "score_track", real)
    fast = json.loads((exp / "results" / "final_metrics.json").read_text())
    again = main(args + ["--backend", "museval", "--jobs", "2"])
    assert all(json.loads((scores / f"{n}.json").read_text())["backend"] == "museval" for n in TRACKS)
    assert "museval 0.4.1" in (exp / "results" / "results.md").read_text()
    for key in ("sdr_bass", "sir_no_bass", "sar_bass", "isr_no_bass"):
        assert again[key] == pytest.approx(fast[key], abs=0.01)


def test_user_errors_are_one_line(corpus, tmp_path):
    with pytest.raises(FrugalError, match="no prepared tracks"):
        main(_args(corpus, "--exp_dir", str(corpus["exps"]["vocals"]), "--split", "nope"))
    with pytest.raises(FrugalError, match="no model file"):
        main(_args(corpus, "--exp_dir", str(tmp_path)))
    with pytest.raises(FrugalError, match=r"^evaluation.bss_backend: unknown backend 'bogus' \(choose museval, fast\)$"):
        main(_args(corpus, "--exp_dir", str(tmp_path), "--backend", "bogus"))
    with pytest.raises(FrugalError, match="evaluation.jobs"):   # a config check, before any work
        main(_args(corpus, "--exp_dir", str(tmp_path), "--jobs", "0"))
    assert re.search(r"--backend VALUE\s+shortcut for --set evaluation.bss_backend=VALUE", build_parser().format_help())


def test_the_library_function_takes_every_knob_from_the_config(corpus, monkeypatch):
    """``evaluate(conf, exp_dir)``: split, jobs, backend, max_tracks and device are conf keys only."""
    import inspect

    assert list(inspect.signature(stage.evaluate).parameters) == ["conf", "exp_dir", "combined", "sisnr"]
    conf = load_config(overrides=corpus["overrides"] + ["evaluation.split=nope"])
    with pytest.raises(FrugalError, match="nope: no prepared tracks"):
        stage.evaluate(conf, corpus["exps"]["vocals"], sisnr=False)


def test_a_full_disk_is_one_line_and_the_next_run_scores_only_what_is_missing(corpus, monkeypatch):
    exp = corpus["exps"]["drums"]
    real_write = Path.write_bytes

    def full_disk_on_the_second_score(self, data):
        if self.parent.name == "scores" and self.name.startswith(f".{TRACKS[1]}.json."):   # the second score
            real_write(self, data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk_on_the_second_score)
    args = _args(corpus, "--exp_dir", str(exp), "--backend", "fast", "--no_sisnr")
    scores = exp / "results" / "scores"
    with pytest.raises(DiskFullError) as err:
        main(args)
    assert re.match(rf"{re.escape(str(scores / TRACKS[1]))}\.json: disk full: needed \d+ B, ", str(err.value))
    assert [p.name for p in scores.iterdir()] == [f"{TRACKS[0]}.json"]                # no partial file left
    assert not [p for p in (exp / "results").rglob(".*")] and not (exp / "results" / "final_metrics.json").exists()
    monkeypatch.undo()
    first = (scores / f"{TRACKS[0]}.json").stat().st_mtime_ns
    assert main(args)["n_tracks"] == 2.0 and (scores / f"{TRACKS[0]}.json").stat().st_mtime_ns == first


def test_a_full_disk_while_writing_examples_names_the_folder_and_the_space_they_need(tmp_path, monkeypatch):
    """The listening excerpts: one line naming their folder and what all of them need."""
    real = stage.write_audio
    calls = []

    def full_on_the_second_file(path, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(stage, "write_audio", full_on_the_second_file)
    mix = np.zeros((2, SR), np.float32)
    stems, refs = {"vocals": mix, "accompaniment": mix}, {"vocals": mix}
    with pytest.raises(DiskFullError) as err:
        stage._write_examples(tmp_path / "song", mix, stems, SR, 0.5, refs)
    needed = 4 * (SR // 2 * 2 * 2 + 44)     # four 16-bit stereo files of half a second, with headers
    assert str(err.value).startswith(f"{tmp_path / 'song'}: disk full: needed {human_bytes(needed)}, ")


def test_references_take_one_song_of_memory_whatever_the_number_of_stems(tmp_path):
    """load_track fills one float64 array stem by stem (it used to hold every stem as float64 at
    once: 40 bytes per stereo sample instead of 24); stage 4 hands that array on without a copy."""
    import tracemalloc

    from asteroid_frugal.data.types import SOURCES

    n, rng = 3 * SR, np.random.default_rng(1)
    stems = {s: (0.1 * rng.standard_normal((2, n))).astype(np.float32) for s in SOURCES}
    write_track(tmp_path / "song", stems, dict(name="song", sample_rate=SR), mixture=sum(stems.values()))
    stored = {s: stage.read_audio(tmp_path / "song" / f"{s}.wav")[0] for s in SOURCES}
    tracemalloc.start()
    mixture, refs, _ = stage.load_track(tmp_path / "song", ["vocals", "accompaniment"], combined=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    stereo_samples = 2 * n
    assert peak < 26 * stereo_samples      # references (2 x 8 bytes) + one stem being read (2 x 4 bytes)
    rest = stored["drums"].astype(np.float64) + stored["bass"] + stored["other"]
    np.testing.assert_array_equal(refs["accompaniment"], rest)
    np.testing.assert_array_equal(refs["vocals"], stored["vocals"].astype(np.float64))
    together = stage.stacked_references(refs, ["vocals", "accompaniment"])
    assert together.shape == (2, 2, n) and np.shares_memory(together, refs["vocals"])
    assert not np.shares_memory(stage.stacked_references(refs, ["accompaniment", "vocals"]), refs["vocals"])
    _, four, _ = stage.load_track(tmp_path / "song", list(SOURCES), combined=True)
    assert list(four) == list(SOURCES)
    np.testing.assert_array_equal(four["bass"], stored["bass"].astype(np.float64))


def test_one_song_in_memory_at_a_time(corpus, tmp_path, monkeypatch):
    """With one job, a song's references and estimates are freed before the next song is read
    (they used to stay referenced until the next song's had been built: two songs at the peak)."""
    import shutil
    import weakref

    exp = tmp_path / "vocals"
    shutil.copytree(corpus["exps"]["vocals"], exp)
    real, previous, held = stage.load_track, [], []

    def load(track_dir, ref_names, combined):
        held.append(any(r() is not None for r in previous))   # the previous song's arrays still alive?
        mixture, refs, sr = real(track_dir, ref_names, combined)
        previous[:] = [weakref.ref(stage.stacked_references(refs, ref_names))]
        return mixture, refs, sr

    monkeypatch.setattr(stage, "load_track", load)
    main(_args(corpus, "--exp_dir", str(exp), "--backend", "fast", "--no_sisnr"))
    assert held == [False, False]
