"""Fault cases: bad values, crafted or corrupt files, kills and interruptions. Each must end in
one line naming what to fix (or a logged skip), run no code from a file, and lose no work.
The next fault found belongs here."""
import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

from asteroid_frugal.config import load_config
from asteroid_frugal.data.default_corpus import CorpusParams, generate_corpus
from asteroid_frugal.inference import load_model_package
from asteroid_frugal.model import FrugalTasNet
from asteroid_frugal.separate import main as separate_main
from asteroid_frugal.streaming import StreamingSeparator
from asteroid_frugal.train import load_checkpoint, train
from asteroid_frugal.utils import FrugalError, UnsafeFileError, run_cli

from conftest import REPO
from data_helpers import base_conf
from test_train import TINY, tiny_conf
from toy_data import ToyTargetRest


@pytest.fixture
def causal_model(tiny_model_args):
    return FrugalTasNet(**{**tiny_model_args, "bidirectional": False, "causal": True}).eval()


def test_bad_stream_blocks_are_clear_errors(causal_model):
    sep = StreamingSeparator(causal_model)
    with pytest.raises(ValueError, match="at least one sample"):
        sep.process(torch.zeros(2, 0))
    with pytest.raises(ValueError, match="channel"):
        sep.process(torch.zeros(3, 10))
    with pytest.raises(ValueError, match=r"\(channels, n\)"):
        sep.process(torch.zeros(10))
    sep.process(torch.zeros(2, 10))
    with pytest.raises(ValueError, match="reset"):
        sep.process(torch.zeros(1, 10))
    with pytest.raises(ValueError, match="precision"):
        StreamingSeparator(causal_model, precision="fp8")


def test_streaming_a_bidirectional_model_is_a_clear_error(tiny_model_args):
    with pytest.raises(FrugalError, match="not a causal model"):
        StreamingSeparator(FrugalTasNet(**tiny_model_args))


def _cli(main, argv, capsys):
    """Run a CLI ``main`` as its console script does (``run_cli``); returns (exit code, stderr)."""
    from asteroid_frugal.utils import run_cli

    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(argv))
    return exit_info.value.code, capsys.readouterr().err


def test_cli_stream_and_export_refuse_a_bidirectional_model(tmp_path, tiny_model_args, capsys):
    import numpy as np
    import soundfile as sf

    from asteroid_frugal import export, separate

    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save(FrugalTasNet(**tiny_model_args).serialize(), exp / "best_model.pth")
    (exp / "conf.yml").write_text(yaml.safe_dump({"data": {"target": "vocals"}}))
    sf.write(tmp_path / "a.wav", np.full((800, 2), 0.1, np.float32), 8000)
    code, err = _cli(separate.main, [str(tmp_path / "a.wav"), "--models", str(exp), "--out",
                                     str(tmp_path / "stems"), "--stream", "--device", "cpu"], capsys)
    assert code == 2 and "not a causal model" in err and "Traceback" not in err
    code, err = _cli(export.main, ["--model", str(exp), "--format", "onnx", "--streaming",
                                   "--out", str(tmp_path / "x.onnx")], capsys)
    assert code == 2 and "not a causal model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "stems").exists()
    code, err = _cli(export.main, ["--model", str(tmp_path / "missing"), "--format", "onnx",
                                   "--out", str(tmp_path / "x.onnx")], capsys)
    assert code == 2 and "missing: model file not found" in err


def test_inconsistent_causal_config_is_a_one_line_error():
    from asteroid_frugal.config import load_config
    from asteroid_frugal.train import build_model

    conf = load_config(overrides=["masker.causal=true"])  # bidirectional left on
    with pytest.raises(FrugalError, match="unidirectional"):
        build_model(conf)
    conf = load_config(overlays=[REPO / "egs/realtime/conf.yml"], overrides=["filterbank.stride=110"])
    with pytest.raises(FrugalError, match="stride"):
        build_model(conf)
    assert build_model(load_config(overlays=[REPO / "egs/realtime/conf.yml"],
                                   overrides=["masker.hidden_size=8", "filterbank.n_filters=8"])).causal


