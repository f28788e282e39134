"""A real full disk for tests: a small tmpfs mounted on a test's folder (root only, else skipped),
and a writer that fails as a full disk does, for the tests that run everywhere."""
import errno
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(folder, kilobytes: int):
    """Mount a ``kilobytes`` tmpfs on ``folder`` (made if needed) for the block; skip the test
    where mounting is not permitted (not root, or no mount in this container)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs root (mount -t tmpfs)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(kilobytes)}k", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here ({done.stderr.strip() or done.returncode})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def resize(folder, kilobytes: int) -> None:
    """Give the :func:`small_disk` mounted on ``folder`` a new size (space freed, the user re-runs)."""
    subprocess.run(["mount", "-o", f"remount,size={int(kilobytes)}k", str(folder)], check=True, capture_output=True)


def fill(folder) -> None:
    """Fill the file system of ``folder`` to its last byte (a file named ``filler``)."""
    fd = os.open(Path(folder) / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


def no_space(path="") -> OSError:
    """The error a write raises on a full disk."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path) or None)
