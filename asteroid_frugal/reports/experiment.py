"""An ``egs/<name>`` experiment: what ``experiment.yml`` says, its table's columns and rows, and
where each seed's runs are.

An experiment folder holds ``experiment.yml`` and one config overlay per variant::

    title: "Table 2: excerpt length"
    target: vocals                      # the model trained in every variant; "all": vocals, drums
                                        # and bass, scored {1} and {4} (Table 3, metric sdr)
    metric: si_snr                      # si_snr (test split, Tables 1-2, Sec. 3.4) | sdr (museval)
    varied: {key: shaping.excerpt_seconds, label: "excerpt length (s)"}   # not with target: all
    common: common.yml                  # overlay shared by every variant (e.g. the epoch budget)
    variants: [excerpt05, excerpt10, excerpt20, excerpt30]   # -> excerpt05.yml, ...
    seeds: 3                            # optional (default: conf.yml's sweep.seeds); ./run.sh --seeds N wins
    trend_columns: [vocals, mean]       # optional: the columns whose steps are judged (default: all)
    paper:                              # the paper's numbers for this table, as printed
      note: "..."
      sign: -1                          # printed values are negative losses: SI-SNR = sign * value
      rows: {excerpt05: {vocals: -3.29, accompaniment: -13.54, mean: -8.42}, ...}
      directions: {vocals: [rises, rises, flat]}   # optional: the paper's stated direction per
                                                   # step, where it prints no numbers (Sec. 3.4)

Each variant and seed runs in ``exp/<name>/seed<k>/<variant>`` (:mod:`asteroid_frugal.sweep`).
"""
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..config import load_yaml
from ..data.types import TARGETS, rest_name
from ..stats import FLAT
from ..utils import FrugalError
from .results import TABLE3_COLUMNS

ALL = "all"                                   # target of Table 3: the three models, {1} and {4}
SCENARIOS = ("{1}", "{4}")


def load_experiment(egs_dir) -> Dict[str, Any]:
    """Read and check ``experiment.yml``; paths of overlays are resolved. ``spec["seeds"]`` is
    None where the file gives none (:func:`asteroid_frugal.sweep.seed_count` then decides)."""
    egs_dir = Path(egs_dir)
    where = egs_dir / "experiment.yml"
    spec = load_yaml(where)
    check_keys(spec, where)
    spec["seeds"] = spec.get("seeds")
    if spec["seeds"] is not None and (not isinstance(spec["seeds"], int) or spec["seeds"] < 1):
        raise FrugalError(f"{where}: seeds must be a whole number >= 1, got {spec['seeds']!r}")
    spec["name"] = spec.get("name") or egs_dir.name
    spec["common_path"] = egs_dir / spec["common"] if spec.get("common") else None
    spec["variant_paths"] = {}
    for v in spec["variants"]:
        path = egs_dir / f"{v}.yml"
        if not path.exists():
            raise FrugalError(f"{path}: overlay of variant {v!r} not found")
        spec["variant_paths"][v] = path
    check_columns(spec, where)
    return spec


def check_keys(spec: Dict[str, Any], where: Path) -> None:
    """The required keys of ``experiment.yml`` and their allowed values (one-line errors)."""
    for key in ("title", "target", "metric", "variants"):
        if key not in spec:
            raise FrugalError(f"{where}: missing key {key!r}")
    if spec["metric"] not in ("si_snr", "sdr"):
        raise FrugalError(f"{where}: metric must be si_snr or sdr, got {spec['metric']!r}")
    if spec["target"] not in (*TARGETS, ALL):
        raise FrugalError(f"{where}: target must be one of {', '.join(TARGETS)} or {ALL}, got {spec['target']!r}")
    if spec["target"] == ALL and spec["metric"] != "sdr":
        raise FrugalError(f"{where}: target {ALL} ({{1}} and {{4}}) is scored with BSS Eval: metric must be sdr")
    if spec["target"] != ALL and "varied" not in spec:
        raise FrugalError(f"{where}: missing key 'varied'")


def check_columns(spec: Dict[str, Any], where: Path) -> None:
    """``trend_columns`` and ``paper.directions`` name the table's columns, one direction per step."""
    cols = columns(spec)
    unknown = [c for c in spec.get("trend_columns", []) if c not in cols]
    if unknown:
        raise FrugalError(f"{where}: trend_columns {unknown} not among the columns {cols}")
    n_steps = len(row_labels(spec)) - 1
    for col, dirs in ((spec.get("paper") or {}).get("directions") or {}).items():
        if col not in cols or len(dirs) != n_steps or any(d not in ("rises", "falls", FLAT) for d in dirs):
            raise FrugalError(f"{where}: paper.directions.{col}: expected a column of {cols} with {n_steps} "
                              f"of rises/falls/flat, got {dirs!r}")


def columns(spec) -> List[str]:
    """The table's metric columns: target, rest, mean (Table 3: the four sources, accompaniment, mean)."""
    if spec["target"] == ALL:
        return list(TABLE3_COLUMNS)
    return [spec["target"], rest_name(spec["target"]), "mean"]


def row_labels(spec) -> List[str]:
    """One row per variant (Table 3: per variant and scenario, ``<variant> {1}``, ``<variant> {4}``)."""
    if spec["target"] == ALL:
        return [f"{v} {s}" for v in spec["variants"] for s in SCENARIOS]
    return list(spec["variants"])


def seed_dir(exp_dir: Path, seed: int) -> Path:
    """The folder of one seed's runs: ``<exp_dir>/seed<k>``."""
    return Path(exp_dir) / f"seed{seed}"


def found_seeds(exp_dir: Path, n_seeds: Optional[int] = None) -> List[int]:
    """Seeds with a folder under ``exp_dir`` (the first ``n_seeds`` only, when given)."""
    seeds = sorted(int(m.group(1)) for p in Path(exp_dir).glob("seed*")
                   if p.is_dir() and (m := re.fullmatch(r"seed(\d+)", p.name)))
    return [s for s in seeds if n_seeds is None or s < n_seeds]
