"""One writer per experiment folder (lock.py): a second process refuses naming the holder and
touches nothing, a killed holder's lock is taken over, the lock is released after an exception,
and the O_EXCL fallback where flock is missing."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

import asteroid_frugal.lock as lock
from asteroid_frugal.lock import LOCK_NAME, FolderInUseError, folder_lock, read_holder

from conftest import REPO

HOLDER = """
import sys, time
sys.path.insert(0, {repo!r})
from asteroid_frugal.lock import folder_lock
with folder_lock({folder!r}, "training"):
    open({mine!r}, "w").write("the first run's file")
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A process holding ``tmp_path / 'exp'``'s lock (killed at the end if still running)."""
    folder = tmp_path / "exp"
    code = HOLDER.format(repo=str(REPO), folder=str(folder), mine=str(folder / "mine.txt"))
    proc = subprocess.Popen([sys.executable, "-c", code, "--stage", "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc, folder
    finally:
        proc.kill()
        proc.wait()


def test_a_second_process_refuses_naming_the_holder_and_touches_nothing(holder):
    proc, folder = holder
    record = (folder / LOCK_NAME).read_text()
    assert json.loads(record)["pid"] == proc.pid and record.count("\n") == 1
    with pytest.raises(FolderInUseError) as err:
        with folder_lock(folder, "training"):
            raise AssertionError("never reached")
    message = str(err.value)
    assert message.startswith(f"{folder} is in use by pid {proc.pid} on host {socket.gethostname()} since ")
    assert "(training: " in message and "--stage 3" in message
    assert message.endswith("; wait for it to finish or stop it") and "\n" not in message
    assert (folder / LOCK_NAME).read_text() == record
    assert (folder / "mine.txt").read_text() == "the first run's file"
    assert proc.poll() is None


def test_the_lock_of_a_killed_process_is_taken_over(holder, caplog):
    proc, folder = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_holder(folder / LOCK_NAME)["pid"] == proc.pid   # the file stays, its flock does not
    caplog.set_level("INFO", logger="asteroid_frugal.lock")
    with folder_lock(folder, "evaluation") as path:
        held = read_holder(path)
        assert held["pid"] == os.getpid() and held["what"] == "evaluation"
    notes = [r.getMessage() for r in caplog.records if "taking over" in r.getMessage()]
    assert len(notes) == 1 and f"pid {proc.pid} on host " in notes[0] and notes[0].endswith("(training: -c --stage 3))")
    assert not path.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["mine.txt"]


def test_the_lock_is_released_after_an_exception_and_is_reentrant(tmp_path):
    folder = tmp_path / "exp"
    folder.mkdir()
    with pytest.raises(RuntimeError):
        with folder_lock(folder):
            with folder_lock(folder):   # the same process again: nested, not refused
                pass
            assert (folder / LOCK_NAME).exists()
            raise RuntimeError("a stage failed")
    assert not (folder / LOCK_NAME).exists()
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from asteroid_frugal.lock import folder_lock\n" \
           f"with folder_lock({str(folder)!r}): print('taken')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "taken", out.stderr


def test_a_folder_the_lock_made_is_removed_when_nothing_was_written(tmp_path):
    with pytest.raises(RuntimeError):
        with folder_lock(tmp_path / "exp" / "vocals_typo"):
            raise RuntimeError("refused before writing anything")
    assert not (tmp_path / "exp").exists()
    with folder_lock(tmp_path / "exp" / "vocals") as path:
        (path.parent / "result.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "exp" / "vocals").iterdir()) == ["result.json"]


def test_without_flock_an_exclusive_file_and_a_dead_holder_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "fcntl", None)
    folder = tmp_path / "exp"
    folder.mkdir()
    with folder_lock(folder, "publishing") as path:
        assert read_holder(path)["pid"] == os.getpid()
    assert not path.exists()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = dict(host=socket.gethostname(), pid=sleeper.pid, what="training", command="./run.sh",
                      started="2026-12-02 07:10:03")
        path.write_text(json.dumps(record) + "\n")
        with pytest.raises(FolderInUseError, match=f"in use by pid {sleeper.pid} on host .* since 2026-12-02 "
                                                   r"07:10:03 \(training: ./run.sh\); .* \(remove "):
            with folder_lock(folder):
                pass
        path.write_text(json.dumps(dict(record, host="elsewhere")) + "\n")
        with pytest.raises(FolderInUseError, match="on host elsewhere"):
            with folder_lock(folder):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    path.write_text(json.dumps(record) + "\n")   # its holder has ended: taken over
    with folder_lock(folder):
        assert read_holder(path)["pid"] == os.getpid()
    assert not path.exists()


def test_a_read_only_folder_needs_no_lock_and_a_bad_lock_file_is_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "exp"
    (folder / LOCK_NAME).mkdir(parents=True)   # not a file: no traceback, one line naming it
    with pytest.raises(lock.FrugalError, match=rf"^{folder / LOCK_NAME}: cannot take the folder's lock \("):
        with folder_lock(folder):
            pass
    (folder / LOCK_NAME).rmdir()
    monkeypatch.setattr(lock.os, "access", lambda path, mode: False)   # (root may write anywhere)
    with folder_lock(folder) as path:   # nothing can be written there, by this run or another
        assert not path.exists()
    assert list(folder.iterdir()) == []


def test_every_stage_that_writes_into_an_experiment_refuses_while_another_holds_it(holder):
    """Stages 2 (shaping), 3 (training), 4 (evaluation) and 5 (publishing) each take the folder's
    lock before touching it: with a training holding it, each refuses in one line naming the holder."""
    from asteroid_frugal.config import load_config
    from asteroid_frugal.data.shaping import shape
    from asteroid_frugal.evaluate import evaluate
    from asteroid_frugal.publish import publish
    from asteroid_frugal.train import train

    proc, folder = holder
    before = sorted(p.name for p in folder.iterdir())
    conf = load_config(overrides=["data.target=vocals"])
    for stage in (lambda: shape(conf, folder), lambda: train(conf, folder), lambda: evaluate(conf, folder),
                  lambda: publish(folder, conf)):
        with pytest.raises(FolderInUseError, match=rf"^{folder} is in use by pid {proc.pid} on host .*\(training: "):
            stage()
    assert sorted(p.name for p in folder.iterdir()) == before and proc.poll() is None
