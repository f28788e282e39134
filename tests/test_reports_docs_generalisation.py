"""docs/make_generalisation.py over reports.docs_generalisation: the held-out-soundfont page is computed from the runs' files."""
import json
import subprocess
import sys

import numpy as np
import pytest
import pandas as pd
import torch
import yaml

from asteroid_frugal.config import load_config
from asteroid_frugal.data.sung_voice import SPEAKERS
from conftest import REPO

FLUID, TIM = "/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2"
REST = {"vocals": "accompaniment", "drums": "no_drums", "bass": "no_bass"}


def _model(exp, target, train, test, improvements, csv="si_snr.csv"):
    """A model folder as stages 3-4 leave it: resolved conf.yml, training_done.json, si_snr.csv."""
    d = exp / target
    (d / "results").mkdir(parents=True, exist_ok=True)
    conf = load_config(overlays=[REPO / "egs/demo/conf.yml"], overrides=[f"data.target={target}"])
    conf["default_corpus"].update(soundfonts=train, test_soundfonts=test)
    (d / "conf.yml").write_text(yaml.safe_dump(conf))
    (d / "training_done.json").write_text(json.dumps({"epochs_done": 20, "stop_reason": "max_epochs"}))
    rows = [dict(song=f"Frugal GM - Test {i // 2 + 1:03d}", start=0, length=441000,
                 **{f"si_snr_{target}": 1.0 + imp, f"si_snr_{REST[target]}": 0.0,
                    f"input_si_snr_{target}": 1.0, f"input_si_snr_{REST[target]}": 0.0})
            for i, imp in enumerate(improvements)]
    pd.DataFrame(rows).to_csv(d / "results" / csv, index=False)


