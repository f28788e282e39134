"""Stage 5: a publish folder per model, in Asteroid's convention and a Hugging Face repo layout.

``exp/<tag>/publish/`` holds

* ``model.pth``: the serialized model (Asteroid's ``save_publishable``: ``model_name``,
  ``model_args``, ``state_dict``, ``infos`` with ``training_config`` and
  ``final_metrics``), plain types only, so ``BaseModel.from_pretrained`` loads it
  under torch's ``weights_only`` loader;
* ``pytorch_model.bin``: the same file (hard link when possible), the name
  ``from_pretrained("user/repo")`` downloads from a Hugging Face repository;
* ``README.md``: a model card (:mod:`asteroid_frugal.reports.model_card`), with the license
  ``publish.license`` of the config;
* ``conf.yml``: the experiment's resolved config.

The folder is built beside the old one and swapped in at the end.
"""
import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict

from .config import get, load_yaml, save_config
from .data.types import stem_names
from .inference import load_model, load_model_package
from .lock import folder_lock
from .reports.model_card import PAPER, RECIPE, dataset_description, model_card
from .utils import FrugalError, read_json, write_text_atomic

log = logging.getLogger("asteroid_frugal.publish")

MUSDB_LICENSE = dict(
    title="The MUSDB18 corpus", title_link="https://sigsep.github.io/datasets/musdb.html",
    author="Zafar Rafii, Antoine Liutkus, Fabian-Robert Stöter, Stylianos Ioannis Mimilakis, Rachel Bittner",
    author_link="https://sigsep.github.io/", license="MUSDB18 terms: for non-commercial research only",
    license_link="https://sigsep.github.io/datasets/musdb.html", non_commercial=True)


# ------------------------------------------------------------------ plain types
def plain(obj: Any) -> Any:
    """A copy of ``obj`` with plain Python types only (dict/list/str/int/float/bool/None).

    torch >= 2.6 loads with ``weights_only=True``, which refuses numpy scalars,
    ``TorchVersion`` strings, paths and the like.
    """
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str(obj)  # also turns str subclasses (TorchVersion) into str
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float) or hasattr(obj, "__float__"):
        try:
            return float(obj)
        except (TypeError, ValueError):
            pass
    return str(obj)


