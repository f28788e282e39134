"""conf.yml (the package's defaults), overlays and overrides, value checks; every key is read."""
import ast

import pytest
import yaml

from asteroid_frugal.config import BY_TARGET, DEFAULT_CONF, load_config, save_config
from asteroid_frugal.data.types import TARGETS
from asteroid_frugal.utils import FrugalError

from conftest import REPO


def test_conf_yml_holds_the_paper_values():
    conf = load_config()
    assert conf["filterbank"]["n_filters"] == 500 and conf["filterbank"]["kernel_size"] == 220
    assert conf["masker"] == {**conf["masker"], "n_layers": 4, "hidden_size": 500, "bidirectional": True}
    assert conf["data"]["sample_rate"] == 44100 and conf["data"]["n_channels"] == 2
    assert conf["optim"]["lr"] == 0.001 and conf["training"]["gradient_clipping"] == 5
    assert conf["scheduler"] == {"factor": 0.5, "patience": 3}
    assert conf["training"]["early_stop_patience"] == 10


def test_overlay_then_overrides(tmp_path):
    overlay = tmp_path / "o.yml"
    overlay.write_text("training:\n  epochs: 7\nmasker:\n  hidden_size: 32\n")
    conf = load_config(overlays=[overlay], overrides=["training.epochs=3", "data.extra_roots=[a, b]"])
    assert conf["training"]["epochs"] == 3 and conf["masker"]["hidden_size"] == 32
    assert conf["data"]["extra_roots"] == ["a", "b"]
    assert conf["masker"]["n_layers"] == 4  # untouched defaults stay


@pytest.mark.parametrize("bad", ["training.epoch=3", "nosection.x=1", "novalue"])
def test_unknown_keys_are_one_line_errors(bad):
    with pytest.raises(FrugalError) as err:
        load_config(overrides=[bad])
    assert "\n" not in str(err.value)