def test_bad_runtime_values_are_one_line_errors(tmp_path):
    for args, message in ((["--threads", "0"], "error: --threads: threads must be an integer >= 1"),
                          (["--set", "runtime.omp_wait_policy=spin"],
                           "error: runtime.omp_wait_policy: omp_wait_policy must be auto, passive, active or null")):
        proc = subprocess.run([sys.executable, "local/evaluate.py", "--exp_dir", str(tmp_path), *args],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("bad, message", [
    ("optim.lr=abc", "optim.lr='abc': expected a number"),
    ("training.early_stop_patience=abc", "training.early_stop_patience='abc': expected an integer"),
    ("training.epochs=2.5", "training.epochs=2.5: expected an integer"),
    ("scheduler.factor=1.5", "scheduler.factor=1.5: expected a value in (0, 1)"),
    ("optim.lr=-0.1", "optim.lr=-0.1: expected a value in (0, inf)"),
    ("optim.lr=.nan", "optim.lr=nan: expected a finite number"),
    ("shaping.augment_gain=1", "shaping.augment_gain=1: expected true or false"),
    ("shaping.augment_eq_db=30", "shaping.augment_eq_db=30: expected a value in [0, 24]"),
    ("data.extra_roots=some/dir", "data.extra_roots='some/dir': expected a list"),
    ("filterbank.stride=half", "filterbank.stride='half': expected an integer or null"),
    ("training.devices=1.5", "training.devices=1.5: expected an integer or a string or a list"),
    ("training=3", "training=3: expected a mapping"),
])
def test_config_values_are_checked_before_any_work(bad, message):
    with pytest.raises(FrugalError) as err:
        load_config(overrides=[bad])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_config_values_of_every_accepted_type_pass():
    conf = load_config(overrides=["optim.lr=1e-3", "evaluation.overlap_seconds=0.5", "training.devices=2",
                                  "training.devices=[0, 1]", "filterbank.stride=110", "evaluation.max_tracks=3",
                                  "data.musdb_root=/data/musdb18", "training.gradient_clipping=5"])
    assert conf["optim"]["lr"] == 0.001  # PyYAML reads 1e-3 as a string: converted where a number is expected
    assert conf["training"]["devices"] == [0, 1] and conf["filterbank"]["stride"] == 110
    for overlay in sorted(REPO.glob("egs/*/*.yml")):
        if overlay.name != "experiment.yml":  # experiment specs are not config overlays
            load_config(overlays=[overlay])


def test_bad_value_stops_training_before_any_work(tmp_path, capsys):
    """The issue's case: early_stop_patience=abc was accepted, the run crashed later, its epochs were lost."""
    from asteroid_frugal.train import main

    exp = tmp_path / "exp" / "vocals"
    with pytest.raises(SystemExit) as exit_info:  # what run.sh's stage 3 runs (local/train.py)
        run_cli(lambda: main(["--exp_dir", str(exp), "--set", "training.early_stop_patience=abc"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: config: training.early_stop_patience='abc': expected an integer"]
    assert not exp.exists()


# --------------------------------------------------------- files that would run code
class _RunsCode:
    """Pickles as a call to ``Path.touch(marker)``: unpickling it (weights_only=False) creates the marker."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def plant(path, marker, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "epoch": 0, "payload": _RunsCode(marker), **extra}, path)
    return path


def test_crafted_checkpoint_is_refused_and_nothing_runs(tmp_path, caplog):
    marker = tmp_path / "marker"
    exp = tmp_path / "exp" / "vocals"
    evil = plant(exp / "checkpoints" / "last.ckpt", marker)
    with pytest.raises(UnsafeFileError) as err:
        train(tiny_conf("training.epochs=1"), exp, ToyTargetRest(4, length=400), ToyTargetRest(1, length=400))
    assert str(evil) in str(err.value) and "refused" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()
    with pytest.raises(UnsafeFileError):  # the best checkpoint, read to export best_model.pth
        load_checkpoint(evil)
    assert not marker.exists()


def test_lightning_resume_cannot_unpickle_code_either(tmp_path, monkeypatch):
    """Defence in depth: even a file that got past our check is loaded by Lightning with weights_only=True."""
    import asteroid_frugal.train as train_module

    marker = tmp_path / "marker"
    evil = plant(tmp_path / "exp" / "checkpoints" / "last.ckpt", marker)
    monkeypatch.setattr(train_module, "_last_checkpoint", lambda ckpt_dir: evil)
    with pytest.raises(Exception, match="Weights only load failed"):
        train(tiny_conf("training.epochs=1"), tmp_path / "exp", ToyTargetRest(4, length=400),
              ToyTargetRest(1, length=400))
    assert not marker.exists()


def test_truncated_checkpoint_is_skipped_with_a_warning(tmp_path, caplog):
    exp = tmp_path / "exp"
    conf = tiny_conf("training.epochs=1")
    train(conf, exp, ToyTargetRest(4, length=400), ToyTargetRest(1, length=400))
    (exp / "training_done.json").unlink()
    last = exp / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    summary = train(tiny_conf("training.epochs=2"), exp, ToyTargetRest(4, length=400), ToyTargetRest(1, length=400))
    assert summary["epochs_done"] == 2
    assert any("unreadable checkpoint skipped" in r.getMessage() and "last.ckpt" in r.getMessage()
               for r in caplog.records)


def test_audio_file_given_as_a_model_says_what_it_is(tmp_path):
    wav = tmp_path / "song.wav"
    sf.write(wav, np.zeros((800, 2), np.float32), 8000)
    with pytest.raises(FrugalError) as err:
        load_model_package(wav)
    assert str(err.value) == (f"{wav}: not a loadable model file (best_model.pth, or an experiment or publish "
                              f"folder holding one): it is a WAV audio file")
    marker = tmp_path / "marker"
    with pytest.raises(UnsafeFileError, match="nothing in it was run .*only for a file you trust"):
        load_model_package(plant(tmp_path / "model.pth", marker, model_name="FrugalTasNet", model_args={}))
    assert not marker.exists()


# ------------------------------------------------------------- kill and resume
RESUME_RUNNER = """
import sys, time
sys.path[:0] = [{repo!r}, {tests!r}]
import torch; torch.set_num_threads(1)
from asteroid_frugal.config import load_config
from asteroid_frugal.train import FrugalSystem, train
from asteroid_frugal.utils import setup_logging
from toy_data import ToyTargetRest

setup_logging()
CURVE = [10.0, 9.0] + [9.5] * 30  # best at epoch 1, then no improvement: the LR halves after every epoch

def scripted_validation(self, batch, batch_nb):
    self.log("val_loss", torch.tensor(CURVE[self.current_epoch]), on_epoch=True, batch_size=1)

FrugalSystem.validation_step = scripted_validation

class Slow(ToyTargetRest):
    def __getitem__(self, i):
        time.sleep({delay})
        return super().__getitem__(i)

conf = load_config(overrides={overrides!r})
train(conf, {exp!r}, Slow(8, length=400), ToyTargetRest(1, length=400, seed=1))
"""
RESUME_CONF = [*TINY, "training.epochs=30", "scheduler.patience=1", "training.early_stop_patience=3"]


def _resume_runner(exp, delay):
    code = RESUME_RUNNER.format(repo=str(REPO), tests=str(REPO / "tests"), delay=delay, exp=str(exp),
                                overrides=RESUME_CONF)
    return [sys.executable, "-c", code]


def _last_epoch(last):
    try:
        return torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    except Exception:  # not written yet, or being written
        return -1


def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path):
    """Killed after the checkpoint of epoch 2 (the first epoch that changes the LR), resumed: same LR
    history, scheduler and early-stopping state, and weights as a run never interrupted."""
    ref_exp, exp = tmp_path / "reference", tmp_path / "killed"
    reference = subprocess.Popen(_resume_runner(ref_exp, 0.0), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc = subprocess.Popen(_resume_runner(exp, 0.1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300  # a busy machine takes long to import and start
    try:
        while time.time() < deadline and proc.poll() is None and _last_epoch(exp / "checkpoints" / "last.ckpt") < 2:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        _, ref_err = reference.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL and not (exp / "training_done.json").exists()
    assert reference.returncode == 0, ref_err[-2000:]
    resumed = subprocess.run(_resume_runner(exp, 0.0), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr

    done = [json.loads((e / "training_done.json").read_text()) for e in (ref_exp, exp)]
    assert done[0]["stop_reason"] == done[1]["stop_reason"] == "early_stopping"
    assert done[0]["epochs_done"] == done[1]["epochs_done"]
    lr = [pd.read_csv(e / "logs" / "csv" / "metrics.csv")[["epoch", "lr"]].dropna().groupby("epoch")["lr"].last()
          for e in (ref_exp, exp)]
    assert list(lr[0].index) == list(range(5)) and lr[0].tolist() == pytest.approx([1e-3] * 3 + [5e-4, 2.5e-4])
    assert lr[1].tolist() == pytest.approx(lr[0].tolist())
    ckpts = [load_checkpoint(e / "checkpoints" / "last.ckpt") for e in (ref_exp, exp)]
    sched = [c["lr_schedulers"][0] for c in ckpts]
    for key in ("_last_lr", "num_bad_epochs", "last_epoch", "best"):
        assert sched[1][key] == pytest.approx(sched[0][key]), key
    stops = [next(v for k, v in c["callbacks"].items() if k.startswith("EarlyStopping")) for c in ckpts]
    assert stops[1]["wait_count"] == stops[0]["wait_count"] and stops[1]["stopped_epoch"] == stops[0]["stopped_epoch"]
    assert float(stops[1]["best_score"]) == float(stops[0]["best_score"])
    assert ckpts[1]["global_step"] == ckpts[0]["global_step"]
    for key, value in ckpts[0]["state_dict"].items():
        torch.testing.assert_close(ckpts[1]["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key)


# ------------------------------------------------------------------- separation
KILL_RUNNER = """
import os, signal, sys
sys.path[:0] = [{repo!r}]
import torch; torch.set_num_threads(1)
import asteroid_frugal.separate as sep

real_write, written = sep.write_audio, []

def write_then_die(*args, **kwargs):
    if written:  # SIGKILL between the first and the second stem of the first song
        os.kill(os.getpid(), signal.SIGKILL)
    written.append(args[0])
    real_write(*args, **kwargs)

sep.write_audio = write_then_die
sep.main({argv!r})
"""


def _tone(seconds, sr, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    sig = 0.3 * np.sin(2 * np.pi * (180 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.shape)
    return np.stack([sig, 0.8 * sig]).astype(np.float32)


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def vocals_exp(tmp_path, tiny_model_args):
    from test_separate import make_experiment

    return make_experiment(tmp_path, "vocals", tiny_model_args)


def test_separation_killed_between_stems_is_redone(tmp_path, vocals_exp):
    songs = tmp_path / "songs"
    songs.mkdir()
    for i, name in enumerate(("a", "b")):
        sf.write(songs / f"{name}.wav", _tone(0.6, 8000, i).T, 8000)
    argv = [str(songs), "--models", str(vocals_exp), "--chunk_seconds", "0.5", "--overlap_seconds", "0.1"]
    separate_main([*argv, "--out", str(tmp_path / "reference")])
    out = tmp_path / "out"
    code = KILL_RUNNER.format(repo=str(REPO), argv=[*argv, "--out", str(out)])
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (out / "a").exists()  # nothing published for the song being written
    separate_main([*argv, "--out", str(out)])  # the same command again
    assert _files(out) == _files(tmp_path / "reference")  # all stems, identical; no temporaries left
    assert sorted(_files(out)) == [f"{s}/{n}" for s in "ab" for n in ("accompaniment.wav", "separation.json",
                                                                        "vocals.wav")]


def test_failed_write_leaves_nothing_and_stems_of_other_models_are_kept(tmp_path, vocals_exp, tiny_model_args,
                                                                        monkeypatch, capsys):
    from test_separate import make_experiment

    import asteroid_frugal.separate as sep

    wav = tmp_path / "song.wav"
    sf.write(wav, _tone(0.6, 8000).T, 8000)
    out = tmp_path / "out"
    argv = [str(wav), "--out", str(out)]
    real_write, calls = sep.write_audio, []

    def full_disk_at_second_stem(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_write(*args, **kwargs)

    monkeypatch.setattr(sep, "write_audio", full_disk_at_second_stem)
    with pytest.raises(SystemExit):
        separate_main([*argv, "--models", str(vocals_exp)])
    assert "No space left on device" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # no stem, no temporary folder
    monkeypatch.setattr(sep, "write_audio", real_write)
    separate_main([*argv, "--models", str(vocals_exp)])
    made = _files(out)
    # another model's stems are not taken for done, nor replaced without --overwrite
    other = make_experiment(tmp_path, "vocals", tiny_model_args, seed=7)
    with pytest.raises(SystemExit):
        separate_main([*argv, "--models", str(other)])
    err = capsys.readouterr().err
    assert f"error: {out / 'song'}: holds stems made with other models" in err and "--overwrite" in err
    assert _files(out) == made
    separate_main([*argv, "--models", str(other), "--overwrite"])
    assert _files(out)["song/vocals.wav"] != made["song/vocals.wav"]
    with pytest.raises(SystemExit):  # other settings: refused too
        separate_main([*argv, "--models", str(other), "--chunk_seconds", "0.3"])
    assert "holds stems made with other settings" in capsys.readouterr().err
    # stems without a record (an interrupted or older run) are separated again
    (out / "song" / "separation.json").unlink()
    (out / "song" / "vocals.wav").unlink()
    separate_main([*argv, "--models", str(other), "--overwrite"])
    assert sorted(p.name for p in (out / "song").iterdir()) == ["accompaniment.wav", "separation.json", "vocals.wav"]


def test_musdb18hq_folder_is_named_after_its_songs(tmp_path, vocals_exp, capsys):
    from data_helpers import make_hq_root

    root = make_hq_root(tmp_path / "musdb18hq", {"Song A": ("test", 0.4), "Song B": ("test", 0.3),
                                                 "Song C": ("train", 0.3)}, sr=8000)
    out = tmp_path / "out"
    separate_main([str(root / "test"), "--models", str(vocals_exp), "--out", str(out)])
    assert sorted(_files(out)) == [f"Song {s}/{n}" for s in "AB" for n in ("accompaniment.wav", "separation.json",
                                                                          "vocals.wav")]
    # mixtures given as files, and a song folder given on its own, are named after their folder too
    out2 = tmp_path / "out2"
    separate_main([str(root / "test" / "Song A" / "mixture.wav"), str(root / "test" / "Song B" / "mixture.wav"),
                   str(root / "train" / "Song C"), "--models", str(vocals_exp), "--out", str(out2)])
    assert sorted(p.name for p in out2.iterdir()) == ["Song A", "Song B", "Song C"]
    # a real collision is still refused, and names both files
    songs = tmp_path / "songs"
    songs.mkdir()
    for ext in ("wav", "flac"):
        sf.write(songs / f"x.{ext}", _tone(0.3, 8000).T, 8000)
    with pytest.raises(SystemExit):
        separate_main([str(songs), "--models", str(vocals_exp), "--out", str(tmp_path / "out3")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "same output folder" in ln]
    assert len(err) == 1 and "x.wav" in err[0] and "x.flac" in err[0]


def test_unwritable_out_is_detected_before_separating(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    wav = tmp_path / "song.wav"
    sf.write(wav, _tone(0.3, 8000).T, 8000)
    with pytest.raises(SystemExit) as exit_info:  # models are not even loaded (this one does not exist)
        run_cli(lambda: separate_main([str(wav), "--models", str(tmp_path / "no_model"),
                                       "--out", str(blocker / "stems")]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {blocker / 'stems'}: the output folder cannot be written")


# ------------------------------------------------------------------ data stages
def test_nan_in_an_extra_stem_is_a_logged_skip(tmp_path):
    from asteroid_frugal.data.extra import prepare_extra
    from data_helpers import base_conf, stem_signal, write_wav

    root = tmp_path / "stems"
    for song in ("good", "nan"):
        write_wav(root / song / "vocals.wav", stem_signal("vocals", 0.5), 44100)
        bass = stem_signal("bass", 0.5)
        if song == "nan":
            bass[1, 100:110] = np.nan  # PCM_16 stored this as -1.0: full-scale clicks indexed as usable
        write_wav(root / song / "bass.wav", bass, 44100, subtype="FLOAT")
    index = prepare_extra(base_conf(tmp_path / "data", data={"extra_roots": [str(root)]}), progress=False)
    assert [s["name"] for s in index["songs"]] == ["good"]
    (skip,) = index["skipped"]
    assert skip["reason"] == f"{root / 'nan' / 'bass.wav'}: contains 10 NaN or infinite sample(s)"


def test_nan_in_a_musdb18hq_stem_is_a_logged_skip(tmp_path):
    from asteroid_frugal.data.musdb_prep import prepare_musdb
    from data_helpers import base_conf, make_hq_root, write_wav

    root = make_hq_root(tmp_path / "hq", {"A - One": ("train", 1.0), "B - Two": ("test", 1.0)})
    drums = sf.read(str(root / "test" / "B - Two" / "drums.wav"), dtype="float32")[0].T
    drums[0, 5] = np.inf
    write_wav(root / "test" / "B - Two" / "drums.wav", drums, subtype="FLOAT")
    summary = prepare_musdb(base_conf(tmp_path / "data", data={"musdb_root": str(root)}), progress=False)
    assert summary["tracks"]["test"] == 0 and summary["tracks"]["train"] == 1
    (skip,) = summary["skipped"]
    assert skip["track"] == "B - Two" and skip["reason"].endswith("drums.wav: contains 1 NaN or infinite sample(s)")


def test_run_sh_with_a_mistyped_tag_leaves_no_experiment_folder(tmp_path):
    exp = tmp_path / "exp"
    (exp / "vocals").mkdir(parents=True)
    out = subprocess.run(["./run.sh", "--setup", "no", "--stage", "4", "--tag", "vocals_typo", "--exp_dir", str(exp),
                          "--data_dir", str(tmp_path / "data")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert f"{exp}/vocals_typo: no such experiment (mistyped --tag? existing: vocals" in out.stderr
    # a run whose stage fails before making anything removes the folder it made (a stage that fails
    # at once stands in for stage 3 refusing a tag without training data: python = false)
    out = subprocess.run(["./run.sh", "--setup", "no", "--stage", "3", "--stop_stage", "3", "--tag", "vocals_typo",
                          "--exp_dir", str(exp), "--data_dir", str(tmp_path / "data"), "--python", "false"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "== stage 3" in out.stdout
    assert sorted(p.name for p in exp.iterdir()) == ["vocals"]
    (exp / "vocals" / "keep.txt").write_text("an existing experiment's folder stays, whatever happens")
    out = subprocess.run(["./run.sh", "--setup", "no", "--stage", "3", "--stop_stage", "3", "--tag", "vocals",
                          "--exp_dir", str(exp), "--python", "false"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0 and (exp / "vocals" / "keep.txt").exists()


def test_one_unreadable_stem_mp4_is_a_logged_skip(tmp_path, caplog):
    stempeg = pytest.importorskip("stempeg")
    from asteroid_frugal.data.musdb_prep import prepare_musdb
    from data_helpers import base_conf

    root = tmp_path / "musdb18"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "test" / "The Easton Ellises - Falcon 69.stem.mp4").write_bytes(
        pathlib.Path(stempeg.example_stem_path()).read_bytes())
    broken = root / "test" / "Broken - Download.stem.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64)  # a damaged download: no readable header
    summary = prepare_musdb(base_conf(tmp_path / "data", data={"musdb_root": str(root)}), progress=False)
    assert summary["tracks"] == {"train": 0, "valid": 0, "test": 1}
    (skip,) = summary["skipped"]
    assert skip["track"] == "Broken - Download" and skip["reason"].startswith(f"{broken}: unreadable audio header")
    assert any("skipping Broken - Download" in r.getMessage() for r in caplog.records)


FLUID = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


# ------------------------------------------------------------------ built-in corpus v3 (issue 19)
def _midi_params(tmp_path, fonts):
    return CorpusParams.from_conf(base_conf(tmp_path, default_corpus={
        "generator": "midi", "n_train": 1, "n_valid": 1, "n_test": 1, "song_seconds": 4, "jobs": 1,
        "soundfonts": fonts, "test_soundfonts": None}))


def test_corpus_missing_or_bad_soundfont_is_one_line_before_any_song(tmp_path):
    missing = tmp_path / "gone.sf2"
    with pytest.raises(FrugalError, match=f"{missing}: cannot read soundfont") as err:
        generate_corpus(tmp_path / "c1", _midi_params(tmp_path, [FLUID, str(missing)]), progress=False)
    assert "\n" not in str(err.value)
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF\0\0\0\0WAVEfmt ")
    with pytest.raises(FrugalError, match=f"{bad}: not a SoundFont"):
        generate_corpus(tmp_path / "c2", _midi_params(tmp_path, [str(bad)]), progress=False)
    for root in (tmp_path / "c1", tmp_path / "c2"):     # nothing generated, nothing half-written
        assert not list(root.rglob("*.wav"))


def test_corpus_leftovers_of_a_killed_run_are_removed_and_the_corpus_completed(tmp_path):
    params = CorpusParams.from_conf(base_conf(tmp_path, default_corpus={
        "generator": "synth", "n_train": 1, "n_valid": 1, "n_test": 1, "song_seconds": 4, "jobs": 1}))
    root = tmp_path / "corpus"
    generate_corpus(root, params, progress=False)
    # what a kill leaves: a song being written, a FluidSynth work folder, a missing song
    (root / "train" / ".tmp-Frugal Synth - Train 001-abc").mkdir()
    (root / "train" / ".tmp-render-xyz").mkdir()
    (root / "train" / ".tmp-render-xyz" / "other.wav").write_bytes(b"partial")
    import shutil

    shutil.rmtree(root / "test" / "Frugal Synth - Test 001")
    generate_corpus(root, params, progress=False)
    assert sorted(p.name for p in (root / "train").iterdir()) == ["Frugal Synth - Train 001", "Frugal Synth - Valid 001"]
    assert (root / "test" / "Frugal Synth - Test 001" / "mixture.wav").is_file()


def test_run_sh_parallel_targets_a_failure_then_the_resumed_run(tmp_path):
    """Stages 2-4 of the three targets as background jobs, 2 at a time, each with an explicit
    thread count and passive waiting, its output in exp/recipe/<target>.log. One target fails
    (a planted checkpoint is refused): the others finish, run.sh names the failed target and its
    log, exits 1 and runs no {4}. Re-run without the bad file: only drums trains, then {4}."""
    import os

    from test_config_and_recipe import tiny_recipe

    bad = plant(tmp_path / "exp" / "drums" / "checkpoints" / "last.ckpt", tmp_path / "marker")
    out = tiny_recipe(tmp_path, "--stop_stage", "4", "--target_jobs", "2")
    text = out.stdout + out.stderr   # run.sh's own output goes through its log (tee)
    assert out.returncode == 1, text[-3000:]
    threads = max(1, os.cpu_count() // 2)
    assert (f"== stages 2-4 of vocals drums bass: 2 at a time, --set runtime.threads={threads} "
            "--set runtime.omp_wait_policy=passive") in text
    log = tmp_path / "exp" / "recipe" / "drums.log"
    assert f"run.sh: target drums failed; the end of {log}:" in text
    assert "refused" in text and text.strip().splitlines()[-1] == (
        "run.sh: failed: drums (re-run the same command to resume)")
    exp = tmp_path / "exp"
    for t in ("vocals", "bass"):
        assert (exp / t / "best_model.pth").is_file() and (exp / t / "results" / "final_metrics.json").is_file()
        assert (f"runtime: torch threads {threads}, OMP wait policy passive (threads and wait policy from --set)"
                in (exp / "recipe" / f"{t}.log").read_text())
    assert not (exp / "combined").exists() and not (tmp_path / "marker").exists()
    trained = {t: (exp / t / "best_model.pth").stat().st_mtime_ns for t in ("vocals", "bass")}
    import shlex   # each model's train_command.txt is the user's command, re-runnable as written (quoted)
    assert shlex.split((exp / "vocals" / "train_command.txt").read_text()) == [
        "./run.sh", "--setup", "no", "--python", sys.executable, "--overlay", str(tmp_path / "tiny.yml"),
        "--data_dir", str(tmp_path / "data"), "--exp_dir", str(exp), "--stop_stage", "4", "--target_jobs", "2"]

    bad.unlink()
    out = tiny_recipe(tmp_path, "--stage", "2", "--stop_stage", "4", "--target_jobs", "3")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "== stages 2-4 of vocals drums bass: 3 at a time" in out.stdout
    assert {t: (exp / t / "best_model.pth").stat().st_mtime_ns for t in trained} == trained   # not retrained
    assert (exp / "drums" / "best_model.pth").is_file() and "   drums: " in out.stdout
    assert (exp / "combined" / "results" / "final_metrics.json").is_file()
    assert out.stdout.index("== stage 4 (evaluation {4}") > out.stdout.index("== stages 2-4")
    wrong = tiny_recipe(tmp_path, "--stage", "4", "--target_jobs", "two")
    assert wrong.returncode == 1 and wrong.stderr.strip() == "run.sh: --target_jobs two: expected auto or a number >= 1"
