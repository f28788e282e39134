"""Real-time separation with a causal FrugalTasNet: blocks in, blocks out, 5 ms of latency.

    sep = StreamingSeparator(model)          # model trained with masker.causal: true
    for block in audio_callback_blocks:      # (channels, n), any n >= 1, n may change
        out = sep.process(block)             # (n_src, channels, n): target, rest
    tail = sep.flush()                       # (n_src, channels, latency_samples), then reset

Like an audio plugin, :meth:`StreamingSeparator.process` returns as many samples as it
is given, delayed by :attr:`StreamingSeparator.latency_samples` (one segment: 220 samples
= 5 ms at 44.1 kHz): the output stream is the offline causal model's output on the whole
signal, preceded by ``latency_samples`` zeros. Incomplete segments wait in a buffer and the
LSTM state is carried from call to call, so the result does not depend on how the stream
is cut into blocks. The model code is the offline model's own (encoder, masker with
:meth:`~asteroid_frugal.model.TasNetLSTMMasker.forward_stateful`, decoder).

Speed: a block of a few segments is a few LSTM steps, where oneDNN's per-call set-up
costs more than the step itself; :class:`StreamingSeparator` therefore runs calls of fewer
than ``mkldnn_min_frames`` segments with ``torch.backends.mkldnn`` disabled (same numbers,
PyTorch's native LSTM kernel). One step reads every LSTM weight once (32 MB in fp32 for
the paper model), so it is memory-bound: ``precision="int8"`` (dynamically quantised LSTM
and linear layers, 4x fewer bytes) is the fast PyTorch path; ``bfloat16`` is available too.
The fastest path measured is onnxruntime on the int8 export (``asteroid-frugal-export
--streaming --int8``, driven by ``OnnxStreamingSeparator`` with this class's buffering);
``benchmarks/bench_streaming.py`` measures them all.

Input: float blocks in [-1, 1] units, or integer blocks as audio callbacks deliver them
(int8, int16, int32: divided by their full scale, 2**7, 2**15, 2**31; other integer types are
refused); outputs are float32 in [-1, 1] units. A block holding NaN or an infinite sample is
replaced by silence for the model, so the LSTM state stays exactly as if the block had been
silent, and the output returned for it is silence; such blocks are counted
(``nonfinite_blocks``) and logged once per stream. A finite segment whose peak lies outside
:data:`asteroid_frugal.inference.SAFE_PEAK` (e.g. 1e20, where the segment's sum of squares would
overflow float32) is scaled by a power of two for the model and its estimates scaled back, as the
offline path scales a song (exact: each segment is normalised on its own); estimates beyond
float32's range saturate at its largest value. A model that outputs NaN or inf (weights holding
NaN) raises :class:`asteroid_frugal.inference.NonFiniteOutputError` naming it.

``stream_file`` runs a file through this path as if it were live (the CLI's ``--stream``).
"""
import logging
import time
from contextlib import contextmanager
from typing import Dict, Optional, Union

import numpy as np
import torch

from .inference import (SAFE_PEAK, NonFiniteOutputError, model_name,
                        quantize_int8)   # the same int8 weights as the offline path
from .utils import FrugalError

log = logging.getLogger("asteroid_frugal.streaming")

Array = Union[np.ndarray, torch.Tensor]


def check_causal(model, name: str = "model") -> None:
    """A clear error unless ``model`` is a causal FrugalTasNet (the only kind that can stream)."""
    if not getattr(model, "causal", False) or not hasattr(model, "masker"):
        raise FrugalError(f"{name}: not a causal model (trained with masker.causal: false): only a causal "
                          f"model (egs/realtime/conf.yml) can separate a stream; use the offline path")


PRECISIONS = ("float32", "bfloat16", "int8")


# Integer samples, as audio callbacks deliver them: the full scale each is divided by.
INT_FULL_SCALE = {torch.int8: 2.0 ** 7, torch.int16: 2.0 ** 15, torch.int32: 2.0 ** 31}


