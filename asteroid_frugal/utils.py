"""Small shared helpers: one-line user errors, atomic writes (and a full disk as one line), logging set-up."""
import errno
import io
import json
import logging
import os
import pickle
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("asteroid_frugal")
_UMASK = os.umask(0)
os.umask(_UMASK)


class FrugalError(Exception):
    """A user-facing problem (bad input, missing file): printed as one line, no traceback."""


class UnsafeFileError(FrugalError):
    """A torch file that holds more than tensors and plain values: refused, never unpickled."""


class DiskFullError(FrugalError):
    """A write that ran out of disk space (or quota): one line naming the path and the space needed."""


def cpu_name() -> str:
    """This machine's CPU model and core count, for the captions of measured figures."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"unknown CPU ({os.cpu_count()} cores)"


def setup_logging(level: int = logging.INFO) -> None:
    """Plain ``LEVEL message`` logging on stderr, once."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s",
                            datefmt="%H:%M:%S", stream=sys.stderr)


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# A writer that hides the OS error (libsndfile says "System error.") counts as out of space when
# less than this is free where it wrote (a failed write fills a disk to its last blocks), or less
# than what it still had to write.
_NEARLY_FULL = 64 * 1024


def human_bytes(n: float) -> str:
    """``n`` bytes as "5.1 MB" (powers of 1000, as ``df -H``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_bytes(path) -> int:
    """Free space (for this user) on the file system of ``path`` or of its nearest existing parent."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return 0


def disk_full_message(path, needed_bytes=None) -> str:
    """One line for a write to ``path`` that ran out of space: the path, the bytes the write
    needed when known, and the space free there now (``shutil.disk_usage``)."""
    return _disk_full_line(path, needed_bytes)


def _disk_full_line(path, needed_bytes=None, at_least: bool = False) -> str:
    free = free_bytes(path)
    need = "" if needed_bytes is None else f"needed {'more than ' if at_least else ''}{human_bytes(needed_bytes)}" + (
        " (written before it filled up), " if at_least else ", ")
    # enough space free and still refused: a quota, or no inodes left (df -i)
    other = " (over a quota, or out of inodes?)" if needed_bytes and not at_least and free >= needed_bytes else ""
    return f"{path}: disk full: {need}{human_bytes(free)} free there{other}; free some space and run the command again"


def is_disk_full(err: BaseException, where, still_needed=None) -> bool:
    """True when ``err``, raised while writing in folder ``where``, comes from a full disk: an
    OSError with ENOSPC or EDQUOT, or another writer's error (not a :class:`FrugalError`) while
    less than ``still_needed`` bytes (or 64 KiB) are free there."""
    if isinstance(err, DiskFullError):
        return True
    if isinstance(err, OSError):
        return err.errno in DISK_FULL_ERRNOS
    if not isinstance(err, Exception) or isinstance(err, FrugalError):
        return False
    return nearly_full(where, still_needed)


def nearly_full(where, still_needed=None) -> bool:
    """True when less than ``still_needed`` bytes (or 64 KiB) are free on the file system of
    ``where``: what a writer that hides its OS error failed on."""
    return free_bytes(where) < max(_NEARLY_FULL, int(still_needed or 0))


@contextmanager
def disk_full_errors(path, needed_bytes=None):
    """Turn a full disk met inside the block into a :class:`DiskFullError` naming ``path`` (and
    ``needed_bytes``, what the block writes, when known). For a block that writes several files
    under temporary names and removes them itself when it fails: its own clean-up runs first."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - re-raised unless the disk is full
        if not is_disk_full(err, Path(path).parent, needed_bytes):
            raise
        raise DiskFullError(disk_full_message(path, needed_bytes)) from None


@contextmanager
def atomic_path(path, suffix: str = "", needed_bytes=None):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    On failure the temporary file is removed and an existing ``path`` is left as it was; a full
    disk is a :class:`DiskFullError` naming ``path``, with ``needed_bytes`` (what the write needs,
    when the caller knows it; else at least what was written before the disk filled up).
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give results the usual mode
        os.replace(tmp, path)
    except BaseException as err:
        written = os.path.getsize(tmp) if tmp and os.path.exists(tmp) else 0
        full = is_disk_full(err, path.parent, None if needed_bytes is None else needed_bytes - written)
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        if not full:
            raise
        if needed_bytes is None and written:
            raise DiskFullError(_disk_full_line(path, written, at_least=True)) from None
        raise DiskFullError(disk_full_message(path, needed_bytes)) from None


def write_text_atomic(path, text: str) -> None:
    data = text.encode()
    with atomic_path(path, needed_bytes=len(data)) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path) -> Any:
    """Read a JSON file, with a one-line error naming it when it is missing or broken."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FrugalError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise FrugalError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def torch_save_atomic(obj: Any, path, suffix: str = "") -> None:
    """``torch.save`` to a temporary file beside ``path`` (ending in ``suffix``, by default
    ``path``'s), renamed onto it when complete (:func:`atomic_path`)."""
    import torch

    buffer = io.BytesIO()   # serialised first: the size a full disk's message names
    torch.save(obj, buffer)
    with atomic_path(path, suffix=suffix, needed_bytes=buffer.getbuffer().nbytes) as tmp:
        tmp.write_bytes(buffer.getbuffer())


_MAGIC = ((b"RIFF", "a WAV audio file"), (b"fLaC", "a FLAC audio file"), (b"OggS", "an Ogg audio file"),
          (b"ID3", "an MP3 audio file"), (b"\xff\xfb", "an MP3 audio file"), (b"FORM", "an AIFF audio file"))


def describe_file(path) -> str:
    """What a file looks like from its first bytes ("a WAV audio file"...), for error messages."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return "an unreadable file"
    if not head:
        return "an empty file"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[4:8] == b"ftyp":
        return "an MP4/M4A audio or video file"
    if head.startswith(b"PK"):
        return "a damaged or truncated torch file"
    if head.startswith(b"\x80"):
        return "a Python pickle not written by torch.save"
    return "a file not written by torch.save"


def torch_load(path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU: tensors and plain values only, never code.

    ``what`` names what the file should be ("a training checkpoint"). A file holding other
    Python objects raises :class:`UnsafeFileError` (nothing in it is run); any other
    unreadable file a :class:`FrugalError` saying what it looks like instead. One line each.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FrugalError(f"{path}: file not found (expected {what})")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise FrugalError(_not_what(path, what, err)) from None
        found = re.search(r"Unsupported (global: GLOBAL [\w.]+|operand \d+)", str(err))
        detail = found.group(1) if found else "objects torch's safe loader does not allow"
        raise UnsafeFileError(
            f"{path}: refused: it holds Python objects other than tensors and plain values ({detail}), "
            f"which files written by this project never do; nothing in it was run (loading it with "
            f"torch.load(weights_only=False) could run code from it: only for a file you trust)") from None
    except Exception as err:  # noqa: BLE001 - torch raises many types (zip, EOF, index errors)
        raise FrugalError(_not_what(path, what, err)) from None


def _not_what(path: Path, what: str, err: Exception) -> str:
    kind = describe_file(path)
    if "audio" in kind or kind == "an empty file":  # torch's own words ("pop from empty list") would mislead
        return f"{path}: not {what}: it is {kind}"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    first = re.split(r"(?<=[.:])\s", first)[0][:160].rstrip(".:")  # torch's first clause
    return f"{path}: not {what}: it is {kind} ({first})"
