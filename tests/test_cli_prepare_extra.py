"""local/prepare_extra.py's options: --extra_roots sets data.extra_roots."""
import pytest

from asteroid_frugal.cli import prepare_extra

from data_helpers import capture_stage


@pytest.fixture
def captured(monkeypatch):
    """The config prepare_extra would get (nothing prepared)."""
    return capture_stage(monkeypatch, prepare_extra, "prepare_extra")


@pytest.mark.parametrize("argv, roots", [
    ([], []),                                                    # conf.yml's: none
    (["--extra_roots", "/a"], ["/a"]),
    (["--extra_roots", "/a /b"], ["/a", "/b"]),                  # space-separated, as run.sh's --extra_roots
    (["--extra_roots", "/a", "/b", "--extra_roots", "/c"], ["/a", "/b", "/c"]),
    (["--set", "data.extra_roots=[/x]", "--extra_roots", "/a"], ["/a"]),   # the flag wins
    (["--set", "data.extra_roots=[/x, /y]"], ["/x", "/y"]),
])
def test_extra_roots(captured, argv, roots):
    prepare_extra.main([*argv, "--no_progress"])
    assert captured["conf"]["data"]["extra_roots"] == roots and captured["progress"] is False
