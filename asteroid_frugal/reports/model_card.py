"""The model card of a publish folder: ``README.md`` in the layout of a Hugging Face model repository
(YAML front matter with tags, datasets, license and metrics; metrics table; the exact command
that trained the model; usage). The folder itself: :mod:`asteroid_frugal.publish`."""
import math
from typing import Any, Dict, List

import yaml

from ..config import get
from ..data.types import rest_name
from ..metrics import backend_name

RECIPE = "asteroid-frugal"
PAPER = "A frugal approach to music source separation"
CONF_SECTIONS = ("data", "shaping", "filterbank", "masker", "training", "optim", "scheduler")  # shown on the card


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


def round_metric(v: float) -> float:
    """A metric to 4 significant digits (as the card prints it); non-finite values as they are."""
    return float(f"{v:.4g}") if math.isfinite(v) else v


def front_matter(name: str, target: str, data: Dict[str, Any], metrics, license_id: str) -> Dict[str, Any]:
    """The card's YAML header: library, tags, datasets, license, metrics and, when evaluated, model-index."""
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
            metrics=[dict(type=k, value=round_metric(v), name=k) for k, v in metrics.items()
                     if math.isfinite(v)])])]
    return front


def results_lines(info: Dict[str, Any]) -> List[str]:
    """The metrics table, or the note that the model is not evaluated yet."""
    metrics = info["metrics"]
    if not metrics:
        return ["**Not evaluated yet**: the experiment has no `results/final_metrics.json` "
                "(run the evaluation stage, `./run.sh --stage 4 --stop_stage 5`, then publish again)."]
    lines = [f"Test-set metrics from `results/final_metrics.json` (dB; see the evaluation stage for "
             f"the aggregation and, for vocals, which scenario — 4 sources or vocals/accompaniment — is "
             f"reported)" + (f"; BSS Eval v4 computed by {backend_name(info['bss_backend'])}"
                             if info.get("bss_backend") else "") + ":",
             "", "| metric | value |", "| --- | ---: |"]
    return lines + [f"| {k} | {round_metric(v)} |" for k, v in metrics.items()]


def training_lines(info: Dict[str, Any]) -> List[str]:
    """The exact training command and the training configuration."""
    conf = info["conf"]
    return ["## How it was trained", "", "The exact command:", "", "```bash",
            info["command"] or "# unknown: the experiment has no train_command.txt", "```", "",
            "Training configuration" + ("" if info["conf_from_experiment"] else
                                        " (the experiment has no conf.yml: this is the publishing config)")
            + ":", "", "```yaml",
            yaml.safe_dump({k: conf[k] for k in CONF_SECTIONS if k in conf}, sort_keys=False).rstrip(), "```", ""]


def usage_lines(target: str, rest: str) -> List[str]:
    """How to separate with the published model: the command line and Python."""
    return ["## Usage", "", "```bash",
            f"asteroid-frugal-separate song.mp3 --models {target}=path/to/this/folder --out stems", "```", "",
            "```python", "import asteroid_frugal  # registers FrugalTasNet with asteroid.models",
            "from asteroid.models import BaseModel",
            "from asteroid_frugal.inference import separate_long", "",
            'model = BaseModel.from_pretrained("path/to/this/folder/model.pth")',
            f"stems = separate_long(model, mixture)  # mixture [channels, time] at the model's rate "
            f"-> [2 ({target}, {rest}), channels, time]", "```", ""]


def model_card(name: str, target: str, info: Dict[str, Any], model_args: Dict[str, Any],
               n_params: int, license_id: str, versions: Dict[str, Any]) -> str:
    """README.md in the layout of a Hugging Face model repository (``info``: what
    :func:`asteroid_frugal.publish.experiment_info` read from the experiment)."""
    data = dataset_description(info["conf"])
    rest = rest_name(target)
    channels = {1: "mono", 2: "stereo"}.get(int(model_args.get("n_channels", 2)),
                                            f"{model_args.get('n_channels')} channels")
    front = front_matter(name, target, data, info["metrics"], license_id)
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             f"# {name}", "",
             f"A **{target}-vs-rest** model: the original TasNet with a BLSTM separator, as in "
             f"\"{PAPER}\", trained with [Asteroid](https://github.com/asteroid-team/asteroid) by the "
             f"`{RECIPE}` recipe. Its two outputs are **{target}** and **{rest}** ({channels}, "
             f"{int(float(model_args.get('sample_rate', 44100)))} Hz, {n_params:,} parameters).", "",
             "## Training data", "", f"Trained on {data['text']}.", "",
             "## Results", ""]
    lines += results_lines(info) + [""] + training_lines(info) + usage_lines(target, rest) + ["## Software", ""]
    lines += [f"- {k}: {v}" for k, v in versions.items()]
    lines += ["", "## License", "",
              f"Model weights: `{license_id}`. Trained on data with its own terms"
              + (" (MUSDB18: non-commercial research only)." if data["ids"] else "."), ""]
    return "\n".join(lines)
