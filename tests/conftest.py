"""Shared fixtures: tiny models and short generated audio keep the suite fast on 2 CPU cores."""
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("PYTHONPATH", str(REPO))
if os.environ.get("PYTEST_XDIST_WORKER"):
    # ./test.sh runs two workers on this 2-core machine: one thread each, also in the commands
    # the tests start, so that the workers do not oversubscribe the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # and no 0.2 s load measurement per command (runtime auto)
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, torch.get_num_threads()))

SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def _cache_home(tmp_path_factory):
    """Caches the commands keep between runs (int8 graphs) go to a folder of the test session, not the user's."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture
def tiny_model_args():
    return dict(n_src=2, n_filters=16, kernel_size=20, stride=None, n_channels=2, hidden_size=8, n_layers=2,
                bidirectional=True, skip_every=1, dropout=0.0, mask_act="softmax", causal=False, sample_rate=8000)


@pytest.fixture
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (shared project fixtures)")
    return SHARED
