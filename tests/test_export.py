"""Exported models (ONNX through onnxruntime, TorchScript) reproduce PyTorch, offline and streaming."""
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from asteroid_frugal.cli import separate as separate_cli
from asteroid_frugal.cli.common import run
from asteroid_frugal.cli.export import main
from asteroid_frugal.export import OnnxStreamingSeparator, TorchScriptStreamingSeparator, run_exported
from asteroid_frugal.inference import load_model
from asteroid_frugal.model import FrugalTasNet
from asteroid_frugal.streaming import StreamingSeparator
from asteroid_frugal.utils import DiskFullError, torch_save_atomic
from disk_helpers import small_disk


def saved_model(tmp_path, args, causal, seed=0):
    torch.manual_seed(seed)
    model = FrugalTasNet(**{**args, "bidirectional": not causal, "causal": causal}).eval()
    path = tmp_path / ("causal" if causal else "blstm") / "best_model.pth"
    path.parent.mkdir()
    torch_save_atomic(model.serialize(), path)
    return path


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("causal", [False, True])
def test_offline_export_reproduces_pytorch(tmp_path, tiny_model_args, fmt, causal):
    model_file = saved_model(tmp_path, tiny_model_args, causal)
    out = main(["--model", str(model_file.parent), "--format", fmt, "--out", str(tmp_path / f"m.{fmt}")])
    assert out.is_file()
    model = load_model(model_file)
    rng = np.random.default_rng(3)
    for shape in [(1, 2, 4001), (3, 2, 157), (2, 2, 20)]:  # batch and length differ from the export's
        x = rng.standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = run_exported(out, fmt, [x], streaming=False)[0]
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("fmt,driver", [("onnx", OnnxStreamingSeparator),
                                        ("torchscript", TorchScriptStreamingSeparator)])
def test_streaming_export_block_by_block_reproduces_streaming_separator(tmp_path, tiny_model_args, fmt, driver):
    model_file = saved_model(tmp_path, tiny_model_args, causal=True, seed=1)
    out = main(["--model", str(model_file), "--format", fmt, "--streaming", "--out", str(tmp_path / f"s.{fmt}")])
    model = load_model(model_file)
    exported, reference = driver.for_model(out, model), StreamingSeparator(model)
    assert exported.latency_samples == reference.latency_samples
    x = torch.randn(2, 3001)
    rng = np.random.default_rng(0)
    got, ref, pos = [], [], 0
    while pos < x.shape[-1]:
        n = int(rng.integers(1, 300))
        got.append(exported.process(x[:, pos:pos + n]))
        ref.append(reference.process(x[:, pos:pos + n]))
        pos += n
    got, ref = torch.cat(got + [exported.flush()], -1), torch.cat(ref + [reference.flush()], -1)
    assert got.shape == ref.shape == (2, 2, 3001 + reference.latency_samples)
    assert float((got - ref).abs().max()) <= 1e-4 * float(ref.abs().max())


def test_int8_onnx_streaming_export_runs_close_to_the_float_step(tmp_path, tiny_model_args, caplog):
    """``--int8``: onnxruntime's int8 weights (quantised operators in the graph), the same
    driver, close to but not equal to PyTorch (so the deviation is logged, not enforced)."""
    import logging

    import onnx

    model_file = saved_model(tmp_path, {**tiny_model_args, "hidden_size": 32, "n_filters": 64}, causal=True)
    with caplog.at_level(logging.INFO):
        out = main(["--model", str(model_file), "--format", "onnx", "--streaming", "--int8",
                    "--out", str(tmp_path / "s8.onnx")])
    assert "int8 streaming step" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["causal", "s8.onnx"]  # no scratch files left
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert ops & {"DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeMatMul"}, ops
    model = load_model(model_file)
    exported, reference = OnnxStreamingSeparator.for_model(out, model), StreamingSeparator(model)
    x = torch.randn(2, 2000)
    got = torch.cat([exported.process(x[:, i:i + 256]) for i in range(0, 2000, 256)] + [exported.flush()], -1)
    ref = torch.cat([reference.process(x[:, i:i + 256]) for i in range(0, 2000, 256)] + [reference.flush()], -1)
    err = float((got - ref).norm() / ref.norm())
    assert 0 < err < 0.2