# -------------------------------------------------------------- experiment info
def experiment_info(exp_dir: Path, fallback_conf: Dict[str, Any]) -> Dict[str, Any]:
    """What the experiment folder says: config, metrics, training command (with notes when missing)."""
    conf_path = exp_dir / "conf.yml"
    conf = load_yaml(conf_path) if conf_path.is_file() else None
    metrics_path = exp_dir / "results" / "final_metrics.json"
    metrics = None
    if metrics_path.is_file():
        raw = read_json(metrics_path)
        if not isinstance(raw, dict):
            raise FrugalError(f"{metrics_path}: expected a flat mapping of metric names to numbers")
        metrics = {str(k): float(v) for k, v in raw.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        dropped = sorted(set(raw) - set(metrics))
        if dropped:
            log.warning("%s: non-numeric entries left out of the card: %s", metrics_path, ", ".join(dropped))
    eval_info = exp_dir / "results" / "eval_info.json"
    bss_backend = read_json(eval_info).get("backend") if eval_info.is_file() else None
    cmd_path = exp_dir / "train_command.txt"
    command = cmd_path.read_text().strip() if cmd_path.is_file() else None
    return dict(conf=plain(conf) if conf is not None else plain(fallback_conf), conf_from_experiment=conf is not None,
                metrics=metrics, metrics_path=str(metrics_path), command=command, bss_backend=bss_backend)


# ------------------------------------------------------------------ the folder
def publish(exp_dir, conf: Dict[str, Any], out_dir=None) -> Path:
    """Build ``exp_dir/publish`` (or ``out_dir``) from an experiment; returns the folder. ``conf``: the
    publishing config (its ``publish.license`` goes on the card; it stands in for the experiment's
    ``conf.yml`` where the experiment has none)."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise FrugalError(f"{exp_dir}: experiment folder not found")
    with folder_lock(exp_dir, "publishing"):   # one run at a time (asteroid_frugal.lock)
        return _publish(exp_dir, conf, out_dir)


def _publish(exp_dir: Path, conf: Dict[str, Any], out_dir) -> Path:
    model_path = exp_dir / "best_model.pth"
    if not model_path.is_file():
        raise FrugalError(f"{model_path}: not found (train the model first: stage 3)")
    package, _ = load_model_package(model_path)
    info = experiment_info(exp_dir, conf)
    target = package.get("target") or get(info["conf"], "data.target")
    if not isinstance(target, str) or not target:
        raise FrugalError(f"{model_path}: no target recorded in the model file or in {exp_dir / 'conf.yml'}")
    model = load_model(model_path)  # builds the model: proves the file is usable before publishing
    n_params = sum(p.numel() for p in model.parameters())
    name = f"FrugalTasNet_{'MUSDB18' if dataset_description(info['conf'])['ids'] else 'builtin'}_{target}"
    model_dict = publishable(package, info, target, name)
    card = model_card(name, target, info, model_dict["model_args"], n_params, get(conf, "publish.license"),
                      model_dict["infos"].get("software_versions") or {})
    out_dir = Path(out_dir) if out_dir else exp_dir / "publish"
    build_folder(out_dir, model_dict, info, card)
    if not info["metrics"]:
        log.warning("%s: no %s yet: the card says the model is not evaluated", exp_dir, info["metrics_path"])
    log.info("published %s -> %s", model_path, out_dir)
    return out_dir


def publishable(package: Dict[str, Any], info: Dict[str, Any], target: str, name: str) -> Dict[str, Any]:
    """The model file's contents in Asteroid's ``save_publishable`` convention, plain types only."""
    infos = plain(package.get("infos") or {})
    infos.update(target=target, sources=stem_names([target]),
                 paper=PAPER, train_command=info["command"] or "")
    model_dict = plain({k: v for k, v in package.items() if k not in ("state_dict", "infos")})
    model_dict["infos"] = infos
    model_dict.update(target=target, sources=infos["sources"], dataset=name.split("_")[1],
                      task=f"{target}_separation", licenses=[MUSDB_LICENSE] if "MUSDB" in name else [])
    model_dict["training_config"] = info["conf"]
    model_dict["state_dict"] = package["state_dict"]  # tensors: already weights-only loadable
    return model_dict


def build_folder(out_dir: Path, model_dict: Dict[str, Any], info: Dict[str, Any], card: str) -> None:
    """Write the folder beside ``out_dir`` and swap it in; nothing is left behind on failure."""
    from asteroid.models import BaseModel
    from asteroid.models.publisher import save_publishable

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its Zenodo hint names the temporary folder
            save_publishable(str(tmp), model_dict, metrics=info["metrics"] or {}, train_conf=info["conf"],
                             recipe=RECIPE)
        BaseModel.from_pretrained(str(tmp / "model.pth"))  # the published file loads as users will load it
        _link_or_copy(tmp / "model.pth", tmp / "pytorch_model.bin")
        save_config(info["conf"], tmp / "conf.yml")
        write_text_atomic(tmp / "README.md", card)
        write_text_atomic(tmp / "final_metrics.json", json.dumps(info["metrics"] or {}, indent=2) + "\n")
        _make_readable(tmp)
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _make_readable(folder: Path) -> None:
    """Temporary files and folders are private (0600/0700); a publish folder is for sharing."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def _swap_in(new: Path, dst: Path) -> None:
    """Replace folder ``dst`` by ``new`` (two renames; the old one is removed afterwards)."""
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old.{os.getpid()}"
        os.replace(dst, old)
    os.replace(new, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
