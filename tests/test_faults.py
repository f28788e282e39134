"""Fault cases: bad values and wrong models give one-line errors, never tracebacks or partial files."""
import subprocess
import sys

import pytest
import torch
import yaml

from asteroid_frugal.model import FrugalTasNet
from asteroid_frugal.streaming import StreamingSeparator
from asteroid_frugal.utils import FrugalError

from conftest import REPO


# ------------------------------------------------------------ streaming and export (issue 22)
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


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_stream_and_export_refuse_a_bidirectional_model(tmp_path, tiny_model_args):
    import numpy as np
    import soundfile as sf

    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save(FrugalTasNet(**tiny_model_args).serialize(), exp / "best_model.pth")
    (exp / "conf.yml").write_text(yaml.safe_dump({"data": {"target": "vocals"}}))
    sf.write(tmp_path / "a.wav", np.full((800, 2), 0.1, np.float32), 8000)
    out = _cli("-m", "asteroid_frugal.separate", str(tmp_path / "a.wav"), "--models", str(exp),
               "--out", str(tmp_path / "stems"), "--stream")
    assert out.returncode == 2 and "not a causal model" in out.stderr and "Traceback" not in out.stderr
    out = _cli("-m", "asteroid_frugal.export", "--model", str(exp), "--format", "onnx", "--streaming",
               "--out", str(tmp_path / "x.onnx"))
    assert out.returncode == 2 and "not a causal model" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "stems").exists()
    out = _cli("-m", "asteroid_frugal.export", "--model", str(tmp_path / "missing"), "--format", "onnx",
               "--out", str(tmp_path / "x.onnx"))
    assert out.returncode == 2 and "missing: model file not found" in out.stderr


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
