"""local/prepare_data.py's options: --musdb_root and --musdb_download are data-section shortcuts."""
import pytest

from asteroid_frugal.cli import prepare_data
from asteroid_frugal.utils import FrugalError

from data_helpers import capture_stage


@pytest.fixture
def captured(monkeypatch):
    """The config prepare_musdb would get (nothing prepared)."""
    return capture_stage(monkeypatch, prepare_data, "prepare_musdb")


@pytest.mark.parametrize("argv, root, download", [
    ([], None, False),                                           # conf.yml: the built-in corpus
    (["--musdb_root", "/data/musdb18"], "/data/musdb18", False),
    (["--set", "data.musdb_root=/x", "--musdb_root", "/y"], "/y", False),     # the flag wins
    (["--musdb_download", "yes"], None, True),                   # yes/no, as run.sh's --musdb_download
    (["--musdb_download", "no"], None, False),
    (["--set", "data.musdb_download=true"], None, True),
])
def test_data_source_flags(captured, argv, root, download):
    prepare_data.main(argv)
    assert captured["conf"]["data"]["musdb_root"] == root
    assert captured["conf"]["data"]["musdb_download"] is download and captured["progress"] is True


def test_bad_download_value_is_one_line(captured):
    with pytest.raises(FrugalError, match="data.musdb_download='maybe': expected true or false"):
        prepare_data.main(["--musdb_download", "maybe"])
