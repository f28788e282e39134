"""An egs/<experiment> folder (reports.experiment): every shipped experiment.yml loads, and a broken
one is a one-line error naming the file or key."""
import pytest

from asteroid_frugal.reports.experiment import columns, load_experiment, row_labels
from asteroid_frugal.utils import FrugalError
from test_sweep import make_egs

from conftest import REPO


@pytest.mark.parametrize("name", sorted(p.parent.name for p in REPO.glob("egs/*/experiment.yml")))
def test_every_shipped_experiment_loads(name):
    spec = load_experiment(REPO / "egs" / name)
    assert list(spec["variant_paths"]) == spec["variants"] and spec["name"] == name
    assert len(row_labels(spec)) >= len(spec["variants"]) and columns(spec)


def test_broken_experiment_folder_is_a_one_line_error(tmp_path):
    egs = make_egs(tmp_path)
    (egs / "long.yml").unlink()
    with pytest.raises(FrugalError, match="long.yml"):
        load_experiment(egs)
    (egs / "experiment.yml").write_text((egs / "experiment.yml").read_text().replace("metric: si_snr", "metric: pesq"))
    with pytest.raises(FrugalError, match="metric must be si_snr or sdr, got 'pesq'") as err:
        load_experiment(egs)
    assert "\n" not in str(err.value)
