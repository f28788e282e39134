"""Fault cases: bad values, wrong models, corrupt or hostile files give one-line errors or logged skips,
never tracebacks, code execution or partial files. The next fault case found goes here."""
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
                           "error: runtime.omp_wait_policy: omp_wait_policy must be passive, active or null")):
        proc = subprocess.run([sys.executable, "local/evaluate.py", "--exp_dir", str(tmp_path), *args],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
