"""registry.py: FrugalTasNet registered with Asteroid once, idempotently, under its own name."""
import importlib
import subprocess
import sys

from asteroid.models import get as get_model

import asteroid_frugal
import asteroid_frugal.registry

from conftest import REPO


def test_registration_survives_double_import():
    importlib.reload(asteroid_frugal.registry)
    importlib.reload(asteroid_frugal)
    asteroid_frugal.registry.register()
    assert get_model("frugaltasnet").__name__ == "FrugalTasNet"
    code = ("import sys; sys.path.insert(0, %r); import asteroid_frugal, importlib;"
            "importlib.reload(asteroid_frugal.model); importlib.reload(asteroid_frugal.registry);"
            "importlib.reload(asteroid_frugal); from asteroid.models import get;"
            "print(get('FrugalTasNet').__module__)") % str(REPO)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "asteroid_frugal.model"


def test_name_is_distinct_from_asteroid_models():
    from asteroid.models import LSTMTasNet

    assert get_model("FrugalTasNet") is not LSTMTasNet
