"""docs/generalisation.md from the held-out-soundfont runs' own files (command: ``docs/make_generalisation.py``).

Each direction is the ``--exp_dir`` of one run as egs/demo/README.md says
(``<exp_dir>/{vocals,drums,bass}``, one demo model each, trained on one soundfont's renderings
and tested on the other's). The main job's models (trained and tested on both soundfonts) may be
added for comparison, and variants (other settings, same held-out soundfont). Every figure comes
from the runs' files: the soundfonts from each model's resolved ``conf.yml``, the scores from
``results/si_snr.csv`` (one row per test excerpt), the training length from
``training_done.json``. With both directions given, each model is also scored on the same test
songs rendered with its own training soundfont (the other direction's test split), once, with
stage 4's SI-SNR code: ``results/si_snr_own_soundfont.csv``.

The held-out-voice section (:func:`voices_section`) groups runs whose resolved conf.yml differ only in
``training.seed``: per direction, the mean over seeds of each run's mean per-song SI-SNRi with the
seed-to-seed standard deviation, and changes between settings as differences of seed means with their
spread (:func:`seed_lines`); single runs keep their per-song paired table; its bash block is
:func:`voices_commands`.
"""
import re
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd
import yaml

from ..config import DEFAULT_CONF, get, load_yaml
from ..data.datasets import read_manifest
from ..data.default_corpus import SONG_RECORD
from ..data.sung_voice import SPEAKERS
from ..data.types import BASS, DRUMS, OTHER, TARGETS, VOCALS
from ..utils import FrugalError, cpu_name, read_json
from .results import training_length

TARGET_DB = {VOCALS: 4.0, DRUMS: 5.0, BASS: 5.0}      # the goals on the unseen soundfont (and voices: vocals)
VOICES_TITLE = "## Held-out voices"
REAL_TITLE = "## A real recording"
SEED_KEY = "training.seed"
OWN_CSV = "si_snr_own_soundfont.csv"   # results/<this>: the model on the same test songs, its training soundfont
# Keys that differ between runs without making another experiment (threads, where files are)
NOT_A_CHANGE = ("runtime.", "data.root", "default_corpus.jobs", "midi_render.jobs", "evaluation.",
                "by_target.")     # (by_target: what it changed is in the resolved sections themselves)
# Keys that came into conf.yml after runs were made, with the value those runs had where the current default
# differs: a run's conf.yml that lacks the key ran with this, not with the current default
BEFORE_THE_KEY = {"default_corpus.formant_shift": 0.0}


def fonts(paths) -> str:
    """Soundfont files by name: ``FluidR3_GM + TimGM6mb``."""
    return " + ".join(Path(str(p)).stem for p in paths or [])


def same_songs(conf: dict, other: dict) -> bool:
    """Both corpora compose the same test songs (generator, seed and sizes alike; soundfonts may differ)."""
    keys = ("default_corpus.generator", "default_corpus.seed", "default_corpus.n_train", "default_corpus.n_valid",
            "default_corpus.n_test", "default_corpus.song_seconds", "data.valid_chunk_seconds")
    return all(get(conf, k) == get(other, k) for k in keys)


def own_soundfont_csv(model_dir: Path, paired_dir: Path, name: str = OWN_CSV) -> Path:
    """``results/si_snr_own_soundfont.csv`` (or ``name``) of ``model_dir``: its SI-SNR on ``paired_dir``'s
    test excerpts, the same songs rendered with the soundfont(s) the model trained on (the other
    direction's test split; or, for voices, sung by other speakers). Computed once with stage 4's own
    SI-SNR code (evaluate.run_sisnr), then read."""
    out = model_dir / "results" / name
    if out.is_file():
        return out
    from ..evaluate import run_sisnr
    from ..inference import chunking, load_target_models

    conf = load_yaml(model_dir / "conf.yml")
    tm = load_target_models([str(model_dir)], "cpu")[0]
    with tempfile.TemporaryDirectory(dir=model_dir / "results") as tmp:
        run_sisnr(tm, paired_dir, Path(tmp), chunking(conf), "cpu", float(get(conf, "training.silence_db")))
        (Path(tmp) / "si_snr.csv").replace(out)          # complete or absent
    return out


