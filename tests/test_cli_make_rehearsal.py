"""local/make_rehearsal.py: its flags are rehearsal-section shortcuts; a tiny set end to end."""
import subprocess
import sys

import pytest

from asteroid_frugal.cli import make_rehearsal

from conftest import REPO


@pytest.fixture
def captured(monkeypatch):
    """The config and folder make_rehearsal would get (nothing written)."""
    record = {}

    def fake(conf, root, progress=True):
        record.update(conf=conf, root=root, progress=progress)
        return dict(songs=0, hours=0.0, layout="-", written_this_run=0, seconds_this_run=0.0)

    monkeypatch.setattr(make_rehearsal, "make_rehearsal", fake)
    return record


@pytest.mark.parametrize("argv, expected", [
    (["out"], dict(songs=150, length_scale=1.0, jobs=2, format="stem")),          # conf.yml: MUSDB18's size
    (["out", "--songs", "4", "--length_scale", "0.01", "--hq"], dict(songs=4, length_scale=0.01, format="hq")),
    (["out", "--set", "rehearsal.jobs=3", "--jobs", "1"], dict(jobs=1)),          # the flag wins
])
def test_flags_are_shortcuts(captured, argv, expected):
    make_rehearsal.main(argv)
    assert captured["root"] == "out"
    assert {k: captured["conf"]["rehearsal"][k] for k in expected} == expected


def test_tiny_set_from_the_command_line(tmp_path):
    out = subprocess.run([sys.executable, "local/make_rehearsal.py", str(tmp_path / "r"), "--songs", "3",
                          "--length_scale", "0.01", "--jobs", "1", "--hq", "--no_progress"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3 songs" in out.stdout and len(list((tmp_path / "r").rglob("mixture.wav"))) == 3
    bad = subprocess.run([sys.executable, "local/make_rehearsal.py", str(tmp_path / "r"), "--songs", "2"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: rehearsal.songs=2")
