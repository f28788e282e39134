"""Stage 5: a publish folder per model, in Asteroid's convention and a Hugging Face repo layout.

``exp/<tag>/publish/`` holds

* ``model.pth``: the serialized model (Asteroid's ``save_publishable``: ``model_name``,
  ``model_args``, ``state_dict``, ``infos`` with ``training_config`` and
  ``final_metrics``), plain types only, so ``BaseModel.from_pretrained`` loads it
  under torch's ``weights_only`` loader;
* ``pytorch_model.bin``: the same file (hard link when possible), the name
  ``from_pretrained("user/repo")`` downloads from a Hugging Face repository;
* ``README.md``: a model card (YAML front matter with tags, datasets, license and
  metrics; metrics table; the exact command that trained the model; usage);
* ``conf.yml``: the experiment's resolved config.

The folder is built beside the old one and swapped in at the end.
"""
import argparse
import contextlib
import io
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import yaml

from .config import add_config_args, config_from_args, get, load_yaml, save_config
from .data.types import rest_name, stem_names
from .inference import load_model, load_model_package
from .metrics import backend_name
from .utils import FrugalError, read_json, run_cli, write_text_atomic

log = logging.getLogger("asteroid_frugal.publish")

RECIPE = "asteroid-frugal"
PAPER = "A frugal approach to music source separation"
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


def dataset_description(conf: Dict[str, Any]) -> Dict[str, Any]:
    """Hugging Face dataset ids and a sentence on the training data."""
    musdb = get(conf, "data.musdb_root")
    extra = get(conf, "data.extra_roots") or []
    if musdb or get(conf, "data.musdb_download"):
        ids, text = ["musdb18"], "MUSDB18 (training split, validation tracks held out)"
    else:
        ids, text = [], ("the built-in procedurally generated corpus of asteroid-frugal "
                         "(a demo corpus, not MUSDB18: its scores are not comparable with the paper's)")
    if extra:
        text += f", plus extra stems from {len(extra)} folder(s): {', '.join(map(str, extra))}"
    shaping = conf.get("shaping") or {}
    if shaping:
        text += (f"; {shaping.get('excerpts_per_song', 1)} excerpt(s) of {shaping.get('excerpt_seconds')} s per song, "
                 f"database fraction {shaping.get('database_fraction')}")
    return dict(ids=ids, text=text)


# --------------------------------------------------------------------- the card
def model_card(name: str, target: str, info: Dict[str, Any], model_args: Dict[str, Any],
               n_params: int, license_id: str, versions: Dict[str, Any]) -> str:
    """README.md in the layout of a Hugging Face model repository."""
    conf, metrics = info["conf"], info["metrics"]
    data = dataset_description(conf)
    rest = rest_name(target)
    channels = {1: "mono", 2: "stereo"}.get(int(model_args.get("n_channels", 2)),
                                            f"{model_args.get('n_channels')} channels")
    front: Dict[str, Any] = dict(
        library_name="asteroid",
        tags=["asteroid", "audio", "music-source-separation", "audio-source-separation", "FrugalTasNet",
              "TasNet", target],
        datasets=data["ids"] or None, license=license_id, metrics=["si-snr", "sdr"],
        pipeline_tag="audio-to-audio")
    front = {k: v for k, v in front.items() if v is not None}
    if metrics:
        front["model-index"] = [dict(name=name, results=[dict(
            task=dict(type="audio-source-separation", name="Music source separation"),
            dataset=dict(type=(data["ids"] or ["custom"])[0], name=(data["ids"] or ["built-in corpus"])[0],
                         split="test"),
            metrics=[dict(type=k, value=_round(v), name=k) for k, v in metrics.items()
                     if math.isfinite(v)])])]
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             f"# {name}", "",
             f"A **{target}-vs-rest** model: the original TasNet with a BLSTM separator, as in "
             f"\"{PAPER}\", trained with [Asteroid](https://github.com/asteroid-team/asteroid) by the "
             f"`{RECIPE}` recipe. Its two outputs are **{target}** and **{rest}** ({channels}, "
             f"{int(float(model_args.get('sample_rate', 44100)))} Hz, {n_params:,} parameters).", "",
             "## Training data", "", f"Trained on {data['text']}.", "",
             "## Results", ""]
    if metrics:
        lines += [f"Test-set metrics from `results/final_metrics.json` (dB; see the evaluation stage for "
                  f"the aggregation and, for vocals, which scenario — 4 sources or vocals/accompaniment — is "
                  f"reported)" + (f"; BSS Eval v4 computed by {backend_name(info['bss_backend'])}"
                                  if info.get("bss_backend") else "") + ":",
                  "", "| metric | value |", "| --- | ---: |"]
        lines += [f"| {k} | {_round(v)} |" for k, v in metrics.items()]
    else:
        lines += ["**Not evaluated yet**: the experiment has no `results/final_metrics.json` "
                  "(run the evaluation stage, `./run.sh --stage 4 --stop_stage 5`, then publish again)."]
    lines += ["", "## How it was trained", "", "The exact command:", "", "```bash",
              info["command"] or "# unknown: the experiment has no train_command.txt", "```", "",
              "Training configuration" + ("" if info["conf_from_experiment"] else
                                          " (the experiment has no conf.yml: this is the publishing config)")
              + ":", "", "```yaml", yaml.safe_dump(
                  {k: conf[k] for k in ("data", "shaping", "filterbank", "masker", "training", "optim",
                                        "scheduler") if k in conf}, sort_keys=False).rstrip(), "```", "",
              "## Usage", "", "```bash",
              f"asteroid-frugal-separate song.mp3 --models {target}=path/to/this/folder --out stems", "```", "",
              "```python", "import asteroid_frugal  # registers FrugalTasNet with asteroid.models",
              "from asteroid.models import BaseModel",
              "from asteroid_frugal.inference import separate_long", "",
              'model = BaseModel.from_pretrained("path/to/this/folder/model.pth")',
              f"stems = separate_long(model, mixture)  # mixture [channels, time] at the model's rate "
              f"-> [2 ({target}, {rest}), channels, time]", "```", "",
              "## Software", ""]
    lines += [f"- {k}: {v}" for k, v in versions.items()]
    lines += ["", "## License", "",
              f"Model weights: `{license_id}`. Trained on data with its own terms"
              + (" (MUSDB18: non-commercial research only)." if data["ids"] else "."), ""]
    return "\n".join(lines)


