"""Causal FrugalTasNet and StreamingSeparator: block-by-block output equals the offline model."""
import shutil

import numpy as np
import pytest
import torch

from asteroid_frugal.model import FrugalTasNet, build_model
from asteroid_frugal.streaming import StreamingSeparator, stream_file
from asteroid_frugal.utils import FrugalError


@pytest.fixture
def causal_args(tiny_model_args):
    return {**tiny_model_args, "bidirectional": False, "causal": True}


def causal_model(causal_args, seed=0, **kw):
    torch.manual_seed(seed)
    return FrugalTasNet(**{**causal_args, **kw}).eval()


def rel_err(a, b):
    return float((torch.as_tensor(a) - b).norm() / b.norm())


def test_causal_output_does_not_depend_on_the_future(causal_args):
    model = causal_model(causal_args)
    x = torch.randn(1, 2, 1000)
    future = x.clone()
    future[..., 600:] = torch.randn(1, 2, 400)
    with torch.no_grad():
        a, b = model(x), model(future)
    # samples before the segment holding sample 600 (segments of 20) are unchanged
    torch.testing.assert_close(a[..., :600], b[..., :600], rtol=0, atol=0)
    assert not torch.allclose(a[..., 600:], b[..., 600:])


@pytest.mark.parametrize("bad,match", [
    (dict(bidirectional=True), "unidirectional"),
    (dict(stride=10), "stride"),
])
def test_causal_model_rejects_look_ahead(causal_args, bad, match):
    with pytest.raises(ValueError, match=match):
        FrugalTasNet(**{**causal_args, **bad})


def test_causal_flag_round_trips_through_serialization(causal_args):
    from asteroid.models import BaseModel

    model = causal_model(causal_args)
    again = BaseModel.from_pretrained(model.serialize()).eval()
    assert again.causal is True and again.masker.bidirectional is False
    x = torch.randn(2, 300)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    assert FrugalTasNet(**{k: v for k, v in causal_args.items() if k != "causal"}).causal is False