class BlockStreamer:
    """Blocks of any size in, the same sizes out, delayed by one segment: the buffering of a
    stream around a step that separates whole segments (``_separate_frames``), shared by
    :class:`StreamingSeparator` and the drivers of exported models (``asteroid_frugal.export``).

    Blocks: float (in [-1, 1] units) or int8/int16/int32 (divided by their full scale, 2**7,
    2**15, 2**31); outputs are float32 in [-1, 1] units. A block holding NaN or inf is
    replaced by silence for the model (the state stays as if the block were silent) and its
    output block is silence; :attr:`nonfinite_blocks` counts them (since the separator was
    made) and the first of each stream is logged as a warning.
    """

    def __init__(self, n_src: int, n_channels: int, segment: int, sample_rate: float):
        self.n_src, self.n_channels, self.segment = int(n_src), int(n_channels), int(segment)
        self.sample_rate = float(sample_rate)
        self.latency_samples = self.segment
        self.latency_seconds = self.latency_samples / self.sample_rate
        self._last_numpy = False
        self.nonfinite_blocks = 0
        self.reset()

    def reset(self) -> None:
        """Forget the stream: LSTM state, buffered input and pending output."""
        self._in_chan: Optional[int] = None
        self._pending = torch.zeros(0, 0)  # input samples of the incomplete segment
        self._queue: Optional[torch.Tensor] = None  # computed output not yet returned
        self._nonfinite_logged = False

    def process(self, block: Array) -> Array:
        """Separate the next ``(channels, n)`` samples (n >= 1); returns ``(n_src, channels, n)``.

        The output is the separation of the stream delayed by :attr:`latency_samples`
        (zeros before the first segment is complete). A numpy block gives a numpy
        result, a tensor a tensor. Channels: the model's, or 1 (mono into a stereo model is
        duplicated and the estimates averaged back, as the offline model does); fixed
        until :meth:`reset`. Integer and non-finite blocks: see the class docstring.
        """
        x, as_numpy = self._check_block(block)
        finite = bool(torch.isfinite(x).all())
        if not finite:
            x = self._silence_for(x)
        buf = torch.cat([self._pending, x], dim=1) if self._pending.shape[1] else x
        n_ready = buf.shape[1] // self.segment * self.segment
        if n_ready:
            self._queue = torch.cat([self._queue, self._separate(buf[:, :n_ready])], dim=-1)
        self._pending = buf[:, n_ready:].clone()   # a copy: the caller may reuse its block's memory
        out, self._queue = self._queue[..., :x.shape[1]], self._queue[..., x.shape[1]:]
        if not finite:
            out = torch.zeros_like(out)
        return out.numpy() if as_numpy else out

    def _silence_for(self, x: torch.Tensor) -> torch.Tensor:
        """Silence in place of a block holding NaN or inf: counted, and logged once per stream."""
        self.nonfinite_blocks += 1
        if not self._nonfinite_logged:
            self._nonfinite_logged = True
            log.warning("%s: a block of %d samples holding NaN or infinite values was replaced by silence "
                        "(its output is silence; the model carries on as if it had been silent); later ones "
                        "are counted in nonfinite_blocks, not logged", type(self).__name__, x.shape[1])
        return torch.zeros_like(x)

    def flush(self) -> Array:
        """End of the stream: the last :attr:`latency_samples` of output, then :meth:`reset`.

        The incomplete last segment is zero-padded, as the offline model pads the end of
        a signal. Returns ``(n_src, channels, latency_samples)`` (the stream's channels;
        the model's before any block).
        """
        if self._queue is None:
            out = torch.zeros(self.n_src, self.n_channels, self.latency_samples)
        else:
            n_pending = self._pending.shape[1]
            if n_pending:
                pad = torch.nn.functional.pad(self._pending, (0, self.segment - n_pending))
                self._queue = torch.cat([self._queue, self._separate(pad)], dim=-1)
            out = self._queue[..., :self.latency_samples]
        self.reset()
        return out.numpy() if self._last_numpy else out

    def _check_block(self, block: Array):
        as_numpy = not torch.is_tensor(block)
        x = torch.as_tensor(np.asarray(block) if as_numpy else block).detach()
        if x.dim() != 2:
            raise ValueError(f"a block must be (channels, n), got shape {tuple(x.shape)}")
        chan, n = x.shape
        if n < 1:
            raise ValueError("a block must hold at least one sample")
        if chan not in (self.n_channels, 1):
            raise ValueError(f"model expects {self.n_channels} channel(s) (or mono), got {chan}")
        if not x.is_floating_point() and x.dtype not in INT_FULL_SCALE:
            raise ValueError(f"a block must hold float or int8/int16/int32 samples, got {x.dtype}")
        if self._in_chan is None:
            self._in_chan = chan
            self._pending = torch.zeros(chan, 0)
            self._queue = torch.zeros(self.n_src, chan, self.latency_samples)
        elif chan != self._in_chan:
            raise ValueError(f"the stream has {self._in_chan} channel(s), this block {chan}: reset() first")
        self._last_numpy = as_numpy
        if x.is_floating_point():
            return x.to("cpu", torch.float32), as_numpy
        return x.to("cpu", torch.float32).mul_(1.0 / INT_FULL_SCALE[x.dtype]), as_numpy

    def _separate(self, frames: torch.Tensor) -> torch.Tensor:
        """Complete segments ``(C_in, k * L)`` -> ``(n_src, C_in, k * L)`` (mono in: duplicated, averaged).
        Segments at extreme levels go through the model scaled (:func:`segment_levels`)."""
        x = frames if frames.shape[0] == self.n_channels else frames.expand(self.n_channels, -1)
        x, exponents = segment_levels(x.contiguous(), self.segment)
        est = self._separate_frames(x)
        if not bool(torch.isfinite(est).all()):
            raise NonFiniteOutputError(f"model {self.model_label()} produced non-finite audio (NaN/inf)")
        if exponents is not None:
            est = restore_levels(est, exponents, self.segment)
        return est if frames.shape[0] == self.n_channels else est.mean(dim=1, keepdim=True)

    def model_label(self) -> str:
        """How messages name the model (its file where known)."""
        return type(self).__name__

    def _separate_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """``(n_channels, k * L)`` -> ``(n_src, n_channels, k * L)`` float32 CPU, carrying the state."""
        raise NotImplementedError