def _cli(main_function, argv, capsys):
    """Run a command's ``main`` as its console script does (``cli.common.run``); returns (exit code, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        run(main_function, argv)
    return exit_info.value.code, capsys.readouterr().err


def test_cli_stream_and_export_refuse_a_bidirectional_model(tmp_path, tiny_model_args, capsys):
    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save(FrugalTasNet(**tiny_model_args).serialize(), exp / "best_model.pth")
    (exp / "conf.yml").write_text(yaml.safe_dump({"data": {"target": "vocals"}}))
    sf.write(tmp_path / "a.wav", np.full((800, 2), 0.1, np.float32), 8000)
    code, err = _cli(separate_cli.main, [str(tmp_path / "a.wav"), "--models", str(exp), "--out",
                                         str(tmp_path / "stems"), "--stream", "--device", "cpu"], capsys)
    assert code == 2 and "not a causal model" in err and "Traceback" not in err
    code, err = _cli(main, ["--model", str(exp), "--format", "onnx", "--streaming",
                            "--out", str(tmp_path / "x.onnx")], capsys)
    assert code == 2 and "not a causal model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "stems").exists()
    code, err = _cli(main, ["--model", str(tmp_path / "missing"), "--format", "onnx",
                            "--out", str(tmp_path / "x.onnx")], capsys)
    assert code == 2 and "missing: model file not found" in err


def test_export_checked_is_the_command_without_its_command_line(tmp_path, tiny_model_args):
    """The library entry point: format checked before the model is read; int8 only with onnx."""
    from asteroid_frugal.export import export_checked
    from asteroid_frugal.utils import FrugalError

    with pytest.raises(FrugalError, match="--format tflite: expected one of onnx, torchscript"):
        export_checked(tmp_path / "missing", "tflite", tmp_path / "x")
    with pytest.raises(FrugalError, match="--int8 is for --format onnx"):
        export_checked(tmp_path / "missing", "torchscript", tmp_path / "x", int8=True)
    model_file = saved_model(tmp_path, tiny_model_args, causal=False)
    out = export_checked(model_file, "torchscript", tmp_path / "m.pt")
    assert out == tmp_path / "m.pt" and out.is_file()


@pytest.mark.parametrize("fmt,driver", [("onnx", OnnxStreamingSeparator),
                                        ("torchscript", TorchScriptStreamingSeparator)])
def test_exported_streams_take_int16_blocks_and_silence_non_finite_ones(tmp_path, tiny_model_args, fmt, driver):
    """The drivers of exported steps share StreamingSeparator's input rules: a NaN block's output is
    silence and the state stays as if it were silent; int16 blocks are divided by 32768."""
    model_file = saved_model(tmp_path, tiny_model_args, causal=True, seed=2)
    out = main(["--model", str(model_file), "--format", fmt, "--streaming", "--out", str(tmp_path / f"s.{fmt}")])
    model = load_model(model_file)
    pcm = np.random.default_rng(1).integers(-20000, 20000, size=(2, 900)).astype(np.int16)
    blocks = [pcm[:, i:i + 50] for i in range(0, 900, 50)]
    floats = [b.astype(np.float32) / 32768 for b in blocks]
    sep = driver.for_model(out, model)
    ref = [sep.process(b) for b in floats] + [sep.flush()]
    assert all(np.array_equal(sep.process(b), r) for b, r in zip(blocks, ref))
    broken, zeroed = list(floats), list(floats)
    broken[4] = floats[4].copy()
    broken[4][0, 7] = np.nan
    zeroed[4] = np.zeros_like(floats[4])
    sep.reset()
    got = [sep.process(b) for b in broken] + [sep.flush()]
    want = [sep.process(b) for b in zeroed] + [sep.flush()]
    assert not np.any(got[4]) and sep.nonfinite_blocks == 1
    assert all(np.array_equal(g, w) for k, (g, w) in enumerate(zip(got, want)) if k != 4)


def test_export_out_that_is_a_folder_is_one_line_before_the_model_is_read(tmp_path, capsys):
    folder = tmp_path / "exports"
    folder.mkdir()
    code, err = _cli(main, ["--model", str(tmp_path / "missing"), "--format", "onnx", "--out", str(folder)],
                     capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"error: {folder}: is a folder; --out takes the file to write (e.g. {folder / 'model.onnx'})" in err
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, err = _cli(main, ["--model", str(tmp_path / "missing"), "--format", "torchscript",
                            "--out", str(blocker / "m.pt")], capsys)
    assert code == 2 and f"{blocker} is a file, not a folder" in err
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, tiny_model_args, fmt):
    """TorchScript written to a path aborted the whole process there (a C++ ios_failure)."""
    model_file = saved_model(tmp_path, tiny_model_args, causal=False)
    with small_disk(tmp_path / "disk", 20) as disk:
        with pytest.raises(DiskFullError, match=rf"^{disk}/m.{fmt}: disk full: needed more than "):
            main(["--model", str(model_file.parent), "--format", fmt, "--out", str(disk / f"m.{fmt}")])
        assert list(disk.iterdir()) == []
