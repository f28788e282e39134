"""conf.yml, overlays and overrides; run.sh option parsing."""
import subprocess
import sys

import pytest
import yaml

from asteroid_frugal.config import load_config, save_config
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


def _run(*args):
    return subprocess.run(["./run.sh", "--setup", "no", *args], cwd=REPO, capture_output=True, text=True)


def test_run_sh_help_lists_options():
    out = _run("--help")
    assert out.returncode == 0
    for name in ("--stage", "--stop_stage", "--tag", "--musdb_root", "--extra_roots", "--devices", "--seeds"):
        assert name in out.stdout


def test_run_sh_rejects_unknown_option_and_target(tmp_path):
    out = _run("--no_such_option", "1")
    assert out.returncode != 0 and "unknown option --no_such_option" in out.stderr
    out = _run("--tag", "piano", "--exp_dir", str(tmp_path))
    assert out.returncode != 0 and "--target" in out.stderr


def test_every_conf_key_is_read_somewhere():
    """conf.yml is the single source of defaults: a key no code reads is a dead option.

    A key counts as read when the package indexes it (``["key"]``, ``.get("key"``) or names it
    dotted (``"section.key"``, as ``config.get`` and overrides do)."""
    code = "\n".join(p.read_text() for p in sorted((REPO / "asteroid_frugal").rglob("*.py")))
    unread = [f"{section}.{key}" for section, values in load_config().items() for key in values
              if not any(form in code for form in (f'["{key}"]', f'.get("{key}"', f'"{section}.{key}"'))]
    assert unread == []


def test_run_sh_target_list_is_types_targets():
    """run.sh keeps its one shell copy of the target list; it must equal data/types.py's."""
    from asteroid_frugal.data.types import TARGETS

    lines = [line for line in (REPO / "run.sh").read_text().splitlines() if line.startswith("all_targets=")]
    assert len(lines) == 1 and lines[0].split('"')[1].split() == list(TARGETS)
    out = _run("--target", "piano", "--exp_dir", "/nonexistent/x", "--stage", "9")
    assert out.returncode != 0 and f"unknown target 'piano' ({', '.join(TARGETS)})" in out.stderr


TINY_RECIPE = """
data: {sample_rate: 8000, valid_chunk_seconds: 1}
default_corpus: {generator: synth, n_train: 3, n_valid: 1, n_test: 1, song_seconds: 4, jobs: 1}
filterbank: {n_filters: 16, kernel_size: 20}
masker: {hidden_size: 16, n_layers: 2}
shaping: {excerpt_seconds: 1, align_seconds: 2}
training: {epochs: 1, batch_size: 2, num_workers: 0}
evaluation: {chunk_seconds: 2, overlap_seconds: 0.5, n_examples: 0, bss: false}
"""


def tiny_recipe(tmp_path, *options):
    overlay = tmp_path / "tiny.yml"
    overlay.write_text(TINY_RECIPE)
    return subprocess.run(["./run.sh", "--setup", "no", "--python", sys.executable, "--overlay", str(overlay),
                           "--data_dir", str(tmp_path / "data"), "--exp_dir", str(tmp_path / "exp"), *options],
                          cwd=REPO, capture_output=True, text=True, timeout=1200)
