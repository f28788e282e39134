"""One config file as the source of defaults: ``conf.yml``, overlays, ``section.key=value`` overrides.

The defaults ship inside the package (``asteroid_frugal/conf.yml``; the recipe's ``conf.yml``
links to it), so an installed library finds them without a checkout. Command lines reach this
module through ``cli/common.py`` (``--conf``, ``--overlay``, ``--set`` and the shortcut flags).
"""
import copy
import math
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

import yaml

from .utils import FrugalError, write_text_atomic

DEFAULT_CONF = Path(__file__).resolve().parent / "conf.yml"


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
    return merge(conf, override_layer(assignment), f"override {assignment!r}")


def override_layer(assignment: str) -> Dict[str, Any]:
    """``section.key=value`` as a nested mapping ``{section: {key: value}}``."""
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
    return node


# ---------------------------------------------------------------- value checks
# Every value must have the type of its conf.yml default (an int is a valid float). Only the
# exceptions and the obvious ranges are listed here; conf.yml stays the one place of defaults.
# Keys whose default does not show every type they accept (null defaults, several types):
TYPES = {
    "data.musdb_root": (str, None),
    "filterbank.stride": (int, None),
    "training.devices": (int, str, list),
    "training.precision": (str, int),
    "evaluation.max_tracks": (int, None),
    "midi_render.max_seconds": (float, None),
    "default_corpus.test_soundfonts": (list, None),
    "evaluation.bss_threads": (int, None),
    "runtime.threads": (int, str, None),   # also "auto" (runtime.py checks the value)
    "runtime.omp_wait_policy": (str, None),
    "separate.precision": (str, int),      # also 16 and 32 (inference.PRECISIONS' short names)
    "separate.auto_int8_min_hidden": (int, None),
    "separate.stems": (str, list, None),   # "vocals,accompaniment" (--stems) or a list
    "separate.mp3_bitrate": (str, int),    # 320k or 320000
    "separate.mmap_threshold_mb": (float, None),
    "separate.cache_dir": (str, None),
}
NUMBER_SUFFIXES = ("_seconds", "_db")  # durations and levels take any number, even where the default is whole
# Obvious ranges, in interval notation; a listed key whose value is null is not checked.
RANGES = {
    "(0, inf)": ("data.sample_rate", "data.n_channels", "data.valid_chunk_seconds", "default_corpus.song_seconds",
                 "default_corpus.jobs", "shaping.excerpt_seconds", "shaping.excerpts_per_song",
                 "shaping.align_seconds", "shaping.reference_seconds", "filterbank.n_filters",
                 "filterbank.kernel_size", "filterbank.stride", "masker.n_layers", "masker.hidden_size",
                 "training.epochs", "training.batch_size", "training.num_nodes", "optim.lr",
                 "evaluation.chunk_seconds", "evaluation.batch_chunks", "evaluation.jobs", "evaluation.max_tracks",
                 "midi_render.sample_rate", "midi_render.jobs", "midi_render.max_seconds", "midi_render.peak",
                 "training.log_every_n_steps", "evaluation.example_seconds", "evaluation.bss_threads",
                 "streaming.block", "separate.probe_seconds", "separate.auto_int8_min_hidden", "separate.block_frames",
                 "separate.mmap_threshold_mb"),
    "[0, inf)": ("default_corpus.n_train", "default_corpus.n_valid", "default_corpus.n_test",
                 "shaping.min_song_seconds", "masker.skip_every", "training.num_workers",
                 "training.early_stop_patience", "training.gradient_clipping", "training.checkpoint_every_n_steps",
                 "optim.weight_decay", "scheduler.patience", "evaluation.overlap_seconds", "evaluation.n_examples",
                 "midi_render.tail_seconds", "midi_render.gain", "shaping.augment_stereo_delay_ms"),
    "(0, 1)": ("scheduler.factor",),
    "(0, 1]": ("shaping.database_fraction",),
    "[0, 1)": ("data.extra_test_fraction", "masker.dropout"),
    "[0, 1]": ("data.extra_valid_fraction", "shaping.max_silent_fraction"),
    "[0, 24]": ("shaping.augment_eq_db",),
    "[0, 0.5]": ("shaping.augment_speed",),
}
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
               dict: "a mapping", None: "null"}


def _accepts(kind, value) -> bool:
    if kind is None:
        return value is None
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _in_range(interval: str, value) -> bool:
    low, high = (float(x) for x in interval[1:-1].split(","))
    return ((low < value if interval[0] == "(" else low <= value)
            and (value < high if interval[-1] == ")" else value <= high))


def expected_types(conf_default: Dict[str, Any], dotted: str) -> Tuple:
    """The types ``dotted`` accepts: from :data:`TYPES`, else from its default's type."""
    if dotted in TYPES:
        return TYPES[dotted]
    section, key = dotted.split(".", 1)
    default = conf_default[section][key]
    if default is None:
        return (None,)
    kind = type(default)
    if kind is int and key.endswith(NUMBER_SUFFIXES):
        kind = float
    return (kind,)


