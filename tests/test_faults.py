"""Fault cases: bad input gives a one-line error naming the file; interrupted work is cleaned up."""
import pytest

from asteroid_frugal.data.default_corpus import CorpusParams, generate_corpus
from asteroid_frugal.utils import FrugalError
from data_helpers import base_conf

FLUID = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


# ------------------------------------------------------------------ built-in corpus v3 (issue 19)
def _midi_params(tmp_path, fonts):
    return CorpusParams.from_conf(base_conf(tmp_path, default_corpus={
        "generator": "midi", "n_train": 1, "n_valid": 1, "n_test": 1, "song_seconds": 4, "jobs": 1,
        "soundfonts": fonts, "test_soundfonts": None}))


def test_corpus_missing_or_bad_soundfont_is_one_line_before_any_song(tmp_path):
    missing = tmp_path / "gone.sf2"
    with pytest.raises(FrugalError, match=f"{missing}: cannot read soundfont") as err:
        generate_corpus(tmp_path / "c1", _midi_params(tmp_path, [FLUID, str(missing)]), progress=False)
    assert "\n" not in str(err.value)
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF\0\0\0\0WAVEfmt ")
    with pytest.raises(FrugalError, match=f"{bad}: not a SoundFont"):
        generate_corpus(tmp_path / "c2", _midi_params(tmp_path, [str(bad)]), progress=False)
    for root in (tmp_path / "c1", tmp_path / "c2"):     # nothing generated, nothing half-written
        assert not list(root.rglob("*.wav"))


def test_corpus_leftovers_of_a_killed_run_are_removed_and_the_corpus_completed(tmp_path):
    params = CorpusParams.from_conf(base_conf(tmp_path, default_corpus={
        "generator": "synth", "n_train": 1, "n_valid": 1, "n_test": 1, "song_seconds": 4, "jobs": 1}))
    root = tmp_path / "corpus"
    generate_corpus(root, params, progress=False)
    # what a kill leaves: a song being written, a FluidSynth work folder, a missing song
    (root / "train" / ".tmp-Frugal Synth - Train 001-abc").mkdir()
    (root / "train" / ".tmp-render-xyz").mkdir()
    (root / "train" / ".tmp-render-xyz" / "other.wav").write_bytes(b"partial")
    import shutil

    shutil.rmtree(root / "test" / "Frugal Synth - Test 001")
    generate_corpus(root, params, progress=False)
    assert sorted(p.name for p in (root / "train").iterdir()) == ["Frugal Synth - Train 001", "Frugal Synth - Valid 001"]
    assert (root / "test" / "Frugal Synth - Test 001" / "mixture.wav").is_file()
