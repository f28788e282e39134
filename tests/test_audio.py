"""Audio file I/O: (channels, samples) float32 both ways, seeking reads, ffmpeg for what soundfile
cannot read, one-line errors naming the file, channel handling and resampling."""
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from asteroid_frugal.audio import (AudioFileWriter, BlockWindow, RawWriter, StreamResampler, audio_info,
                                   check_encoder, check_finite, encode_ffmpeg, open_audio, read_audio, resample,
                                   resample_blocks, resampled_length, to_channels, write_audio)
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


# ------------------------------------------------------------------ any length, block by block
@pytest.mark.parametrize("rates", [(44100, 8000), (8000, 44100), (16000, 8000), (8000, 16000), (48000, 44100),
                                   (22050, 8000)])
def test_resampling_block_by_block_equals_resampling_the_whole_signal(rates):
    """Sample for sample, whatever the blocks (even of one sample), at the start, the end and in between."""
    audio = np.random.default_rng(1).standard_normal((2, 2, 12345)).astype(np.float32)
    whole = resample(audio, *rates)
    assert whole.shape[-1] == resampled_length(12345, *rates)
    for block in (1, 97, 1000, 20000):
        if block == 1 and rates[0] > 16000:
            continue    # one sample at a time: kept to the short cases (slow)
        blocks = [audio[..., i:i + block] for i in range(0, audio.shape[-1], block)]
        joined = np.concatenate(list(resample_blocks(blocks, *rates)), axis=-1)
        np.testing.assert_array_equal(joined, whole)
    res = StreamResampler(*rates)
    assert res.push(audio[..., :0]).shape[-1] == 0 and res.finish().shape[-1] == 0   # nothing in, nothing out


def test_a_file_longer_than_several_blocks_is_read_block_by_block(tmp_path):
    audio = _stereo(10007, seed=3)
    for name, subtype in (("a.wav", "FLOAT"), ("b.flac", "PCM_24")):
        write_audio(tmp_path / name, audio, 8000, subtype=subtype)
        whole, _ = read_audio(tmp_path / name)
        reader = open_audio(tmp_path / name)
        assert (reader.sample_rate, reader.channels, reader.frames, reader.raw) == (8000, 2, 10007, False)
        blocks = list(reader.blocks(1000))
        assert [b.shape for b in blocks] == [(2, 1000)] * 10 + [(2, 7)]
        np.testing.assert_array_equal(np.concatenate(blocks, axis=-1), whole)
        np.testing.assert_array_equal(np.concatenate(list(reader.blocks(333, 4000, 5000)), axis=-1),
                                      whole[:, 4000:5000])
        np.testing.assert_array_equal(reader.read(9990, 100), whole[:, 9990:])   # fewer at the end
    # raw float32 files (the separation's temporaries): written and read back block by block
    raw = RawWriter(tmp_path / "t.f32", 2)
    for i in range(0, 10007, 999):
        raw.write(audio[:, i:i + 999])
    raw.close()
    back = raw.reader(8000)
    assert back.frames == 10007 and (tmp_path / "t.f32").stat().st_size == 10007 * 2 * 4
    np.testing.assert_array_equal(np.concatenate(list(back.blocks(1024)), axis=-1), audio)
    np.testing.assert_array_equal(back.read(5, 10), audio[:, 5:15])
    with pytest.raises(FrugalError, match="nope.wav: file not found"):
        open_audio(tmp_path / "nope.wav")


def test_ffmpeg_decodes_into_a_raw_file_read_block_by_block(tmp_path):
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg is not installed")
    src = tmp_path / "src.wav"
    write_audio(src, _stereo(8000), 8000)
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), str(m4a)], check=True)
    whole, _ = read_audio(m4a)
    with pytest.raises(FrugalError, match=r"a\.m4a: unreadable or unsupported audio"):
        open_audio(m4a)                    # no folder to decode into
    reader = open_audio(m4a, tmp_path)
    assert reader.raw and reader.shown == m4a and reader.path == tmp_path / "decoded.f32"
    assert (reader.sample_rate, reader.channels, reader.frames) == (8000, 2, whole.shape[-1])
    np.testing.assert_array_equal(np.concatenate(list(reader.blocks(700)), axis=-1), whole)
    bad = tmp_path / "garbage.mp3"
    bad.write_bytes(b"\x00not audio" * 20)
    with pytest.raises(FrugalError, match=r"garbage\.mp3: unreadable or unsupported audio"):
        open_audio(bad, tmp_path)


def test_files_written_block_by_block_and_mp3_through_ffmpeg(tmp_path, monkeypatch):
    audio = _stereo(5000, seed=4)
    with_writer = AudioFileWriter(tmp_path / "a.flac", 8000, 2, "PCM_16", frames=5000)
    for i in range(0, 5000, 1200):
        with_writer.write(audio[:, i:i + 1200])
    with_writer.close()
    write_audio(tmp_path / "b.flac", audio, 8000, subtype="PCM_16")
    np.testing.assert_array_equal(read_audio(tmp_path / "a.flac")[0], read_audio(tmp_path / "b.flac")[0])
    big = AudioFileWriter(tmp_path / "big.wav", 8000, 2, "FLOAT", frames=2 ** 29)   # 4 GiB of data: RF64
    big.write(audio)
    big.close()
    assert sf.info(str(tmp_path / "big.wav")).format == "RF64"
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    check_encoder("mp3")
    raw = RawWriter(tmp_path / "s.f32", 2)
    raw.write(audio)
    raw.close()
    encode_ffmpeg(raw.reader(8000), tmp_path / "s.mp3", "mp3", "64k")
    decoded, sr = read_audio(tmp_path / "s.mp3")
    assert sr == 8000 and decoded.shape[0] == 2 and abs(decoded.shape[-1] - 5000) < 2000
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FrugalError, match="--format mp3 is encoded by ffmpeg, which is not on PATH: install it"):
        check_encoder("mp3")


def test_block_window_serves_reads_of_rising_start():
    blocks = (np.arange(10 * i, 10 * i + 10, dtype=np.float32)[None] for i in range(5))   # 0, 1, ... 49
    window = BlockWindow(blocks, 1)
    assert window.read(3, 4).tolist() == [[3, 4, 5, 6]]
    assert window.read(8, 4).tolist() == [[8, 9, 10, 11]]
    assert window.read(45, 10).tolist() == [[45, 46, 47, 48, 49, 0, 0, 0, 0, 0]]   # zeros past the end
    with pytest.raises(ValueError, match="before the window's start"):
        window.read(44, 1)


def test_block_window_keeps_only_what_lies_from_the_latest_start_on():
    """Reads of overlapping chunks (the chunk loop's): what lies before a start is not joined to, nor
    kept with, the samples still to be read; ``read(start, 0)`` lets go of it before the next read."""
    blocks = (np.arange(100 * i, 100 * i + 100, dtype=np.float32)[None] for i in range(20))   # 0, ... 1999
    window = BlockWindow(blocks, 1)
    for start in range(0, 1700, 250):                      # chunks of 300 overlapping by 50
        assert window.read(start, 300).tolist() == [list(range(start, start + 300))]
        held = window._buf.base if window._buf.base is not None else window._buf
        assert held.shape[-1] <= 300 + 100                 # a chunk and at most one block, never the gap before
        window.read(start + 250, 0)                         # the next chunk's start: the rest may go
        held = window._buf.base if window._buf.base is not None else window._buf
        assert held.shape[-1] <= 150                       # the overlap and the read-ahead, a copy
    assert window.read(1750, 300)[0, -50:].tolist() == [0.0] * 50    # zeros past the end
