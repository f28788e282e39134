"""Audio file I/O: soundfile where it can, ffmpeg otherwise; arrays are ``(channels, samples)`` float32.

Whole files: :func:`read_audio`, :func:`write_audio`. Files of any length in bounded memory:
:func:`open_audio` reads one block by block (a file soundfile cannot read is first decoded by
ffmpeg into a raw float32 file), :class:`AudioFileWriter` and :class:`RawWriter` write one block by
block, :class:`StreamResampler` resamples a signal given block by block exactly as
:func:`resample` does the whole signal, and :class:`BlockWindow` serves reads of rising start
from a stream of blocks. :func:`encode_ffmpeg` encodes a raw float32 file (mp3).
"""
import json
import shutil
import subprocess
from math import gcd
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Tuple

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


# ------------------------------------------------------- files of any length, block by block
RAW_BYTES = 4     # raw files (ffmpeg's decoded inputs, separation temporaries): interleaved float32 frames


class AudioReader:
    """An audio file read block by block: a format soundfile reads, or a raw float32 file
    (interleaved frames, no header; ``raw=True``). ``shown``: the name messages give (the input
    a raw file was decoded from)."""

    def __init__(self, path, sample_rate: int, channels: int, frames: int, raw: bool = False, shown=None):
        self.path, self.raw, self.shown = Path(path), raw, Path(shown or path)
        self.sample_rate, self.channels, self.frames = int(sample_rate), int(channels), int(frames)

    def blocks(self, block_frames: int, start: int = 0, stop: Optional[int] = None) -> Iterator[np.ndarray]:
        """``[channels, <= block_frames]`` float32 blocks from ``start`` to ``stop`` (default: the
        end of the file), read in order; one block of the file in memory at a time."""
        remaining = None if stop is None else max(0, stop - start)
        with (open(self.path, "rb") if self.raw else sf.SoundFile(str(self.path))) as f:
            if start:
                f.seek(start * self.channels * RAW_BYTES) if self.raw else f.seek(start)
            while remaining is None or remaining > 0:
                n = block_frames if remaining is None else min(block_frames, remaining)
                if self.raw:
                    data = np.fromfile(f, dtype=np.float32, count=n * self.channels)
                    data = data[: data.size - data.size % self.channels].reshape(-1, self.channels)
                else:
                    data = f.read(n, dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    return
                if remaining is not None:
                    remaining -= data.shape[0]
                yield np.ascontiguousarray(data.T)

    def read(self, start: int, frames: int) -> np.ndarray:
        """``[channels, frames]`` from ``start`` (fewer at the end of the file)."""
        parts = list(self.blocks(max(1, frames), start, start + frames))
        return np.concatenate(parts, axis=-1) if parts else np.zeros((self.channels, 0), np.float32)


def open_audio(path, decode_dir=None) -> AudioReader:
    """An :class:`AudioReader` of ``path``. What soundfile cannot read is decoded by ffmpeg into
    ``decode_dir/decoded.f32`` (a raw float32 file, written block by block by ffmpeg itself), or
    is one :class:`FrugalError` naming the file when no ``decode_dir`` is given."""
    path = Path(path)
    if not path.exists():
        raise FrugalError(f"{path}: file not found")
    try:
        info = sf.info(str(path))
        return AudioReader(path, info.samplerate, info.channels, info.frames)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        sf_error = err
    why = f"unreadable or unsupported audio ({str(sf_error).splitlines()[0]})"
    if decode_dir is None:
        raise FrugalError(f"{path}: {why}")
    raw = Path(decode_dir) / "decoded.f32"
    try:
        sr, channels = ffmpeg_decode(path, raw)
    except FrugalError:
        raise FrugalError(f"{path}: {why}") from None
    return AudioReader(raw, sr, channels, raw.stat().st_size // (RAW_BYTES * channels), raw=True, shown=path)


def ffmpeg_decode(path: Path, raw: Path) -> Tuple[int, int]:
    """Decode ``path``'s first audio stream into the raw float32 file ``raw``; ``(rate, channels)``."""
    sr, channels, _ = _ffprobe_info(path)
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(path), "-map", "0:a:0",
           "-f", "f32le", "-acodec", "pcm_f32le", str(raw)]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        if any("No space left" in line for line in msg):
            raise OSError(28, "No space left on device", str(raw))
        raise FrugalError(f"{path}: ffmpeg could not decode it ({msg[-1] if msg else 'unknown error'})")
    return sr, channels


class RawWriter:
    """A raw float32 file (interleaved frames) written block by block (``[channels, frames]`` each)."""

    def __init__(self, path, channels: int):
        self.path, self.channels, self.frames = Path(path), int(channels), 0
        self._file = open(self.path, "wb")

    def write(self, block: np.ndarray) -> None:
        np.ascontiguousarray(np.asarray(block, dtype=np.float32).T).tofile(self._file)
        self.frames += block.shape[-1]

    def close(self) -> None:
        self._file.close()

    def reader(self, sample_rate: int) -> AudioReader:
        """The file written, to read back block by block."""
        return AudioReader(self.path, sample_rate, self.channels, self.frames, raw=True)


class AudioFileWriter:
    """A wav or flac file written block by block (``[channels, frames]`` float32 each); a wav
    whose data would pass 4 GiB is written as RF64 (``frames``: the length, when known)."""

    def __init__(self, path, sample_rate: int, channels: int, subtype: Optional[str] = None,
                 frames: Optional[int] = None):
        path = Path(path)
        fmt = _sf_format(path)
        if fmt == "WAV" and frames and subtype:
            size = frames * channels * {"PCM_16": 2, "PCM_24": 3}.get(subtype, 4)
            fmt = "RF64" if size >= 2 ** 32 - 2 ** 16 else fmt
        self.path = path
        self._file = sf.SoundFile(str(path), "w", int(sample_rate), int(channels), subtype=subtype, format=fmt)

    def write(self, block: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(np.asarray(block, dtype=np.float32).T))

    def close(self) -> None:
        self._file.close()


ENCODERS = {"mp3": "libmp3lame"}   # formats written through ffmpeg: the encoder each needs


def check_encoder(fmt: str) -> None:
    """One :class:`FrugalError` when ffmpeg, or its encoder for ``fmt``, is missing."""
    if shutil.which("ffmpeg") is None:
        raise FrugalError(f"--format {fmt} is encoded by ffmpeg, which is not on PATH: install it "
                          "(Debian/Ubuntu: sudo apt-get install ffmpeg)")
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True)
    if ENCODERS[fmt] not in proc.stdout:
        raise FrugalError(f"--format {fmt}: this ffmpeg has no {ENCODERS[fmt]} encoder (Debian's ffmpeg has it)")