def segment_levels(frames: torch.Tensor, segment: int):
    """``frames (C, k * segment)`` with each segment whose peak lies outside
    :data:`~asteroid_frugal.inference.SAFE_PEAK` scaled by ``2**-e`` (its peak then in [0.5, 1)),
    and the exponents ``e (k,)``; ``(frames, None)`` unchanged when every segment is inside it.
    Exact (powers of two), and the model normalises each segment on its own, so the estimates
    scaled back (:func:`restore_levels`) are those of the unscaled segment."""
    seg = frames.reshape(frames.shape[0], -1, segment)
    peaks = seg.abs().amax(dim=(0, 2))
    outside = (peaks > 0) & ((peaks < SAFE_PEAK[0]) | (peaks > SAFE_PEAK[1]))
    if not bool(outside.any()):
        return frames, None
    exponents = torch.where(outside, torch.frexp(peaks).exponent, 0).to(torch.float64)
    scaled = seg.to(torch.float64) * torch.exp2(-exponents)[None, :, None]
    return scaled.to(torch.float32).reshape(frames.shape), exponents


def restore_levels(est: torch.Tensor, exponents: torch.Tensor, segment: int) -> torch.Tensor:
    """``est (n_src, C, k * segment)`` scaled back by :func:`segment_levels`' exponents; samples beyond
    float32's range saturate at its largest value."""
    seg = est.reshape(est.shape[0], est.shape[1], -1, segment).to(torch.float64)
    big = torch.finfo(torch.float32).max
    out = (seg * torch.exp2(exponents)[None, None, :, None]).clamp_(-big, big)
    return out.to(torch.float32).reshape(est.shape)


