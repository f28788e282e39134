"""Small audio folders for the data-pipeline tests (MUSDB18-HQ layout, extra stems)."""
from pathlib import Path

import numpy as np
import soundfile as sf

from asteroid_frugal.data.types import SOURCES

FREQS = {"vocals": 440.0, "drums": 0.0, "bass": 55.0, "other": 330.0, "accompaniment": 220.0}


def stem_signal(source: str, seconds: float, sr: int = 44100, channels: int = 2, seed: int = 0,
                silent=None) -> np.ndarray:
    """``[channels, T]``: a sine per source (noise for drums), distinct per channel; ``silent=(a, b)`` seconds zeroed."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    out = []
    for c in range(channels):
        if FREQS[source] == 0.0:
            x = 0.1 * rng.standard_normal(n)
        else:
            x = 0.2 * np.sin(2 * np.pi * FREQS[source] * (1 + 0.01 * c) * t + seed)
        out.append(x)
    audio = np.stack(out).astype(np.float32)
    if silent is not None:
        audio[:, int(silent[0] * sr):int(silent[1] * sr)] = 0
    return audio


def write_wav(path: Path, audio: np.ndarray, sr: int = 44100, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio.T, sr, subtype=subtype)
    return path


def make_hq_root(root: Path, songs: dict, sr: int = 44100) -> Path:
    """MUSDB18-HQ layout: ``songs[name] = (subset, seconds)``; mixture.wav = sum of the stems."""
    for i, (name, (subset, seconds)) in enumerate(songs.items()):
        stems = {s: stem_signal(s, seconds, sr, seed=i) for s in SOURCES}
        for s, a in stems.items():
            write_wav(root / subset / name / f"{s}.wav", a, sr)
        write_wav(root / subset / name / "mixture.wav", sum(stems.values()), sr)
    return root


def base_conf(data_root: Path, **sections) -> dict:
    """conf.yml with ``data.root`` set and per-section overrides: ``base_conf(p, shaping={...})``."""
    from asteroid_frugal.config import load_config

    conf = load_config()
    conf["data"]["root"] = str(data_root)
    for section, values in sections.items():
        conf[section].update(values)
    return conf


def capture_stage(monkeypatch, module, name):
    """Replace ``module.name`` (a stage's library function ``f(conf, progress=True)``) by one that
    records the config it gets and prepares nothing; returns the record."""
    seen = {}

    def fake_prepare(conf, progress=True):
        seen.update(conf=conf, progress=progress)
        return {}

    monkeypatch.setattr(module, name, fake_prepare)
    return seen
