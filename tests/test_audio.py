"""Audio file I/O: (channels, samples) float32 both ways, seeking reads, ffmpeg for what soundfile
cannot read, one-line errors naming the file, channel handling and resampling."""
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from asteroid_frugal.audio import audio_info, check_finite, read_audio, resample, to_channels, write_audio
from asteroid_frugal.utils import FrugalError


def _stereo(n=1000, seed=0):
    return (0.5 * np.random.default_rng(seed).standard_normal((2, n))).clip(-1, 1).astype(np.float32)


def test_write_then_read_round_trips_channels_first_and_seeks(tmp_path):
    audio = _stereo()
    path = tmp_path / "sub" / "a.wav"
    write_audio(path, audio, 8000, subtype="FLOAT")
    got, sr = read_audio(path)
    assert sr == 8000 and got.dtype == np.float32 and got.shape == (2, 1000)
    np.testing.assert_array_equal(got, audio)
    part, _ = read_audio(path, start=100, frames=50)
    np.testing.assert_array_equal(part, audio[:, 100:150])
    assert audio_info(path) == (8000, 2, 1000)
    assert [p.name for p in path.parent.iterdir()] == ["a.wav"]   # written atomically: no temporary left
    write_audio(tmp_path / "m.flac", audio[0], 8000)             # 1-D: one channel; format from the extension
    assert sf.info(str(tmp_path / "m.flac")).format == "FLAC" and read_audio(tmp_path / "m.flac")[0].shape == (1, 1000)


def test_missing_and_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(FrugalError, match=r"nope\.wav: file not found"):
        read_audio(tmp_path / "nope.wav")
    with pytest.raises(FrugalError, match="file not found"):
        audio_info(tmp_path / "nope.wav")
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg is not installed")
    bad = tmp_path / "garbage.mp3"
    bad.write_bytes(b"\x00not audio" * 20)
    with pytest.raises(FrugalError, match=r"garbage\.mp3: unreadable or unsupported audio") as err:
        read_audio(bad)
    assert "\n" not in str(err.value)


def test_ffmpeg_decodes_what_soundfile_cannot(tmp_path):
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg is not installed")
    src = tmp_path / "src.wav"
    write_audio(src, _stereo(8000), 8000)
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), str(m4a)], check=True)
    audio, sr = read_audio(m4a)
    assert sr == 8000 and audio.shape[0] == 2 and audio.dtype == np.float32
    assert abs(audio.shape[1] - 8000) < 2100   # the encoder's priming samples at most
    assert audio_info(m4a)[:2] == (8000, 2)


def test_channels_finite_check_and_resampling():
    mono = np.arange(4, dtype=np.float32)[None]
    assert to_channels(mono, 2).tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    np.testing.assert_array_equal(to_channels(np.stack([mono[0], 3 * mono[0]]), 1), 2 * mono)
    with pytest.raises(FrugalError, match="x.wav: has 3 channels, expected 1 or 2"):
        to_channels(np.zeros((3, 4), np.float32), 2, "x.wav")
    with pytest.raises(FrugalError, match="y.wav: contains 2 NaN or infinite sample"):
        check_finite(np.array([[0.0, np.nan, np.inf]]), "y.wav")
    audio = _stereo(4410)
    assert resample(audio, 44100, 44100) is audio
    t = np.arange(44100) / 44100
    tone = np.stack([np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32)
    down = resample(tone, 44100, 16000)
    assert down.shape == (2, 16000) and down.dtype == np.float32
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.abs(down[0, 100:-100] - ref[100:-100]).max() < 1e-3   # band-limited: the tone is kept