class StreamingSeparator(BlockStreamer):
    """Block-by-block separation with a causal :class:`~asteroid_frugal.model.FrugalTasNet`.

    Args:
        model: a causal FrugalTasNet (``model.causal``), in eval mode on any device.
        mkldnn_min_frames: calls with at least this many complete segments use oneDNN
            (faster on long blocks); shorter ones use the native kernel (see module doc).
        precision: ``float32`` (the model as given), ``bfloat16`` (a bf16 copy) or ``int8``
            (a dynamically quantised copy, CPU: :func:`quantize_int8`).

    Methods ``process(block)``, ``flush()``, ``reset()``: see :class:`BlockStreamer`.
    Blocks: float in [-1, 1] units, or int8/int16/int32 as audio callbacks deliver them
    (divided by 2**7, 2**15, 2**31); outputs are float32 in [-1, 1] units. A block holding NaN
    or inf is replaced by silence for the model (the LSTM state stays as if it had been silent)
    and the block returned for it is silence.

    Attributes:
        latency_samples: algorithmic latency in samples (one segment, ``model.kernel_size``).
        latency_seconds: the same in seconds at ``model.sample_rate``.
        nonfinite_blocks: blocks replaced by silence since the separator was made (the first
            of each stream is logged as a warning).
    """

    def __init__(self, model: torch.nn.Module, mkldnn_min_frames: int = 16, precision: str = "float32"):
        check_causal(model, getattr(model, "frugal_path", type(model).__name__))
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        if precision == "int8":
            model = quantize_int8(model)
        elif precision == "bfloat16":
            import copy

            model = copy.deepcopy(model).to(torch.bfloat16)
        self.model = model.eval()
        self.mkldnn_min_frames = int(mkldnn_min_frames)
        try:
            param = next(model.parameters())
            self.device, self.dtype = param.device, param.dtype
        except StopIteration:  # an int8 model keeps its weights in packed parameters
            self.device, self.dtype = torch.device("cpu"), torch.float32
        super().__init__(model.n_src, model.n_channels, model.kernel_size, model.sample_rate)

    def reset(self) -> None:
        super().reset()
        self._state = None

    def model_label(self) -> str:
        return model_name(self.model)

    def _separate_frames(self, frames: torch.Tensor) -> torch.Tensor:
        model = self.model
        x = frames[None].to(self.device, self.dtype)
        use_mkldnn = frames.shape[1] // self.segment >= self.mkldnn_min_frames
        with torch.no_grad(), _mkldnn(use_mkldnn):
            tf_rep, norms = model.encoder(x)
            masks, self._state = model.masker.forward_stateful(tf_rep, self._state)
            est = model.decoder(model.apply_masks(tf_rep, masks), norms, x.shape[-1])[0]
        return est.to("cpu", torch.float32)


