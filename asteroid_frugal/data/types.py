"""The project's names (sources, targets, each model's second output) and shared record types.

Every name below is defined here only (run.sh's shell copy of ``TARGETS`` is checked
against it by tests/test_config_and_recipe.py).

Naming convention of a target-vs-rest model's two outputs: the target's own name, then
``no_<target>`` (everything but the target), except for vocals, whose rest keeps the name
MUSDB18 and museval give it, ``accompaniment``. The same names are used for the stem files
``separate`` writes, the keys of ``final_metrics.json`` (``si_snr_no_drums``, ``sdr_accompaniment``),
the sweeps' tables and the published model cards. Several models together give each target,
plus the mixture minus all targets: ``other`` when the targets are vocals, drums and bass
(MUSDB18's fourth source), else ``rest``; and ``accompaniment`` when vocals are among them.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

VOCALS, DRUMS, BASS, OTHER = "vocals", "drums", "bass", "other"   # MUSDB18's stems, one by one
ACCOMPANIMENT = "accompaniment"                         # everything but vocals (MUSDB18's and museval's name)
NO_DRUMS, NO_BASS = "no_drums", "no_bass"               # everything but drums, everything but bass
SOURCES = (VOCALS, DRUMS, BASS, OTHER)                  # MUSDB18's four stems
EXTRA_SOURCES = SOURCES + (ACCOMPANIMENT,)              # what an extra-data song may carry
TARGETS = (VOCALS, DRUMS, BASS)                         # the paper's target-vs-rest models
REST_NAMES = {VOCALS: ACCOMPANIMENT, DRUMS: NO_DRUMS, BASS: NO_BASS}  # each model's second output
assert set(REST_NAMES) == set(TARGETS)
MIXTURE = "mixture"                                     # the mix of a song's stems (file mixture.wav)


def rest_name(target: str) -> str:
    """The name of the second output of the ``target`` model (see the module's convention)."""
    return REST_NAMES[target]


def stem_names(targets: Sequence[str]) -> List[str]:
    """Names of the stems a set of target models produces, in output order."""
    if len(targets) == 1:
        return [targets[0], rest_name(targets[0])]
    rest = OTHER if set(targets) == set(TARGETS) else "rest"
    return list(targets) + [rest] + ([ACCOMPANIMENT] if VOCALS in targets else [])


@dataclass
class ExtraSong:
    """One song of an extra-data source, before stage 1 decodes it.

    ``stems[source]`` lists the files whose sum is that source (one file for the plain
    ``<song>/<source>.wav`` layout; several for Slakh2100, whose instruments are grouped).
    """

    name: str
    stems: Dict[str, List[Path]] = field(default_factory=dict)
    origin: str = ""          # extra root it came from
    split: str = ""           # a split imposed by the source (Slakh: train/validation/test), or ""