def _stream(sep, x, sizes):
    outs, pos = [], 0
    for n in sizes:
        if pos >= x.shape[-1]:
            break
        out = sep.process(x[:, pos:pos + n])
        assert out.shape == (2, x.shape[0], min(n, x.shape[-1] - pos))
        outs.append(out)
        pos += n
    outs.append(sep.flush())
    return torch.cat(outs, dim=-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_block_sequences_equal_the_offline_model(causal_args, seed):
    """Blocks of random sizes (1 sample, sizes that do not divide the segment, larger than
    many segments, changing every call): the stream is the offline output, delayed."""
    model = causal_model(causal_args, seed=seed)
    rng = np.random.default_rng(seed)
    x = torch.randn(2, 2417)  # not a multiple of the 20-sample segment
    with torch.no_grad():
        ref = model(x)
    sep = StreamingSeparator(model)
    lat = sep.latency_samples
    assert lat == causal_args["kernel_size"]
    sizes = [1, 1, 7, 19, 20, 21, 1] + list(rng.integers(1, 90, size=400))
    out = _stream(sep, x, sizes)
    assert out.shape == (2, 2, x.shape[-1] + lat)
    assert out[..., :lat].abs().max() == 0
    assert rel_err(out[..., lat:], ref) < 1e-5


def test_one_sample_blocks_and_long_blocks_with_onednn(causal_args):
    model = causal_model(causal_args)
    x = torch.randn(2, 333)
    with torch.no_grad():
        ref = model(x)
    lat = causal_args["kernel_size"]
    ones = _stream(StreamingSeparator(model), x, [1] * 333)
    assert rel_err(ones[..., lat:], ref) < 1e-5
    # blocks of many segments go through oneDNN's LSTM (mkldnn_min_frames): same numbers
    long = _stream(StreamingSeparator(model, mkldnn_min_frames=2), x, [150, 3, 180])
    assert rel_err(long[..., lat:], ref) < 1e-5


def test_reset_leaks_no_state(causal_args):
    model = causal_model(causal_args)
    sep = StreamingSeparator(model)
    x, other = torch.randn(2, 500), torch.randn(2, 777)
    first = _stream(sep, x, [64] * 10)
    sep.process(other[:, :391])  # a stream abandoned midway (partial segment, LSTM state)
    sep.reset()
    again = _stream(sep, x, [64] * 10)
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    # flush() also resets: a second stream after a flushed one starts fresh
    _stream(sep, other, [100] * 8)
    torch.testing.assert_close(_stream(sep, x, [64] * 10), first, rtol=0, atol=0)


def test_mono_stream_numpy_in_numpy_out(causal_args):
    model = causal_model(causal_args)
    x = np.random.default_rng(0).standard_normal((1, 401)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    sep = StreamingSeparator(model)
    outs = [sep.process(x[:, i:i + 37]) for i in range(0, 401, 37)]
    assert all(isinstance(o, np.ndarray) and o.shape[:2] == (2, 1) for o in outs)
    out = np.concatenate(outs + [sep.flush()], axis=-1)
    assert rel_err(out[..., 20:], ref) < 1e-5


def test_int8_stream_stays_close_to_the_float_model(causal_args):
    """The int8 path (int8 LSTM and linear weights) runs the same stream; dynamic quantisation
    sets activation ranges per call, so it is close to, not equal to, the float model."""
    from asteroid_frugal.streaming import quantize_int8

    model = causal_model(causal_args, hidden_size=32, n_filters=64)
    q = quantize_int8(model)
    assert type(q.masker.blocks[0]).__module__.startswith("torch.ao.nn.quantized")
    assert model.masker.blocks[0].weight_hh_l0.dtype == torch.float32  # the given model is untouched
    x = torch.randn(2, 1200)
    with torch.no_grad():
        ref = model(x)
    sep = StreamingSeparator(model, precision="int8")
    out = _stream(sep, x, [256] * 5)
    assert out.shape == (2, 2, 1220)
    assert 0 < rel_err(out[..., 20:], ref) < 0.1


def test_stream_file_aligns_output_and_reports_timing(causal_args):
    model = causal_model(causal_args)
    audio = np.random.default_rng(1).standard_normal((2, 1000)).astype(np.float32)
    res = stream_file(model, audio, 8000, block=64)
    with torch.no_grad():
        ref = model(torch.from_numpy(audio))
    assert res["estimates"].shape == (2, 2, 1000)
    assert rel_err(res["estimates"], ref) < 1e-5
    stats = res["stats"]
    assert stats["blocks"] == 16 and stats["latency_samples"] == 20
    assert stats["block_ms"] == pytest.approx(8.0)
    assert 0 < stats["median_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert stats["rtf"] > 0


def test_separate_cli_stream_writes_the_offline_stems_and_logs_latency(tmp_path, causal_args, caplog):
    """``asteroid-frugal-separate --stream --block 256`` on a real file: the same stems as the
    offline path (a short song is one offline pass), exact length, latency and RTF logged."""
    import logging

    import soundfile as sf
    import yaml

    from asteroid_frugal.cli.separate import main

    torch.manual_seed(0)
    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save(FrugalTasNet(**causal_args).serialize(), exp / "best_model.pth")
    (exp / "conf.yml").write_text(yaml.safe_dump({"data": {"target": "vocals"}}))
    rng = np.random.default_rng(0)
    song = tmp_path / "song.wav"
    sf.write(song, (0.2 * rng.standard_normal((3001, 2))).astype(np.float32), 8000, subtype="FLOAT")
    common = [str(song), "--models", str(exp), "--subtype", "FLOAT", "--device", "cpu"]
    with caplog.at_level(logging.INFO):
        main(common + ["--out", str(tmp_path / "live"), "--stream", "--block", "256"])
    assert "algorithmic latency 20 samples (2.5 ms)" in caplog.text
    assert "real-time factor" in caplog.text
    main(common + ["--out", str(tmp_path / "offline"), "--precision", "float32"])   # not auto: bf16 where native
    for stem in ("vocals", "accompaniment"):
        live, sr = sf.read(tmp_path / "live" / "song" / f"{stem}.wav", dtype="float32")
        offline, _ = sf.read(tmp_path / "offline" / "song" / f"{stem}.wav", dtype="float32")
        assert sr == 8000 and live.shape == offline.shape == (3001, 2)
        assert np.linalg.norm(live - offline) <= 1e-5 * np.linalg.norm(offline)


def _fake_run(root, name, causal, sisnri, sdr, train="a,b\n1,2\n"):
    """An experiment folder with the files stages 2-4 write (only the parts docs/make_realtime.py reads)."""
    import json

    import pandas as pd
    import yaml

    from asteroid_frugal.config import load_config

    exp = root / name
    (exp / "results").mkdir(parents=True)
    (exp / "data").mkdir()
    over = ["masker.causal=true", "masker.bidirectional=false"] if causal else []
    conf = load_config(overlays=["egs/demo/conf.yml"], overrides=over)
    (exp / "conf.yml").write_text(yaml.safe_dump(conf))
    (exp / "training_done.json").write_text(json.dumps(dict(epochs_done=20, stop_reason="max_epochs",
                                                            n_parameters=1234)))
    (exp / "results" / "final_metrics.json").write_text(json.dumps(dict(sdr_vocals=sdr, sdr_accompaniment=sdr + 5)))
    pd.DataFrame(dict(song=["s1", "s1", "s2"], start=[0, 10, 0], si_snr_vocals=sisnri,
                      input_si_snr_vocals=[0.0, 1.0, -1.0])).to_csv(exp / "results" / "si_snr.csv", index=False)
    (exp / "data" / "train.csv").write_text(train)
    (exp / "data" / "test.csv").write_text("song\ns1\ns2\n")
    return exp


def test_realtime_comparison_page_from_the_runs_files(tmp_path, monkeypatch):
    import sys

    from conftest import REPO

    monkeypatch.chdir(REPO)
    sys.path.insert(0, str(REPO / "docs"))
    from asteroid_frugal.reports.docs_realtime import make

    ref = _fake_run(tmp_path, "blstm", False, [5.0, 7.0, 4.0], 4.5)
    causal = _fake_run(tmp_path, "causal", True, [4.0, 5.5, 3.0], 3.25)
    text = make([ref, causal], tmp_path / "realtime.md")
    assert (tmp_path / "realtime.md").read_text().endswith(text)   # after the mark (reports/docs_realtime.splice)
    rows = [ln for ln in text.splitlines() if ln.startswith("| `")]
    assert "BLSTM" in rows[0] and "offline" in rows[0] and "5.33 +- 0.33 (n=3)" in rows[0]
    # SI-SNRi (minus the input's 0, 1, -1): reference 5, 6, 5; causal 4, 4.5, 4; paired -1, -1.5, -1
    assert "LSTM, causal" in rows[1] and "5.0 ms" in rows[1] and "-1.17 +- 0.17" in rows[1]
    assert "| 3.25 | 8.25 |" in rows[1]
    other = _fake_run(tmp_path, "other", True, [1.0, 1.0, 1.0], 1.0, train="a,b\n3,4\n")
    with pytest.raises(FrugalError, match="same data"):
        make([ref, other], tmp_path / "x.md")


def test_causal_model_trains_through_stage_3_and_streams_its_export(tmp_path):
    """``egs/realtime`` overlay through the training stage: the loss falls, ``best_model.pth``
    loads as a causal model (as stage 4 and the CLIs load it) and streams its offline output."""
    import pandas as pd

    from asteroid_frugal.config import load_config
    from asteroid_frugal.inference import load_model
    from asteroid_frugal.train import train
    from conftest import REPO
    from toy_data import ToyTargetRest

    conf = load_config(overlays=[REPO / "egs/realtime/conf.yml"], overrides=[
        "filterbank.n_filters=16", "filterbank.kernel_size=20", "masker.hidden_size=16", "masker.n_layers=2",
        "data.sample_rate=8000", "training.batch_size=4", "training.num_workers=0", "training.epochs=4",
        "optim.lr=0.01"])
    exp = tmp_path / "vocals_causal"
    train(conf, exp, ToyTargetRest(8, seed=0), ToyTargetRest(4, seed=1))
    losses = pd.read_csv(exp / "logs" / "csv" / "metrics.csv")["loss_epoch"].dropna().to_numpy()
    assert losses[-1] < losses[0]
    model = load_model(exp)
    assert model.causal and not model.masker.bidirectional
    x = ToyTargetRest(1, seed=7)[0][0]
    with torch.no_grad():
        ref = model(x)
    out = _stream(StreamingSeparator(model), x, [160] * (x.shape[-1] // 160 + 1))
    assert rel_err(out[..., 20:], ref) < 1e-5


def test_experiments_saved_before_the_causal_key_still_resume(tmp_path):
    """A conf.yml written before ``masker.causal`` existed is the same (non-causal) experiment."""
    from asteroid_frugal.config import load_config, save_config
    from asteroid_frugal.train import check_same_experiment
    from conftest import REPO

    conf = load_config()
    old = load_config()
    del old["masker"]["causal"]
    save_config(old, tmp_path / "conf.yml")
    check_same_experiment(conf, tmp_path)
    with pytest.raises(FrugalError, match="masker.causal"):
        check_same_experiment(load_config(overlays=[REPO / "egs/realtime/conf.yml"]), tmp_path)


def test_realtime_page_streams_the_causal_run_per_weight_precision(tmp_path, monkeypatch):
    """docs/make_realtime.py --stream_precisions on a real (tiny) causal experiment: its test
    excerpts streamed block by block; float32 streamed reproduces the offline SI-SNRi that
    stage 4's run_sisnr wrote, int8 is paired with it."""
    import json
    import sys

    import yaml

    from asteroid_frugal.config import load_config
    from asteroid_frugal.data.datasets import write_manifest
    from asteroid_frugal.data.layout import write_track
    from asteroid_frugal.evaluate import run_sisnr
    from asteroid_frugal.inference import load_target_models
    from conftest import REPO

    monkeypatch.chdir(REPO)
    sys.path.insert(0, str(REPO / "docs"))
    from asteroid_frugal.reports.docs_realtime import make

    sr = 8000
    rng = np.random.default_rng(0)
    t = np.arange(int(2.5 * sr)) / sr
    tracks = []
    for i in range(2):
        stems = {"vocals": np.stack([np.sin(2 * np.pi * (300 + 50 * i) * t)] * 2),
                 "drums": rng.standard_normal((2, t.size)) * 0.3,
                 "bass": np.stack([np.sin(2 * np.pi * 70 * t)] * 2),
                 "other": np.stack([np.sin(2 * np.pi * 520 * t + i)] * 2)}
        stems = {k: (0.2 * v).astype(np.float32) for k, v in stems.items()}
        tracks.append(tmp_path / "prepared" / f"song{i}")
        write_track(tracks[-1], stems, dict(name=f"song{i}", sample_rate=sr), mixture=sum(stems.values()))
    conf = load_config(overlays=[REPO / "egs/realtime/conf.yml"], overrides=[
        f"data.sample_rate={sr}", "filterbank.n_filters=16", "filterbank.kernel_size=20",
        "masker.hidden_size=16", "masker.n_layers=2", "evaluation.chunk_seconds=1", "evaluation.overlap_seconds=0"])
    exp = tmp_path / "causal"
    (exp / "results").mkdir(parents=True)
    torch.manual_seed(0)
    model = build_model(conf)
    torch.save(model.serialize(), exp / "best_model.pth")
    (exp / "conf.yml").write_text(yaml.safe_dump(conf))
    (exp / "training_done.json").write_text(json.dumps(dict(epochs_done=1, stop_reason="max_epochs",
                                                            n_parameters=sum(p.numel() for p in model.parameters()))))
    (exp / "results" / "final_metrics.json").write_text(json.dumps(dict(sdr_vocals=1.0, sdr_accompaniment=2.0)))
    write_manifest(exp / "data" / "test.csv", [dict(track_dir=str(tr), start=s, length=sr) for tr in tracks
                                                for s in (0, sr)])
    (exp / "data" / "train.csv").write_text("x\n")
    tm = load_target_models([str(exp)], "cpu")[0]
    run_sisnr(tm, exp, exp / "results", dict(chunk_seconds=1.0, overlap_seconds=0.0, batch_chunks=1), "cpu", -80)
    ref = tmp_path / "blstm"
    shutil.copytree(exp, ref)   # the reference: read as a bidirectional run (not streamed)
    ref_conf = yaml.safe_load((ref / "conf.yml").read_text())
    ref_conf["masker"].update(causal=False, bidirectional=True)
    (ref / "conf.yml").write_text(yaml.safe_dump(ref_conf))
    text = make([ref, exp], tmp_path / "realtime.md", stream_precisions=["float32", "int8"], block=100)
    rows = {ln.split("|")[1].strip(): ln for ln in text.splitlines() if ln.startswith("| ") and "(n=4)" in ln}
    assert set(rows) >= {"float32 (= offline)", "float32", "int8"}, text
    assert "| +0.000 +- 0.000 |" in rows["float32"]   # streamed float32 == offline stage-4 figures
    diff = float(rows["int8"].split("|")[3].split("+-")[0])
    assert abs(diff) < 3.0   # an untrained tiny model: int8 weights move SI-SNRi a little, not wildly
    assert "Streamed in blocks of 100 samples" in text


def test_bad_stream_blocks_are_clear_errors(causal_args):
    model = causal_model(causal_args)
    sep = StreamingSeparator(model)
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
        StreamingSeparator(model, precision="fp8")


def test_streaming_a_bidirectional_model_is_a_clear_error(tiny_model_args):
    with pytest.raises(FrugalError, match="not a causal model"):
        StreamingSeparator(FrugalTasNet(**tiny_model_args))


def _blocks(sep, blocks):
    return [sep.process(b) for b in blocks] + [sep.flush()]


def test_a_non_finite_block_is_silence_and_leaves_the_state_as_if_silent(causal_args, caplog):
    """A NaN (or inf) block among finite ones: its output block is silence, every later output
    equals a stream where that block was zeros (the LSTM state is not poisoned), it is counted,
    and the warning is logged once per stream, not per block."""
    import logging

    model = causal_model(causal_args)
    x = torch.randn(2, 1500)
    cuts = list(range(0, 1500, 37))
    clean = [x[:, a:a + 37].clone() for a in cuts]
    broken, zeroed = [b.clone() for b in clean], [b.clone() for b in clean]
    broken[5][1, 3] = float("nan")          # one sample
    broken[9][:] = float("inf")             # a whole block
    for k in (5, 9):
        zeroed[k].zero_()
    sep = StreamingSeparator(model)
    with caplog.at_level(logging.WARNING, logger="asteroid_frugal.streaming"):
        got = _blocks(sep, broken)
    want = _blocks(StreamingSeparator(model), zeroed)
    assert all(bool(torch.isfinite(g).all()) for g in got)
    assert got[5].abs().max() == 0 and got[9].abs().max() == 0   # the output blocks are silence
    for k, (g, w) in enumerate(zip(got, want)):
        if k not in (5, 9):
            assert torch.equal(g, w), k                           # bit-identical to the zeros stream
    assert sep.nonfinite_blocks == 2
    warnings = [r for r in caplog.records if "NaN or infinite" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    # a new stream logs its first one again; the count goes on; numpy in, numpy out
    with caplog.at_level(logging.WARNING, logger="asteroid_frugal.streaming"):
        out = sep.process(np.full((2, 50), np.nan, np.float32))
    assert isinstance(out, np.ndarray) and not np.any(out) and sep.nonfinite_blocks == 3
    assert len([r for r in caplog.records if "NaN or infinite" in r.getMessage()]) == 2


def test_integer_blocks_are_scaled_by_their_full_scale(causal_args):
    """Audio callbacks deliver int16 or int32: divided by 2**15 or 2**31, so the output is the
    float stream's, in [-1, 1] units, bit for bit; other integer types are refused."""
    model = causal_model(causal_args)
    rng = np.random.default_rng(2)
    pcm16 = rng.integers(-20000, 20000, size=(2, 700)).astype(np.int16)
    ref = _blocks(StreamingSeparator(model), [pcm16[:, i:i + 64].astype(np.float32) / 32768
                                              for i in range(0, 700, 64)])
    got = _blocks(StreamingSeparator(model), [pcm16[:, i:i + 64] for i in range(0, 700, 64)])
    assert all(g.dtype == np.float32 and np.array_equal(g, r) for g, r in zip(got, ref))
    pcm32 = torch.from_numpy(pcm16.astype(np.int32) * 65536)               # torch int32 blocks
    got32 = _blocks(StreamingSeparator(model), [pcm32[:, i:i + 64] for i in range(0, 700, 64)])
    assert all(torch.equal(g, torch.from_numpy(r)) for g, r in zip(got32, ref))
    sep = StreamingSeparator(model)
    for bad in (np.zeros((2, 10), np.uint8), torch.zeros(2, 10, dtype=torch.int64)):
        with pytest.raises(ValueError, match="float or int8/int16/int32"):
            sep.process(bad)


def test_a_block_buffer_reused_by_the_caller_does_not_change_the_stream(causal_args):
    """Audio callbacks refill the same buffer: the samples of an incomplete segment are kept as a copy."""
    model = causal_model(causal_args)
    x = np.random.default_rng(3).standard_normal((2, 600)).astype(np.float32)
    ref = _blocks(StreamingSeparator(model), [x[:, i:i + 30].copy() for i in range(0, 600, 30)])
    sep, buffer, got = StreamingSeparator(model), np.empty((2, 30), np.float32), []
    for i in range(0, 600, 30):
        buffer[:] = x[:, i:i + 30]
        got.append(sep.process(buffer))
    got.append(sep.flush())
    assert all(np.array_equal(g, r) for g, r in zip(got, ref))


def test_a_segment_at_an_extreme_level_is_scaled_exactly_and_the_stream_stays_finite(causal_args):
    """A finite sample of 1e20 overflowed the segment's sum of squares: its output block was NaN.
    A segment outside inference.SAFE_PEAK goes through the model scaled by a power of two and its
    estimates come back scaled, so a segment times 2**70 gives the estimates times 2**70, bit for
    bit, and every other block is the normal stream's; estimates beyond float32 saturate."""
    model = causal_model(causal_args)
    L = model.kernel_size
    x = torch.rand(2, 30 * L) - 0.5
    x[:, 5 * L:6 * L] *= 1.9 / x[:, 5 * L:6 * L].abs().max()    # a segment with its peak in [0.5, 1) * 2**1
    loud = x.clone()
    loud[:, 5 * L:6 * L] *= 2.0 ** 70
    ref = torch.cat(_blocks(StreamingSeparator(model), [x[:, i:i + 7] for i in range(0, 30 * L, 7)]), -1)
    got = torch.cat(_blocks(StreamingSeparator(model), [loud[:, i:i + 7] for i in range(0, 30 * L, 7)]), -1)
    seg = slice(6 * L, 7 * L)                                  # output delayed by one segment
    assert torch.equal(got[..., seg], ref[..., seg] * 2.0 ** 70)
    assert torch.equal(got[..., :6 * L], ref[..., :6 * L]) and torch.equal(got[..., 7 * L:], ref[..., 7 * L:])
    for level in (1e20, 3e38, 1e-30):
        spike = x.clone()
        spike[0, 5 * L + 3] = level
        out = torch.cat(_blocks(StreamingSeparator(model, precision="int8"), [spike[:, i:i + 64]
                                                                             for i in range(0, 30 * L, 64)]), -1)
        assert bool(torch.isfinite(out).all()), level


def test_a_model_that_outputs_nan_is_one_error_naming_it(causal_args, tmp_path):
    from asteroid_frugal.inference import NonFiniteOutputError, load_model

    model = causal_model(causal_args)
    with torch.no_grad():
        model.decoder.B.weight[0, 0] = float("nan")
    path = tmp_path / "nan_model.pth"
    torch.save(model.serialize(), path)
    sep = StreamingSeparator(load_model(path))
    with pytest.raises(NonFiniteOutputError, match=f"model {path} produced non-finite audio"):
        for _ in range(4):
            sep.process(np.full((2, 64), 0.1, np.float32))