@contextmanager
def _mkldnn(enabled: bool):
    """Turn oneDNN off for one call (never on if it was off). Not ``torch.backends.mkldnn.flags``:
    in torch 2.11 that also resets the TF32 flag and warns on every call on CPU-only builds."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = before and enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def stream_file(model, audio: np.ndarray, sample_rate: int, block: int, precision: str = "float32",
                progress: Union[bool, str] = False) -> Dict[str, object]:
    """Run ``audio [C, T]`` (at the model's rate) through :class:`StreamingSeparator` block by block.

    Returns ``{"estimates": (n_src, C, T) aligned with the input (latency removed), "stats": ...}``
    with the per-block compute times (median, 99th percentile, maximum, in ms), the block
    duration and the real-time factor (compute time / audio duration).
    """
    if block < 1:
        raise FrugalError(f"--block {block}: must be at least 1 sample")
    sep = StreamingSeparator(model, precision=precision)
    n_chan, n_samples = audio.shape
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    outs, times = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_samples, unit="sample", unit_scale=True, leave=False,
                   desc=progress if isinstance(progress, str) else None)
    try:
        for start in range(0, n_samples, block):
            piece = x[:, start:start + block]
            t = time.perf_counter()
            outs.append(sep.process(piece))
            times.append(time.perf_counter() - t)
            if bar is not None:
                bar.update(piece.shape[1])
        t = time.perf_counter()
        outs.append(sep.flush())
        flush_time = time.perf_counter() - t
    finally:
        if bar is not None:
            bar.close()
    est = torch.cat(outs, dim=-1)[..., sep.latency_samples:sep.latency_samples + n_samples]
    ms = np.asarray(times) * 1e3
    stats = dict(block=block, blocks=len(times), sample_rate=sample_rate,
                 block_ms=block / sample_rate * 1e3, latency_samples=sep.latency_samples,
                 latency_ms=sep.latency_seconds * 1e3,
                 median_ms=float(np.median(ms)), p99_ms=float(np.percentile(ms, 99)), max_ms=float(ms.max()),
                 rtf=float((ms.sum() / 1e3 + flush_time) / (n_samples / sample_rate)),
                 late_blocks=int(np.count_nonzero(ms > block / sample_rate * 1e3)))
    return dict(estimates=est, stats=stats)


def log_stats(name: str, stats: Dict[str, float]) -> None:
    """One line a person reads: latency, real-time factor, block compute times."""
    log.info("%s: streamed in blocks of %d samples (%.1f ms): algorithmic latency %d samples (%.1f ms); "
             "real-time factor %.3f; compute per block median %.2f ms, 99th percentile %.2f ms, max %.2f ms; "
             "%d of %d blocks took longer than their duration", name, stats["block"], stats["block_ms"],
             stats["latency_samples"], stats["latency_ms"], stats["rtf"], stats["median_ms"],
             stats["p99_ms"], stats["max_ms"], stats["late_blocks"], stats["blocks"])


def streaming_options(models, conf) -> Dict[str, object]:
    """Check that ``models`` is one causal target-vs-rest model; the block size and weight precision
    of the config's ``streaming`` section (``--block``, ``--stream_precision``)."""
    if len(models) != 1:
        raise FrugalError("--stream takes one causal model (a live stream runs one target-vs-rest model)")
    check_causal(models[0].model, models[0].path)
    block = int(conf["streaming"]["block"])
    if block < 1:
        raise FrugalError(f"--block {block}: must be at least 1 sample")
    precision = conf["streaming"]["precision"]
    if precision not in PRECISIONS:
        raise FrugalError(f"streaming precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return dict(block=block, precision=precision)


def stream_stems(tm, audio: np.ndarray, sample_rate: int, block: int, precision: str,
                 desc: str = "") -> Dict[str, np.ndarray]:
    """``asteroid-frugal-separate --stream``: one song through :func:`stream_file` as if live.

    ``tm`` is an :class:`asteroid_frugal.inference.TargetModel` of a causal model; returns its
    target and rest stems at the input's rate and length, rescaled by the offline path's
    least-squares gain (a live host would measure that gain once), and logs latency and
    real-time factor. Levels outside :data:`asteroid_frugal.inference.SAFE_PEAK` are scaled by a
    power of two for the model, as offline; NaN or inf out of the model raises
    :class:`asteroid_frugal.inference.NonFiniteOutputError`."""
    from .audio import resample
    from .data.types import stem_names
    from .inference import NonFiniteOutputError, back_to_input, least_squares_gain, level_exponent, scale_pow2

    model_sr = int(round(float(tm.model.sample_rate)))
    model_in = resample(audio, sample_rate, model_sr)
    level = level_exponent(model_in)
    if level:
        model_in = scale_pow2(torch.tensor(model_in, dtype=torch.float32), -level).numpy()
    res = stream_file(tm.model, model_in, model_sr, block, precision, progress=desc or True)
    log_stats(desc or tm.path, res["stats"])
    est = res["estimates"]
    if not bool(torch.isfinite(est).all()):
        raise NonFiniteOutputError(f"model {tm.path} produced non-finite audio (NaN/inf)")
    if level:
        scale_pow2(est, level)
    target, rest = (back_to_input(est[i], model_sr, sample_rate, audio.shape[-1]) for i in range(2))
    gain = least_squares_gain(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), target, rest)
    names = stem_names([tm.target])
    return {names[0]: (target * gain).numpy(), names[1]: (rest * gain).numpy()}
