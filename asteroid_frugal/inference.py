"""Model loading and whole-song separation in bounded memory (chunked, batched, cross-faded).

A song is cut into chunks of ``chunk_seconds`` that overlap by ``overlap_seconds``;
chunks are run through the model ``batch_chunks`` at a time (the BLSTM is sequential
in time, so chunks side by side use the hardware far better than one long sequence)
and joined with a raised-cosine cross-fade whose two halves sum to one exactly.

Chunk starts and the overlap are multiples of the model's segment hop (``stride``),
so every chunk cuts the song on the same segment grid as a single pass would: a
segment's encoder input, norm and decoder output are identical, and only the LSTM
context differs near the chunk edges. Sources keep their order across chunks (a
target-vs-rest music model is not permutation invariant, unlike Asteroid's
``LambdaOverlapAdd``, which reorders sources and fails on stereo).

Target-vs-rest models to stems (the functional API under the ``separate`` command line
and stage 4): :func:`load_target_models` loads ``[target=]path`` specs, and
:func:`separate_stems` turns a song into named stems, each model's two outputs scaled by
their :func:`least_squares_gain` (SI-SNR training leaves the output gain free).

Songs of any length: :func:`separate_blocks` yields a model's output block by block from reads of
the mixture, so neither the song nor its stems need be in memory; :func:`separate_stream` runs
the models over a song given as blocks at its own rate (resampled block by block) and hands each
model output to a sink, returning each model's gain; :func:`combine_stems` makes one block of the
stems from those outputs (the definition of each stem). :func:`separate_stems` is the same path
with the song and its stems in memory.
"""
import math
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .audio import BlockWindow, StreamResampler, resample, resample_blocks, resampled_length
from .config import get, load_config, load_yaml
from .data.types import TARGETS, rest_name, stem_names
from .utils import FrugalError, torch_load

MODEL_FILES = ("best_model.pth", "model.pth", "pytorch_model.bin")


# ------------------------------------------------------------------- model loading
def resolve_model_file(path_or_dir) -> Path:
    """A model file, or the model file inside an experiment or publish directory."""
    path = Path(path_or_dir)
    if path.is_dir():
        for name in MODEL_FILES:
            if (path / name).is_file():
                return path / name
        raise FrugalError(f"{path}: no model file in this directory (looked for {', '.join(MODEL_FILES)})")
    if not path.exists():
        raise FrugalError(f"{path}: model file not found")
    return path


def load_model_package(path_or_dir, weights: bool = True) -> Tuple[Dict[str, Any], Path]:
    """Read a serialized model (``model_name``, ``model_args``, ``state_dict``, ``infos``).

    Uses torch's ``weights_only`` loader (the default of torch >= 2.6), the one
    ``BaseModel.from_pretrained`` uses, so a file that loads here also loads there.
    ``weights=False``: the tensors are read as shapes only (PyTorch's ``meta`` device: none of
    their data is read), for what a model is rather than what it computes; a file that this
    cannot read is read whole, for :func:`asteroid_frugal.utils.torch_load`'s error.
    """
    path = resolve_model_file(path_or_dir)
    package = None
    if not weights:
        try:
            package = torch.load(str(path), map_location="meta", weights_only=True)
        except Exception:  # noqa: BLE001 - read again below, for torch_load's one-line error
            package = None
    if package is None:
        package = torch_load(path, "a loadable model file (best_model.pth, or an experiment or publish folder "
                                   "holding one)")
    if not isinstance(package, dict) or not {"model_name", "model_args", "state_dict"} <= set(package):
        keys = sorted(package) if isinstance(package, dict) else type(package).__name__
        raise FrugalError(f"{path}: not a serialized Asteroid model (expected model_name, model_args, "
                          f"state_dict; found {keys})")
    return package, path


def load_model(path_or_expdir, device=None, weights: bool = True) -> torch.nn.Module:
    """Load a model (file, experiment dir or publish dir) with ``BaseModel.from_pretrained``.

    Returns the model in eval mode on ``device`` (default: CPU). The package's
    ``infos`` dict is kept as ``model.frugal_infos`` and its path as ``model.frugal_path``.
    ``weights=False``: the model without its weights (on PyTorch's ``meta`` device, whatever
    ``device``: no memory, nothing read but the file's structure): its shape and settings
    (sample rate, segment hop, :func:`lstm_units`) for code that runs it by other means, such as
    an int8 graph already made from it (:func:`is_weightless`).
    """
    import asteroid_frugal  # noqa: F401  (registers FrugalTasNet with asteroid.models)
    from asteroid.models import BaseModel

    package, path = load_model_package(path_or_expdir, weights=weights)
    infos = package.get("infos") or {}
    try:
        if weights:
            model = BaseModel.from_pretrained(package)
        else:
            with torch.device("meta"):
                model = BaseModel.from_pretrained(package)
    except Exception as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FrugalError(f"{path}: cannot build model {package.get('model_name')!r} ({msg[:200]})") from None
    model.frugal_infos = infos if isinstance(infos, dict) else {}
    model.frugal_path = str(path)
    if not weights:
        return model.eval()
    return model.to(torch.device(device) if device else "cpu").eval()


def is_weightless(model) -> bool:
    """Whether ``model`` was built without its weights (:func:`load_model` with ``weights=False``)."""
    return _model_device(model).type == "meta"


def resolve_device(name: Optional[str] = None) -> str:
    """``None``/``auto``: cuda if available, else cpu; a CUDA device asked for must exist."""
    if name in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise FrugalError(f"device {name}: no CUDA device is available here")
    return str(name)