def validate(conf: Dict[str, Any], reference: Dict[str, Any], source: str = "config") -> Dict[str, Any]:
    """Check every ``section.key`` of ``conf`` against the type of its value in ``reference``
    (conf.yml) and the ranges in :data:`RANGES`; one-line :class:`FrugalError` naming key,
    value and what was expected. Numbers written as strings (PyYAML reads ``1e-3`` as a
    string) are converted where a number is expected. Returns ``conf``."""
    ranges = {key: interval for interval, keys in RANGES.items() for key in keys}
    for section, values in conf.items():
        if not isinstance(values, dict):
            raise FrugalError(f"{source}: {section}={values!r}: expected a mapping of keys (a config section)")
        if not isinstance(reference.get(section), dict):
            continue
        for key, value in values.items():
            dotted = f"{section}.{key}"
            if key not in reference[section] and dotted not in TYPES:
                continue
            kinds = expected_types(reference, dotted)
            if float in kinds and isinstance(value, str):
                try:
                    value = values[key] = float(value)
                except ValueError:
                    pass
            if not any(_accepts(kind, value) for kind in kinds):
                wanted = " or ".join(_TYPE_NAMES[k] for k in kinds)
                raise FrugalError(f"{source}: {dotted}={value!r}: expected {wanted}")
            if isinstance(value, float) and not math.isfinite(value):
                raise FrugalError(f"{source}: {dotted}={value!r}: expected a finite number")
            if dotted in ranges and value is not None and not _in_range(ranges[dotted], value):
                raise FrugalError(f"{source}: {dotted}={value!r}: expected a value in {ranges[dotted]}")
    return conf


# ---------------------------------------------------------------- settings of one target's model
BY_TARGET = "by_target"
PER_MODEL_SECTIONS = ("shaping", "filterbank", "masker", "training", "optim", "scheduler")


def _merge_by_target(conf: Dict[str, Any], layer: Dict[str, Any], source: str) -> Dict[str, Any]:
    """``conf`` with a config layer merged in; its ``by_target.<target>`` mappings (empty in conf.yml)
    are merged key by key, each checked against the sections it would change."""
    per_target = layer.get(BY_TARGET) if isinstance(layer, dict) else None
    if not isinstance(per_target, dict) or not isinstance(conf.get(BY_TARGET), dict):
        return merge(conf, layer, source)        # (a base without by_target: its unknown-key line)
    conf = merge(conf, {k: v for k, v in layer.items() if k != BY_TARGET}, source)
    for target, settings in per_target.items():
        where = f"{source}: {BY_TARGET}.{target}"
        if target not in conf[BY_TARGET]:
            raise FrugalError(f"{where}: unknown target (one of {', '.join(conf[BY_TARGET])})")
        if settings is None:
            continue
        if not isinstance(settings, dict):
            raise FrugalError(f"{where}: expected a mapping of sections")
        wrong = [k for k in settings if k not in PER_MODEL_SECTIONS]
        if wrong:
            raise FrugalError(f"{where}.{wrong[0]}: not a setting of one model (by_target holds "
                              f"{', '.join(PER_MODEL_SECTIONS)})")
        merge(conf, settings, where)                              # unknown keys: one line
        conf[BY_TARGET][target] = merge(conf[BY_TARGET][target] or {}, settings, where, strict=False)
    return conf


def load_config(base=DEFAULT_CONF, overlays: Iterable = (), overrides: Iterable[str] = ()) -> Dict[str, Any]:
    """``conf.yml`` + overlay files (in order) + ``section.key=value`` overrides, then the settings of
    ``by_target.<data.target>`` over the overlays (the overrides still win)."""
    conf = load_yaml(base)
    for overlay in overlays:
        if overlay:
            conf = _merge_by_target(conf, load_yaml(overlay), str(overlay))
    layered, overrides = conf, [a for a in overrides if a]
    for assignment in overrides:
        conf = _apply(conf, assignment)
    reference = load_yaml(DEFAULT_CONF)
    for target, settings in (conf.get(BY_TARGET) or {}).items():     # every target's settings, checked
        if settings:
            validate(merge(conf, settings, f"{BY_TARGET}.{target}"), reference, f"config ({BY_TARGET}.{target})")
    own = (conf.get(BY_TARGET) or {}).get(get(conf, "data.target")) or {}
    if own:
        by_target = conf[BY_TARGET]
        conf = merge(layered, own, f"{BY_TARGET}.{get(conf, 'data.target')}")
        for assignment in overrides:
            conf = _apply(conf, assignment)
        conf[BY_TARGET] = by_target
    return validate(conf, reference)


def _apply(conf: Dict[str, Any], assignment: str) -> Dict[str, Any]:
    return _merge_by_target(conf, override_layer(assignment), f"override {assignment!r}")


def save_config(conf: Dict[str, Any], path) -> None:
    """Write the resolved config (atomically) next to an experiment's results."""
    write_text_atomic(path, yaml.safe_dump(conf, sort_keys=False))


def get(conf: Dict[str, Any], dotted: str, default: Optional[Any] = None) -> Any:
    """``get(conf, "training.epochs")``."""
    node: Any = conf
    for k in dotted.split("."):
        if not isinstance(node, dict) or k not in node:
            return default
        node = node[k]
    return node
