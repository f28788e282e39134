"""One writer per experiment folder: ``<folder>/.lock``, held while a stage writes there.

:func:`folder_lock` takes an exclusive ``fcntl.flock`` on the file: the kernel releases it when
the process ends, however it ends (a kill included), so a killed run never leaves a lock behind,
only a file that the next run takes over. The file names its holder in one JSON line (host,
pid, what it does, command line, start time), and a second run *refuses* at once with one line
naming it (:class:`FolderInUseError`, exit status 2 on the command line)::

    error: exp/vocals is in use by pid 1234 on host x since 2026-12-02 07:10:03
    (training: ./run.sh --stage 3 ...); wait for it to finish or stop it

Refusing, not waiting: a second run that waited would start once the first one finished and
run the same stage again (retrain, rescore) over what was just written.

The file is removed when the lock is released. A folder the lock had to create is removed too
when nothing else was written into it (a failed run leaves no empty experiment folder); a
read-only folder is not locked (no run can write into it). The lock is reentrant within a
process (a caller may hold it around several stages). Where flock is not
available (no ``fcntl``; a network file system without it), the file is created exclusively
(``O_EXCL``) instead, and one whose holder is a dead process of this host is taken over.
"""
import contextlib
import errno
import json
import logging
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

from .utils import FrugalError

log = logging.getLogger("asteroid_frugal.lock")

LOCK_NAME = ".lock"
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_held: Dict[str, List[int]] = {}   # resolved folder -> [lock depth in this process]


class FolderInUseError(FrugalError):
    """Another process holds the folder's lock (the message names it)."""


def holder_record(what: str) -> Dict[str, Any]:
    """What this process writes into a lock it takes."""
    command = os.environ.get("FRUGAL_RUN_CMD") or " ".join(shlex.quote(a) for a in sys.argv)
    return dict(host=socket.gethostname(), pid=os.getpid(), what=what, command=command,
                started=time.strftime("%Y-%m-%d %H:%M:%S"))


def read_holder(path) -> Optional[Dict[str, Any]]:
    """The holder a lock file names, None when it names none (empty, being written, not ours)."""
    try:
        first = Path(path).read_text(errors="replace").split("\n", 1)[0]
        holder = json.loads(first)
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def pid_alive(pid) -> Optional[bool]:
    """Whether process ``pid`` of this host runs; None when it cannot be told."""
    if os.name != "posix" or not isinstance(pid, int) or pid <= 0:
        return None   # (os.kill on Windows would end the process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(holder: Optional[Dict[str, Any]], holding: bool = True) -> str:
    """``pid 1234 on host x since ... (training: ./run.sh ...)``, for the messages; ``holding``: the
    lock is still held (a holder that has ended is then said to hold it through its children)."""
    if not holder:
        return "another process (its lock file names no holder yet)"
    command = " ".join(str(holder.get("command", "?")).split())
    command = command if len(command) <= 200 else command[:197] + "..."
    what = f"{holder['what']}: " if holder.get("what") else ""
    text = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since {holder.get('started', '?')} " \
           f"({what}{command})"
    if holding and holder.get("host") == socket.gethostname() and pid_alive(holder.get("pid")) is False:
        text += ", which has ended (processes it started still hold the lock: they stop within seconds)"
    return text


def _in_use(folder: Path, path: Path, hint: str = "wait for it to finish or stop it") -> FolderInUseError:
    holder = None
    for _ in range(10):   # the holder writes its record just after taking the lock
        holder = read_holder(path)
        if holder:
            break
        time.sleep(0.05)
    return FolderInUseError(f"{folder} is in use by {describe_holder(holder)}; {hint}")


def _write_record(fd: int, record: Dict[str, Any]) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(record) + "\n").encode())


def _take_over_note(path: Path, previous: Optional[Dict[str, Any]]) -> None:
    if previous:
        log.info("%s: taking over the lock of a run that ended without releasing it (%s)",
                 path, describe_holder(previous, holding=False))


def _acquire_flock(folder: Path, path: Path, what: str) -> Optional[int]:
    """The descriptor holding the flock; None when this file system has no flock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _in_use(folder, path) from None
        except OSError as err:
            os.close(fd)
            if err.errno in _NO_FLOCK:
                return None
            raise
        # The holder may have released (and removed) the file between our open and flock: the
        # lock counts only on the file that is at the path now.
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            _take_over_note(path, read_holder(path))
            _write_record(fd, holder_record(what))
            return fd
        os.close(fd)


def _acquire_exclusive(folder: Path, path: Path, what: str) -> None:
    """Without flock: create the file exclusively; a file left by a dead process of this host is
    taken over (best effort: two runs taking over the same stale file at once both may succeed)."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = read_holder(path)
            if holder and holder.get("host") == socket.gethostname() and pid_alive(holder.get("pid")) is False:
                _take_over_note(path, holder)
                path.unlink(missing_ok=True)
                continue
            raise _in_use(folder, path, f"wait for it to finish or stop it (remove {path} if no run uses "
                                        f"the folder any more)") from None
        try:
            _write_record(fd, holder_record(what))
        finally:
            os.close(fd)
        return
    raise _in_use(folder, path)


def _release(path: Path, fd: Optional[int]) -> None:
    if fd is not None:
        path.unlink(missing_ok=True)   # while still locked: no other run holds this file
        os.close(fd)
        return
    holder = read_holder(path)   # O_EXCL: remove the file only while it still names this process
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def _made_folders(folder: Path) -> List[Path]:
    """The folders ``mkdir -p folder`` is about to create, deepest first."""
    made = []
    for parent in (folder, *folder.parents):
        if parent.exists():
            break
        made.append(parent)
    return made


@contextlib.contextmanager
def folder_lock(folder, what: str = "") -> Iterator[Path]:
    """Hold ``folder``'s lock (created when missing) for the ``with`` block; yields the lock file.

    ``what``: the holder's task, as the refusal names it (``training``). Raises
    :class:`FolderInUseError` when another process holds it."""
    folder = Path(folder)
    made = _made_folders(folder.absolute())
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FrugalError(f"{folder}: cannot create the folder ({err.strerror})") from None
    key = str(folder.resolve())
    path = folder / LOCK_NAME
    if key in _held or not os.access(folder, os.W_OK):
        # held by this process already; or a read-only folder, which no run can write into (a
        # model published from it elsewhere): no lock needed
        _held.setdefault(key, [0])[0] += 1
        try:
            yield path
        finally:
            _held[key][0] -= 1
            if not _held[key][0]:
                del _held[key]
        return
    try:
        fd = _acquire_flock(folder, path, what) if fcntl is not None else None
        if fd is None:
            _acquire_exclusive(folder, path, what)
    except BaseException as err:
        _remove_if_empty(made)
        if isinstance(err, OSError):   # e.g. another user's lock file, a full disk
            raise FrugalError(f"{path}: cannot take the folder's lock ({err.strerror or err})") from None
        raise
    _held[key] = [1]
    try:
        yield path
    finally:
        del _held[key]
        _release(path, fd)
        _remove_if_empty(made)


def _remove_if_empty(folders: List[Path]) -> None:
    for made in folders:
        try:
            made.rmdir()
        except OSError:   # something was written there (or another run made it its own)
            break
