"""Audio file I/O: soundfile where it can, ffmpeg otherwise; arrays are ``(channels, samples)`` float32."""
import json
import shutil
import subprocess
from math import gcd
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import soundfile as sf

from .utils import FrugalError, atomic_path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".mp4", ".aac", ".aiff", ".aif", ".opus")


def audio_info(path) -> Tuple[int, int, int]:
    """``(sample_rate, channels, frames)`` of an audio file (ffprobe for what soundfile cannot read)."""
    path = Path(path)
    if not path.exists():
        raise FrugalError(f"{path}: file not found")
    try:
        info = sf.info(str(path))
        return int(info.samplerate), int(info.channels), int(info.frames)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    return _ffprobe_info(path)


def read_audio(path, start: int = 0, frames: int = -1) -> Tuple[np.ndarray, int]:
    """Read ``frames`` samples from ``start`` (seeking, no full decode for wav/flac).

    Returns ``(audio [channels, samples] float32, sample_rate)``.
    """
    path = Path(path)
    if not path.exists():
        raise FrugalError(f"{path}: file not found")
    try:
        data, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
        return np.ascontiguousarray(data.T), int(sr)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        sf_error = err
    try:
        data, sr = _ffmpeg_read(path)
    except FrugalError:
        raise FrugalError(f"{path}: unreadable or unsupported audio ({str(sf_error).splitlines()[0]})") from None
    stop = None if frames < 0 else start + frames
    return np.ascontiguousarray(data[:, start:stop]), sr


def write_audio(path, audio: np.ndarray, sample_rate: int, subtype: Optional[str] = None) -> None:
    """Write ``audio [channels, samples]`` atomically (format from the extension)."""
    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio.T, int(sample_rate), subtype=subtype, format=_sf_format(path))


def _sf_format(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "aiff": "AIFF", "aif": "AIFF", "mp3": "MP3"}.get(ext, "WAV")


def check_finite(audio: np.ndarray, path="audio") -> np.ndarray:
    """``audio`` unchanged; NaN or infinite samples are a :class:`FrugalError` naming ``path``."""
    finite = np.isfinite(audio)
    if not finite.all():
        raise FrugalError(f"{path}: contains {int(finite.size - np.count_nonzero(finite))} NaN or infinite "
                          f"sample(s)")
    return audio


def to_channels(audio: np.ndarray, n_channels: int, path="audio") -> np.ndarray:
    """Mono -> duplicated to ``n_channels``; more channels than wanted -> error (or downmix to mono)."""
    if audio.shape[0] == n_channels:
        return audio
    if audio.shape[0] == 1:
        return np.repeat(audio, n_channels, axis=0)
    if n_channels == 1:
        return audio.mean(axis=0, keepdims=True)
    raise FrugalError(f"{path}: has {audio.shape[0]} channels, expected 1 or {n_channels}")


def resample(audio: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited polyphase resampling (scipy), ``(channels, samples)``."""
    if int(orig_sr) == int(new_sr):
        return audio
    from scipy.signal import resample_poly

    g = gcd(int(orig_sr), int(new_sr))
    return resample_poly(audio, int(new_sr) // g, int(orig_sr) // g, axis=-1).astype(np.float32)


def require_ffmpeg() -> None:
    """Fail with the exact install command when ffmpeg/ffprobe are missing."""
    missing = [b for b in ("ffmpeg", "ffprobe") if shutil.which(b) is None]
    if missing:
        raise FrugalError(f"{' and '.join(missing)} not found on PATH: install them "
                          "(Debian/Ubuntu: sudo apt-get install ffmpeg)")


def _ffprobe_info(path: Path) -> Tuple[int, int, int]:
    require_ffmpeg()
    cmd = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels,duration", "-of", "json", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        stream = json.loads(proc.stdout)["streams"][0]
        sr, ch = int(stream["sample_rate"]), int(stream["channels"])
        return sr, ch, int(round(float(stream.get("duration", 0.0)) * sr))
    except (KeyError, IndexError, ValueError, json.JSONDecodeError):
        raise FrugalError(f"{path}: unreadable or unsupported audio (ffprobe found no audio stream)") from None


def _ffmpeg_read(path: Path) -> Tuple[np.ndarray, int]:
    sr, channels, _ = _ffprobe_info(path)
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0",
           "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise FrugalError(f"{path}: ffmpeg could not decode it ({msg[-1] if msg else 'unknown error'})")
    data = np.frombuffer(proc.stdout, dtype=np.float32)
    return data.reshape(-1, channels).T.copy(), sr