def encode_ffmpeg(raw: AudioReader, out_path, fmt: str, bitrate: str) -> None:
    """Encode a raw float32 file into ``out_path`` (``fmt``: a key of :data:`ENCODERS`) in one ffmpeg call."""
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "f32le", "-ar", str(raw.sample_rate),
           "-ac", str(raw.channels), "-i", str(raw.path), "-c:a", ENCODERS[fmt], "-b:a", str(bitrate),
           "-f", fmt, str(out_path)]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        if any("No space left" in line for line in msg):
            raise OSError(28, "No space left on device", str(out_path))
        raise FrugalError(f"{out_path}: ffmpeg could not encode it ({msg[-1] if msg else 'unknown error'})")


def resampled_length(n_samples: int, orig_sr: int, new_sr: int) -> int:
    """The length :func:`resample` gives ``n_samples`` samples (``ceil(n * new / orig)``)."""
    if int(orig_sr) == int(new_sr):
        return int(n_samples)
    g = gcd(int(orig_sr), int(new_sr))
    return -(-int(n_samples) * (int(new_sr) // g) // (int(orig_sr) // g))


class StreamResampler:
    """:func:`resample` of a signal given block by block (``push``, then ``finish``): the outputs,
    joined, equal :func:`resample` of the joined input, sample for sample. Each output sample is
    computed from an input segment that holds every sample it depends on (scipy's polyphase filter
    reaches ``10 * max(up, down)`` upsampled samples either side) and starts on the ``down`` grid,
    so the segment's output grid is the signal's; only about a block is held."""

    def __init__(self, orig_sr: int, new_sr: int):
        g = gcd(int(orig_sr), int(new_sr))
        self.up, self.down = int(new_sr) // g, int(orig_sr) // g
        reach = (10 * max(self.up, self.down) + 2 * self.down) // self.up + 2   # input samples each side
        self.margin = -(-reach // self.down) * self.down
        self._buf: Optional[np.ndarray] = None
        self._start = self._n_in = self._next = 0

    def push(self, block: np.ndarray) -> np.ndarray:
        """The output samples that ``block`` (and those before it) complete."""
        block = np.asarray(block, dtype=np.float32)
        self._buf = block if self._buf is None or self._buf.shape[-1] == 0 else np.concatenate(
            [self._buf, block], axis=-1)
        self._n_in += block.shape[-1]
        return self._emit(max(self._next, (self._n_in - self.margin) * self.up // self.down))

    def finish(self) -> np.ndarray:
        """The remaining output samples (the input has ended)."""
        return self._emit(-(-self._n_in * self.up // self.down))

    def _emit(self, stop: int) -> np.ndarray:
        if self._buf is None:
            return np.zeros((0,), np.float32)
        if stop <= self._next:
            return np.zeros(self._buf.shape[:-1] + (0,), np.float32)
        from scipy.signal import resample_poly

        seg_start = max(0, (self._next * self.down // self.up - self.margin) // self.down * self.down)
        seg = self._buf[..., seg_start - self._start:]
        offset = seg_start * self.up // self.down
        out = resample_poly(seg, self.up, self.down, axis=-1).astype(np.float32)[
            ..., self._next - offset:stop - offset]
        keep = max(self._start, (stop * self.down // self.up - self.margin) // self.down * self.down)
        self._buf, self._start, self._next = self._buf[..., keep - self._start:], keep, stop
        return out


def resample_blocks(blocks: Iterable[np.ndarray], orig_sr: int, new_sr: int) -> Iterator[np.ndarray]:
    """:func:`resample` of a signal given as blocks, as blocks (the blocks themselves when the rates are equal)."""
    if int(orig_sr) == int(new_sr):
        yield from blocks
        return
    res = StreamResampler(orig_sr, new_sr)
    for block in blocks:
        out = res.push(block)
        if out.shape[-1]:
            yield out
    out = res.finish()
    if out.shape[-1]:
        yield out


class BlockWindow:
    """Reads ``[channels, frames]`` at rising starts from an iterator of blocks, zero-padded past
    its end; holds only the samples from the latest start on (``read(start, 0)`` lets go of those
    before ``start``)."""

    def __init__(self, blocks: Iterable[np.ndarray], channels: int):
        self._blocks = iter(blocks)
        self._buf = np.zeros((int(channels), 0), np.float32)
        self._start, self._done = 0, False

    def read(self, start: int, frames: int) -> np.ndarray:
        if start < self._start:
            raise ValueError(f"read at {start} before the window's start {self._start}")
        pieces: List[np.ndarray] = [self._buf] if self._buf.shape[-1] else []
        first, have = self._start, self._start + self._buf.shape[-1]   # where pieces[0] starts, where they end
        while have < start + frames and not self._done:
            block = next(self._blocks, None)
            if block is None:
                self._done = True
            elif block.shape[-1]:
                pieces.append(block)
                have += block.shape[-1]
        while pieces and first + pieces[0].shape[-1] <= start:   # what lies before start is never read again:
            first += pieces.pop(0).shape[-1]                       # not joined to (and kept with) what is
        if pieces and first < start:
            pieces[0] = pieces[0][:, start - first:]
            if len(pieces) == 1 and 2 * pieces[0].shape[-1] < self._buf.shape[-1]:
                pieces[0] = pieces[0].copy()     # the rest, a copy: the buffer it was part of goes
        buf = pieces[0] if len(pieces) == 1 else (np.concatenate(pieces, axis=-1) if pieces else self._buf[:, :0])
        self._buf, self._start = buf, start
        out = self._buf[:, :frames]
        if out.shape[-1] < frames:
            out = np.pad(out, ((0, 0), (0, frames - out.shape[-1])))
        return out
