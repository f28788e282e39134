"""The separation command: formats, rates, channels, exact lengths, stem sets, rescaling,
existing outputs, bad files and model/target errors."""
import os
import re
import signal
import subprocess
import sys
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

import asteroid_frugal  # noqa: F401
from asteroid_frugal.audio import read_audio
from asteroid_frugal.model import FrugalTasNet
from asteroid_frugal.data.types import stem_names
from asteroid_frugal.inference import least_squares_gain, load_target_models
from asteroid_frugal.cli.common import run
from asteroid_frugal.cli.separate import cli, main
from asteroid_frugal.utils import FrugalError

from conftest import REPO
from disk_helpers import small_disk


def make_experiment(root, target, args, seed=0, with_conf=True, in_file=False):
    """A tiny trained-looking experiment folder: best_model.pth (+ conf.yml with data.target)."""
    torch.manual_seed(seed)
    exp = root / f"exp_{target}_{seed}"
    exp.mkdir()
    package = FrugalTasNet(**args).serialize()
    if in_file:
        package["target"] = target
    torch.save(package, exp / "best_model.pth")
    if with_conf:
        (exp / "conf.yml").write_text(yaml.safe_dump({"data": {"target": target}}))
    return exp


def tone(seconds, sr, channels, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    sig = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.shape)
    return np.stack([sig * (0.8 + 0.2 * c) for c in range(channels)]).astype(np.float32)


@pytest.fixture
def exps(tmp_path, tiny_model_args):
    return {t: make_experiment(tmp_path, t, tiny_model_args, seed=i, in_file=(t == "drums"))
            for i, t in enumerate(("vocals", "drums", "bass"))}


def test_round_trip_formats_rates_channels(tmp_path, exps):
    songs = tmp_path / "songs"
    (songs / "live").mkdir(parents=True)
    sf.write(songs / "a.wav", tone(1.3, 8000, 2).T, 8000)                      # the model's rate
    sf.write(songs / "live" / "b.flac", tone(1.0, 22050, 1).T, 22050)          # mono, sub-folder
    sf.write(songs / "c.ogg", tone(0.9, 48000, 2).T, 48000, format="OGG", subtype="VORBIS")
    wav = tmp_path / "src.wav"
    sf.write(wav, tone(1.1, 44100, 2).T, 44100)
    for name in ("d_mp3.mp3", "d_m4a.m4a", "e.stem.mp4"):  # ffmpeg decodes these (MUSDB18 names: .stem.mp4)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), str(songs / name)], check=True)
    out = tmp_path / "out"
    main([str(songs), "--models", str(exps["vocals"]), "--out", str(out), "--chunk_seconds", "0.5",
          "--overlap_seconds", "0.1", "--batch_chunks", "3"])
    assert sorted(p.name for p in out.iterdir()) == ["a", "c", "d_m4a", "d_mp3", "e", "live"]
    for rel in ("a", "live/b", "c", "d_mp3", "d_m4a", "e"):
        src = next(songs.glob(f"{rel}.*"))
        audio, sr = read_audio(src)
        for stem in ("vocals", "accompaniment"):
            est, est_sr = read_audio(out / rel / f"{stem}.wav")
            assert est_sr == sr and est.shape == audio.shape, (rel, stem, est.shape, audio.shape)
            assert np.abs(est).max() > 0
    assert sf.info(str(out / "a" / "vocals.wav")).subtype == "PCM_24"


def test_three_models_give_five_consistent_stems(tmp_path, exps):
    wav = tmp_path / "song.wav"
    mix = tone(2.0, 16000, 2)
    sf.write(wav, mix.T, 16000, subtype="FLOAT")
    out = tmp_path / "out"
    main([str(wav), "--models", *(f"{t}={p}" for t, p in exps.items()), "--out", str(out),
          "--format", "wav", "--subtype", "FLOAT", "--chunk_seconds", "0.6", "--overlap_seconds", "0.1"])
    stems = {n: read_audio(out / "song" / f"{n}.wav")[0] for n in stem_names(["vocals", "drums", "bass"])}
    assert list(stems) == ["vocals", "drums", "bass", "other", "accompaniment"]
    total = stems["vocals"] + stems["drums"] + stems["bass"] + stems["other"]
    np.testing.assert_allclose(total, mix, atol=1e-5)  # other = mixture - the three targets
    # per-model least squares: vocals + accompaniment reproduce the mixture up to the decoder's error
    resid = stems["vocals"] + stems["accompaniment"] - mix
    assert (resid ** 2).sum() < (mix ** 2).sum()


def test_flac_output_and_existing_outputs_are_kept(tmp_path, exps, caplog):
    wav = tmp_path / "s.wav"
    sf.write(wav, tone(0.7, 8000, 2).T, 8000)
    out = tmp_path / "out"
    args = [str(wav), "--models", f"vocals={exps['vocals']}", "--out", str(out), "--format", "flac",
            "--subtype", "PCM_16"]
    main(args)
    target = out / "s" / "vocals.flac"
    assert sf.info(str(target)).subtype == "PCM_16"
    target.write_bytes(b"sentinel")
    main(args)
    assert target.read_bytes() == b"sentinel"  # not overwritten without --overwrite
    main(args + ["--overwrite"])
    assert sf.info(str(target)).frames == int(0.7 * 8000)
    with pytest.raises(FrugalError, match="FLOAT is not available for flac"):
        main(args[:-1] + ["FLOAT"])


