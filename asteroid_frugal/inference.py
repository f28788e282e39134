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
"""
import math
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

from .utils import FrugalError

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


def load_model_package(path_or_dir) -> Tuple[Dict[str, Any], Path]:
    """Read a serialized model (``model_name``, ``model_args``, ``state_dict``, ``infos``).

    Uses torch's ``weights_only`` loader (the default of torch >= 2.6), the one
    ``BaseModel.from_pretrained`` uses, so a file that loads here also loads there.
    """
    path = resolve_model_file(path_or_dir)
    try:
        package = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types (pickle, zip, weights-only errors)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FrugalError(f"{path}: not a loadable model file ({first[:200]})") from None
    if not isinstance(package, dict) or not {"model_name", "model_args", "state_dict"} <= set(package):
        keys = sorted(package) if isinstance(package, dict) else type(package).__name__
        raise FrugalError(f"{path}: not a serialized Asteroid model (expected model_name, model_args, "
                          f"state_dict; found {keys})")
    return package, path


def load_model(path_or_expdir, device=None) -> torch.nn.Module:
    """Load a model (file, experiment dir or publish dir) with ``BaseModel.from_pretrained``.

    Returns the model in eval mode on ``device`` (default: CPU). The package's
    ``infos`` dict is kept as ``model.frugal_infos`` and its path as ``model.frugal_path``.
    """
    import asteroid_frugal  # noqa: F401  (registers FrugalTasNet with asteroid.models)
    from asteroid.models import BaseModel

    package, path = load_model_package(path_or_expdir)
    infos = package.get("infos") or {}
    try:
        model = BaseModel.from_pretrained(package)
    except Exception as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FrugalError(f"{path}: cannot build model {package.get('model_name')!r} ({msg[:200]})") from None
    model.frugal_infos = infos if isinstance(infos, dict) else {}
    model.frugal_path = str(path)
    return model.to(torch.device(device) if device else "cpu").eval()


# -------------------------------------------------------------- chunked inference
def model_hop(model) -> int:
    """The model's segment hop in samples (1 for models without a segment grid)."""
    return max(1, int(getattr(model, "stride", None) or getattr(model, "kernel_size", None) or 1))


def chunk_plan(n_samples: int, chunk: int, overlap: int) -> List[Tuple[int, int]]:
    """``(start, stop)`` of each chunk: starts at multiples of ``chunk - overlap``.

    Every chunk but the last has ``chunk`` samples; the last one ends at
    ``n_samples`` and is longer than ``overlap``, so each seam has a full cross-fade.
    """
    if n_samples <= chunk:
        return [(0, n_samples)]
    hop = chunk - overlap
    n_chunks = max(1, math.ceil((n_samples - overlap) / hop))
    return [(i * hop, min(i * hop + chunk, n_samples)) for i in range(n_chunks)]


def crossfade_ramp(overlap: int, dtype=torch.float32) -> torch.Tensor:
    """Raised-cosine fade-in of ``overlap`` samples; ``1 - ramp`` is the matching fade-out."""
    pos = (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap
    return (0.5 - 0.5 * torch.cos(math.pi * pos)).to(dtype)


def _batches(plan: List[Tuple[int, int]], batch_chunks: int) -> Iterator[List[int]]:
    """Consecutive chunk indices of equal length, at most ``batch_chunks`` per batch."""
    batch: List[int] = []
    for i, (start, stop) in enumerate(plan):
        if batch and (len(batch) == batch_chunks or stop - start != plan[batch[0]][1] - plan[batch[0]][0]):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def separate_long(model, mixture: Union[torch.Tensor, np.ndarray], chunk_seconds: float = 30.0,
                  overlap_seconds: float = 1.0, batch_chunks: int = 4, device=None,
                  progress: bool = False) -> torch.Tensor:
    """Separate ``mixture [C, T]`` (at the model's sample rate) into ``[n_src, C, T]``.

    Chunks of ``chunk_seconds`` overlapping by ``overlap_seconds`` (both rounded to
    the model's segment hop) go through the model ``batch_chunks`` at a time under
    ``torch.no_grad()`` and are joined with a raised-cosine cross-fade. Peak memory is
    the input, the float32 output buffer (on CPU) and one batch of chunk activations.
    ``device``: where the model runs (default: where its parameters are). Returns a
    CPU float32 tensor with exactly T samples.
    """
    mix = torch.as_tensor(np.asarray(mixture) if not torch.is_tensor(mixture) else mixture)
    if mix.dim() != 2:
        raise ValueError(f"mixture must be [channels, samples], got shape {tuple(mix.shape)}")
    mix = mix.to(torch.float32)
    n_chan, n_samples = mix.shape
    if batch_chunks < 1:
        raise ValueError(f"batch_chunks must be >= 1, got {batch_chunks}")
    device = torch.device(device) if device is not None else _model_device(model)
    if device != _model_device(model):
        model = model.to(device)
    sample_rate = float(getattr(model, "sample_rate", 44100.0) or 44100.0)
    hop = model_hop(model)
    chunk = max(hop, int(round(chunk_seconds * sample_rate / hop)) * hop)
    overlap = int(round(overlap_seconds * sample_rate / hop)) * hop
    if not 0 <= overlap < chunk:
        raise ValueError(f"overlap ({overlap_seconds} s) must be shorter than a chunk ({chunk_seconds} s)")
    n_src = int(getattr(model, "n_src", 0) or 0)
    plan = chunk_plan(n_samples, chunk, overlap)
    out: Optional[torch.Tensor] = torch.zeros(n_src, n_chan, n_samples) if n_src else None
    ramp = crossfade_ramp(overlap) if overlap else None

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_samples / sample_rate, unit="s", unit_scale=False, leave=False,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in _batches(plan, batch_chunks):
                starts = [plan[i][0] for i in batch]
                length = plan[batch[0]][1] - starts[0]
                x = torch.stack([mix[:, s:s + length] for s in starts]).to(device)
                est = model(x).to("cpu", torch.float32)  # (B, n_src, C, length)
                if out is None:
                    n_src = est.shape[1]
                    out = torch.zeros(n_src, n_chan, n_samples)
                for b, i in enumerate(batch):
                    start, stop = plan[i]
                    piece = est[b, :, :, : stop - start]
                    if ramp is not None:
                        if i > 0:
                            piece[..., :overlap] *= ramp
                        if i < len(plan) - 1:
                            piece[..., -overlap:] *= 1.0 - ramp
                    out[:, :, start:stop] += piece
                if bar is not None:
                    bar.update(sum(plan[i][1] - (plan[i][0] if i == 0 else plan[i][0] + overlap)
                                   for i in batch) / sample_rate)
    finally:
        if was_training:
            model.train()
        if bar is not None:
            bar.close()
    return out
