"""One config file as the source of defaults: ``conf.yml``, overlays, ``section.key=value`` overrides.

Usage from a stage script::

    parser = argparse.ArgumentParser(); add_config_args(parser)
    args = parser.parse_args(); conf = config_from_args(args)
"""
import argparse
import copy
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

import yaml

from .utils import FrugalError, write_text_atomic

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONF = REPO_ROOT / "conf.yml"


def load_yaml(path) -> Dict[str, Any]:
    """Read a YAML mapping with a one-line error naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FrugalError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise FrugalError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FrugalError(f"{path}: expected a mapping of sections at the top level")
    return data


def merge(base: Dict[str, Any], overlay: Dict[str, Any], source: str = "overlay",
          strict: bool = True) -> Dict[str, Any]:
    """Deep-merge ``overlay`` into a copy of ``base``; unknown keys are an error when ``strict``."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if key not in out and strict:
            raise FrugalError(f"{source}: unknown config key {key!r} (known: {', '.join(sorted(out))})")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, f"{source}:{key}", strict)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_override(conf: Dict[str, Any], assignment: str) -> Dict[str, Any]:
    """Apply ``section.key=value`` (value parsed as YAML: numbers, lists, null...)."""
    if "=" not in assignment:
        raise FrugalError(f"override {assignment!r}: expected section.key=value")
    dotted, raw = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node: Dict[str, Any] = {}
    tree = node
    for k in keys[:-1]:
        tree[k] = {}
        tree = tree[k]
    tree[keys[-1]] = value
    return merge(conf, node, f"override {assignment!r}")


def load_config(base=DEFAULT_CONF, overlays: Iterable = (), overrides: Iterable[str] = ()) -> Dict[str, Any]:
    """``conf.yml`` + overlay files (in order) + ``section.key=value`` overrides."""
    conf = load_yaml(base)
    for overlay in overlays:
        if overlay:
            conf = merge(conf, load_yaml(overlay), str(overlay))
    for assignment in overrides:
        if assignment:
            conf = apply_override(conf, assignment)
    return conf


def save_config(conf: Dict[str, Any], path) -> None:
    """Write the resolved config (atomically) next to an experiment's results."""
    write_text_atomic(path, yaml.safe_dump(conf, sort_keys=False))


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--conf``, ``--overlay`` (repeatable) and ``--set section.key=value`` (repeatable)."""
    parser.add_argument("--conf", default=str(DEFAULT_CONF), help="base config (default: conf.yml)")
    parser.add_argument("--overlay", action="append", default=[],
                        help="config overlay merged on top of --conf (repeatable)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (repeatable), e.g. --set training.epochs=5")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/OpenMP threads of this command (default: runtime.threads; see runtime.py)")


def config_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    overlays = [o for item in args.overlay for o in str(item).split()]
    threads = getattr(args, "threads", None)
    conf = load_config(args.conf, overlays, [*args.overrides, *([f"runtime.threads={threads}"] if threads else [])])
    from .runtime import apply, check_threads, check_wait_policy

    check_threads(get(conf, "runtime.threads"), "runtime.threads")   # bad values: one line, not a traceback
    check_wait_policy(get(conf, "runtime.omp_wait_policy"), "runtime.omp_wait_policy")
    apply(threads)   # the rest of the policy was set before torch loaded (runtime.early_setup)
    return conf


def get(conf: Dict[str, Any], dotted: str, default: Optional[Any] = None) -> Any:
    """``get(conf, "training.epochs")``."""
    node: Any = conf
    for k in dotted.split("."):
        if not isinstance(node, dict) or k not in node:
            return default
        node = node[k]
    return node