def test_bad_files_are_reported_and_skipped(tmp_path, exps, capsys):
    songs = tmp_path / "songs"
    songs.mkdir()
    sf.write(songs / "good.wav", tone(0.5, 8000, 2).T, 8000)
    (songs / "garbage.mp3").write_bytes(b"\x00not audio at all" * 10)
    sf.write(songs / "empty.wav", np.zeros((0, 2), np.float32), 8000)
    sf.write(songs / "surround.wav", tone(0.5, 8000, 6).T, 8000)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main([str(songs), str(tmp_path / "missing.wav"), "--models", str(exps["bass"]), "--out", str(out)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    for name, why in (("garbage.mp3", "unreadable"), ("empty.wav", "empty"),
                      ("surround.wav", "6 channels"), ("missing.wav", "not found")):
        line = next(line for line in err.splitlines() if name in line and line.startswith("error:"))
        assert why in line, line
    assert "4 of 5 file(s) failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["good"]  # nothing half-written for bad files
    assert sorted(p.name for p in (out / "good").iterdir()) == ["bass.wav", "no_bass.wav", "separation.json"]


def test_a_silent_song_gets_silent_stems_and_one_warning(tmp_path, exps, capsys, caplog):
    """An album's silent hidden track: silent stems, counted as done, one warning, exit 0."""
    songs = tmp_path / "album"
    songs.mkdir()
    sf.write(songs / "01.wav", tone(0.5, 8000, 2).T, 8000)
    sf.write(songs / "02 hidden.flac", np.zeros((4000, 2), np.float32), 8000)
    out = tmp_path / "out"
    caplog.set_level("INFO", logger="asteroid_frugal")
    summary = main([str(songs), "--models", str(exps["vocals"]), "--out", str(out)])
    assert summary["done"] == 2 and summary["failed"] == []
    assert "error" not in capsys.readouterr().err
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].endswith("02 hidden.flac: silent (every sample is zero): "
                                                       "its stems are silent")
    for stem in ("vocals", "accompaniment"):
        audio, sr = read_audio(out / "02 hidden" / f"{stem}.wav")
        assert sr == 8000 and audio.shape == (2, 4000) and not np.any(audio)
    assert (out / "02 hidden" / "separation.json").is_file()


def test_model_target_checks(tmp_path, exps, tiny_model_args):
    with pytest.raises(FrugalError, match="mismatch: it was trained for 'vocals', given as 'drums'"):
        load_target_models([f"drums={exps['vocals']}"], "cpu")
    with pytest.raises(FrugalError, match="mismatch"):  # target stored in the model file itself
        load_target_models([f"bass={exps['drums'] / 'best_model.pth'}"], "cpu")
    anonymous = make_experiment(tmp_path, "x", tiny_model_args, with_conf=False)
    with pytest.raises(FrugalError, match="cannot tell which target"):
        load_target_models([str(anonymous)], "cpu")
    assert load_target_models([f"bass={anonymous}"], "cpu")[0].target == "bass"
    with pytest.raises(FrugalError, match="second model for 'vocals'"):
        load_target_models([str(exps["vocals"]), f"vocals={anonymous}"], "cpu")
    three = make_experiment(tmp_path, "vocals", {**tiny_model_args, "n_src": 3}, seed=9)
    with pytest.raises(FrugalError, match="2 outputs"):
        load_target_models([str(three)], "cpu")


def test_least_squares_gain_undoes_an_output_gain():
    x = torch.randn(2, 1000)
    t, r = 0.3 * x * 0.25, 0.7 * x * 0.25  # a model whose outputs are 4 times too quiet
    assert least_squares_gain(x, t, r) == pytest.approx(4.0)
    assert least_squares_gain(x, torch.zeros_like(x), torch.zeros_like(x)) == 1.0


def test_command_line_exit_codes(tmp_path, exps, monkeypatch, capsys):
    wav = tmp_path / "cli.wav"
    sf.write(wav, tone(0.5, 8000, 1).T, 8000)
    args = [str(wav), "--models", f"drums={exps['vocals']}", "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", ["asteroid-frugal-separate", *args])
    # a wait policy given: the entry point keeps it (on a busy machine it would otherwise start
    # the command again in place of this test process, runtime.restart)
    monkeypatch.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY") or "PASSIVE")
    with pytest.raises(SystemExit) as exit_info:
        cli()  # the console script's entry point: a one-line error, exit code 2
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "mismatch" in err[0]
    args[2] = f"vocals={exps['vocals']}"
    proc = subprocess.run([sys.executable, "-m", "asteroid_frugal.cli.separate", *args],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert sf.info(str(tmp_path / "out" / "cli" / "accompaniment.wav")).frames == 4000


def test_precision_auto_probes_bfloat16_against_float32(tmp_path, exps, caplog):
    from asteroid_frugal.inference import choose_precision

    models = load_target_models([f"vocals={exps['vocals']}"], "cpu")     # an LSTM of 8 units
    audio = tone(3.0, 8000, 2)
    # kept as requested; auto on the CPU: int8 for models with LSTMs of at least auto_int8_min_hidden units
    assert choose_precision(models, audio, 8000, "float32", 40, 1.0, auto_int8_min_hidden=8) == ("float32", "requested")
    chosen, why = choose_precision(models, audio, 8000, "auto", 40, 1.0, auto_int8_min_hidden=8)
    assert (chosen, why) == ("int8", "auto on the CPU: int8 weights, LSTM of 8 units >= 8; costs and gains: "
                                     "docs/separation.md")
    assert choose_precision(models, audio, 8000, "auto", 40, 1.0, native=lambda d: False, auto_int8_min_hidden=9) == (
        "float32", "int8 not chosen: LSTM of 8 units < 9, no faster in int8; no native bfloat16 on cpu")
    # else (and on a GPU): float32 without native bf16, else whatever the probe allows
    assert choose_precision(models, audio, 8000, "auto", 40, 1.0, native=lambda d: False,
                            auto_int8_min_hidden=None) == ("float32", "no native bfloat16 on cpu")
    chosen, why = choose_precision(models, audio, 8000, "auto", -100, 1.0, native=lambda d: True,
                                   auto_int8_min_hidden=None)
    assert chosen == "bfloat16" and why.startswith("native bfloat16, 1.0 s probe at ") and "dB SNR to float32" in why
    chosen, why = choose_precision(models, audio, 8000, "auto", 400, 1.0, native=lambda d: True,
                                   auto_int8_min_hidden=None)
    assert chosen == "float32" and why.endswith("under 400 dB")
    assert choose_precision(models, np.zeros_like(audio), 8000, "auto", 40, 1.0, native=lambda d: True,
                            auto_int8_min_hidden=None) == ("float32", "silent bfloat16 probe")
    # the command: conf.yml's separate.precision (auto) unless --precision; the choice is logged per song
    wav = tmp_path / "s.wav"
    sf.write(wav, audio.T, 8000)
    caplog.set_level("INFO", logger="asteroid_frugal")
    main([str(wav), "--models", str(exps["vocals"]), "--out", str(tmp_path / "auto")])
    line = next(r.getMessage() for r in caplog.records if "wav: precision" in r.getMessage())
    assert re.search(r"s\.wav: precision (bfloat16|float32) \(int8 not chosen: LSTM of 8 units < 256, no faster in "
                     r"int8; (native bfloat16, 3\.0 s probe|no native|bfloat16)", line), line
    caplog.clear()
    main([str(wav), "--models", str(exps["vocals"]), "--out", str(tmp_path / "int8"),
          "--set", "separate.auto_int8_min_hidden=8"])
    line = next(r.getMessage() for r in caplog.records if "wav: precision" in r.getMessage())
    assert line.endswith("s.wav: precision int8, onnxruntime, 1 chunk per call (auto on the CPU: int8 weights, "
                         "LSTM of 8 units >= 8; costs and gains: docs/separation.md)"), line
    caplog.clear()
    main([str(wav), "--models", str(exps["vocals"]), "--out", str(tmp_path / "f32"), "--precision", "float32"])
    assert any(r.getMessage().endswith("precision float32 (requested)") for r in caplog.records)
    with pytest.raises(FrugalError, match="separate.precision: expected auto"):
        main([str(wav), "--models", str(exps["vocals"]), "--out", str(tmp_path / "x"),
              "--set", "separate.precision=int4"])


def test_auto_chooses_int8_for_the_model_sizes_the_docs_say(tmp_path, tiny_model_args):
    """docs/separation.md: int8 on the CPU for LSTMs of at least separate.auto_int8_min_hidden units."""
    from asteroid_frugal.config import load_config
    from asteroid_frugal.inference import choose_precision

    threshold = load_config()["separate"]["auto_int8_min_hidden"]
    docs = (REPO / "docs" / "separation.md").read_text()
    assert f"at least {threshold} units (`separate.auto_int8_min_hidden`" in " ".join(docs.split())
    audio = tone(1.0, 8000, 2)
    for hidden, expected in ((threshold, "int8"), (threshold // 2, "float32")):
        exp = make_experiment(tmp_path, "vocals", dict(tiny_model_args, hidden_size=hidden), seed=hidden)
        models = load_target_models([str(exp)], "cpu")
        chosen, _ = choose_precision(models, audio, 8000, "auto", 40, 0.5, native=lambda d: False,
                                     auto_int8_min_hidden=threshold)
        assert chosen == expected, hidden


def test_int8_separates_close_to_float32_and_leaves_the_model_file_as_it_was(tmp_path, exps):
    from asteroid_frugal.separate import file_digest

    model_file = exps["vocals"] / "best_model.pth"
    digest, mtime = file_digest(model_file), model_file.stat().st_mtime_ns
    wav = tmp_path / "s.wav"
    sf.write(wav, tone(2.0, 8000, 2).T, 8000, subtype="FLOAT")
    for precision in ("float32", "int8"):
        main([str(wav), "--models", str(exps["vocals"]), "--out", str(tmp_path / precision), "--precision", precision,
              "--subtype", "FLOAT"])
    assert yaml.safe_load((tmp_path / "int8" / "s" / "separation.json").read_text())["settings"]["precision"] == "int8"
    for stem in ("vocals", "accompaniment"):
        ref, _ = read_audio(tmp_path / "float32" / "s" / f"{stem}.wav")
        est, _ = read_audio(tmp_path / "int8" / "s" / f"{stem}.wav")
        assert est.shape == ref.shape
        snr = 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((est.astype(np.float64) - ref) ** 2))
        assert snr > 15, f"{stem}: int8 only {snr:.1f} dB from float32"   # a loose bound (tiny random model)
    assert (file_digest(model_file), model_file.stat().st_mtime_ns) == (digest, mtime)


def test_int8_runs_on_onnxruntime_from_a_graph_exported_once_and_cached(tmp_path, exps, caplog, monkeypatch):
    """``--precision int8``: the model's int8 graph is exported into the cache at the first run and
    read from there later (the same stems); a broken cached graph is made again;
    ``separate.int8_backend=pytorch`` runs PyTorch's int8 weights; the backend is in the record."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    wav = tmp_path / "s.wav"
    sf.write(wav, tone(2.0, 8000, 2).T, 8000, subtype="FLOAT")
    args = [str(wav), "--models", str(exps["vocals"]), "--precision", "int8", "--subtype", "FLOAT"]

    def run(out, *more):
        caplog.clear()
        with caplog.at_level("INFO"):
            main([*args, "--out", str(tmp_path / out), *more])
        return " ".join(r.getMessage() for r in caplog.records)

    first = run("ort1")
    graphs = list((cache / "asteroid-frugal" / "int8").glob("*.int8.onnx"))
    assert len(graphs) == 1 and "exporting its int8 graph" in first and "precision int8, onnxruntime" in first
    second = run("ort2")
    assert "exporting" not in second and "precision int8, onnxruntime" in second
    stems = [("s", f"{stem}.wav") for stem in ("vocals", "accompaniment")]
    def same(a, b):   # sample for sample (a FLOAT wav's PEAK chunk holds the time it was written)
        return np.array_equal(read_audio(tmp_path / a / "s" / "vocals.wav")[0], read_audio(tmp_path / b / "s" / "vocals.wav")[0])

    assert same("ort1", "ort2")
    graphs[0].write_bytes(b"not a graph")
    third = run("ort3")
    assert "unreadable cached int8 graph" in third and "exporting its int8 graph" in third
    assert same("ort3", "ort1")
    torch_run = run("pt", "--set", "separate.int8_backend=pytorch")
    assert "precision int8, PyTorch" in torch_run
    records = {out: yaml.safe_load((tmp_path / out / "s" / "separation.json").read_text())["settings"]
               for out in ("ort1", "pt")}
    assert (records["ort1"]["int8_backend"], records["pt"]["int8_backend"]) == ("onnxruntime", "pytorch")
    for song, name in stems:   # two int8 computations of one model: close, not equal
        ort, _ = read_audio(tmp_path / "ort1" / song / name)
        pt, _ = read_audio(tmp_path / "pt" / song / name)
        snr = 10 * np.log10(np.sum(pt.astype(np.float64) ** 2) / np.sum((ort.astype(np.float64) - pt) ** 2))
        assert 15 < snr < 200, snr
    with pytest.raises(FrugalError, match="separate.int8_backend: expected onnxruntime or pytorch; got 'tensorrt'"):
        main([*args, "--out", str(tmp_path / "bad"), "--set", "separate.int8_backend=tensorrt"])


def test_every_song_of_a_run_stays_int8_on_onnxruntime_once_its_graphs_replace_the_float_models(tmp_path, exps,
                                                                                                 caplog):
    songs = tmp_path / "songs"
    songs.mkdir()
    for i in range(3):
        sf.write(songs / f"{i}.wav", tone(0.5, 8000, 2, seed=i).T, 8000)
    with caplog.at_level("INFO"):
        main([str(songs), "--models", str(exps["vocals"]), str(exps["drums"]), "--out", str(tmp_path / "out"),
              "--set", "separate.auto_int8_min_hidden=8"])
    lines = [r.getMessage() for r in caplog.records if "wav: precision" in r.getMessage()]
    assert len(lines) == 3 and all("precision int8, onnxruntime, 1 chunk per call (auto on the CPU: int8 weights, "
                                   "LSTM of 8 units" in line for line in lines), lines
    assert sum("exporting its int8 graph" in r.getMessage() for r in caplog.records) <= 2   # once per model at most


def test_onnxruntime_runs_hold_one_model_at_a_time_and_no_float_weights_once_cached(tmp_path, exps, monkeypatch):
    """int8 on onnxruntime (auto on the CPU, as shipped for large models): the models are read without
    their weights; a graph not yet cached has its model's float weights read for the export and let go
    before the next model is read; a cached graph needs none; one onnxruntime session is open at a time,
    while its model runs, one chunk per call."""
    import gc
    import weakref

    import asteroid_frugal.export as export
    import asteroid_frugal.inference as inference

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    wav = tmp_path / "s.wav"
    sf.write(wav, tone(2.2, 8000, 2).T, 8000)
    loaded, open_sessions, calls = [], [], []
    real_load = inference.load_model
    real_open, real_forward = export.OnnxOfflineModel.open, export.OnnxOfflineModel.forward

    def load(path, device=None, weights=True):
        model = real_load(path, device, weights)
        if weights:
            gc.collect()
            loaded.append((str(path), weakref.ref(model), [r() is None for _, r, _ in loaded]))
        return model

    def opened(self):
        session = real_open(self)
        open_sessions.append(sum(1 for m in models_seen if m.session is not None))
        return session

    def forward(self, mixture):
        calls.append(mixture.shape[0])
        return real_forward(self, mixture)

    models_seen = []
    real_init = export.OnnxOfflineModel.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        models_seen.append(self)

    for module in (inference, export):
        monkeypatch.setattr(module, "load_model", load)
    import asteroid_frugal.separate as separate
    monkeypatch.setattr(separate, "load_model", load)
    monkeypatch.setattr(export.OnnxOfflineModel, "open", opened)
    monkeypatch.setattr(export.OnnxOfflineModel, "forward", forward)
    monkeypatch.setattr(export.OnnxOfflineModel, "__init__", init)
    args = [str(wav), "--models", *(str(exps[t]) for t in ("vocals", "drums", "bass")), "--chunk_seconds", "0.5",
            "--overlap_seconds", "0.1", "--batch_chunks", "3", "--set", "separate.auto_int8_min_hidden=8"]
    main([*args, "--out", str(tmp_path / "first")])
    assert len(loaded) == 3                                  # each model's weights once, for its export...
    assert [all(gone) for _, _, gone in loaded] == [True, True, True]   # ...the ones before it already let go
    assert set(calls) == {1} and len(calls) >= 3 * 4         # one chunk per call (the chunks of batch_chunks 3)
    assert max(open_sessions) == 1 and all(m.session is None for m in models_seen)
    loaded.clear()
    main([*args, "--out", str(tmp_path / "second")])
    assert loaded == []                                      # graphs cached: no float weights read at all
    record = yaml.safe_load((tmp_path / "second" / "s" / "separation.json").read_text())["settings"]
    assert (record["int8_backend"], record["int8_batch_chunks"]) == ("onnxruntime", 1)
    for stem in stem_names(["vocals", "drums", "bass"]):
        assert np.array_equal(read_audio(tmp_path / "first" / "s" / f"{stem}.wav")[0],
                              read_audio(tmp_path / "second" / "s" / f"{stem}.wav")[0])


def test_onnxruntime_chunks_per_call_change_only_the_calls(tmp_path, exps, caplog):
    """``separate.int8_batch_chunks``: the chunks (length, cross-fades) stay evaluation's; the batch's
    size (or more) gives onnxruntime the whole batch per call (and says so); the value run is recorded;
    a bad one is one line."""
    wav = tmp_path / "s.wav"
    sf.write(wav, tone(2.2, 8000, 2).T, 8000, subtype="FLOAT")
    args = [str(wav), "--models", str(exps["vocals"]), "--precision", "int8", "--subtype", "FLOAT",
            "--chunk_seconds", "0.5", "--overlap_seconds", "0.1", "--batch_chunks", "3",
            "--set", f"separate.cache_dir={tmp_path / 'cache'}"]
    outs = {}
    for per_call in ("1", "8", "3"):
        caplog.clear()
        with caplog.at_level("INFO"):
            main([*args, "--out", str(tmp_path / per_call), "--set", f"separate.int8_batch_chunks={per_call}"])
        line = next(r.getMessage() for r in caplog.records if "wav: precision" in r.getMessage())
        expected = "1 chunk per call" if per_call == "1" else "3 chunks per call"
        assert f"precision int8, onnxruntime, {expected} (requested)" in line, line
        record = yaml.safe_load((tmp_path / per_call / "s" / "separation.json").read_text())["settings"]
        assert record["int8_batch_chunks"] == (1 if per_call == "1" else 3)
        outs[per_call] = read_audio(tmp_path / per_call / "s" / "vocals.wav")[0]
    assert np.array_equal(outs["8"], outs["3"])              # the whole batch, as before this setting existed
    snr = 10 * np.log10(np.sum(outs["3"].astype(np.float64) ** 2) / np.sum((outs["1"] - outs["3"]) ** 2 + 1e-30))
    assert snr > 25, snr      # one chunk per call: the same int8 graph and chunks (quantised per call)
    with pytest.raises(FrugalError, match="separate.int8_batch_chunks: expected a number of chunks, at least 1"):
        main([*args, "--out", str(tmp_path / "bad"), "--set", "separate.int8_batch_chunks=0"])


def test_int8_with_an_unwritable_cache_exports_for_the_run_only(tmp_path, exps, caplog):
    wav = tmp_path / "s.wav"
    sf.write(wav, tone(1.0, 8000, 2).T, 8000)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go")
    with caplog.at_level("INFO"):
        main([str(wav), "--models", str(exps["vocals"]), "--out", str(tmp_path / "out"), "--precision", "int8",
              "--set", f"separate.cache_dir={blocker / 'int8'}"])
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "not writable" in text and "precision int8, onnxruntime" in text
    assert (tmp_path / "out" / "s" / "vocals.wav").is_file()


# ------------------------------------------------------------- interrupted and failed runs
KILL_RUNNER = """
import os, signal, sys
sys.path[:0] = [{repo!r}]
import torch; torch.set_num_threads(1)
import asteroid_frugal.separate as sep
from asteroid_frugal.cli.separate import main

RealWriter, opened = sep.AudioFileWriter, []

class WriteThenDie(RealWriter):
    def __init__(self, path, *args, **kwargs):
        opened.append(path)
        super().__init__(path, *args, **kwargs)

    def write(self, block):
        if len(opened) > 1 and self.path == opened[1]:  # SIGKILL writing the second stem of the first song
            os.kill(os.getpid(), signal.SIGKILL)
        super().write(block)

sep.AudioFileWriter = WriteThenDie
main({argv!r})
"""


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def vocals_exp(tmp_path, tiny_model_args):
    return make_experiment(tmp_path, "vocals", tiny_model_args)


def test_separation_killed_between_stems_is_redone(tmp_path, vocals_exp):
    songs = tmp_path / "songs"
    songs.mkdir()
    for i, name in enumerate(("a", "b")):
        sf.write(songs / f"{name}.wav", tone(0.6, 8000, 2, i).T, 8000)
    argv = [str(songs), "--models", str(vocals_exp), "--chunk_seconds", "0.5", "--overlap_seconds", "0.1"]
    main([*argv, "--out", str(tmp_path / "reference")])
    out = tmp_path / "out"
    code = KILL_RUNNER.format(repo=str(REPO), argv=[*argv, "--out", str(out)])
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (out / "a").exists()  # nothing published for the song being written
    main([*argv, "--out", str(out)])  # the same command again
    assert _files(out) == _files(tmp_path / "reference")  # all stems, identical; no temporaries left
    assert sorted(_files(out)) == [f"{s}/{n}" for s in "ab" for n in ("accompaniment.wav", "separation.json",
                                                                        "vocals.wav")]


def test_failed_write_leaves_nothing_and_stems_of_other_models_are_kept(tmp_path, vocals_exp, tiny_model_args,
                                                                        monkeypatch, capsys):
    import asteroid_frugal.separate as sep

    wav = tmp_path / "song.wav"
    sf.write(wav, tone(0.6, 8000, 2).T, 8000)
    out = tmp_path / "out"
    argv = [str(wav), "--out", str(out)]
    real_writer, opened = sep.AudioFileWriter, []

    class FullDiskAtSecondStem(real_writer):
        def __init__(self, path, *args, **kwargs):
            opened.append(path)
            super().__init__(path, *args, **kwargs)

        def write(self, block):
            if self.path == opened[1]:
                raise OSError(28, "No space left on device")
            super().write(block)

    monkeypatch.setattr(sep, "AudioFileWriter", FullDiskAtSecondStem)
    with pytest.raises(SystemExit):
        main([*argv, "--models", str(vocals_exp)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    needed = 4800 * 2 * (3 + 4) * 2   # samples x channels x bytes (PCM_24 stem + float32 temporary) x stems
    assert re.fullmatch(rf"error: {re.escape(str(out / 'song'))}: disk full: needed {needed / 1000:.1f} kB, "
                        rf"[0-9.]+ [kMGT]?B free there.*", err[0]), err[0]
    assert len(err) == 2 and "1 of 1 file(s) failed" in err[1]
    assert list(out.iterdir()) == []  # no stem, no temporary folder
    monkeypatch.setattr(sep, "AudioFileWriter", real_writer)
    main([*argv, "--models", str(vocals_exp)])
    made = _files(out)
    # another model's stems are not taken for done, nor replaced without --overwrite
    other = make_experiment(tmp_path, "vocals", tiny_model_args, seed=7)
    with pytest.raises(SystemExit):
        main([*argv, "--models", str(other)])
    err = capsys.readouterr().err
    assert f"error: {out / 'song'}: holds stems made with other models" in err and "--overwrite" in err
    assert _files(out) == made
    main([*argv, "--models", str(other), "--overwrite"])
    assert _files(out)["song/vocals.wav"] != made["song/vocals.wav"]
    with pytest.raises(SystemExit):  # other settings: refused too
        main([*argv, "--models", str(other), "--chunk_seconds", "0.3", "--overlap_seconds", "0.1"])
    assert "holds stems made with other settings" in capsys.readouterr().err
    # stems without a record (an interrupted or older run) are separated again
    (out / "song" / "separation.json").unlink()
    (out / "song" / "vocals.wav").unlink()
    main([*argv, "--models", str(other), "--overwrite"])
    assert sorted(p.name for p in (out / "song").iterdir()) == ["accompaniment.wav", "separation.json", "vocals.wav"]


def test_musdb18hq_folder_is_named_after_its_songs(tmp_path, vocals_exp, capsys):
    from data_helpers import make_hq_root

    root = make_hq_root(tmp_path / "musdb18hq", {"Song A": ("test", 0.4), "Song B": ("test", 0.3),
                                                 "Song C": ("train", 0.3)}, sr=8000)
    out = tmp_path / "out"
    main([str(root / "test"), "--models", str(vocals_exp), "--out", str(out)])
    assert sorted(_files(out)) == [f"Song {s}/{n}" for s in "AB" for n in ("accompaniment.wav", "separation.json",
                                                                          "vocals.wav")]
    # mixtures given as files, and a song folder given on its own, are named after their folder too
    out2 = tmp_path / "out2"
    main([str(root / "test" / "Song A" / "mixture.wav"), str(root / "test" / "Song B" / "mixture.wav"),
                   str(root / "train" / "Song C"), "--models", str(vocals_exp), "--out", str(out2)])
    assert sorted(p.name for p in out2.iterdir()) == ["Song A", "Song B", "Song C"]
    # a real collision is still refused, and names both files
    songs = tmp_path / "songs"
    songs.mkdir()
    for ext in ("wav", "flac"):
        sf.write(songs / f"x.{ext}", tone(0.3, 8000, 2).T, 8000)
    with pytest.raises(SystemExit):
        main([str(songs), "--models", str(vocals_exp), "--out", str(tmp_path / "out3")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "same output folder" in ln]
    assert len(err) == 1 and "x.wav" in err[0] and "x.flac" in err[0]


def test_unwritable_out_is_detected_before_separating(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    wav = tmp_path / "song.wav"
    sf.write(wav, tone(0.3, 8000, 2).T, 8000)
    with pytest.raises(SystemExit) as exit_info:  # models are not even loaded (this one does not exist)
        run(main, [str(wav), "--models", str(tmp_path / "no_model"), "--out", str(blocker / "stems")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {blocker / 'stems'}: the output folder cannot be written")


def test_library_separate_files_takes_its_settings_from_the_config(tmp_path, exps):
    """``separate_files(conf, ...)``: format, subtype, device and chunking are conf keys (the command's
    --format, --subtype, --device... are their shortcuts); bad values are one line before any work."""
    from asteroid_frugal.config import load_config
    from asteroid_frugal.separate import separate_files

    wav = tmp_path / "s.wav"
    sf.write(wav, tone(0.7, 8000, 2).T, 8000)
    conf = load_config(overrides=["separate.format=flac", "separate.subtype=PCM_16", "evaluation.device=cpu",
                                  "separate.precision=float32"])
    summary = separate_files(conf, [str(wav)], [str(exps["vocals"])], tmp_path / "out")
    assert summary == dict(files=1, done=1, skipped=0, failed=[], written={str(wav): {
        stem: str(tmp_path / "out" / "s" / f"{stem}.flac") for stem in ("vocals", "accompaniment")}})
    assert sf.info(str(tmp_path / "out" / "s" / "vocals.flac")).subtype == "PCM_16"
    assert separate_files(conf, [str(wav)], [str(exps["vocals"])], tmp_path / "out")["skipped"] == 1
    for bad, message in (("separate.format=ogg", "separate.format: expected wav or flac or mp3; got 'ogg'"),
                         ("separate.subtype=PCM_8", "separate.subtype PCM_8 is not available for wav "
                                                    "(choose PCM_16 or PCM_24 or FLOAT)")):
        with pytest.raises(FrugalError, match=re.escape(message)):
            separate_files(load_config(overrides=[bad]), [str(wav)], [str(tmp_path / "no_model")], tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_command_line_shortcuts_are_the_config_keys(tmp_path):
    from asteroid_frugal.cli.common import config_from_args
    from asteroid_frugal.cli.separate import build_parser

    args = build_parser().parse_args(["x.wav", "--models", "m", "--out", "o", "--format", "flac", "--subtype",
                                      "PCM_16", "--chunk_seconds", "0.5", "--block", "128", "--stream_precision",
                                      "int8", "--device", "cpu", "--precision", "bfloat16"])
    conf = config_from_args(args)
    assert (conf["separate"]["format"], conf["separate"]["subtype"], conf["separate"]["precision"]) == (
        "flac", "PCM_16", "bfloat16")
    assert conf["evaluation"]["chunk_seconds"] == 0.5 and conf["evaluation"]["device"] == "cpu"
    assert conf["streaming"] == dict(block=128, precision="int8")
    defaults = config_from_args(build_parser().parse_args(["x.wav", "--models", "m", "--out", "o"]))
    assert (defaults["separate"]["format"], defaults["separate"]["subtype"]) == ("wav", "PCM_24")


# ------------------------------------------------------------- levels, broken models, options, full disks
def test_a_model_producing_nan_fails_its_songs_in_one_line_and_writes_nothing(tmp_path, tiny_model_args, capsys):
    exp = make_experiment(tmp_path, "vocals", tiny_model_args)
    package = torch.load(exp / "best_model.pth", weights_only=True)
    for value in package["state_dict"].values():
        if value.is_floating_point():
            value.fill_(float("nan"))
    torch.save(package, exp / "best_model.pth")
    songs = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for i, song in enumerate(songs):
        sf.write(song, tone(0.5, 8000, 2, seed=i).T, 8000)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main([*map(str, songs), "--models", str(exp), "--out", str(out), "--precision", "float32"])
    assert exit_info.value.code == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    for song, line in zip(songs, err):     # each song is tried, and fails on its own line
        assert line == (f"error: {song}: model {exp / 'best_model.pth'} produced non-finite audio (NaN/inf); "
                        f"the song is not separated")
    assert err[2].startswith("error: 2 of 2 file(s) failed")
    assert not out.exists() or list(out.iterdir()) == []      # no stems, no separation.json
    with pytest.raises(SystemExit):     # int8 (auto on the CPU): such weights cannot be quantised, said as plainly
        main([str(songs[0]), "--models", str(exp), "--out", str(out), "--precision", "int8"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert err[0] == (f"error: {songs[0]}: model {exp / 'best_model.pth'} holds non-finite weights (NaN/inf): it "
                      f"cannot be quantised to int8; the song is not separated")
    assert not out.exists() or list(out.iterdir()) == []


LEVELS = {"normal": 0, "loud": 67, "quiet": -100}           # exponents: peaks 0.75, 1.1e20, 5.9e-31


def write_levels(folder) -> None:
    """One song at each of :data:`LEVELS` (FLOAT wav files ``<name>.wav``)."""
    mix = tone(0.8, 8000, 2)
    mix *= 0.75 / np.abs(mix).max()
    for name, exponent in LEVELS.items():
        sf.write(folder / f"{name}.wav", np.ldexp(mix, exponent).T, 8000, subtype="FLOAT")


def assert_stems_scale_with_the_level(out) -> None:
    """Each song of :func:`write_levels` separated into finite stems, the normal one's times its level."""
    for stem in ("vocals", "accompaniment"):
        normal = read_audio(out / "normal" / f"{stem}.wav")[0]
        assert np.abs(normal).max() > 0
        for name, exponent in LEVELS.items():
            est = read_audio(out / name / f"{stem}.wav")[0]
            assert np.isfinite(est).all()
            np.testing.assert_array_equal(np.ldexp(est, -exponent), normal)


def test_extreme_input_levels_give_the_normal_stems_times_the_level(tmp_path, vocals_exp):
    """A finite song at a 1e20 (or 1e-30) peak: finite stems, the normal-level song's times the scale."""
    write_levels(tmp_path)
    out = tmp_path / "out"
    main([*(str(tmp_path / f"{n}.wav") for n in LEVELS), "--models", str(vocals_exp), "--out", str(out),
          "--subtype", "FLOAT", "--precision", "float32"])
    assert_stems_scale_with_the_level(out)


def test_chunking_options_are_one_line_before_any_file_is_touched(tmp_path, vocals_exp, capsys):
    songs = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for song in songs:
        sf.write(song, tone(0.5, 8000, 2).T, 8000)
    out = tmp_path / "out"
    for options, message in ((["--chunk_seconds", "1", "--overlap_seconds", "0.8"],
                              "error: evaluation.overlap_seconds=0.8 (--overlap_seconds): expected 0 to half a "
                              "chunk (evaluation.chunk_seconds=1, so at most 0.5 s)"),
                             (["--chunk_seconds", "0"], "error: config: evaluation.chunk_seconds=0: expected a "
                                                        "value in (0, inf)"),
                             (["--chunk_seconds", "-5"], "error: config: evaluation.chunk_seconds=-5: expected a "
                                                         "value in (0, inf)")):
        with pytest.raises(SystemExit) as exit_info:
            run(main, [*map(str, songs), "--models", str(vocals_exp), "--out", str(out), *options])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines() == [message]
        assert not out.exists()


def test_a_disk_too_small_for_a_song_is_one_line_with_the_space_needed(tmp_path, vocals_exp, monkeypatch, capsys):
    """wav: the free space is checked before the song is separated; flac (compressed, so only a
    failed write tells): a writer's error on a full disk (libsndfile's "System error.") is the
    same one line. Nothing is counted as done; the other songs go on."""
    import asteroid_frugal.separate as sep
    import asteroid_frugal.utils as utils

    song = tmp_path / "song.wav"
    sf.write(song, tone(0.5, 8000, 2).T, 8000)
    out = tmp_path / "out"
    monkeypatch.setattr(sep, "free_bytes", lambda path: 1000)
    monkeypatch.setattr(sep, "separate_stream", lambda *a, **k: pytest.fail("separated despite a full disk"))
    with pytest.raises(SystemExit):
        main([str(song), "--models", str(vocals_exp), "--out", str(out), "--subtype", "PCM_16"])
    err = capsys.readouterr().err.splitlines()
    # 4000 x 2 channels x (2 bytes of PCM_16 + 4 of the float32 temporary) x 2 stems
    assert err[0].startswith(f"error: {out / 'song'}: disk full: needed 96.0 kB, ")
    monkeypatch.undo()

    class SndfileFull(sep.AudioFileWriter):
        def write(self, block):
            raise sf.LibsndfileError(2, "")      # what soundfile raises on ENOSPC: "System error."

    monkeypatch.setattr(sep, "AudioFileWriter", SndfileFull)
    monkeypatch.setattr(utils, "free_bytes", lambda path: 1000)
    with pytest.raises(SystemExit):
        main([str(song), "--models", str(vocals_exp), "--out", str(out), "--format", "flac"])
    err = capsys.readouterr().err.splitlines()
    assert re.match(rf"error: {re.escape(str(out / 'song'))}: disk full: needed 112.0 kB, 1.0 kB free", err[-2])
    assert list(out.iterdir()) == []


def test_separation_onto_a_real_full_file_system(tmp_path, vocals_exp, capsys):
    """A 100 kB tmpfs (root only): a song too large for it fails in one line naming the space needed
    and free, as wav (checked first) and flac (the write fails); a small song still fits."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.decode().strip()[:80] or 'not root'})")
    try:
        big, small = tmp_path / "big.wav", tmp_path / "small.wav"
        noise = np.random.default_rng(0).standard_normal((2, 40000)).astype(np.float32) * 0.1
        sf.write(big, noise.T, 8000)              # 5 s: 320 kB of PCM_16 stems, 640 kB of float32 temporaries
        sf.write(small, tone(0.3, 8000, 2).T, 8000)
        for fmt in ("wav", "flac"):
            out = mount / fmt
            with pytest.raises(SystemExit):
                main([str(big), str(small), "--models", str(vocals_exp), "--out", str(out), "--format", fmt,
                      "--subtype", "PCM_16", "--precision", "float32"])
            err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
            assert re.match(rf"error: {re.escape(str(out / 'big'))}: disk full: needed 960.0 kB, [0-9.]+ k?B free",
                            err[0]), err
            assert err[1].startswith("error: 1 of 2 file(s) failed")
            assert sorted(p.name for p in out.iterdir()) == ["small"]   # no partial folder for big
            assert (out / "small" / "separation.json").is_file()
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_report_writes_a_page_over_every_song_of_out(tmp_path, vocals_exp):
    from test_reports_listening import ODD, check_page

    songs, out = tmp_path / "songs", tmp_path / "out"
    songs.mkdir()
    sf.write(songs / f"{ODD}.wav", tone(0.4, 8000, 2).T, 8000)
    main([str(songs / f"{ODD}.wav"), "--models", str(vocals_exp), "--out", str(out)])
    assert not (out / "index.html").exists()                      # only when asked
    sf.write(songs / "second.flac", tone(0.3, 8000, 1).T, 8000)
    main([str(songs / "second.flac"), "--models", str(vocals_exp), "--out", str(out), "--report"])
    parser = check_page(out / "index.html")
    links = {link for _, link in parser.links}
    assert "".join(parser.text).count("vocals model") == 1                 # one model set: listed once
    assert ODD in "".join(parser.text) and "second" in "".join(parser.text)   # the earlier run's song too
    assert {"../songs/second.flac", f"{quote(ODD)}/vocals.wav", f"{quote(ODD)}/accompaniment.wav"} <= links
    assert sum(tag == "img" for tag, _ in parser.links) == 5     # the linked mixture and four stems


@pytest.mark.parametrize("template", ["{track}_{stem}.{ext}", "{stem}/{track}.{ext}"])
def test_report_finds_songs_written_with_any_filename_template(tmp_path, vocals_exp, template):
    """Records named by the template (``song_separation.json``, ``separation/song.json``) are found,
    their stems linked from the record's ``files``; a JSON file that is not a record is ignored."""
    from test_reports_listening import check_page

    songs, out = tmp_path / "songs", tmp_path / "out"
    (songs / "album").mkdir(parents=True)
    sf.write(songs / "album" / "one.wav", tone(0.4, 8000, 2).T, 8000)
    sf.write(songs / "two.wav", tone(0.3, 8000, 2).T, 8000)
    out.mkdir()
    (out / "notes.json").write_text('{"stems": "not a record"}')
    main([str(songs), "--models", str(vocals_exp), "--out", str(out), "--filename", template, "--report"])
    parser = check_page(out / "index.html")
    audio = {link for tag, link in parser.links if tag == "audio"}
    stems = {str((out / t).relative_to(out)) for t in (template.format(track=track, stem=stem, ext="wav")
                                                        for track in ("album/one", "two")
                                                        for stem in ("vocals", "accompaniment"))}
    assert stems | {"../songs/album/one.wav", "../songs/two.wav"} == audio
    text = "".join(parser.text)
    assert "album/one" in text and "two" in text and "no file" not in text


# ------------------------------------------------------------- any length; output conventions
def test_the_command_block_by_block_equals_the_whole_song_in_memory(tmp_path, exps, tiny_model_args):
    """A song far longer than the blocks it is read, resampled and written in (1000 frames) and than
    the chunks (1 s), at a rate no model runs at (one model at 16 kHz): the written FLOAT stems equal
    separate_stems on the whole song in memory, to float precision; no temporary is left."""
    from asteroid_frugal.inference import separate_stems

    bass16 = make_experiment(tmp_path, "bass", {**tiny_model_args, "sample_rate": 16000}, seed=5)
    specs = [f"vocals={exps['vocals']}", f"drums={exps['drums']}", f"bass={bass16}"]
    wav = tmp_path / "song.wav"
    mix = tone(6.0, 22050, 2)
    sf.write(wav, mix.T, 22050, subtype="FLOAT")
    out = tmp_path / "out"
    main([str(wav), "--models", *specs, "--out", str(out), "--subtype", "FLOAT", "--clip", "none", "--precision",
          "float32", "--chunk_seconds", "1", "--overlap_seconds", "0.2", "--batch_chunks", "2",
          "--set", "separate.block_frames=1000"])
    ref = separate_stems(load_target_models(specs, "cpu"), mix, 22050, 1.0, 0.2, 2, precision="float32")
    for name, stem in ref.items():
        got, sr = read_audio(out / "song" / f"{name}.wav")
        assert sr == 22050 and got.shape == mix.shape
        np.testing.assert_allclose(got, stem, rtol=0, atol=1e-6 * np.abs(stem).max(), err_msg=name)
    assert sorted(p.name for p in out.iterdir()) == ["song"]


def test_only_the_stems_asked_for_are_written_and_their_models_run(tmp_path, exps, caplog, capsys):
    wav = tmp_path / "song.wav"
    sf.write(wav, tone(1.0, 8000, 2).T, 8000)
    specs = [f"{t}={p}" for t, p in exps.items()]
    caplog.set_level("INFO", logger="asteroid_frugal")
    main([str(wav), "--models", *specs, "--out", str(tmp_path / "out"), "--stems", "accompaniment,vocals"])
    assert sorted(p.name for p in (tmp_path / "out" / "song").iterdir()) == [
        "accompaniment.wav", "separation.json", "vocals.wav"]
    record = yaml.safe_load((tmp_path / "out" / "song" / "separation.json").read_text())
    assert record["stems"] == ["vocals", "accompaniment"] and [m["target"] for m in record["models"]] == ["vocals"]
    assert any("not run, none of their stems asked for: drums, bass" in r.getMessage() for r in caplog.records)
    full = tmp_path / "full"
    main([str(wav), "--models", *specs, "--out", str(full)])
    for name in ("vocals", "accompaniment"):      # the same stems as when all are written
        np.testing.assert_array_equal(read_audio(tmp_path / "out" / "song" / f"{name}.wav")[0],
                                      read_audio(full / "song" / f"{name}.wav")[0])
    # a stem no model given makes: one line, before any file is touched
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run(main, [str(wav), "--models", specs[0], specs[1], "--out", str(tmp_path / "new"), "--stems", "other"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: stems other: not made by the models given (vocals+drums make vocals, drums, rest, accompaniment)"]
    assert not (tmp_path / "new").exists()


def test_file_name_template(tmp_path, vocals_exp, capsys):
    songs = tmp_path / "songs"
    (songs / "live").mkdir(parents=True)
    sf.write(songs / "a.flac", tone(0.5, 8000, 2).T, 8000)
    sf.write(songs / "live" / "b.wav", tone(0.4, 8000, 1).T, 8000)
    out = tmp_path / "out"
    argv = [str(songs), "--models", str(vocals_exp), "--out", str(out),
            "--filename", "{stem}/{track}.{input_ext}.{ext}"]
    summary = main(argv)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "accompaniment/a.flac.wav", "accompaniment/live/b.wav.wav", "separation/a.flac.json",
        "separation/live/b.wav.json", "vocals/a.flac.wav", "vocals/live/b.wav.wav"]
    assert sorted(p.name for p in out.iterdir()) == ["accompaniment", "separation", "vocals"]   # no empty folder
    assert summary["written"][str(songs / "a.flac")] == {"vocals": str(out / "vocals" / "a.flac.wav"),
                                                         "accompaniment": str(out / "accompaniment" / "a.flac.wav")}
    record = yaml.safe_load((out / "separation" / "a.flac.json").read_text())
    assert record["files"] == {"vocals": "../vocals/a.flac.wav", "accompaniment": "../accompaniment/a.flac.wav"}
    assert main(argv)["skipped"] == 2                                    # the records are found again
    flat = tmp_path / "flat"
    main([str(songs / "a.flac"), "--models", str(vocals_exp), "--out", str(flat), "--filename", "{track}_{stem}.{ext}"])
    assert sorted(p.name for p in flat.iterdir()) == ["a_accompaniment.wav", "a_separation.json", "a_vocals.wav"]
    with pytest.raises(SystemExit):         # two songs onto the same files: the second is refused
        main([str(songs), "--models", str(vocals_exp), "--out", str(tmp_path / "same"), "--filename", "{stem}.{ext}"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "same output" in ln]
    assert len(err) == 1 and "b.wav" in err[0] and "a.flac" in err[0]
    for template, message in (("{track}/{name}.{ext}", "unknown placeholder {name}"),
                              ("{track}/mix.{ext}", "needs {stem}"), ("/abs/{stem}.{ext}", "inside the output"),
                              ("../{stem}.{ext}", "inside the output"), ("{track}/{stem:>9}.{ext}", "placeholder")):
        with pytest.raises(SystemExit) as exit_info:
            run(main, [str(songs), "--models", str(vocals_exp), "--out", str(tmp_path / "bad"), "--filename", template])
        assert exit_info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: separate.filename (--filename)") and message in lines[0]
    assert not (tmp_path / "bad").exists()


def test_mp3_output_through_ffmpeg(tmp_path, vocals_exp, monkeypatch, capsys):
    import shutil

    wav = tmp_path / "song.wav"
    sf.write(wav, tone(1.0, 8000, 2).T, 8000)
    out = tmp_path / "out"
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    main([str(wav), "--models", str(vocals_exp), "--out", str(out), "--format", "mp3", "--mp3_bitrate", "64k"])
    assert sorted(p.name for p in (out / "song").iterdir()) == ["accompaniment.mp3", "separation.json", "vocals.mp3"]
    stem, sr = read_audio(out / "song" / "vocals.mp3")
    assert sr == 8000 and stem.shape[0] == 2 and abs(stem.shape[-1] - 8000) < 2000 and np.abs(stem).max() > 0
    settings = yaml.safe_load((out / "song" / "separation.json").read_text())["settings"]
    assert (settings["format"], settings["subtype"], settings["mp3_bitrate"]) == ("mp3", None, "64k")
    for options, message in ((["--mp3_bitrate", "fast"], "separate.mp3_bitrate (--mp3_bitrate): expected bits"),
                             (["--clip", "soft"], "separate.clip (--clip): expected rescale, clamp, none; got 'soft'")):
        with pytest.raises(SystemExit):
            run(main, [str(wav), "--models", str(vocals_exp), "--out", str(tmp_path / "x"), "--format", "mp3",
                       *options])
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {message}")
    monkeypatch.setattr(shutil, "which", lambda name: None)   # no ffmpeg: one line before any work
    with pytest.raises(SystemExit):
        run(main, [str(wav), "--models", str(vocals_exp), "--out", str(tmp_path / "x"), "--format", "mp3"])
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --format mp3 is encoded by ffmpeg, which is not on PATH: install it (Debian/Ubuntu: sudo apt-get "
        "install ffmpeg)"]
    assert not (tmp_path / "x").exists()


def test_samples_beyond_full_scale_rescale_clamp_or_none(tmp_path, exps, caplog):
    """rescale (the default): one factor for all stems of the song, logged and recorded, so the
    written PCM_24 stems still sum to the mixture times it (targets + other) within the format's
    precision; clamp: each stem clipped; none: PCM clips (a warning); a FLOAT wav is written as is."""
    wav = tmp_path / "loud.wav"
    mix = tone(1.5, 8000, 2)
    mix *= 3.0 / np.abs(mix).max()                     # peaks at 3: stems beyond full scale
    sf.write(wav, mix.T, 8000, subtype="FLOAT")
    specs = [f"{t}={p}" for t, p in exps.items()]
    caplog.set_level("INFO", logger="asteroid_frugal")
    runs = {}
    for mode in ("rescale", "clamp", "none"):
        out = tmp_path / mode
        main([str(wav), "--models", *specs, "--out", str(out), "--clip", mode])
        runs[mode] = {n: read_audio(out / "loud" / f"{n}.wav")[0] for n in stem_names(list(exps))}
    main([str(wav), "--models", *specs, "--out", str(tmp_path / "float"), "--subtype", "FLOAT"])
    float_stems = {n: read_audio(tmp_path / "float" / "loud" / f"{n}.wav")[0] for n in stem_names(list(exps))}
    factor = yaml.safe_load((tmp_path / "rescale" / "loud" / "separation.json").read_text())["clip_factor"]
    peak = max(np.abs(s).max() for s in float_stems.values())
    assert peak > 1 and factor == pytest.approx(1 / peak, rel=1e-6)
    assert any(f"all scaled by {factor:.4f} (--clip rescale)" in r.getMessage() for r in caplog.records)
    rescaled = runs["rescale"]
    total = rescaled["vocals"] + rescaled["drums"] + rescaled["bass"] + rescaled["other"]
    np.testing.assert_allclose(total, factor * mix, rtol=0, atol=4 * 2.0 ** -23 + 1e-6)    # 4 stems of PCM_24
    for name, stem in float_stems.items():
        np.testing.assert_allclose(rescaled[name], stem * factor, rtol=0, atol=2.0 ** -23 + 1e-7)
        np.testing.assert_allclose(runs["clamp"][name], np.clip(stem, -1, 1), rtol=0, atol=2.0 ** -23 + 1e-7)
        np.testing.assert_allclose(runs["none"][name], np.clip(stem, -1, 1), rtol=0, atol=2.0 ** -23 + 1e-7)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("samples beyond full scale clamped (--clip clamp)" in w for w in warnings)
    assert any("samples beyond full scale are clipped (--clip rescale scales" in w for w in warnings)
    unscaled = yaml.safe_load((tmp_path / "float" / "loud" / "separation.json").read_text())
    assert unscaled["clip_factor"] == 1.0 and np.abs(float_stems["other"]).max() > 1    # FLOAT: as is


def test_the_command_hands_freed_buffers_back_to_the_system():
    """separate.mmap_threshold_mb: a fixed glibc mmap threshold (null: the C library's policy)."""
    import platform

    from asteroid_frugal.separate import limit_heap

    assert limit_heap(None) is False
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert limit_heap(16) is True


# ---- the same faults on the int8 onnxruntime path as on float32: non-finite input, extreme levels,
# a model giving NaN, a silent song, a full disk
# every way the int8 onnxruntime path is taken: asked for, and auto's choice for an LSTM this wide
INT8 = {"int8": ["--precision", "int8"],
        "auto": ["--precision", "auto", "--set", "separate.auto_int8_min_hidden=8"]}


def _error_lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]


@pytest.mark.parametrize("how", sorted(INT8))
def test_int8_extreme_levels_and_a_silent_song(tmp_path, vocals_exp, how, caplog):
    """A peak of 1e20 (or 1e-30) gives the normal song's stems times the level, bit for bit, on
    onnxruntime too; a silent song gets silent stems and one warning; exit 0, each song counted."""
    write_levels(tmp_path)
    sf.write(tmp_path / "silent.wav", np.zeros((4000, 2), np.float32), 8000)
    out = tmp_path / "out"
    caplog.set_level("INFO", logger="asteroid_frugal")
    summary = main([*(str(tmp_path / f"{n}.wav") for n in (*LEVELS, "silent")), "--models", str(vocals_exp),
                    "--out", str(out), "--subtype", "FLOAT", *INT8[how]])
    assert summary["done"] == 4 and summary["failed"] == []
    assert any("precision int8, onnxruntime" in r.getMessage() for r in caplog.records)
    assert_stems_scale_with_the_level(out)
    for stem in ("vocals", "accompaniment"):
        assert not np.any(read_audio(out / "silent" / f"{stem}.wav")[0])
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records if r.levelname == "WARNING"] == [
        "silent (every sample is zero): its stems are silent"]


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_a_song_holding_nan_or_inf_is_one_line_and_writes_nothing(tmp_path, vocals_exp, precision, capsys):
    songs = []
    for name, bad in (("nan", np.nan), ("inf", -np.inf)):
        mix = tone(0.5, 8000, 2)
        mix[1, 100] = bad
        songs.append(tmp_path / f"{name}.wav")
        sf.write(songs[-1], mix.T, 8000, subtype="FLOAT")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main([*map(str, songs), "--models", str(vocals_exp), "--out", str(out), "--precision", precision])
    assert exit_info.value.code == 1
    assert _error_lines(capsys) == [f"error: {s}: contains NaN or infinite samples" for s in songs] + [
        f"error: 2 of 2 file(s) failed: {songs[0]}, {songs[1]}"]
    assert not out.exists() or list(out.iterdir()) == []


def test_a_model_with_nan_weights_fails_on_auto_int8_in_one_line(tmp_path, vocals_exp, capsys):
    package = torch.load(vocals_exp / "best_model.pth", weights_only=True)
    package["state_dict"]["decoder.B.weight"].view(-1)[0] = float("nan")
    torch.save(package, vocals_exp / "best_model.pth")
    song = tmp_path / "a.wav"
    sf.write(song, tone(0.5, 8000, 2).T, 8000)
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main([str(song), "--models", str(vocals_exp), "--out", str(out), *INT8["auto"]])
    assert _error_lines(capsys)[0] == (f"error: {song}: model {vocals_exp / 'best_model.pth'} holds non-finite weights "
                                  f"(NaN/inf): it cannot be quantised to int8; the song is not separated")
    assert not out.exists() or list(out.iterdir()) == []


def test_int8_onto_a_real_full_disk_is_one_line_naming_the_space_needed(tmp_path, vocals_exp, capsys):
    """A 300 kB tmpfs (root only): a 3 s song's FLOAT stems and temporaries (768 kB) are refused before
    the song is separated, in one line; nothing is left on the disk."""
    song = tmp_path / "song.wav"
    sf.write(song, (0.3 * np.random.default_rng(0).standard_normal((24000, 2))).astype(np.float32), 8000)
    with small_disk(tmp_path / "small", 300) as disk:
        out = disk / "out"
        with pytest.raises(SystemExit):
            main([str(song), "--models", str(vocals_exp), "--out", str(out), "--subtype", "FLOAT",
                  "--precision", "int8"])
        err = _error_lines(capsys)
        assert re.fullmatch(rf"error: {re.escape(str(out / 'song'))}: disk full: needed 768\.0 kB, [0-9.]+ kB free "
                            r"there; free some space and run the command again", err[0]), err
        assert [p for p in disk.rglob("*") if p.is_file()] == []


def test_a_full_disk_at_the_record_leaves_no_stems_and_names_the_song(tmp_path, vocals_exp, monkeypatch, capsys):
    """The stems fit, the record (written last) does not: the song is not counted as done, its stems
    are not left behind, and the line names the song and the space it needs."""
    import asteroid_frugal.separate as sep
    from asteroid_frugal.utils import DiskFullError

    def full(path, *args, **kwargs):
        raise DiskFullError(f"{path}: disk full: needed 702 B, 0 B free there; free some space and run the "
                            f"command again")

    monkeypatch.setattr(sep, "write_json_atomic", full)
    song = tmp_path / "song.wav"
    sf.write(song, tone(0.5, 8000, 2).T, 8000)
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main([str(song), "--models", str(vocals_exp), "--out", str(out), "--format", "flac", "--precision", "int8"])
    err = _error_lines(capsys)
    assert err[0].startswith(f"error: {out / 'song'}: disk full: needed "), err
    assert not (out / "song").exists() or list((out / "song").iterdir()) == []
