"""The project's names: sources, targets, each model's second output, the stems a set of models gives."""
from asteroid_frugal.data.types import (EXTRA_SOURCES, MIXTURE, REST_NAMES, SOURCES, TARGETS, ExtraSong, rest_name,
                                        stem_names)


def test_names_are_consistent():
    assert SOURCES == ("vocals", "drums", "bass", "other") and set(TARGETS) < set(SOURCES)
    assert EXTRA_SOURCES[:4] == SOURCES and REST_NAMES["vocals"] in EXTRA_SOURCES   # accompaniment
    assert MIXTURE not in EXTRA_SOURCES
    assert [rest_name(t) for t in TARGETS] == ["accompaniment", "no_drums", "no_bass"]


def test_stem_names_of_one_or_several_models():
    assert stem_names(["drums"]) == ["drums", "no_drums"]
    assert stem_names(["vocals", "drums", "bass"]) == ["vocals", "drums", "bass", "other", "accompaniment"]
    assert stem_names(["drums", "bass"]) == ["drums", "bass", "rest"]              # "other" only with all three


def test_extra_song_defaults():
    song = ExtraSong("x")
    assert song.stems == {} and song.origin == "" and song.split == ""