def test_page_from_run_files(tmp_path):
    one = tmp_path / "heldout_timgm6mb"
    # two excerpts per song: per-song means 2, 4, 6 -> mean 4, median 4, s.e. 2/sqrt(3)
    _model(one, "vocals", [FLUID], [TIM], [1, 3, 3, 5, 5, 7])
    _model(one, "drums", [FLUID], [TIM], [6, 6, 6, 6])
    _model(one, "bass", [FLUID], [TIM], [2, 2, 4, 4])
    out = tmp_path / "page.md"
    done = subprocess.run([sys.executable, "docs/make_generalisation.py", str(one), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "| vocals | FluidR3_GM | TimGM6mb | 4.0 ± 1.2 | 4.0 | 2.0 to 6.0 | 3 | >= 4 | yes |" in page
    assert "| drums | FluidR3_GM | TimGM6mb | 6.0 ± 0.0 | 6.0 | 6.0 to 6.0 | 2 | >= 5 | yes |" in page
    assert "| bass | FluidR3_GM | TimGM6mb | 3.0 ± 1.0 | 3.0 | 2.0 to 4.0 | 2 | >= 5 | no (-2.0 dB) |" in page
    assert "20 epochs (max epochs)" in page


def test_variants_are_compared_with_their_direction(tmp_path):
    """--variants: each variant model next to the demo model that trained on the same soundfont, the
    paired change per song, and the settings that differ in the two resolved configs (threads and
    other run-only settings are not a change; a key the older run lacks counts as its default)."""
    one = tmp_path / "heldout_timgm6mb"
    for target in ("vocals", "drums"):
        _model(one, target, [FLUID], [TIM], [4, 4])
    _model(one, "bass", [FLUID], [TIM], [2, 2, 4, 4])
    conf = yaml.safe_load((one / "bass" / "conf.yml").read_text())
    del conf["shaping"]["augment_stereo"]                        # a run from before the key existed
    (one / "bass" / "conf.yml").write_text(yaml.safe_dump(conf))
    variant = tmp_path / "eq6"
    _model(variant, "bass", [FLUID], [TIM], [3, 3, 6, 6])
    conf = yaml.safe_load((variant / "bass" / "conf.yml").read_text())
    conf["shaping"]["augment_eq_db"] = 6.0
    conf["runtime"]["threads"] = 1
    (variant / "bass" / "conf.yml").write_text(yaml.safe_dump(conf))
    (variant / "bass" / "train_command.txt").write_text("./run.sh --target bass --set shaping.augment_eq_db=6\n")
    out = tmp_path / "page.md"
    done = subprocess.run([sys.executable, "docs/make_generalisation.py", str(one), "--variants", str(variant),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert ("| eq6 | bass | FluidR3_GM | TimGM6mb | 4.5 ± 1.5 | 3.0 | +1.5 ± 0.5 | `shaping.augment_eq_db=6.0` |"
            in page)
    assert "./run.sh --target bass --set shaping.augment_eq_db=6" in page
    (variant / "bass" / "results" / "si_snr.csv").unlink()
    done = subprocess.run([sys.executable, "docs/make_generalisation.py", str(one), "--variants", str(variant),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "no <target>/results/si_snr.csv" in done.stderr


def test_missing_run_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "docs/make_generalisation.py", str(tmp_path / "nope")],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: ") and "\n" not in done.stderr.strip()


def test_both_directions_add_the_soundfont_cost_on_the_same_songs(tmp_path, tiny_model_args):
    """Given both directions, each model is also scored on the other direction's test excerpts (the
    same songs in its own training soundfont): read from results/si_snr_own_soundfont.csv, or, where
    absent, computed with stage 4's SI-SNR code from the model and the prepared tracks; the page shows
    the paired per-song change."""
    from asteroid_frugal.data.datasets import write_manifest
    from asteroid_frugal.data.layout import write_track
    from asteroid_frugal.model import FrugalTasNet

    tim, fluid = tmp_path / "heldout_timgm6mb", tmp_path / "heldout_fluidr3"
    for target in ("vocals", "drums"):
        _model(tim, target, [FLUID], [TIM], [4, 4, 6, 6])
        _model(tim, target, [FLUID], [TIM], [5, 5, 9, 9], csv="si_snr_own_soundfont.csv")
        _model(fluid, target, [TIM], [FLUID], [3, 3, 3, 3])
        _model(fluid, target, [TIM], [FLUID], [4, 4, 5, 5], csv="si_snr_own_soundfont.csv")
    _model(tim, "bass", [FLUID], [TIM], [2, 2, 4, 4])
    _model(fluid, "bass", [TIM], [FLUID], [2, 2, 2, 2])
    _model(fluid, "bass", [TIM], [FLUID], [1, 1, 1, 1], csv="si_snr_own_soundfont.csv")
    # tim/bass has no cached score: a real (untrained) model on real prepared tracks of fluid/bass's test split
    sr = tiny_model_args["sample_rate"]
    conf = yaml.safe_load((tim / "bass" / "conf.yml").read_text())
    conf["data"]["sample_rate"] = sr
    (tim / "bass" / "conf.yml").write_text(yaml.safe_dump(conf))
    model = FrugalTasNet(**tiny_model_args)
    torch.save(model.serialize(), tim / "bass" / "best_model.pth")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(2):
        stems = {s: (0.1 * rng.standard_normal((2, 2 * sr))).astype(np.float32)
                 for s in ("vocals", "drums", "bass", "other")}
        track = tmp_path / "prepared" / "test" / f"Frugal GM - Test {i + 1:03d}"
        write_track(track, stems, dict(name=track.name, split="test", sample_rate=sr))
        rows += [dict(track_dir=str(track), start=start, length=sr, song=track.name, split="test", corpus="default",
                      target_active=1.0) for start in (0, sr)]
    write_manifest(fluid / "bass" / "data" / "test.csv", rows)
    out = tmp_path / "page.md"
    done = subprocess.run([sys.executable, "docs/make_generalisation.py", str(tim), str(fluid), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "| vocals | FluidR3_GM | 7.0 ± 2.0 (FluidR3_GM) | 5.0 ± 1.0 (TimGM6mb) | -2.0 ± 1.0 |" in page
    assert "| drums | TimGM6mb | 4.5 ± 0.5 (TimGM6mb) | 3.0 ± 0.0 (FluidR3_GM) | -1.5 ± 0.5 |" in page
    computed = pd.read_csv(tim / "bass" / "results" / "si_snr_own_soundfont.csv")
    assert list(computed["song"]) == [r["song"] for r in rows] and list(computed["start"]) == [0, sr, 0, sr]
    for row, (_, got) in zip(rows, computed.iterrows()):   # the input SI-SNR: bass against the stems' sum
        ref = {s: np.asarray(__import__("soundfile").read(f"{row['track_dir']}/{s}.wav", dtype="float32",
                                                         start=row["start"], frames=sr)[0].T)
               for s in ("vocals", "drums", "bass", "other")}
        mix, bass = sum(ref.values()), ref["bass"]
        ref_c, mix_c = bass - bass.mean(-1, keepdims=True), mix - mix.mean(-1, keepdims=True)
        proj = (mix_c * ref_c).sum(-1, keepdims=True) / (ref_c ** 2).sum(-1, keepdims=True) * ref_c
        expected = np.mean(10 * np.log10((proj ** 2).sum(-1) / ((mix_c - proj) ** 2).sum(-1)))
        assert got["input_si_snr_bass"] == pytest.approx(expected, abs=0.05)
    imp = computed.groupby("song").apply(lambda t: (t["si_snr_bass"] - t["input_si_snr_bass"]).mean())
    change = np.array([2.0, 4.0]) - imp.to_numpy()      # tim/bass per-song means on the unseen soundfont: 2, 4
    assert f"| {imp.mean():.1f} ± " in page and f"| {change.mean():+.1f} ± " in page


def _voice_model(exp, train, test, improvements, csv="si_snr.csv", singer="speech"):
    _model(exp, "vocals", [FLUID, TIM], None, improvements, csv=csv)
    conf = yaml.safe_load((exp / "vocals" / "conf.yml").read_text())
    conf["default_corpus"].update(singer=singer, voices=train, test_voices=test)
    (exp / "vocals" / "conf.yml").write_text(yaml.safe_dump(conf))


def test_held_out_voices_update_their_section_only(tmp_path):
    """--voices (two directions, speakers swapped) and --baseline: the section names the speakers, the
    unseen-voice scores, the paired change against the baseline and the cost of the unseen voice on the
    same songs (cached scores read, not recomputed); the rest of the page is kept."""
    a, b, base = tmp_path / "heldout_voices_a", tmp_path / "heldout_voices_b", tmp_path / "singer_additive"
    _voice_model(a, ["en_slt"], ["it_pc"], [4, 4, 6, 6])
    _voice_model(a, ["en_slt"], ["it_pc"], [5, 5, 9, 9], csv="si_snr_heldout_voices_b.csv")
    _voice_model(b, ["it_pc"], ["en_slt"], [3, 3, 5, 5])
    _voice_model(b, ["it_pc"], ["en_slt"], [6, 6, 6, 6], csv="si_snr_heldout_voices_a.csv")
    _voice_model(base, [], None, [1, 1, 1, 1], singer="additive")
    for d in (a, b):
        _voice_model(base, [], None, [0, 0, 2, 2], csv=f"si_snr_{d.name}.csv", singer="additive")
    out = tmp_path / "page.md"
    out.write_text("# Generalisation\n\nsoundfont tables\n\n## Held-out voices\n\nold\n\n## Other\n\nkept\n")
    done = subprocess.run([sys.executable, "docs/make_generalisation.py", "--voices", str(a), str(b),
                           "--baseline", str(base), "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert page.startswith("# Generalisation\n\nsoundfont tables\n") and "## Other\n\nkept" in page
    assert "old" not in page
    assert "| vocals | en_slt | it_pc | 5.0 ± 1.0 | 5.0 | 4.0 to 6.0 | 2 | >= 4 | yes |" in page
    assert "| en_slt | it_pc | 5.0 ± 1.0 | additive singer: 1.0 ± 1.0 | +4.0 ± 0.0 |" in page
    assert "| en_slt | 7.0 ± 2.0 | 5.0 ± 1.0 | -2.0 ± 1.0 |" in page
    assert "| it_pc | 6.0 ± 0.0 | 4.0 ± 1.0 | -2.0 ± 1.0 |" in page


def test_held_out_voice_variants_are_compared_with_their_direction(tmp_path):
    """--voices_variants: each variant next to the direction with the same speakers, the change paired
    per song, the settings that differ and its command; a variant of no direction given is one line."""
    a, b = tmp_path / "heldout_voices_a", tmp_path / "heldout_voices_b"
    _voice_model(a, ["en_slt"], ["it_pc"], [4, 4, 6, 6])
    _voice_model(b, ["it_pc"], ["en_slt"], [3, 3, 5, 5])
    variant = tmp_path / "gain_b"
    _voice_model(variant, ["it_pc"], ["en_slt"], [4, 4, 7, 7])
    conf = yaml.safe_load((variant / "vocals" / "conf.yml").read_text())
    conf["shaping"]["augment_gain"] = True
    conf["runtime"]["threads"] = 1
    (variant / "vocals" / "conf.yml").write_text(yaml.safe_dump(conf))
    (variant / "vocals" / "train_command.txt").write_text("./run.sh --target vocals --set shaping.augment_gain=true\n")
    _voice_model(a, ["en_slt"], ["it_pc"], [1, 1, 1, 1], csv=f"si_snr_{b.name}.csv")   # cached: same songs,
    _voice_model(b, ["it_pc"], ["en_slt"], [1, 1, 1, 1], csv=f"si_snr_{a.name}.csv")   # own speakers
    out = tmp_path / "page.md"
    out.write_text("# Generalisation\n\n## Held-out voices\n\nold\n")
    args = [sys.executable, "docs/make_generalisation.py", "--voices", str(a), str(b), "--voices_variants",
            str(variant), "--out", str(out)]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert ("| gain_b | it_pc | en_slt | 5.5 ± 1.5 | heldout_voices_b: 4.0 | +1.5 ± 0.5 | `shaping.augment_gain=true` |"
            in page)
    assert "| gain | heldout_voices_b | 4.0 (1) | 5.5 (1) | +1.5 | not measured |" in page
    assert "./run.sh --target vocals --set shaping.augment_gain=true" in page
    conf["default_corpus"]["test_voices"] = ["cs_dita"]
    (variant / "vocals" / "conf.yml").write_text(yaml.safe_dump(conf))
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "no held-out-voice direction given" in done.stderr


def _sung_by(exp, tmp_path, speakers):
    """The test manifest of ``exp``'s vocals model and the corpus records behind it: song ``i`` (the
    ``Test 00i`` of _model's rows) sung by ``speakers[i - 1]``."""
    rows = ["track_dir,start,length,song,split,corpus,target_active"]
    for i, speaker in enumerate(speakers, 1):
        song = f"Frugal GM - Test {i:03d}"
        corpus, track = tmp_path / "corpus" / song, tmp_path / "prepared" / song
        for folder in (corpus, track):
            folder.mkdir(parents=True, exist_ok=True)
        (corpus / ".song.json").write_text(json.dumps({"lead_voice": {"singer": "speech", "speaker": speaker}}))
        (track / "track.json").write_text(json.dumps({"name": song, "origin": str(corpus / "mixture.wav")}))
        rows.append(f"{track},0,441000,{song},test,default,1.0")
    (exp / "vocals" / "data").mkdir(parents=True, exist_ok=True)
    (exp / "vocals" / "data" / "test.csv").write_text("\n".join(rows) + "\n")


def _set(exp, **keys):
    """Change ``section.key`` settings of ``exp``'s resolved vocals conf.yml."""
    path = exp / "vocals" / "conf.yml"
    conf = yaml.safe_load(path.read_text())
    for key, value in keys.items():
        section, name = key.split("__")
        conf[section][name] = value
    path.write_text(yaml.safe_dump(conf))


def test_held_out_voice_seeds_are_averaged(tmp_path):
    """Runs that differ only in training.seed are one settings group: per direction the mean over seeds
    of the per-song-mean SI-SNRi, the seed-to-seed s.d. and n; each other setting against the direction's
    settings as the difference of the seed means ± the pooled seed s.d. times sqrt(1/n1 + 1/n2); each single
    run paired per song with the same seed's run of the direction's settings; the commands block (saved
    train commands, else the overlay's command, then the page's own)."""
    a, b = tmp_path / "heldout_voices_a", tmp_path / "heldout_voices_b"
    a1 = tmp_path / "heldout_voices_seed1_a"
    gain_a, gain1_a, gain_b = tmp_path / "gain_a", tmp_path / "gain_seed1_a", tmp_path / "gain_b"
    for exp, imp in ((a, [4, 4, 6, 6]), (a1, [2, 2, 4, 4]), (gain_a, [6, 6, 8, 8]), (gain1_a, [6, 6, 6, 6])):
        _voice_model(exp, ["en_slt"], ["it_pc"], imp)
    for exp, imp in ((b, [3, 3, 5, 5]), (gain_b, [4, 4, 7, 7])):
        _voice_model(exp, ["it_pc"], ["en_slt"], imp)
    for exp in (a1, gain1_a):
        _set(exp, training__seed=1)
    for exp in (gain_a, gain1_a, gain_b):
        _set(exp, shaping__augment_gain=True, runtime__threads=1)
    (gain1_a / "vocals" / "train_command.txt").write_text("./run.sh --target vocals --set training.seed=1\n")
    _voice_model(a, ["en_slt"], ["it_pc"], [1, 1, 1, 1], csv=f"si_snr_{b.name}.csv")
    _voice_model(b, ["it_pc"], ["en_slt"], [1, 1, 1, 1], csv=f"si_snr_{a.name}.csv")
    for exp in (a, a1):                      # direction a's songs traced to who sang them; b's are not
        _sung_by(exp, tmp_path, ["it_pc", "cs_dita"])
    out = tmp_path / "page.md"
    out.write_text("# Generalisation\n\n## Held-out voices\n\nold\n")
    args = [sys.executable, "docs/make_generalisation.py", "--voices", str(a), str(b), "--voices_variants",
            *map(str, (a1, gain_a, gain1_a, gain_b)), "--voices_note", "What it shows.", "--out", str(out)]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "- demo: the directions' own settings\n- gain: `shaping.augment_gain=true`\n" in page
    # demo a: seeds 5 and 3 -> 4.0, s.d. 1.4; gain a: 7 and 6 -> 6.5, s.d. 0.7; pooled s.d. sqrt(2.5 / 2)
    assert "| demo | heldout_voices_a | seed 0: 5.0, seed 1: 3.0 | 4.0 | 1.4 | 2 | >= 4 | yes |" in page
    assert "| gain | heldout_voices_a | seed 0: 7.0, seed 1: 6.0 | 6.5 | 0.7 | 2 | >= 4 | yes |" in page
    assert "| gain | heldout_voices_b | seed 0: 5.5 | 5.5 | - | 1 | >= 4 | yes |" in page
    assert "(1.1 dB, 2 degrees of freedom)" in page
    assert "| gain | heldout_voices_a | 4.0 (2) | 6.5 (2) | +2.5 ± 1.1 | yes |" in page
    assert "| gain | heldout_voices_b | 4.0 (1) | 5.5 (1) | +1.5 ± 1.6 | no |" in page
    assert ("| gain_seed1_a | en_slt | it_pc | 6.0 ± 0.0 | heldout_voices_seed1_a: 3.0 | +3.0 ± 1.0 | "
            "`shaping.augment_gain=true` |") in page
    assert "| heldout_voices_seed1_a | en_slt | it_pc | 3.0 ± 1.0 | heldout_voices_a: 5.0 | -2.0 ± 0.0 | `training.seed=1` |" in page
    # per held-out speaker (direction a, its own settings): song 1 (it_pc) 4 and 2, song 2 (cs_dita) 6 and 4
    assert "| heldout_voices_a | it_pc | it, male | 1 | seed 0: 4.0, seed 1: 2.0 | 3.0 |" in page
    assert "| heldout_voices_a | cs_dita | cs, female | 1 | seed 0: 6.0, seed 1: 4.0 | 5.0 |" in page
    assert "| heldout_voices_b |" not in page.split("Per held-out speaker")[1]   # untraced: left out
    assert f"sung by 1 of the {len(SPEAKERS)} recorded speakers" in page
    assert "\nWhat it shows.\n\n```bash\n" in page
    assert (f'./run.sh --target vocals --stop_stage 4 --overlay "egs/demo/conf.yml egs/demo/heldout_voices_a.yml" '
            f"--data_dir data/heldout_voices_a --exp_dir {a}\n") in page
    assert "./run.sh --target vocals --set training.seed=1\n" in page
    assert f"docs/make_generalisation.py --voices {a} {b} --voices_variants {a1} {gain_a}" in page
    dup = tmp_path / "gain_again_b"                                   # a second seed-0 run of gain b
    _voice_model(dup, ["it_pc"], ["en_slt"], [4, 4, 7, 7])
    _set(dup, shaping__augment_gain=True)
    done = subprocess.run(args[:-4] + [str(dup), "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "seed 0 twice for the same settings" in done.stderr


def test_a_key_older_runs_lack_counts_as_what_they_ran():
    """A run from before default_corpus.formant_shift existed sang with the real speakers (0), not with
    the current default; by_target is no change of its own (the resolved sections carry what it changed)."""
    from asteroid_frugal.reports.docs_generalisation import changed_settings

    new = load_config(overlays=[REPO / "egs/demo/conf.yml"], overrides=["data.target=vocals"])
    old = yaml.safe_load(yaml.safe_dump(new))
    del old["default_corpus"]["formant_shift"]
    old["by_target"]["vocals"] = {}
    assert new["default_corpus"]["formant_shift"] > 0
    assert changed_settings(new, old) == [f"`default_corpus.formant_shift={new['default_corpus']['formant_shift']}`"]
    new["default_corpus"]["formant_shift"] = 0.0
    assert changed_settings(new, old) == []