def _round(v: float) -> float:
    return float(f"{v:.4g}") if math.isfinite(v) else v


# ------------------------------------------------------------------ the folder
def publish(exp_dir, conf: Optional[Dict[str, Any]] = None, out_dir=None,
            license_id: str = "cc-by-nc-sa-4.0") -> Path:
    """Build ``exp_dir/publish`` (or ``out_dir``) from an experiment; returns the folder."""
    from asteroid.models import BaseModel
    from asteroid.models.publisher import save_publishable

    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise FrugalError(f"{exp_dir}: experiment folder not found")
    model_path = exp_dir / "best_model.pth"
    if not model_path.is_file():
        raise FrugalError(f"{model_path}: not found (train the model first: stage 3)")
    package, _ = load_model_package(model_path)
    info = experiment_info(exp_dir, conf or {})
    target = package.get("target") or get(info["conf"], "data.target")
    if not isinstance(target, str) or not target:
        raise FrugalError(f"{model_path}: no target recorded in the model file or in {exp_dir / 'conf.yml'}")
    model = load_model(model_path)  # builds the model: proves the file is usable before publishing
    n_params = sum(p.numel() for p in model.parameters())
    name = f"FrugalTasNet_{'MUSDB18' if dataset_description(info['conf'])['ids'] else 'builtin'}_{target}"

    infos = plain(package.get("infos") or {})
    infos.update(target=target, sources=stem_names([target]),
                 paper=PAPER, train_command=info["command"] or "")
    model_dict = plain({k: v for k, v in package.items() if k not in ("state_dict", "infos")})
    model_dict["infos"] = infos
    model_dict.update(target=target, sources=infos["sources"], dataset=name.split("_")[1],
                      task=f"{target}_separation", licenses=[MUSDB_LICENSE] if "MUSDB" in name else [])
    model_dict["training_config"] = info["conf"]
    model_dict["state_dict"] = package["state_dict"]  # tensors: already weights-only loadable

    out_dir = Path(out_dir) if out_dir else exp_dir / "publish"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its Zenodo hint names the temporary folder
            save_publishable(str(tmp), model_dict, metrics=info["metrics"] or {}, train_conf=info["conf"],
                             recipe=RECIPE)
        BaseModel.from_pretrained(str(tmp / "model.pth"))  # the published file loads as users will load it
        _link_or_copy(tmp / "model.pth", tmp / "pytorch_model.bin")
        save_config(info["conf"], tmp / "conf.yml")
        card = model_card(name, target, info, model_dict["model_args"], n_params, license_id,
                          infos.get("software_versions") or {})
        write_text_atomic(tmp / "README.md", card)
        write_text_atomic(tmp / "final_metrics.json", json.dumps(info["metrics"] or {}, indent=2) + "\n")
        _make_readable(tmp)
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not info["metrics"]:
        log.warning("%s: no %s yet: the card says the model is not evaluated", exp_dir, info["metrics_path"])
    log.info("published %s -> %s", model_path, out_dir)
    return out_dir


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


# -------------------------------------------------------------------------- CLI
def main(argv: Optional[Sequence[str]] = None) -> Path:
    parser = argparse.ArgumentParser(description="Stage 5: publish folder (model file + model card) "
                                                 "for one experiment")
    parser.add_argument("--exp_dir", required=True, help="experiment folder (exp/<tag>)")
    parser.add_argument("--out", default=None, help="publish folder (default: <exp_dir>/publish)")
    parser.add_argument("--license", default="cc-by-nc-sa-4.0",
                        help="license id for the card (default cc-by-nc-sa-4.0: MUSDB18 is non-commercial)")
    add_config_args(parser)
    args = parser.parse_args(argv)
    return publish(args.exp_dir, config_from_args(args), args.out, args.license)


if __name__ == "__main__":
    run_cli(main)