# -------------------------------------------------------------- chunked inference
def model_hop(model) -> int:
    """The model's segment hop in samples (1 for models without a segment grid)."""
    return max(1, int(getattr(model, "stride", None) or getattr(model, "kernel_size", None) or 1))


def chunk_plan(n_samples: int, chunk: int, overlap: int, hop: int = 1) -> List[Tuple[int, int, int]]:
    """``(start, fade_in_start, fade_out_start)`` of each chunk of ``chunk`` samples.

    ``n_samples`` is first rounded up to the segment grid ``hop`` (the model pads its
    last segment with zeros the same way). Chunks start every ``chunk - overlap``
    samples, except the last, which ends exactly there: every chunk has the same
    length (one batch shape) and the last one keeps a full left context. Chunk ``i``
    fades in over ``[fade_in_start, fade_in_start + overlap)``, the fade-out of chunk
    ``i - 1``; what a chunk computed before its fade-in is discarded. A song shorter
    than a chunk is one chunk of its own (grid-rounded) length.
    """
    padded = -(-n_samples // hop) * hop
    if padded <= chunk:
        return [(0, 0, padded)]
    step = chunk - overlap
    n_chunks = -(-(padded - overlap) // step)
    starts = [i * step for i in range(n_chunks - 1)] + [padded - chunk]
    plan = []
    for i, start in enumerate(starts):
        fade_in = starts[i - 1] + chunk - overlap if i else 0
        fade_out = start + chunk - overlap if i < n_chunks - 1 else start + chunk
        plan.append((start, fade_in, fade_out))
    return plan


def balanced_chunk(n_samples: int, chunk: int, overlap: int, hop: int = 1, batch: int = 1) -> int:
    """Chunk length (at most ``chunk``, at least half of it) making the chunk count a multiple of ``batch``.

    A last batch with fewer chunks costs nearly as much time as a full one (the
    BLSTM steps through time whatever the batch size), so slightly shorter chunks
    that fill every batch are faster. Songs of one chunk stay one chunk (= one pass).
    """
    padded = -(-n_samples // hop) * hop
    if batch <= 1 or padded <= chunk:
        return chunk
    n_chunks = -(-(padded - overlap) // (chunk - overlap))
    n_wanted = -(-n_chunks // batch) * batch
    step = -(-(padded - overlap) // n_wanted)
    balanced = -(-step // hop) * hop + overlap
    floor = max(-(-(chunk // 2) // hop) * hop, 2 * overlap)
    return min(chunk, max(balanced, floor))


def crossfade_ramp(overlap: int, dtype=torch.float32) -> torch.Tensor:
    """Raised-cosine fade-in of ``overlap`` samples; ``1 - ramp`` is the matching fade-out."""
    pos = (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap
    return (0.5 - 0.5 * torch.cos(math.pi * pos)).to(dtype)


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


# precision -> autocast dtype (None: no autocast); int8: the model's dynamically quantised copy
# (:func:`int8_model`, CPU only), run without autocast
PRECISIONS = {"float32": None, "32": None, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
              "float16": torch.float16, "16": torch.float16, "int8": None}


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with int8 weights in its LSTM and linear layers (activations stay float).

    Uses PyTorch's dynamic quantisation (``torch.ao.quantization.quantize_dynamic``, CPU
    only; deprecated in favour of torchao, which this project does not depend on): weights
    are quantised once, activations per call, so no calibration data is needed.
    """
    import copy
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the torchao migration notice
        quantized = quantize_dynamic(copy.deepcopy(model).cpu().float(), {torch.nn.LSTM, torch.nn.Linear},
                                     dtype=torch.qint8)
    return quantized.eval()


def release_heap() -> bool:
    """Hand the free pages of the C library's heap back to the system (glibc's ``malloc_trim``): after
    a model's weights or a chunk's activations are freed, buffers under the command's mmap threshold
    (``separate.mmap_threshold_mb``) leave pages that otherwise stay with the process between live
    ones. Returns whether it could (False off glibc)."""
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def check_precision_device(precision: str, device) -> None:
    """One :class:`FrugalError` line when ``precision`` cannot run on ``device``: int8 is CPU only."""
    dev = torch.device(device)
    if precision == "int8" and dev.type != "cpu":
        raise FrugalError(f"precision int8 runs on the CPU only (dynamically quantised weights); on {dev} use "
                          f"auto, float32, bfloat16 or float16, or --device cpu")


_INT8_COPIES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def check_finite_weights(model: torch.nn.Module) -> None:
    """A :class:`NonFiniteOutputError` naming the model when a weight holds NaN or inf (which cannot
    be quantised to int8)."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise NonFiniteOutputError(f"model {model_name(model)} holds non-finite weights (NaN/inf): "
                                   f"it cannot be quantised to int8")


def int8_model(model: torch.nn.Module, device=None) -> torch.nn.Module:
    """``model``'s int8 copy (:func:`quantize_int8`) for separation on the CPU; ``model`` itself is
    left as it is. Made once per model and kept while the model lives (made again if its weights
    have changed since). A model on another ``device``: :func:`check_precision_device`'s error;
    weights holding NaN or inf (which cannot be quantised): a :class:`NonFiniteOutputError`."""
    check_precision_device("int8", device if device is not None else _model_device(model))
    stamp = tuple(p._version for p in model.parameters())   # bumped by every in-place change of a weight
    cached = _INT8_COPIES.get(model)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    check_finite_weights(model)
    quantized = quantize_int8(model)
    _INT8_COPIES[model] = (stamp, quantized)
    return quantized


def chunking(conf: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``chunk_seconds``, ``overlap_seconds``, ``batch_chunks`` of a config's ``evaluation``
    section (default: conf.yml's), checked together: one :class:`FrugalError` naming the keys
    when a chunk is not positive, the overlap negative or more than half a chunk, or a batch
    empty. The commands that separate (stage 4, ``separate``) call it before any work."""
    ev = (conf if conf is not None else load_config())["evaluation"]
    try:
        opts = dict(chunk_seconds=float(ev["chunk_seconds"]), overlap_seconds=float(ev["overlap_seconds"]),
                    batch_chunks=int(ev["batch_chunks"]))
    except (TypeError, ValueError) as err:
        raise FrugalError(f"evaluation.chunk_seconds/overlap_seconds/batch_chunks: expected numbers ({err})") from None
    chunk, overlap, batch = opts["chunk_seconds"], opts["overlap_seconds"], opts["batch_chunks"]
    if not (math.isfinite(chunk) and chunk > 0):
        raise FrugalError(f"evaluation.chunk_seconds={chunk:g} (--chunk_seconds): expected a positive "
                          f"number of seconds")
    if not (math.isfinite(overlap) and 0 <= 2 * overlap <= chunk):
        raise FrugalError(f"evaluation.overlap_seconds={overlap:g} (--overlap_seconds): expected 0 to half a chunk "
                          f"(evaluation.chunk_seconds={chunk:g}, so at most {chunk / 2:g} s)")
    if batch < 1:
        raise FrugalError(f"evaluation.batch_chunks={batch} (--batch_chunks): expected at least 1")
    return opts


# A mixture whose peak lies outside this range is scaled by a power of two before the model
# (exactly invertible; the model is scale-equivariant: segments are L2-normalised and their
# norms restored). Below 2**-24, quieter than one step of a 24-bit file, the encoder's epsilon
# (1e-8) is no longer small against the segment norms; far above full scale, sums of squares
# approach float32's range. Inside it nothing changes, bit for bit.
SAFE_PEAK = (2.0 ** -24, 2.0 ** 10)


class NonFiniteOutputError(FrugalError):
    """A model produced NaN or infinite samples (e.g. weights holding NaN)."""


def model_name(model) -> str:
    """How a model is named in messages: its file (``load_model`` records it), else its class."""
    return str(getattr(model, "frugal_path", None) or type(model).__name__)


def level_exponent(mixture: Union[torch.Tensor, np.ndarray]) -> int:
    """``e`` such that ``mixture * 2**-e`` has its peak in [0.5, 1) when the peak is outside
    :data:`SAFE_PEAK`; 0 inside it (and for silence). NaN or infinite samples: a :class:`FrugalError`."""
    mix = mixture if torch.is_tensor(mixture) else torch.from_numpy(np.asarray(mixture))
    if mix.numel() == 0:
        return 0
    low, high = torch.aminmax(mix.detach())   # no song-sized copy (as abs() would make)
    return peak_exponent(max(-float(low), float(high)))


def peak_exponent(peak: float) -> int:
    """:func:`level_exponent` of a mixture whose peak (largest absolute sample) is ``peak``."""
    if not math.isfinite(peak):
        raise FrugalError("the mixture holds NaN or infinite samples")
    if peak == 0 or SAFE_PEAK[0] <= peak <= SAFE_PEAK[1]:
        return 0
    return math.frexp(peak)[1]


def stream_levels(blocks: Iterable[np.ndarray], sample_rate: int, model_rates: Iterable[int]) -> Dict[int, int]:
    """``{model rate: level}``: :func:`level_exponent` of the mixture resampled to each model rate,
    from its ``[C, n]`` blocks at ``sample_rate`` in one pass (resampled block by block, exactly as
    whole)."""
    rates = sorted({int(r) for r in model_rates})
    resamplers = {r: StreamResampler(sample_rate, r) for r in rates if r != int(sample_rate)}
    peaks = dict.fromkeys(rates, 0.0)

    def see(rate, x):
        if x.size:
            peaks[rate] = max(peaks[rate], -float(x.min()), float(x.max()))

    for block in blocks:
        if not np.isfinite(block).all():
            raise FrugalError("the mixture holds NaN or infinite samples")
        for rate in rates:
            see(rate, resamplers[rate].push(block) if rate in resamplers else block)
    for rate, res in resamplers.items():
        see(rate, res.finish())
    return {rate: peak_exponent(peak) for rate, peak in peaks.items()}


def scale_pow2(x: torch.Tensor, exponent: int) -> torch.Tensor:
    """``x *= 2**exponent`` in place, exactly (a power of two; in steps that float32 can hold)."""
    while exponent:
        step = max(-100, min(100, exponent))
        x.mul_(2.0 ** step)
        exponent -= step
    return x


def separate_long(model, mixture: Union[torch.Tensor, np.ndarray], chunk_seconds: Optional[float] = None,
                  overlap_seconds: Optional[float] = None, batch_chunks: Optional[int] = None, device=None,
                  progress: Union[bool, str] = False, precision: str = "float32") -> torch.Tensor:
    """Separate ``mixture [C, T]`` (at the model's sample rate) into ``[n_src, C, T]``.

    Chunks of ``chunk_seconds`` overlapping by ``overlap_seconds`` (both rounded to
    the model's segment hop; see :func:`chunk_plan`; chunks may be shortened, down
    to half, so that every batch is full: :func:`balanced_chunk`) go through the model
    ``batch_chunks`` at a time under ``torch.no_grad()`` and are joined with a
    raised-cosine cross-fade (:func:`separate_blocks`, which yields the output block by block
    for songs that do not fit in memory). Peak memory: the input, the float32 output buffer (on
    CPU) and one batch of chunk activations, whatever the song length.
    ``device``: where the model runs (default: where its parameters are).
    ``progress``: show a tqdm bar (a string is used as its description).
    ``precision``: ``float32`` (default) or ``bfloat16``/``float16`` autocast (faster
    on CPUs with bf16 instructions and on GPUs; outputs stay float32).
    Chunking arguments left at None take conf.yml's ``evaluation`` values (:func:`chunking`).
    Levels: a mixture whose peak is outside :data:`SAFE_PEAK` (e.g. 1e20 or 1e-30) is scaled
    by a power of two for the model and the estimates scaled back (:func:`level_exponent`).
    Returns a CPU float32 tensor with exactly T samples. A model output holding NaN or inf
    raises :class:`NonFiniteOutputError` naming the model (:func:`model_name`).
    """
    if None in (chunk_seconds, overlap_seconds, batch_chunks):
        conf_chunking = chunking()
        chunk_seconds = conf_chunking["chunk_seconds"] if chunk_seconds is None else chunk_seconds
        overlap_seconds = conf_chunking["overlap_seconds"] if overlap_seconds is None else overlap_seconds
        batch_chunks = conf_chunking["batch_chunks"] if batch_chunks is None else batch_chunks
    mix = mixture if torch.is_tensor(mixture) else torch.from_numpy(np.asarray(mixture))
    if mix.dim() != 2:
        raise ValueError(f"mixture must be [channels, samples], got shape {tuple(mix.shape)}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if batch_chunks < 1:
        raise ValueError(f"batch_chunks must be >= 1, got {batch_chunks}")
    mix = mix.detach().to("cpu", torch.float32)
    n_chan, n_samples = mix.shape
    out: Optional[torch.Tensor] = None
    done = 0
    for block in separate_blocks(model, lambda start, length: _padded_slice(mix, start, length), n_samples, n_chan,
                                 chunk_seconds, overlap_seconds, batch_chunks, device=device, progress=progress,
                                 precision=precision, level=level_exponent(mix)):
        if out is None:
            out = torch.empty(block.shape[0], n_chan, n_samples)
        out[..., done:done + block.shape[-1]] = block
        done += block.shape[-1]
    return out


def separate_blocks(model, read: Callable[[int, int], torch.Tensor], n_samples: int, n_chan: int,
                    chunk_seconds: float, overlap_seconds: float, batch_chunks: int, device, progress: Union[bool, str],
                    precision: str, level: int) -> Iterator[torch.Tensor]:
    """:func:`separate_long` of a mixture of ``n_samples`` x ``n_chan`` that is not in memory:
    ``read(start, length)`` gives ``mixture[:, start:start + length]`` (a CPU float32 tensor,
    zero-padded past the end; starts never go back, so a reader may drop what lies before
    them), and the output ``[n_src, C, block]`` comes block by block, in order, covering exactly
    ``n_samples``. Each block is final once the chunks overlapping it are added; what is held is
    one batch of chunks and their outputs. The chunks are those of ``batch_chunks``
    (:func:`balanced_chunk`); a model with a ``chunks_per_call`` attribute (an engine whose memory
    grows with the batch, as :class:`asteroid_frugal.export.OnnxOfflineModel`) is given at most that
    many of them per call. ``level``: :func:`level_exponent` of the whole mixture
    (the chunks are scaled by ``2**-level`` for the model and the output back). The outputs equal
    :func:`separate_long`'s, sample for sample. Arguments are checked before the first block."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if batch_chunks < 1:
        raise ValueError(f"batch_chunks must be >= 1, got {batch_chunks}")
    device = torch.device(device) if device is not None else _model_device(model)
    if precision == "int8":
        model = int8_model(model, device)   # CPU only (one line otherwise); the model is not changed
    elif device != _model_device(model):
        model = model.to(device)
    sample_rate = float(getattr(model, "sample_rate", 44100.0) or 44100.0)
    hop = model_hop(model)
    chunk = max(hop, int(round(chunk_seconds * sample_rate / hop)) * hop)
    overlap = int(round(overlap_seconds * sample_rate / hop)) * hop
    if not 0 <= 2 * overlap <= chunk:
        raise ValueError(f"overlap ({overlap_seconds} s) must be at most half a chunk ({chunk_seconds} s)")
    chunk = balanced_chunk(n_samples, chunk, overlap, hop, batch_chunks)
    plan = chunk_plan(n_samples, chunk, overlap, hop)
    length = plan[0][2] if len(plan) == 1 else chunk
    per_call = min(batch_chunks, max(1, int(getattr(model, "chunks_per_call", None) or batch_chunks)))
    return _plan_blocks(model, read, plan, length, overlap, n_samples, n_chan, per_call, device,
                        PRECISIONS[precision], level, progress, sample_rate)


def _plan_blocks(model, read, plan, length: int, overlap: int, n_samples: int, n_chan: int, batch_chunks: int,
                 device: torch.device, autocast_dtype, level: int, progress,
                 sample_rate: float) -> Iterator[torch.Tensor]:
    """The generator of :func:`separate_blocks` (``batch_chunks``: chunks per model call), one block
    per chunk: ``window`` holds the output from
    the first sample not yet given out (``base``) to the end of the chunk, final up to the next
    chunk's fade-in."""
    ramp = crossfade_ramp(overlap) if overlap else None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=round(n_samples / sample_rate, 1), unit="s", leave=False,
                   desc=progress if isinstance(progress, str) else None,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of audio [{elapsed}<{remaining}]")
    was_training = model.training
    model.eval()
    pending: Optional[torch.Tensor] = None
    base = 0
    try:
        for first in range(0, len(plan), batch_chunks):
            batch = plan[first:first + batch_chunks]
            x = torch.stack([read(start, length) for start, _, _ in batch])
            if first + len(batch) < len(plan):
                read(plan[first + len(batch)][0], 0)   # the reader may let go of what lies before the next chunk
            if level:
                scale_pow2(x, -level)
            with torch.no_grad(), torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                                 enabled=autocast_dtype is not None):
                est = model(x.to(device)).to("cpu", torch.float32)  # (B, n_src, C, length)
            del x
            if not bool(torch.isfinite(est).all()):
                raise NonFiniteOutputError(f"model {model_name(model)} produced non-finite audio (NaN/inf)")
            for b, (start, fade_in, fade_out) in enumerate(batch):
                more = first + b + 1 < len(plan)
                stop = plan[first + b + 1][1] if more else n_samples   # the next chunk's fade-in: final before it
                window = torch.zeros(est.shape[1], n_chan, max(stop, min(start + length, n_samples)) - base)
                if pending is not None:
                    window[..., :pending.shape[-1]] = pending
                _add_chunk(window, est[b], start, fade_in, fade_out, overlap, ramp, base, n_samples)
                block, pending = window[..., :stop - base], window[..., stop - base:].clone()
                del window
                if level:
                    scale_pow2(block, level)
                    if level > 0 and not bool(torch.isfinite(block).all()):
                        raise FrugalError(f"the separated stems exceed float32's range (mixture peak about "
                                          f"2**{level})")
                base = stop
                if bar is not None:
                    bar.update(round(min(fade_out + (overlap if more else 0), n_samples) / sample_rate, 1) - bar.n)
                yield block
                del block      # not held through the next chunk's call (a chunk's output, 20 MB at 30 s stereo)
            del est
    finally:
        if was_training:
            model.train()
        if bar is not None:
            bar.close()


def _padded_slice(mix: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """``mix[:, start:start + length]``, zero-padded at the end of the song."""
    piece = mix[:, start:start + length]
    if piece.shape[-1] < length:
        piece = torch.nn.functional.pad(piece, (0, length - piece.shape[-1]))
    return piece


def _add_chunk(out: torch.Tensor, est: torch.Tensor, start: int, fade_in: int, fade_out: int,
               overlap: int, ramp: Optional[torch.Tensor], base: int = 0, n_samples: Optional[int] = None) -> None:
    """Add one chunk's estimate ``[n_src, C, chunk]`` to ``out`` with its cross-fades; ``out`` holds
    the song's output from sample ``base`` on (the song: ``n_samples`` long, default: to ``out``'s end)."""
    n_samples = base + out.shape[-1] if n_samples is None else n_samples
    if ramp is not None and fade_in > 0:  # not the first chunk: fade in over the previous fade-out
        a, b = fade_in, min(fade_in + overlap, n_samples)
        out[..., a - base:b - base] += est[..., a - start:b - start] * ramp[: b - a]
        fade_in = b
    stop = min(fade_out, n_samples)
    if fade_in < stop:
        out[..., fade_in - base:stop - base] += est[..., fade_in - start:stop - start]
    if ramp is not None and fade_out < n_samples and fade_out < start + est.shape[-1]:
        a, b = fade_out, min(fade_out + overlap, n_samples)
        out[..., a - base:b - base] += est[..., a - start:b - start] * (1.0 - ramp[: b - a])


# ------------------------------------------------- target-vs-rest models -> stems
@dataclass
class TargetModel:
    """A loaded target-vs-rest model and the target it separates."""

    target: str
    model: torch.nn.Module
    path: str


def stored_target(path_or_dir) -> Optional[str]:
    """The target a model was trained for: from the model file, else its experiment's conf.yml."""
    package, path = load_model_package(path_or_dir, weights=False)   # its settings, not its weights
    infos = package.get("infos") if isinstance(package.get("infos"), dict) else {}
    for value in (package.get("target"), infos.get("target")):
        if isinstance(value, str) and value:
            return value
    conf_path = path.parent / "conf.yml"
    if conf_path.is_file():
        target = get(load_yaml(conf_path), "data.target")
        if isinstance(target, str) and target:
            return target
    return None


def parse_model_specs(specs: Sequence[str]) -> List[Tuple[Optional[str], str]]:
    """``["vocals=exp/vocals", "exp/drums"]`` -> ``[("vocals", "exp/vocals"), (None, "exp/drums")]``."""
    out = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if sep and name and not Path(spec).exists():
            out.append((name.strip(), path))
        else:
            out.append((None, spec))
    return out


def load_target_models(specs: Sequence[str], device, weights: bool = True) -> List[TargetModel]:
    """Load each ``[name=]path``; check that the target is known and matches the model.
    ``weights=False``: the models without their weights (:func:`load_model`), one at a time
    whatever their number."""
    models: List[TargetModel] = []
    for name, path in parse_model_specs(specs):
        model_file = resolve_model_file(path)
        stored = stored_target(model_file)
        if name and stored and name != stored:
            raise FrugalError(f"{model_file}: model/target mismatch: it was trained for {stored!r}, "
                              f"given as {name!r}")
        target = name or stored
        if target is None:
            specs = [f"{t}={path}" for t in TARGETS]
            raise FrugalError(f"{model_file}: cannot tell which target this model separates "
                              f"(no target in the file or in a conf.yml beside it): give it as "
                              f"{', '.join(specs[:-1])} or {specs[-1]}")
        if target not in TARGETS:
            raise FrugalError(f"{model_file}: unknown target {target!r} (expected one of {', '.join(TARGETS)})")
        if any(m.target == target for m in models):
            raise FrugalError(f"{model_file}: a second model for {target!r}: give one model per target")
        model = load_model(model_file, device, weights=weights)
        if int(getattr(model, "n_src", 2)) != 2:
            raise FrugalError(f"{model_file}: expected a target-vs-rest model with 2 outputs, "
                              f"this one has {model.n_src}")
        models.append(TargetModel(target, model, str(model_file)))
    if not models:
        raise FrugalError(f"no model given: use --models {TARGETS[0]}=exp/{TARGETS[0]} ...")
    return sorted(models, key=lambda m: TARGETS.index(m.target))


def least_squares_gain(mixture: torch.Tensor, target: torch.Tensor, rest: torch.Tensor) -> float:
    """The gain ``a`` minimising ``||mixture - a * (target + rest)||^2`` (1 if undefined)."""
    x, t, r = (v.reshape(-1) for v in (mixture, target, rest))
    num = den = 0.0
    for i in range(0, x.numel(), 1 << 20):  # float64 sums, block by block (no song-sized copies)
        xb, sb = x[i:i + (1 << 20)].double(), (t[i:i + (1 << 20)] + r[i:i + (1 << 20)]).double()
        num += float(torch.dot(xb, sb))
        den += float(torch.dot(sb, sb))
    return num / den if den > 0 else 1.0


def separate_stems(models: Sequence[TargetModel], audio: np.ndarray, sample_rate: int,
                   chunk_seconds: Optional[float] = None, overlap_seconds: Optional[float] = None,
                   batch_chunks: Optional[int] = None, precision: str = "float32", progress: bool = False,
                   desc: str = "") -> Dict[str, np.ndarray]:
    """``audio [C, T]`` at ``sample_rate`` -> ``{stem: [C, T]}`` at the same rate and length.

    Each model's two outputs are scaled by their :func:`least_squares_gain`; several models
    give each target, the mixture minus all targets and, with vocals, the vocals model's rest
    (names: :func:`asteroid_frugal.data.types.stem_names`; definitions: :func:`combine_stems`).
    Chunking: as :func:`separate_long`. The stems are views of one ``[n_stems, C, T]`` array
    (:func:`separate_stems_array`).
    """
    names = stem_names([tm.target for tm in models])
    stems = separate_stems_array(models, audio, sample_rate, names, chunk_seconds, overlap_seconds, batch_chunks,
                                 precision, progress, desc)
    return dict(zip(names, stems))


def separate_stems_array(models: Sequence[TargetModel], audio: np.ndarray, sample_rate: int, stems: Sequence[str],
                         chunk_seconds: Optional[float], overlap_seconds: Optional[float], batch_chunks: Optional[int],
                         precision: str, progress: bool = False, desc: str = "") -> np.ndarray:
    """The stems named ``stems`` (of :func:`stem_names`) of ``audio [C, T]`` as one ``[len(stems), C, T]``
    float32 array, in that order: :func:`separate_stream` with the song in memory, each model's outputs
    written straight into their stem's place and scaled there, so that the stems are held once.
    Only the models that ``stems`` need are run (:func:`raw_outputs`)."""
    if None in (chunk_seconds, overlap_seconds, batch_chunks):
        conf_chunking = chunking()
        chunk_seconds = conf_chunking["chunk_seconds"] if chunk_seconds is None else chunk_seconds
        overlap_seconds = conf_chunking["overlap_seconds"] if overlap_seconds is None else overlap_seconds
        batch_chunks = conf_chunking["batch_chunks"] if batch_chunks is None else batch_chunks
    targets = [tm.target for tm in models]
    stems = list(stems)
    n_chan, n_samples = audio.shape
    mixture = np.ascontiguousarray(audio, dtype=np.float32)
    out = np.zeros((len(stems), n_chan, n_samples), np.float32)
    raw = {name: out[stems.index(name)] if name in stems else np.zeros((n_chan, n_samples), np.float32)
           for name in raw_outputs(targets, stems)}   # a target only `other` needs: a place of its own
    sinks = {name: _array_sink(buf) for name, buf in raw.items()}
    running = [tm for tm in models if tm.target in raw or rest_name(tm.target) in raw]
    levels = stream_levels([mixture], sample_rate, [int(round(float(tm.model.sample_rate))) for tm in running])
    gains = separate_stream(running, lambda: iter([mixture]), sample_rate, n_samples, n_chan, sinks, levels,
                            chunk_seconds, overlap_seconds, batch_chunks, precision, progress, desc)
    step = 1 << 20
    for start in range(0, n_samples, step):     # the stems, in place, a block at a time
        made = combine_stems(targets, stems, gains, mixture[:, start:start + step],
                             {name: buf[:, start:start + step] for name, buf in raw.items()})
        for i, name in enumerate(stems):
            if name not in raw:      # scaled in place already
                out[i, :, start:start + step] = made[name]
    return out


def _array_sink(buf: np.ndarray) -> Callable[[np.ndarray], None]:
    done = 0

    def write(block: np.ndarray) -> None:
        nonlocal done
        buf[:, done:done + block.shape[-1]] = block
        done += block.shape[-1]
    return write


def raw_outputs(targets: Sequence[str], stems: Sequence[str]) -> List[str]:
    """The model outputs (a target, or a target's rest: names of :func:`rest_name`) that the stems
    ``stems`` of the models of ``targets`` are made of (:func:`combine_stems`); a model none of whose
    outputs is listed need not run. A stem these models do not make: one :class:`FrugalError`."""
    names = stem_names(list(targets))
    unknown = [s for s in stems if s not in names]
    if unknown:
        raise FrugalError(f"stems {', '.join(unknown)}: not made by the models given ({'+'.join(targets)} make "
                          f"{', '.join(names)})")
    everything_else = len(targets) > 1 and names[len(targets)] in stems
    raw = []
    for target in targets:
        if target in stems or everything_else:
            raw.append(target)
        if rest_name(target) in stems:
            raw.append(rest_name(target))
    return raw


def combine_stems(targets: Sequence[str], stems: Sequence[str], gains: Dict[str, float], mixture: np.ndarray,
                  raw: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """One block of the stems ``stems`` from the same block of the mixture and of the models' outputs
    (``raw``, by :func:`raw_outputs` name, scaled here in place by their model's gain ``gains[target]``).

    The stems: a target = its model's target output x its gain; a model's rest (``accompaniment``
    for vocals, ``no_drums``, ``no_bass``) = its rest output x the same gain; with several models,
    ``other`` (``rest`` unless vocals+drums+bass) = the mixture minus every target stem, so the
    targets and ``other`` sum to the mixture exactly (up to float32 rounding), and ``accompaniment``
    = the vocals model's own rest (not the mixture minus vocals: it sums with ``vocals`` to the
    vocals model's reconstruction of the mixture, the model's least-squares fit)."""
    names = stem_names(list(targets))
    made: Dict[str, np.ndarray] = {}
    for target in targets:
        for name in (target, rest_name(target)):
            if name in raw:
                made[name] = torch.from_numpy(raw[name]).mul_(gains[target]).numpy()
    if len(targets) > 1 and names[len(targets)] in stems:
        other = torch.from_numpy(np.array(mixture, dtype=np.float32))
        for target in targets:
            other -= torch.from_numpy(made[target])
        made[names[len(targets)]] = other.numpy()
    return {name: made[name] for name in stems}


def separate_stream(models: Sequence[TargetModel], blocks: Callable[[], Iterator[np.ndarray]], sample_rate: int,
                    n_samples: int, n_chan: int, sinks: Dict[str, Callable[[np.ndarray], None]],
                    levels: Dict[int, int], chunk_seconds: float, overlap_seconds: float, batch_chunks: int,
                    precision: str, progress: bool = False, desc: str = "") -> Dict[str, float]:
    """Run each model with an output in ``sinks`` over a song given block by block; ``{target: gain}``.

    ``blocks()`` starts a new pass over the song (``[C, n]`` float32 blocks at ``sample_rate``, ``n_samples``
    in all); each model reads it twice at once (its input, resampled block by block to the model's
    rate, and the mixture its :func:`least_squares_gain` is measured against). ``sinks[name](block)``
    receives that model output (:func:`raw_outputs` names) at the song's rate, before its gain, in
    order, ``n_samples`` in all. ``levels``: :func:`stream_levels` of the song. Memory: a block of
    the song, one batch of chunks and their outputs, whatever the song length; the outputs equal
    :func:`separate_long` and :func:`back_to_input` of the whole song.
    """
    gains: Dict[str, float] = {}
    for tm in models:
        rest = rest_name(tm.target)
        if tm.target not in sinks and rest not in sinks:
            continue
        model_sr = int(round(float(tm.model.sample_rate)))
        model_in = BlockWindow(resample_blocks(blocks(), sample_rate, model_sr), n_chan)
        outputs = separate_blocks(tm.model, lambda start, length: torch.from_numpy(model_in.read(start, length)),
                                  resampled_length(n_samples, sample_rate, model_sr), n_chan, chunk_seconds,
                                  overlap_seconds, batch_chunks, device=None,
                                  progress=f"{desc} {tm.target}".strip() if progress else False,
                                  precision=precision, level=levels[model_sr])
        back = StreamResampler(model_sr, sample_rate) if model_sr != sample_rate else None
        mixture = BlockWindow(blocks(), n_chan)
        sums = [0.0, 0.0]
        done = 0

        def take(est: np.ndarray) -> None:   # [2, C, n] at the song's rate
            nonlocal done
            est = est[..., :n_samples - done]
            if not est.shape[-1]:
                return
            _gain_sums(sums, mixture.read(done, est.shape[-1]), est[0], est[1])
            if tm.target in sinks:
                sinks[tm.target](est[0])
            if rest in sinks:
                sinks[rest](est[1])
            done += est.shape[-1]

        for block in outputs:
            est = block.numpy()
            take(est if back is None else back.push(est.reshape(2 * n_chan, -1)).reshape(2, n_chan, -1))
            del block, est     # let go before the next chunk is separated
            mixture.read(done, 0)   # and of the mixture read for it
        if back is not None:
            take(back.finish().reshape(2, n_chan, -1))
        if done < n_samples:         # as back_to_input: zero-padded to the song's length
            take(np.zeros((2, n_chan, n_samples - done), np.float32))
        gains[tm.target] = sums[0] / sums[1] if sums[1] > 0 else 1.0
    return gains


def _gain_sums(sums: List[float], mixture: np.ndarray, target: np.ndarray, rest: np.ndarray) -> None:
    """Add one block's ``<mixture, target + rest>`` and ``||target + rest||^2`` to ``sums`` (float64,
    a slice at a time: no block-sized float64 copies), as :func:`least_squares_gain` sums them."""
    for i in range(0, mixture.shape[-1], 1 << 16):   # einsum: np.dot's BLAS threads idle-spin against torch's
        x = mixture[:, i:i + (1 << 16)].astype(np.float64)
        s = (target[:, i:i + (1 << 16)] + rest[:, i:i + (1 << 16)]).astype(np.float64)
        sums[0] += float(np.einsum("ij,ij->", x, s))
        sums[1] += float(np.einsum("ij,ij->", s, s))


def native_bf16(device) -> bool:
    """Whether ``device`` runs bfloat16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX-BF16 instructions (elsewhere autocast emulates it, slower than float32)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", f.read()))
    except OSError:
        return False


def lstm_units(model) -> int:
    """The hidden size of the model's largest LSTM (0 without one): what decides whether int8
    weights pay on a CPU (docs/separation.md, "int8"); a model run by another engine says it
    (``lstm_hidden``, as :class:`asteroid_frugal.export.OnnxOfflineModel`)."""
    if hasattr(model, "lstm_hidden"):
        return int(model.lstm_hidden)
    return max((int(m.hidden_size) for m in model.modules() if isinstance(m, torch.nn.LSTM)), default=0)


def auto_int8(models: Sequence[TargetModel], device, auto_int8_min_hidden: Optional[int]) -> Tuple[bool, str]:
    """``(int8?, why)``: ``auto``'s int8 rule, the same for every song: int8 when the models run on the
    CPU (``device``) and each has at least ``auto_int8_min_hidden`` LSTM units (:func:`lstm_units`;
    None: never). ``why`` is empty where the rule does not apply (another device, no threshold)."""
    if not auto_int8_min_hidden or torch.device(device).type != "cpu":
        return False, ""
    units = min(lstm_units(tm.model) for tm in models)
    if units >= auto_int8_min_hidden:
        return True, (f"auto on the CPU: int8 weights, LSTM of {units} units >= {auto_int8_min_hidden}; "
                      f"costs and gains: docs/separation.md")
    return False, f"int8 not chosen: LSTM of {units} units < {auto_int8_min_hidden}, no faster in int8; "


def choose_precision(models: Sequence[TargetModel], audio: np.ndarray, sample_rate: int, requested: str,
                     min_snr_db: float, probe_seconds: float, native=native_bf16,
                     chunks: Optional[Dict[str, Any]] = None, *,
                     auto_int8_min_hidden: Optional[int], device=None) -> Tuple[str, str]:
    """``(precision, why)`` for one song. ``requested`` other than ``auto`` is kept. ``auto``: int8
    when the models run on the CPU and each has at least ``auto_int8_min_hidden`` LSTM units
    (:func:`auto_int8`); else bfloat16 only where the models' device runs it natively
    (:func:`native_bf16`) and a ``probe_seconds`` excerpt from the middle of the song, separated
    both ways, stays within ``min_snr_db`` dB SNR of float32 over all stems; float32 otherwise.
    ``chunks``: the :func:`chunking` the song is separated with (default: conf.yml's). ``device``:
    where the models run (default: where the first one's weights are)."""
    if requested != "auto":
        return requested, "requested"
    device = torch.device(device) if device is not None else _model_device(models[0].model)
    int8, note = auto_int8(models, device, auto_int8_min_hidden)
    if int8:
        return "int8", note
    precision, why = _bfloat16_rule(models, audio, sample_rate, min_snr_db, probe_seconds, native, chunks, device)
    return precision, note + why


def _bfloat16_rule(models: Sequence[TargetModel], audio: np.ndarray, sample_rate: int, min_snr_db: float,
                   probe_seconds: float, native, chunks: Optional[Dict[str, Any]],
                   device: torch.device) -> Tuple[str, str]:
    """:func:`choose_precision`'s ``auto`` between bfloat16 and float32."""
    if not native(device):
        return "float32", f"no native bfloat16 on {device}"
    n = audio.shape[-1]
    length = min(n, max(1, int(round(probe_seconds * sample_rate))))
    probe = audio[:, (n - length) // 2:(n - length) // 2 + length]
    ref = separate_stems(models, probe, sample_rate, precision="float32", **(chunks or {}))
    est = separate_stems(models, probe, sample_rate, precision="bfloat16", **(chunks or {}))
    signal = sum(float(np.sum(np.square(ref[k], dtype=np.float64))) for k in ref)
    noise = sum(float(np.sum(np.square(ref[k].astype(np.float64) - est[k]))) for k in ref)
    if signal <= 0:
        return "float32", "silent bfloat16 probe"
    snr = math.inf if noise <= 0 else 10 * math.log10(signal / noise)
    seen = f"{length / sample_rate:.1f} s probe at {snr:.1f} dB SNR to float32"
    if snr >= min_snr_db:
        return "bfloat16", f"native bfloat16, {seen}"
    return "float32", f"bfloat16 {seen}, under {min_snr_db:g} dB"


def back_to_input(est: torch.Tensor, model_sr: int, sample_rate: int, n_samples: int) -> torch.Tensor:
    """One stem ``[C, T']`` at the model's rate ``model_sr`` back at the input's ``sample_rate``,
    cut or zero-padded to exactly ``n_samples`` (unchanged when the rates are equal)."""
    if model_sr == sample_rate:
        return est
    back = torch.from_numpy(resample(est.numpy(), model_sr, sample_rate))
    if back.shape[-1] < n_samples:
        back = torch.nn.functional.pad(back, (0, n_samples - back.shape[-1]))
    return back[..., :n_samples].contiguous()
