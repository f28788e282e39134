"""docs/make_generalisation.py: the held-out-soundfont page is computed from the runs' files."""
import json
import subprocess
import sys

import pandas as pd
import yaml

from asteroid_frugal.config import load_config
from conftest import REPO

FLUID, TIM = "/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2"
REST = {"vocals": "accompaniment", "drums": "no_drums", "bass": "no_bass"}


def _model(exp, target, train, test, improvements):
    """A model folder as stages 3-4 leave it: resolved conf.yml, training_done.json, si_snr.csv."""
    d = exp / target
    (d / "results").mkdir(parents=True)
    conf = load_config(overlays=[REPO / "egs/demo/conf.yml"])
    conf["data"]["target"] = target
    conf["default_corpus"].update(soundfonts=train, test_soundfonts=test)
    (d / "conf.yml").write_text(yaml.safe_dump(conf))
    (d / "training_done.json").write_text(json.dumps({"epochs_done": 20, "stop_reason": "max_epochs"}))
    rows = [dict(song=f"Frugal GM - Test {i // 2 + 1:03d}", start=0, length=441000,
                 **{f"si_snr_{target}": 1.0 + imp, f"si_snr_{REST[target]}": 0.0,
                    f"input_si_snr_{target}": 1.0, f"input_si_snr_{REST[target]}": 0.0})
            for i, imp in enumerate(improvements)]
    pd.DataFrame(rows).to_csv(d / "results" / "si_snr.csv", index=False)


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


def test_missing_run_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "docs/make_generalisation.py", str(tmp_path / "nope")],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: ") and "\n" not in done.stderr.strip()
