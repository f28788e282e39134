"""Stage 5: the publish folder loads with Asteroid under torch's weights-only loader and its
model card carries the metrics and the training command."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import asteroid_frugal  # noqa: F401
from asteroid.models import BaseModel
from asteroid_frugal.cli.common import run
from asteroid_frugal.cli.publish import main
from asteroid_frugal.config import load_config
from asteroid_frugal.model import FrugalTasNet
from asteroid_frugal.publish import plain, publish
from asteroid_frugal.utils import FrugalError

from conftest import REPO

COMMAND = "./run.sh --stage 3 --tag vocals --set training.epochs=2"


def make_experiment(tmp_path, args, metrics=True, musdb=True):
    """What stages 3 and 4 leave behind, with a tiny model."""
    torch.manual_seed(0)
    model = FrugalTasNet(**args).eval()
    exp = tmp_path / "exp" / "vocals"
    (exp / "results").mkdir(parents=True)
    conf = load_config(overrides=["data.target=vocals"] + (["data.musdb_root=/data/musdb18"] if musdb else []))
    (exp / "conf.yml").write_text(yaml.safe_dump(conf, sort_keys=False))
    (exp / "train_command.txt").write_text(COMMAND + "\n")
    package = model.serialize()
    package.update(target="vocals", sources=["vocals", "rest"])
    torch.save(package, exp / "best_model.pth")
    if metrics:
        (exp / "results" / "eval_info.json").write_text(json.dumps({"mode": "{1}", "backend": "fast"}))
        (exp / "results" / "final_metrics.json").write_text(json.dumps(
            {"sdr_vocals": 7.3412, "sir_vocals": 15.02, "sdr_accompaniment": 13.7, "n_tracks": 50}))
    return exp, model, conf


def test_publish_folder_loads_and_card_has_metrics_and_command(tmp_path, tiny_model_args):
    exp, model, conf = make_experiment(tmp_path, tiny_model_args)
    out = publish(exp, load_config())
    assert out == exp / "publish"
    assert {"model.pth", "pytorch_model.bin", "README.md", "conf.yml", "final_metrics.json"} <= {
        p.name for p in out.iterdir()}
    assert not list(exp.glob(".publish*"))  # no temporary folder left behind
    umask = os.umask(0)
    os.umask(umask)  # files shareable as the user's umask allows (temporary files are 0600)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in out.iterdir())
    x = torch.randn(2, 2, 700)
    with torch.no_grad():
        ref = model(x)
    for name in ("model.pth", "pytorch_model.bin"):
        package = torch.load(out / name, weights_only=True)  # plain types only
        loaded = BaseModel.from_pretrained(str(out / name)).eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), ref)
    infos = package["infos"]
    assert infos["final_metrics"] == {"sdr_vocals": 7.3412, "sir_vocals": 15.02, "sdr_accompaniment": 13.7,
                                      "n_tracks": 50.0}
    assert infos["training_config"] == conf and infos["recipe_name"] == "asteroid-frugal"
    assert infos["target"] == "vocals" and package["target"] == "vocals"
    assert infos["train_command"] == COMMAND
    assert all(isinstance(v, str) for v in infos["software_versions"].values())

    card = (out / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "asteroid" and "asteroid" in meta["tags"]
    assert meta["datasets"] == ["musdb18"] and meta["license"] == "cc-by-nc-sa-4.0"
    results = meta["model-index"][0]["results"][0]["metrics"]
    assert {"type": "sdr_vocals", "value": 7.341, "name": "sdr_vocals"} in results
    assert "| sdr_vocals | 7.341 |" in body and "| sir_vocals | 15.02 |" in body
    assert "BSS Eval v4 computed by the fast evaluator" in body   # results/eval_info.json names the backend
    assert f"```bash\n{COMMAND}\n```" in body
    assert "from_pretrained" in body and "MUSDB18" in body


def test_publish_without_metrics_says_so_and_republish_replaces(tmp_path, tiny_model_args):
    exp, _, _ = make_experiment(tmp_path, tiny_model_args, metrics=False, musdb=False)
    (exp / "publish").mkdir()
    (exp / "publish" / "stale.txt").write_text("old")
    out = publish(exp, load_config())
    assert not (out / "stale.txt").exists()
    card = (out / "README.md").read_text()
    assert "Not evaluated yet" in card and "model-index" not in card
    assert "built-in procedurally generated corpus" in card
    assert torch.load(out / "model.pth", weights_only=True)["infos"]["final_metrics"] == {}


def test_publish_errors(tmp_path, tiny_model_args):
    with pytest.raises(FrugalError, match="experiment folder not found"):
        publish(tmp_path / "nope", load_config())
    exp, _, _ = make_experiment(tmp_path, tiny_model_args)
    (exp / "results" / "final_metrics.json").write_text("{broken")
    with pytest.raises(FrugalError, match="final_metrics.json: not valid JSON"):
        publish(exp, load_config())
    assert not (exp / "publish").exists()
    (exp / "best_model.pth").unlink()
    with pytest.raises(FrugalError, match="best_model.pth: not found"):
        publish(exp, load_config())


def test_plain_types():
    out = plain({"a": np.float32(1.5), "b": (np.int64(3), torch.__version__), 4: None, "c": [True, "x"]})
    assert out == {"a": 1.5, "b": [3, str(torch.__version__)], "4": None, "c": [True, "x"]}
    assert type(out["b"][1]) is str and type(out["a"]) is float


def test_stage_script(tmp_path, tiny_model_args, capsys):
    exp, _, _ = make_experiment(tmp_path, tiny_model_args)
    proc = subprocess.run([sys.executable, "local/publish.py", "--exp_dir", str(exp)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert (exp / "publish" / "model.pth").is_file()
    with pytest.raises(SystemExit) as exit_info:
        run(main, ["--exp_dir", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing'}: experiment folder not found"


def test_license_is_a_config_key_with_its_shortcut(tmp_path, tiny_model_args):
    exp, _, _ = make_experiment(tmp_path, tiny_model_args)
    assert load_config()["publish"]["license"] == "cc-by-nc-sa-4.0"
    main(["--exp_dir", str(exp), "--license", "mit"])
    assert yaml.safe_load((exp / "publish" / "README.md").read_text().split("---\n")[1])["license"] == "mit"
    out = main(["--exp_dir", str(exp), "--out", str(tmp_path / "hub"), "--set", "publish.license=apache-2.0"])
    assert out == tmp_path / "hub" and "Model weights: `apache-2.0`" in (out / "README.md").read_text()
