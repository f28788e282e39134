"""Small shared helpers: one-line user errors, atomic writes, logging set-up."""
import json
import logging
import os
import pickle
import re
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


@contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give results the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


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


def torch_save_atomic(obj: Any, path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


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
