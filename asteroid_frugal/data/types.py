"""Shared record types of the data pipeline."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

SOURCES = ("vocals", "drums", "bass", "other")          # MUSDB18's four stems
EXTRA_SOURCES = SOURCES + ("accompaniment",)            # what an extra-data song may carry
TARGETS = ("vocals", "drums", "bass")                   # the paper's target-vs-rest models


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
