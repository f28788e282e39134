"""The package as users get it: built as a wheel and installed without the checkout, used from
another folder; and ``import asteroid_frugal`` changes nothing in the process."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO

SITE_PACKAGES = sysconfig.get_paths()["purelib"]   # this environment's dependencies (torch, asteroid...)


def _isolated(site, cwd, *args, timeout=600):
    """Run ``python -S`` with only the installed wheel and the environment's site-packages on the path:
    no ``.pth`` files (so no editable install of the checkout), no checkout on ``sys.path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ASTEROID_FRUGAL"))}
    env["PYTHONPATH"] = os.pathsep.join([str(site), SITE_PACKAGES])
    return subprocess.run([sys.executable, "-S", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The project built as a wheel and installed into a folder of its own (``pip --target``)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"   # a copy: building writes build/ and *.egg-info/ beside the sources
    shutil.copytree(REPO / "asteroid_frugal", src / "asteroid_frugal", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "--disable-pip-version-check", "-w", str(root / "dist"), str(src)],
                           capture_output=True, text=True, timeout=600, cwd=root)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((root / "dist").glob("asteroid_frugal-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "asteroid_frugal/conf.yml" in names and "asteroid_frugal/cli/separate.py" in names
    site = root / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--disable-pip-version-check",
                           "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-2000:]
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return site, elsewhere


def test_installed_wheel_loads_separates_and_exports_from_another_folder(installed, tiny_model_args):
    site, cwd = installed
    code = f"""
import json, torch, asteroid_frugal
from asteroid.models import BaseModel
from asteroid_frugal import FrugalTasNet
torch.manual_seed(0)
torch.save(FrugalTasNet(**{tiny_model_args!r}).serialize(), "best_model.pth")
model = BaseModel.from_pretrained("best_model.pth")
print(json.dumps(dict(file=asteroid_frugal.__file__, name=type(model).__name__)))
"""
    proc = _isolated(site, cwd, "-c", code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["file"].startswith(str(site)) and got["name"] == "FrugalTasNet"

    t = np.arange(8000) / 8000
    sf.write(cwd / "song.wav", np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)]).T * 0.3, 8000)
    proc = _isolated(site, cwd, str(site / "bin" / "asteroid-frugal-separate"), "song.wav",
                     "--models", "vocals=best_model.pth", "--out", "stems", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stem in ("vocals", "accompaniment"):
        audio, sr = sf.read(cwd / "stems" / "song" / f"{stem}.wav")
        assert sr == 8000 and audio.shape == (8000, 2)

    proc = _isolated(site, cwd, str(site / "bin" / "asteroid-frugal-export"), "--model", "best_model.pth",
                     "--format", "onnx", "--out", "model.onnx", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (cwd / "model.onnx").stat().st_size > 1000
    assert not (cwd / "conf.yml").exists() and not list(cwd.glob("exp*"))


HOSTILE = """
import os, sys, time
sys.argv = ["asteroid-frugal-separate", "--threads", "1", "--set", "runtime.omp_wait_policy=passive",
            "--conf", "/nonexistent.yml"]
os.environ.update(ASTEROID_FRUGAL_AUTO_RUNTIME="1,passive", OMP_WAIT_POLICY="ACTIVE")
import torch, asteroid
threads = torch.get_num_threads()
env, argv, cwd = dict(os.environ), list(sys.argv), os.getcwd()
start = time.perf_counter()
import asteroid_frugal
took = time.perf_counter() - start
from asteroid.models import get
from asteroid_frugal import runtime
assert get("FrugalTasNet") is asteroid_frugal.FrugalTasNet
assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())
assert sys.argv == argv and os.getcwd() == cwd and torch.get_num_threads() == threads
assert runtime.CHOSEN == {}
print(took)
"""


def test_import_registers_the_model_and_changes_nothing(tmp_path):
    """A script named like a command, with the project's flags, a config that does not exist and
    the variables the commands set: importing the package reads none of it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "ASTEROID_FRUGAL"))}
    proc = subprocess.run([sys.executable, "-c", HOSTILE], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the import beyond torch and asteroid: well under a second even on a slow, busy machine
    assert float(proc.stdout.strip().splitlines()[-1]) < 3.0