def model_row(model_dir: Path, csv: Optional[Path] = None, tested_on: Optional[list] = None) -> dict:
    """SI-SNRi of one model over its test songs (``results/si_snr.csv``, or ``csv`` scored on the
    soundfonts ``tested_on``): mean and median of the per-song means, their spread."""
    conf = load_yaml(model_dir / "conf.yml")
    csv = csv or model_dir / "results" / "si_snr.csv"
    if not csv.is_file():
        raise FrugalError(f"{csv}: not found (run stage 4 for {model_dir})")
    target = get(conf, "data.target")
    table = pd.read_csv(csv)
    table["imp"] = table[f"si_snr_{target}"] - table[f"input_si_snr_{target}"]
    per_song = table.groupby("song")["imp"].mean()
    train_fonts = get(conf, "default_corpus.soundfonts")
    test_fonts = tested_on or get(conf, "default_corpus.test_soundfonts") or train_fonts
    n = len(per_song)
    return dict(target=target, train=fonts(train_fonts), test=fonts(test_fonts), songs=n, excerpts=len(table),
                per_song=per_song,
                mean=float(per_song.mean()), sem=float(per_song.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
                median=float(per_song.median()), low=float(per_song.min()), high=float(per_song.max()),
                excerpt_mean=float(table["imp"].mean()), length=training_length(model_dir),
                generator=f"{get(conf, 'default_corpus.generator')}, {get(conf, 'default_corpus.n_train')} train / "
                          f"{get(conf, 'default_corpus.n_test')} test songs of {get(conf, 'default_corpus.song_seconds')} s")


def table_lines(rows, with_target: bool) -> List[str]:
    """One line per model: SI-SNRi mean ± s.e., median, range (and the goal, met or not)."""
    head = ("| model | trained on | tested on | SI-SNRi mean ± s.e. (dB) | median | range over songs | songs |"
            + (" target | met |" if with_target else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = (f"| {r['target']} | {r['train']} | {r['test']} | {r['mean']:.1f} ± {r['sem']:.1f} | "
                f"{r['median']:.1f} | {r['low']:.1f} to {r['high']:.1f} | {r['songs']} |")
        if with_target:
            goal = TARGET_DB[r["target"]]
            gap = r["mean"] - goal
            line += f" >= {goal:g} | {'yes' if gap >= 0 else f'no ({gap:+.1f} dB)'} |"
        lines.append(line)
    return lines


def paired_change(row: dict, ref: dict) -> str:
    """``+x.x ± s.e.``: mean and standard error of the per-song differences ``row - ref`` (songs paired)."""
    diff = row["per_song"] - ref["per_song"]
    n = int(diff.count())
    sem = float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return f"{diff.mean():+.1f} ± {sem:.1f}"


def gap_lines(pairs) -> List[str]:
    """Same songs, the soundfont heard in training against the unseen one: the cost of the soundfont
    alone (song to song differences cancel), paired per song: mean ± s.e. of the per-song differences."""
    head = "| model | trained on | same songs, own soundfont | same songs, unseen soundfont | change (paired) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for own, unseen in pairs:
        lines.append(f"| {own['target']} | {own['train']} | {own['mean']:.1f} ± {own['sem']:.1f} ({own['test']}) | "
                     f"{unseen['mean']:.1f} ± {unseen['sem']:.1f} ({unseen['test']}) | {paired_change(unseen, own)} |")
    return lines


def flat_conf(conf: dict, prefix: str = "") -> dict:
    """``{"section.key": value}`` of a (nested) config."""
    out = {}
    for key, value in conf.items():
        if isinstance(value, dict):
            out.update(flat_conf(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def yaml_value(value) -> str:
    """``value`` as written in a config or ``--set`` (true, 440, [a, b])."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def changed_settings(conf_v: dict, conf_b: dict, ignore: Sequence[str] = ()) -> List[str]:
    """``key=value`` of the variant's settings that differ from the base run's (a key one run lacks
    counts as its conf.yml default, or as :data:`BEFORE_THE_KEY` says; run-only settings,
    :data:`NOT_A_CHANGE`, and ``ignore`` are left out)."""
    defaults = {**flat_conf(load_yaml(DEFAULT_CONF)), **BEFORE_THE_KEY}
    flat_v, flat_b = {**defaults, **flat_conf(conf_v)}, {**defaults, **flat_conf(conf_b)}
    return [f"`{k}={yaml_value(flat_v.get(k))}`" for k in sorted(set(flat_v) | set(flat_b))
            if flat_v.get(k) != flat_b.get(k) and not k.startswith(NOT_A_CHANGE + tuple(ignore))]


def variant_lines(variant_dirs, held_dirs) -> List[str]:
    """One row per model found under each variant exp_dir: its SI-SNRi on the unseen soundfont next to
    the direction's demo model (same target, same held-out soundfont, so the same test songs: the
    variant may train on other soundfonts too), and the settings that differ (from both
    resolved conf.yml files, so the page says what was changed, not what was meant)."""
    head = "| variant | model | trained on | tested on | SI-SNRi (dB) | demo model | change (paired) | settings changed |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for v in variant_dirs:
        found = [t for t in TARGETS if (Path(v) / t / "results" / "si_snr.csv").is_file()]
        if not found:
            raise FrugalError(f"{v}: no <target>/results/si_snr.csv (run stages 3-4 of the variant)")
        for t in found:
            conf_v = load_yaml(Path(v) / t / "conf.yml")
            base = next((Path(d) / t for d in held_dirs
                         if get(load_yaml(Path(d) / t / "conf.yml"), "default_corpus.test_soundfonts")
                         == get(conf_v, "default_corpus.test_soundfonts")), None)
            if base is None:
                raise FrugalError(f"{v}/{t}: no direction given holds out "
                                  f"{get(conf_v, 'default_corpus.test_soundfonts')}")
            row, ref = model_row(Path(v) / t), model_row(base)
            changed = changed_settings(conf_v, load_yaml(base / "conf.yml"))
            lines.append(f"| {Path(v).name} | {t} | {row['train']} | {row['test']} | {row['mean']:.1f} ± {row['sem']:.1f} | "
                         f"{ref['mean']:.1f} | {paired_change(row, ref)} | {', '.join(changed) or 'none'} |")
    return lines


def soundfont_pairs(directions: Sequence[str], held: List[dict]) -> List[tuple]:
    """``(own, unseen)`` rows of every model whose training soundfont another direction tests on, with
    the same songs: its score there (:func:`own_soundfont_csv`) and its row of ``held``."""
    pairs = []
    for d in directions:
        for other in directions:
            for t in TARGETS:
                mine, theirs = Path(d) / t, Path(other) / t
                conf_m, conf_t = load_yaml(mine / "conf.yml"), load_yaml(theirs / "conf.yml")
                if (other != d and same_songs(conf_m, conf_t) and get(conf_t, "default_corpus.test_soundfonts")
                        == get(conf_m, "default_corpus.soundfonts")):
                    own = model_row(mine, own_soundfont_csv(mine, theirs),
                                    tested_on=get(conf_m, "default_corpus.soundfonts"))
                    pairs.append((own, held[list(directions).index(d) * len(TARGETS) + TARGETS.index(t)]))
    return pairs


def intro_lines(first: dict) -> List[str]:
    """The page's title and what its tables show."""
    return ["# Generalisation to an unseen soundfont", "",
            "The demo models (`egs/demo/conf.yml`) trained on the built-in corpus v3 rendered with one "
            "General MIDI soundfont only, and tested on the test songs (other compositions) rendered with "
            "the other soundfont, which they never heard. SI-SNRi (dB) of the target, per test song the "
            "mean over its excerpts, then mean ± standard error, median and range over the songs. One "
            "training run per model (seed 0): the spread between songs is the only noise shown, run-to-run "
            "noise is not measured.", "",
            f"Corpus: {first['generator']}; training: {first['length']} (vocals model of the first direction).",
            "Targets: vocals >= 4 dB, drums and bass >= 5 dB on the unseen soundfont.", ""]


def command_lines(directions, main: Optional[str], variants: Sequence[str], note: Optional[str]) -> List[str]:
    """The commands that made the runs, then this page's own."""
    return ["", "Commands (egs/demo/README.md), then this page:", "", "```bash",
            *[f"for t in vocals drums bass; do ./run.sh --target $t --stop_stage 4 --overlay \"egs/demo/conf.yml "
              f"egs/demo/heldout_{Path(d).name.replace('heldout_', '')}.yml\" --data_dir data/{Path(d).name} "
              f"--exp_dir {d}; done" for d in directions],
            *[(Path(v) / t / "train_command.txt").read_text().strip() for v in variants for t in TARGETS
              if (Path(v) / t / "train_command.txt").is_file()],
            f".venv/bin/python docs/make_generalisation.py {' '.join(directions)}"
            + (f" --main {main}" if main else "")
            + (f" --variants {' '.join(variants)}" if variants else "")
            + (' --note "..."' if note else ""), "```", "",
            f"Generated by `docs/make_generalisation.py` from the runs' `conf.yml`, `results/si_snr.csv` and "
            f"`training_done.json`; machine: {cpu_name()}.", ""]


def page(directions: Sequence[str], main: Optional[str] = None, variants: Sequence[str] = (),
         note: Optional[str] = None) -> str:
    """The whole page: the held-out directions, the soundfont's cost on the same songs (both directions
    given), the variants, the main job, the commands."""
    held = [model_row(Path(d) / t) for d in directions for t in TARGETS]
    lines = intro_lines(held[0]) + table_lines(held, with_target=True)
    pairs = soundfont_pairs(directions, held)
    if pairs:
        lines += ["", "Where the gap is: each model on the same test songs rendered with the soundfont it trained on "
                  "(the other direction's test split: same compositions, same excerpts), against the unseen "
                  "soundfont above. The paired change per song is the soundfont's cost alone.", ""]
        lines += gap_lines(pairs)
    if variants:
        lines += ["", "## Variants tried", "",
                  "Other training settings, each one training run (seed 0) on the same data as the direction "
                  "it is compared with; the change is paired per test song (mean ± s.e.). A change within about "
                  "twice its standard error is not distinguished from run-to-run and song-to-song noise.", ""]
        lines += variant_lines(variants, directions)
        if note:
            lines += ["", note]
    if main:
        lines += ["", "For comparison, the main job (`./run.sh`: trained and tested on both soundfonts):", ""]
        lines += table_lines([model_row(Path(main) / t) for t in TARGETS], with_target=False)
    return "\n".join(lines + command_lines(directions, main, variants, note))


# ---------------------------------------------------------------- held-out voices, a real recording
def voices(conf: dict, split: str) -> str:
    """Who sings the corpus' ``split`` songs: ``additive singer`` or the speakers (``en_slt, it_lp``)."""
    if get(conf, "default_corpus.singer") == "additive":
        return "additive singer"
    names = get(conf, "default_corpus.voices") or []
    if split == "test":
        names = get(conf, "default_corpus.test_voices") or names
    who = ", ".join(names)
    return f"{who} + additive singer" if get(conf, "default_corpus.singer") == "mixed" else who


def song_speakers(model_dir: Path) -> dict:
    """``{song: speaker}`` of a model's test songs: each prepared track's origin (``track.json``) is a
    corpus song whose record (``.song.json``) names the speaker who sang it; {} where a record is
    missing (another corpus, or the corpus moved)."""
    out = {}
    try:
        for row in read_manifest(model_dir / "data" / "test.csv"):
            if row["song"] not in out:
                origin = Path(read_json(Path(row["track_dir"]) / "track.json")["origin"])
                out[row["song"]] = read_json(origin.parent / SONG_RECORD)["lead_voice"]["speaker"]
    except (FrugalError, OSError, KeyError, ValueError, TypeError):
        return {}
    return out


def speaker_lines(groups: Sequence[dict]) -> List[str]:
    """Per held-out speaker, the directions' own settings (``groups`` of :func:`seed_groups` with their
    ``direction``): SI-SNRi of the songs that speaker sang, each seed's mean over them, and the mean
    over seeds; a group whose runs' songs cannot be traced to their speakers is left out ([] if all are)."""
    head = "| direction | held-out speaker | language, sex | songs | SI-SNRi per seed (dB) | seed mean (dB) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for g in groups:
        if g.get("name") != "demo":
            continue
        per_run = [(voice_row(run / VOCALS)["per_song"], song_speakers(run / VOCALS)) for run in g["dirs"]]
        if not all(speakers for _, speakers in per_run):
            continue
        for speaker in dict.fromkeys(s for _, sp in per_run for s in sp.values()):
            means = [float(ps[[song for song, who in sp.items() if who == speaker]].mean()) for ps, sp in per_run]
            n_songs = sum(who == speaker for who in per_run[0][1].values())
            who = SPEAKERS.get(speaker)
            lines.append(f"| {g['direction']} | {speaker} | {f'{who.language}, {who.sex}' if who else '-'} | "
                         f"{n_songs} | {', '.join(f'seed {s}: {m:.1f}' for s, m in zip(g['seeds'], means))} | "
                         f"{np.mean(means):.1f} |")
    return lines if len(lines) > 2 else []


def voice_row(model_dir: Path, csv: Optional[Path] = None, tested: Optional[str] = None) -> dict:
    """:func:`model_row` with the singers instead of the soundfonts."""
    conf = load_yaml(model_dir / "conf.yml")
    row = model_row(model_dir, csv)
    row.update(train=voices(conf, "train"), test=tested or voices(conf, "test"))
    return row


def run_seed(model_dir: Path) -> int:
    """``training.seed`` of a run (its resolved conf.yml; the conf.yml default where the key is absent)."""
    seed = get(load_yaml(model_dir / "conf.yml"), SEED_KEY)
    return int(get(load_yaml(DEFAULT_CONF), SEED_KEY) if seed is None else seed)


def same_but_seed(conf: dict, other: dict) -> bool:
    """Both runs are the same experiment but for ``training.seed`` (run-only settings aside)."""
    return not changed_settings(conf, other, ignore=(SEED_KEY,))


def seed_groups(run_dirs: Sequence[str]) -> List[dict]:
    """The vocals runs under ``run_dirs`` grouped by settings: runs whose resolved conf.yml differ only
    in ``training.seed`` (and run-only settings) share a group, in the order first met. Each group:
    ``conf`` (its first run's), ``runs`` (exp_dir names), ``seeds``, ``means`` (each run's mean of
    per-song SI-SNRi), ``mean``, ``sd`` (seed-to-seed standard deviation, ddof 1; nan for one run), ``n``."""
    groups: List[dict] = []
    for d in run_dirs:
        model = Path(d) / VOCALS
        conf = load_yaml(model / "conf.yml")
        group = next((g for g in groups if same_but_seed(conf, g["conf"])), None)
        if group is None:
            group = dict(conf=conf, runs=[], dirs=[], seeds=[], means=[])
            groups.append(group)
        seed = run_seed(model)
        if seed in group["seeds"]:
            raise FrugalError(f"{d}: seed {seed} twice for the same settings "
                              f"({group['runs'][group['seeds'].index(seed)]})")
        group["runs"].append(Path(d).name)
        group["dirs"].append(Path(d))
        group["seeds"].append(seed)
        group["means"].append(voice_row(model)["mean"])
    for g in groups:
        x = np.asarray(g["means"])
        g.update(n=len(x), mean=float(x.mean()), sd=float(x.std(ddof=1)) if len(x) > 1 else float("nan"))
    return groups


def pooled_sd(groups: Sequence[dict]) -> tuple:
    """``(sd, df)``: the seed-to-seed standard deviation pooled over the groups with two seeds or more
    (each run against its own group's mean); ``(nan, 0)`` where no group has two seeds."""
    df = sum(g["n"] - 1 for g in groups)
    ss = sum(float(((np.asarray(g["means"]) - g["mean"]) ** 2).sum()) for g in groups)
    return (float(np.sqrt(ss / df)), df) if df else (float("nan"), 0)


def direction_of(conf: dict, directions: Sequence[str]) -> Optional[str]:
    """The name of the direction (``--voices`` exp_dir) with the same singer, training and test speakers."""
    keys = ("default_corpus.singer", "default_corpus.voices", "default_corpus.test_voices")
    return next((Path(d).name for d in directions
                 if all(get(load_yaml(Path(d) / VOCALS / "conf.yml"), k) == get(conf, k) for k in keys)), None)


def settings_name(run: str, direction: str) -> str:
    """A group's short name from its first run's exp_dir name: the direction's suffix (``_a`` of
    ``heldout_voices_a``) and a ``_seed<k>`` part taken out (``voices_r5x6eq_seed1_a`` -> ``voices_r5x6eq``)."""
    suffix = "_" + direction.rsplit("_", 1)[-1] if "_" in direction else None
    name = run[:-len(suffix)] if suffix and run.endswith(suffix) and len(run) > len(suffix) else run
    return re.sub(r"_seed\d+", "", name)


def named_groups(directions: Sequence[str], variants: Sequence[str]) -> List[dict]:
    """Every run (the directions and the variants) grouped by settings (:func:`seed_groups`), each
    group with its ``direction`` (name), ``name`` (``demo``: the direction's own settings) and
    ``legend`` (what its settings change)."""
    groups = seed_groups(list(directions) + list(variants))
    base = {}
    for g in groups:
        g["direction"] = direction_of(g["conf"], directions)
        if g["direction"] is None:
            raise FrugalError(f"{g['runs'][0]}: no held-out-voice direction given trains on "
                              f"{voices(g['conf'], 'train')} and tests on {voices(g['conf'], 'test')}")
        if any(Path(d).name in g["runs"] for d in directions):
            base[g["direction"]] = g
    legend = {}
    for g in groups:
        own = g is base[g["direction"]]
        g["name"] = "demo" if own else settings_name(g["runs"][0], g["direction"])
        changed = ", ".join(changed_settings(g["conf"], base[g["direction"]]["conf"], ignore=(SEED_KEY,)))
        legend.setdefault(g["name"], "the directions' own settings" if own else changed)
        g["base"] = base[g["direction"]]
        g["legend"] = legend[g["name"]]
    return groups


def seed_lines(groups: Sequence[dict]) -> List[str]:
    """Per group of :func:`named_groups` and direction the mean over seeds of the per-song-mean SI-SNRi
    ± the seed-to-seed standard deviation, then each other setting against the direction's settings:
    the difference of the seed means and its spread, the pooled seed-to-seed standard deviation times
    sqrt(1/n1 + 1/n2)."""
    sd, df = pooled_sd(groups)
    goal = TARGET_DB[VOCALS]
    legend = {g["name"]: g["legend"] for g in groups}
    lines = [f"- {name}: {changed}" for name, changed in legend.items()] + [""]
    lines += ["| settings | direction | SI-SNRi per seed (dB) | seed mean (dB) | s.d. over seeds | n | target | met |",
              "|---|---|---|---|---|---|---|---|"]
    for g in groups:
        gap = g["mean"] - goal
        lines.append(f"| {g['name']} | {g['direction']} | "
                     f"{', '.join(f'seed {s}: {m:.1f}' for s, m in zip(g['seeds'], g['means']))} | {g['mean']:.1f} | "
                     f"{format(g['sd'], '.1f') if g['n'] > 1 else '-'} | {g['n']} | "
                     f">= {goal:g} | {'yes' if gap >= 0 else f'no ({gap:+.1f} dB)'} |")
    changes = [g for g in groups if g is not g["base"]]
    if changes:
        pooled = (f"{sd:.1f} dB, {df} degree{'s' if df > 1 else ''} of freedom" if df
                  else "not measured: no settings with two seeds")
        lines += ["", "Each setting against the direction's own settings: the difference of the seed means ± its "
                  "spread, the seed-to-seed standard deviation pooled over all settings and directions "
                  f"({pooled}) times sqrt(1/n1 + 1/n2). A change no larger than its spread is not told apart "
                  "from the training run's own noise (both as printed, to 0.1 dB).", "",
                  "| settings | direction | direction's settings: seed mean (n) | this setting: seed mean (n) "
                  "| change ± spread (dB) | beyond the spread |", "|---|---|---|---|---|---|"]
        for g in changes:
            ref = g["base"]
            spread = sd * np.sqrt(1 / g["n"] + 1 / ref["n"]) if df else float("nan")
            diff = g["mean"] - ref["mean"]
            beyond = "not measured" if not df else ("yes" if round(abs(diff), 1) > round(spread, 1) else "no")
            lines.append(f"| {g['name']} | {g['direction']} | {ref['mean']:.1f} ({ref['n']}) | "
                         f"{g['mean']:.1f} ({g['n']}) | {diff:+.1f}{f' ± {spread:.1f}' if df else ''} | {beyond} |")
    return lines


def voice_variant_lines(variant_dirs: Sequence[str], directions: Sequence[str]) -> List[str]:
    """One row per held-out-voice run beyond the directions (``<variant>/vocals``: other training
    settings or another seed, the same training and test speakers as one direction): its SI-SNRi on
    the unseen speakers next to the run it is compared with, the change paired per test song, and the
    settings that differ in the two resolved conf.yml files. The run compared with is the run of the
    direction's settings with the same ``training.seed`` where there is one (among the directions and
    variants), else the direction itself."""
    head = ("| run | trained on | tested on | SI-SNRi (dB) | compared with | change (paired) | settings changed |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    runs = [Path(d) for d in list(directions) + list(variant_dirs)]
    for v in variant_dirs:
        mine = Path(v) / VOCALS
        if not (mine / "results" / "si_snr.csv").is_file():
            raise FrugalError(f"{v}: no {VOCALS}/results/si_snr.csv (run stages 3-4 of the variant)")
        conf_v = load_yaml(mine / "conf.yml")
        name = direction_of(conf_v, directions)
        if name is None:
            raise FrugalError(f"{v}: no held-out-voice direction given trains on {voices(conf_v, 'train')} "
                              f"and tests on {voices(conf_v, 'test')}")
        direction = next(Path(d) for d in directions if Path(d).name == name)
        conf_d = load_yaml(direction / VOCALS / "conf.yml")
        base = next((r for r in runs if r != Path(v) and run_seed(r / VOCALS) == run_seed(mine)
                     and same_but_seed(load_yaml(r / VOCALS / "conf.yml"), conf_d)), direction)
        row, ref = voice_row(mine), voice_row(base / VOCALS)
        changed = changed_settings(conf_v, load_yaml(base / VOCALS / "conf.yml"))
        lines.append(f"| {Path(v).name} | {row['train']} | {row['test']} | {row['mean']:.1f} ± {row['sem']:.1f} | "
                     f"{base.name}: {ref['mean']:.1f} | {paired_change(row, ref)} | {', '.join(changed) or 'none'} |")
    return lines


def voices_commands(directions: Sequence[str], baseline: Optional[str], variants: Sequence[str] = (),
                    note: bool = False) -> List[str]:
    """The bash block under the held-out-voice section: each run's own command (``<run>/vocals/
    train_command.txt``, or, for a run without one, the command egs/demo/README.md gives for its
    overlay), then this section's ``docs/make_generalisation.py`` command."""
    lines = ["```bash"]
    for d in list(directions) + ([baseline] if baseline else []) + list(variants):
        saved = Path(d) / VOCALS / "train_command.txt"
        lines.append(saved.read_text().strip() if saved.is_file() else
                     f"./run.sh --target {VOCALS} --stop_stage 4 --overlay \"egs/demo/conf.yml "
                     f"egs/demo/{Path(d).name}.yml\" --data_dir data/{Path(d).name} --exp_dir {d}")
    lines.append(f".venv/bin/python docs/make_generalisation.py --voices {' '.join(map(str, directions))}"
                 + (f" --baseline {baseline}" if baseline else "")
                 + (f" --voices_variants {' '.join(map(str, variants))}" if variants else "")
                 + (' --voices_note "..."' if note else ""))
    return lines + ["```"]


def voices_section(directions: Sequence[str], baseline: Optional[str], variants: Sequence[str] = (),
                   note: Optional[str] = None) -> List[str]:
    """The vocals models of the held-out-voice directions (``<dir>/vocals``): on the songs sung by
    speakers they never heard, against the baseline model (``<baseline>/vocals``: another corpus' singer)
    on the same excerpts, paired per song; with two directions (the same compositions, the speakers
    swapped), each model also on the songs sung by its own training speakers (the other direction's
    test split): the cost of an unseen voice alone; then every run grouped by settings, the mean over
    seeds (:func:`seed_lines`), the single runs paired per song (:func:`voice_variant_lines`), ``note``
    and the commands (:func:`voices_commands`)."""
    held = [voice_row(Path(d) / VOCALS) for d in directions]
    conf = load_yaml(Path(directions[0]) / VOCALS / "conf.yml")
    n_train, n_test = (len(get(conf, f"default_corpus.{k}") or []) for k in ("voices", "test_voices"))
    lines = [VOICES_TITLE, "",
             f"The demo vocals model trained on the built-in corpus sung by {n_train} of the {len(SPEAKERS)} "
             "recorded speakers (`data/sung_voice.py`; `egs/demo/heldout_voices_{a,b}.yml`) and tested on the "
             f"test songs (other compositions) sung by the {n_test} others in turn, never heard in training, "
             f"{'both ways round' if len(directions) == 2 else 'one way'}. SI-SNRi (dB) of the vocals as above "
             "(per-song means, then over songs). Target: >= 4 dB on held-out speakers. First the directions' "
             "runs (one training run each):", ""]
    lines += table_lines(held, with_target=True)
    rows = []
    for d, row in zip(directions, held):
        if baseline:
            base_dir = Path(baseline) / VOCALS
            base = voice_row(base_dir, own_soundfont_csv(base_dir, Path(d) / VOCALS, f"si_snr_{Path(d).name}.csv"),
                             tested=row["test"])
            base_conf = load_yaml(base_dir / "conf.yml")
            rows.append(f"| {row['train']} | {row['test']} | {row['mean']:.1f} ± {row['sem']:.1f} | "
                        f"{voices(base_conf, 'train')}: {base['mean']:.1f} ± {base['sem']:.1f} | "
                        f"{paired_change(row, base)} |")
    if rows:
        lines += ["", "Against the vocals model of the corpus with the additive singer "
                  "(`egs/demo/singer_additive.yml`, same compositions, soundfonts and training; its test split "
                  "re-sung), on the same held-out-voice excerpts, paired per song:", "",
                  "| trained on | tested on | this model | additive-singer model | change (paired) |",
                  "|---|---|---|---|---|", *rows]
    if len(directions) == 2:
        pairs = []
        for i, d in enumerate(directions):
            other = Path(directions[1 - i]) / VOCALS
            mine = Path(d) / VOCALS
            own = voice_row(mine, own_soundfont_csv(mine, other, f"si_snr_{Path(directions[1 - i]).name}.csv"),
                            tested=voices(load_yaml(other / "conf.yml"), "test"))
            pairs.append((own, held[i]))
        lines += ["", "Where the gap is: each model on the same test songs sung by the speakers it trained on "
                  "(the other direction's test split), against the unseen speakers above, paired per song:", "",
                  "| trained on | same songs, own speakers | same songs, unseen speakers | change (paired) |",
                  "|---|---|---|---|"]
        lines += [f"| {own['train']} | {own['mean']:.1f} ± {own['sem']:.1f} | {unseen['mean']:.1f} ± "
                  f"{unseen['sem']:.1f} | {paired_change(unseen, own)} |" for own, unseen in pairs]
    if variants:
        lines += ["", "Every run grouped by settings (resolved conf.yml files equal but for `training.seed`): per "
                  "direction, each run's mean of per-song SI-SNRi, their mean over seeds ± the seed-to-seed "
                  "standard deviation (initialisation, excerpt order and augmentation draws; same data), n seeds:",
                  ""]
        groups = named_groups(directions, variants)
        lines += seed_lines(groups)
        per_speaker = speaker_lines(groups)
        if per_speaker:
            lines += ["", "Per held-out speaker, the directions' own settings: the SI-SNRi of the songs each "
                      "sang (per-song means, then over its songs), per seed and over seeds:", ""] + per_speaker
        lines += ["", "Each run beyond the directions against the run of the direction's settings with the same "
                  "seed (else the direction), on the same test excerpts, the change paired per test song "
                  "(mean ± s.e.): the standard error covers the songs, not the training run.", ""]
        lines += voice_variant_lines(variants, directions)
    if note:
        lines += ["", note]
    return lines + [""] + voices_commands(directions, baseline, variants, note=bool(note))


def real_excerpt(model_dir: Path) -> float:
    """SI-SNRi (dB) of the model's target on the real MUSDB18 excerpt that ships with stempeg ("The
    Easton Ellises - Falcon 69", 6 s): the mixture is the sum of its four stems, the model separates
    it as stage 4 does (``separate_long``, the model's chunking) and is scored with stage 4's SI-SNR."""
    import stempeg
    import torch

    from ..inference import chunking, load_target_models, separate_long
    from ..metrics import si_snr

    conf = load_yaml(model_dir / "conf.yml")
    tm = load_target_models([str(model_dir)], "cpu")[0]
    stems, rate = stempeg.read_stems(stempeg.example_stem_path())      # mixture, drums, bass, other, vocals
    if int(rate) != int(round(float(tm.model.sample_rate))):
        raise FrugalError(f"{model_dir}: model at {tm.model.sample_rate} Hz, the excerpt at {rate} Hz")
    by_name = dict(zip((DRUMS, BASS, OTHER, VOCALS), torch.from_numpy(stems[1:].astype("float32")).transpose(1, 2)))
    mixture = sum(by_name.values())
    target = by_name[tm.target]
    refs = torch.stack([target, mixture - target])            # the model's two outputs: target, rest
    opts = chunking(conf)
    with torch.inference_mode():
        est = separate_long(tm.model, mixture, opts["chunk_seconds"], opts["overlap_seconds"], opts["batch_chunks"],
                            device="cpu")
    silence = float(get(conf, "training.silence_db"))
    out, inp = si_snr(est, refs, silence), si_snr(mixture.expand_as(refs), refs, silence)
    return float(out[0] - inp[0])


def real_section(model_dirs: Sequence[str], before: Optional[str]) -> List[str]:
    """SI-SNRi of every model under each exp_dir on the real excerpt (:func:`real_excerpt`), with the
    singer its corpus had; ``before`` a sentence with earlier figures."""
    lines = [REAL_TITLE, "",
             "The models on a real recording they never heard: the MUSDB18 excerpt shipped with stempeg "
             "(`stempeg.example_stem_path()`, \"The Easton Ellises - Falcon 69\", 6 s), mixture = the sum of "
             "its four stems, SI-SNRi (dB) of each model's target. One excerpt: a check, not a benchmark "
             "(nothing was tuned to it).", "",
             "| exp_dir | model | corpus singer (train) | SI-SNRi on the real excerpt (dB) |", "|---|---|---|---|"]
    for d in model_dirs:
        found = [t for t in TARGETS if (Path(d) / t / "best_model.pth").is_file()]
        if not found:
            raise FrugalError(f"{d}: no <target>/best_model.pth")
        for t in found:
            conf = load_yaml(Path(d) / t / "conf.yml")
            lines.append(f"| {Path(d).name} | {t} | {voices(conf, 'train')} | {real_excerpt(Path(d) / t):+.1f} |")
    if before:
        lines += ["", before]
    return lines


def replace_section(text: str, title: str, body: List[str]) -> str:
    """``text`` (a page) with its section ``title`` (up to the next ``## `` heading or the end)
    replaced by ``body``, or ``body`` appended."""
    lines = text.rstrip("\n").split("\n")
    if title in lines:
        start = lines.index(title)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines = lines[:start] + body + [""] + lines[end:]
    else:
        lines += [""] + body
    return "\n".join(lines).rstrip("\n") + "\n"