def test_broken_overlay_names_the_file(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("training: [unclosed\n")
    with pytest.raises(FrugalError, match="bad.yml"):
        load_config(overlays=[bad])


def test_saved_config_reloads_identically(tmp_path):
    conf = load_config(overrides=["shaping.excerpt_seconds=5"])
    save_config(conf, tmp_path / "conf.yml")
    assert yaml.safe_load((tmp_path / "conf.yml").read_text()) == conf


def test_demo_overlay_is_valid():
    conf = load_config(overlays=[REPO / "egs" / "demo" / "conf.yml"])
    assert conf["filterbank"]["n_filters"] < 500


def test_demo_vocals_overlay_trains_the_vocals_model_only():
    overlays = [REPO / "egs" / "demo" / "conf.yml", REPO / "egs" / "demo" / "vocals.yml"]
    vocals, drums = (load_config(overlays=overlays, overrides=[f"data.target={t}"]) for t in ("vocals", "drums"))
    demo = load_config(overlays=overlays[:1], overrides=["data.target=drums"])
    assert drums == {**demo, BY_TARGET: drums[BY_TARGET]}
    steps = {name: c["training"]["epochs"] * c["shaping"]["excerpts_per_song"] for name, c in
             (("vocals", vocals), ("demo", demo))}                # per song and batch position: more steps
    assert steps["vocals"] > steps["demo"] and vocals["filterbank"] == demo["filterbank"]


@pytest.mark.parametrize("bad, message", [
    ("optim.lr=abc", "optim.lr='abc': expected a number"),
    ("training.early_stop_patience=abc", "training.early_stop_patience='abc': expected an integer"),
    ("training.epochs=2.5", "training.epochs=2.5: expected an integer"),
    ("scheduler.factor=1.5", "scheduler.factor=1.5: expected a value in (0, 1)"),
    ("optim.lr=-0.1", "optim.lr=-0.1: expected a value in (0, inf)"),
    ("optim.lr=.nan", "optim.lr=nan: expected a finite number"),
    ("shaping.augment_gain=1", "shaping.augment_gain=1: expected true or false"),
    ("shaping.augment_eq_db=30", "shaping.augment_eq_db=30: expected a value in [0, 24]"),
    ("shaping.augment_speed=0.6", "shaping.augment_speed=0.6: expected a value in [0, 0.5]"),
    ("data.extra_roots=some/dir", "data.extra_roots='some/dir': expected a list"),
    ("filterbank.stride=half", "filterbank.stride='half': expected an integer or null"),
    ("training.devices=1.5", "training.devices=1.5: expected an integer or a string or a list"),
    ("training=3", "training=3: expected a mapping"),
])
def test_config_values_are_checked_before_any_work(bad, message):
    with pytest.raises(FrugalError) as err:
        load_config(overrides=[bad])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_config_values_of_every_accepted_type_pass():
    conf = load_config(overrides=["optim.lr=1e-3", "evaluation.overlap_seconds=0.5", "training.devices=2",
                                  "training.devices=[0, 1]", "filterbank.stride=110", "evaluation.max_tracks=3",
                                  "data.musdb_root=/data/musdb18", "training.gradient_clipping=5"])
    assert conf["optim"]["lr"] == 0.001  # PyYAML reads 1e-3 as a string: converted where a number is expected
    assert conf["training"]["devices"] == [0, 1] and conf["filterbank"]["stride"] == 110
    for overlay in sorted(REPO.glob("egs/*/*.yml")):
        if overlay.name != "experiment.yml":  # experiment specs are not config overlays
            load_config(overlays=[overlay])


def test_defaults_ship_inside_the_package_and_the_recipe_links_to_them():
    assert DEFAULT_CONF == REPO / "asteroid_frugal" / "conf.yml"
    assert (REPO / "conf.yml").resolve() == DEFAULT_CONF.resolve()


def section_reads(path, sections):
    """``{section: key names}`` one module reads: a dotted string ``"section.key"``; and, in a module
    that takes a section (``conf["section"]``, a dotted string of it, or the module named after it:
    ``data/slakh.py`` for ``slakh``), every string of the module (``conf["section"]["key"]``, ``sec = conf["section"]`` then ``sec["key"]``, a tuple of
    key names, a helper taking the section). Section-aware: ``jobs`` read from ``evaluation``
    does not count for ``midi_render.jobs``."""
    tree = ast.parse(path.read_text())
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    reads = {}
    for value in strings:
        section, _, key = value.partition(".")
        if section in sections and key:
            reads.setdefault(section, set()).add(key)
    taken = {n.slice.value for n in ast.walk(tree) if isinstance(n, ast.Subscript)
             and isinstance(n.slice, ast.Constant) and n.slice.value in sections}
    named = {path.stem} & set(sections)
    for section in taken | set(reads) | named:
        reads.setdefault(section, set()).update(strings)
    return reads


def unread_keys(conf, package):
    read = {}
    for path in sorted(package.rglob("*.py")):
        for section, keys in section_reads(path, set(conf)).items():
            read.setdefault(section, set()).update(keys)
    return [f"{s}.{k}" for s, values in conf.items() for k in values if k not in read.get(s, ())]


def test_every_conf_key_is_read_by_a_module_of_its_section():
    """conf.yml is the single source of defaults: a key no code reads is a dead option (by_target's
    keys are the targets, read through data.target: test_by_target_holds_every_target)."""
    conf = load_config()
    conf.pop(BY_TARGET)
    assert unread_keys(conf, REPO / "asteroid_frugal") == []


def test_by_target_holds_every_target():
    assert list(load_config()[BY_TARGET]) == list(TARGETS)


def test_by_target_settings_apply_to_their_target_only(tmp_path):
    """by_target.<target> merges over conf.yml and the overlays for that target's model, --set
    still wins, an overlay or override may fill it, and what it holds is checked for every target."""
    overlay = tmp_path / "o.yml"
    overlay.write_text("training:\n  epochs: 20\nby_target:\n  vocals:\n    training: {epochs: 30}\n"
                       "    shaping: {excerpt_seconds: 5}\n")
    vocals = load_config(overlays=[overlay], overrides=["data.target=vocals"])
    drums = load_config(overlays=[overlay], overrides=["data.target=drums"])
    assert (vocals["training"]["epochs"], vocals["shaping"]["excerpt_seconds"]) == (30, 5)
    assert (drums["training"]["epochs"], drums["shaping"]["excerpt_seconds"]) == (20, 20)
    assert vocals[BY_TARGET] == drums[BY_TARGET] and drums[BY_TARGET]["vocals"]["training"] == {"epochs": 30}
    assert load_config(overlays=[overlay], overrides=["data.target=vocals", "training.epochs=7"])["training"][
        "epochs"] == 7
    filled = load_config(overlays=[overlay], overrides=["data.target=vocals", "by_target.vocals.training.epochs=9"])
    assert filled["training"]["epochs"] == 9 and filled["shaping"]["excerpt_seconds"] == 5
    saved = tmp_path / "saved.yml"                   # the resolved copy reloads to the same values
    save_config(vocals, saved)
    assert load_config(overlays=[saved], overrides=["data.target=vocals"]) == vocals


def test_a_base_without_by_target_refuses_it_in_one_line(tmp_path):
    base = tmp_path / "old.yml"                     # a conf.yml from before by_target existed
    conf = yaml.safe_load(DEFAULT_CONF.read_text())
    del conf[BY_TARGET]
    base.write_text(yaml.safe_dump(conf))
    overlay = tmp_path / "o.yml"
    overlay.write_text("by_target:\n  vocals: {training: {epochs: 3}}\n")
    assert BY_TARGET not in load_config(base)
    with pytest.raises(FrugalError, match="unknown config key 'by_target'"):
        load_config(base, overlays=[overlay])


@pytest.mark.parametrize("bad, message", [
    ("by_target.vocals.training.epoch=9", "unknown config key 'epoch'"),
    ("by_target.voice.training.epochs=9", r"by_target.voice: unknown target \(one of vocals, drums, bass\)"),
    ("by_target.bass.data.target=drums", "by_target.bass.data: not a setting of one model"),
    ("by_target.drums.training.epochs=abc", r"config \(by_target.drums\): training.epochs='abc': expected an integer"),
])
def test_by_target_errors_are_one_line(bad, message):
    with pytest.raises(FrugalError, match=message) as err:
        load_config(overrides=["data.target=vocals", bad])
    assert "\n" not in str(err.value)


def test_unread_key_check_is_section_aware(tmp_path):
    (tmp_path / "a.py").write_text('def f(conf):\n    return conf["evaluation"]["jobs"]\n')
    (tmp_path / "b.py").write_text('def g(conf):\n    sec = conf["midi_render"]\n    return sec["gain"]\n')
    conf = {"evaluation": {"jobs": 1}, "midi_render": {"jobs": 1, "gain": 0.2}, "runtime": {"threads": 1}}
    assert unread_keys(conf, tmp_path) == ["midi_render.jobs", "runtime.threads"]
    (tmp_path / "c.py").write_text('KEY = "runtime.threads"\n')
    assert unread_keys(conf, tmp_path) == ["midi_render.jobs"]
