"""Small shared helpers: one-line user errors, atomic writes, logging set-up."""
import json
import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("asteroid_frugal")
_UMASK = os.umask(0)
os.umask(_UMASK)


class FrugalError(Exception):
    """A user-facing problem (bad input, missing file): printed as one line, no traceback."""


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


def run_cli(main: Callable[[], Any]) -> None:
    """Run a command-line ``main``; a :class:`FrugalError` becomes ``error: ...`` and exit 2."""
    setup_logging()
    try:
        main()
    except FrugalError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


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
