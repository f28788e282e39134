"""Export a trained FrugalTasNet for deployment: ONNX or TorchScript, offline or streaming.

    export_checked("exp/vocals", "onnx", "vocals.onnx")
    export_checked("exp/vocals_causal", "onnx", "step.onnx", streaming=True)
    export_checked("exp/vocals_causal", "onnx", "step8.onnx", streaming=True, int8=True)

(command line: ``asteroid-frugal-export``, ``asteroid_frugal/cli/export.py``.)

Offline graph: input ``mixture`` ``(batch, channels, time)`` float32, any batch and time;
output ``estimates`` ``(batch, n_src, channels, time)`` (target, rest), as ``model(mixture)``.

Streaming step (causal models only): inputs ``frames`` ``(channels, k * L)`` (``k >= 1``
complete segments of ``L = kernel_size`` samples), ``h`` and ``c`` ``(n_layers, 1,
hidden_size)`` (zeros at the start of a stream); outputs ``estimates`` ``(n_src, channels,
k * L)``, ``h_out``, ``c_out`` (feed them back on the next call). The caller buffers
incomplete segments and delays the output by one segment, as
:class:`asteroid_frugal.streaming.StreamingSeparator` does; :class:`OnnxStreamingSeparator`
and :class:`TorchScriptStreamingSeparator` are such drivers (the same buffering code).

ONNX uses torch's TorchScript-based exporter (``dynamo=False``): the dynamo exporter, the
default of torch 2.11, needs the ``onnxscript`` package, and the TorchScript-based one
exports ``nn.LSTM`` with explicit initial states to ONNX's own ``LSTM`` operator.
Both formats are checked against PyTorch when written (max deviation printed; a file that
deviates by more than 1e-4 of the output's peak is removed). ``--int8`` (ONNX only) adds
onnxruntime's dynamic quantisation (int8 LSTM and matrix weights): the fastest streaming path
measured here (``benchmarks/bench_streaming.py``), not equal to PyTorch, so its deviation is
only reported: measure its quality before shipping it. The separate command runs offline int8
graphs with onnxruntime (:func:`cached_int8_model`), each exported once per model file and kept in
a cache folder.
"""
import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.types import MIXTURE
from .inference import check_finite_weights, is_weightless, load_model, lstm_units, release_heap
from .streaming import BlockStreamer, check_causal
from .utils import FrugalError, atomic_path

log = logging.getLogger("asteroid_frugal.export")

FORMATS = ("onnx", "torchscript")
OPSET = 17


class OfflineGraph(nn.Module):
    """``model(mixture)`` for ``(batch, channels, time)`` with every shape computed in the graph.

    The model's own framing works out the padding with Python integers, which a trace
    would freeze at the example length; here the end is padded with tensor arithmetic
    (so any length works) and the frames are cut by reshaping (non-overlapping segments).
    """

    def __init__(self, model):
        super().__init__()
        if int(model.stride) != int(model.kernel_size):
            raise FrugalError(f"export needs non-overlapping segments (stride == kernel_size = "
                              f"{model.kernel_size}); this model has stride {model.stride}")
        self.model = model
        self.L, self.C = int(model.kernel_size), int(model.n_channels)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        batch, length = mixture.shape[0], mixture.shape[-1]
        pad = (self.L - length % self.L) % self.L
        x = F.pad(mixture, [0, pad])
        return _separate_frames(self.model, x, self.L, self.C)[..., :length]


class StreamingStep(nn.Module):
    """One streaming call: complete segments and LSTM state in, estimates and state out."""

    def __init__(self, model):
        super().__init__()
        check_causal(model, getattr(model, "frugal_path", "model"))
        self.model = model
        self.L, self.C = int(model.kernel_size), int(model.n_channels)

    def forward(self, frames: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        est, (h_out, c_out) = _separate_frames(self.model, frames.unsqueeze(0), self.L, self.C, (h, c))
        return est[0], h_out, c_out


def _separate_frames(model, x: torch.Tensor, L: int, C: int, state=None):
    """The model on ``(B, C, K*L)`` with framing by reshape (export-friendly, same arithmetic)."""
    batch = x.shape[0]
    frames = x.reshape(batch, C, -1, L).permute(0, 2, 1, 3).reshape(batch, -1, C * L)
    norms = frames.norm(dim=-1, keepdim=True)
    unit = frames / (norms + model.encoder.eps)
    feats = F.relu(model.encoder.U(unit)) * torch.sigmoid(model.encoder.V(unit))
    tf_rep = feats.transpose(1, 2)
    masks, new_state = model.masker.forward_stateful(tf_rep, state)
    masked = model.apply_masks(tf_rep, masks)
    seg = model.decoder.B(masked.transpose(-1, -2)) * norms.unsqueeze(1)  # (B, n_src, K, C*L)
    n_src = seg.shape[1]
    est = seg.reshape(batch, n_src, -1, C, L).permute(0, 1, 3, 2, 4).reshape(batch, n_src, C, -1)
    return est if state is None else (est, new_state)


def initial_state(model, dtype=np.float32):
    """Zero ``(h, c)``, each ``(n_layers, 1, hidden_size)``, for the start of a stream."""
    shape = (int(model.masker.n_layers), 1, int(model.masker.hidden_size))
    return np.zeros(shape, dtype), np.zeros(shape, dtype)


def example_inputs(model, streaming: bool, seconds: float = 0.5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    L, C = int(model.kernel_size), int(model.n_channels)
    if streaming:
        h, c = (torch.from_numpy(a) for a in initial_state(model))
        return (torch.randn(C, 3 * L, generator=gen), h + 0.1, c - 0.1)
    return (torch.randn(2, C, int(seconds * model.sample_rate) + 7, generator=gen),)


def check_format(fmt: str, int8: bool = False) -> None:
    """A one-line error unless ``fmt`` is one of :data:`FORMATS` (and ``int8`` goes with onnx)."""
    if fmt not in FORMATS:
        raise FrugalError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if int8 and fmt != "onnx":
        raise FrugalError("--int8 is for --format onnx (onnxruntime's quantisation)")


def check_out_file(out, fmt: str) -> Path:
    """``out`` as a path the export can write: a one-line error when it is an existing folder,
    when a folder above it is a file, or when the folder it goes in cannot be written."""
    out = Path(out)
    if out.is_dir():
        example = out / ("model.onnx" if fmt == "onnx" else "model.pt")
        raise FrugalError(f"{out}: is a folder; --out takes the file to write (e.g. {example})")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise FrugalError(f"{out}: {parent} is a file, not a folder; choose another --out")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise FrugalError(f"{out}: the folder {parent} cannot be written; choose another --out")
    return out


def export(model, fmt: str, out, streaming: bool = False, int8: bool = False) -> Path:
    """Write ``model`` as ``fmt`` (onnx | torchscript) to ``out`` (atomically); returns the path.

    ``int8`` (ONNX only): onnxruntime's dynamic quantisation of the written graph.
    """
    check_format(fmt, int8)
    out = check_out_file(out, fmt)
    model = model.cpu().float().eval()
    graph = StreamingStep(model) if streaming else OfflineGraph(model)
    graph.eval()
    inputs = example_inputs(model, streaming)
    with atomic_path(out) as tmp, torch.no_grad():
        if fmt == "torchscript":
            import io

            buffer = io.BytesIO()   # not to a path: on a full disk that aborts the process (a C++ ios_failure)
            torch.jit.save(torch.jit.trace(graph, inputs, check_trace=False), buffer)
            tmp.write_bytes(buffer.getbuffer())
        else:
            import warnings

            if streaming:
                names_in, names_out = ["frames", "h", "c"], ["estimates", "h_out", "c_out"]
                axes = {"frames": {1: "samples"}, "estimates": {2: "samples"}}
            else:
                names_in, names_out = [MIXTURE], ["estimates"]    # ONNX input: the mixture
                axes = {MIXTURE: {0: "batch", 2: "time"}, "estimates": {0: "batch", 3: "time"}}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer and LSTM-batch-size notices
                torch.onnx.export(graph, inputs, str(tmp), input_names=names_in, output_names=names_out,
                                  dynamic_axes=axes, opset_version=OPSET, dynamo=False)
            if int8:
                import tempfile

                from onnxruntime.quantization import QuantType, quantize_dynamic

                with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
                    float_graph = Path(scratch) / "float.onnx"
                    tmp.replace(float_graph)
                    root = logging.getLogger()
                    root.addFilter(quiet_quantizer)   # its advice to pre-process, on the root logger
                    try:
                        quantize_dynamic(str(float_graph), str(tmp), weight_type=QuantType.QInt8)
                    finally:
                        root.removeFilter(quiet_quantizer)
    return out


def quiet_quantizer(record: logging.LogRecord) -> bool:
    """onnxruntime's quantiser logs warnings on the root logger that concern calibrated (static)
    quantisation, not the dynamic one used here ("consider to run pre-processing", shape inference
    of intermediate tensors): dropped while it runs."""
    return not (record.levelno <= logging.WARNING and record.name == "root")


def max_deviation(model, path, fmt: str, streaming: bool) -> float:
    """Largest |exported - PyTorch| relative to the output's peak, on fresh random inputs."""
    model = model.cpu().float().eval()
    graph = StreamingStep(model) if streaming else OfflineGraph(model)
    inputs = example_inputs(model, streaming, seconds=0.37, seed=1)
    with torch.no_grad():
        ref = [t.numpy() for t in _as_tuple(graph(*inputs))]
    got = run_exported(path, fmt, [t.numpy() for t in inputs], streaming)
    return max(float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-12)) for g, r in zip(got, ref))


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def load_exported(path, fmt: str):
    """An onnxruntime session (one thread) or a TorchScript module."""
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise FrugalError("onnxruntime is not installed (pip install onnxruntime)") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return torch.jit.load(str(path)).eval()


def run_exported(path_or_runner, fmt: str, arrays, streaming: bool):
    """Run an exported file (or a runner from :func:`load_exported`) on numpy ``arrays``."""
    runner = load_exported(path_or_runner, fmt) if isinstance(path_or_runner, (str, Path)) else path_or_runner
    if fmt == "onnx":
        names = [i.name for i in runner.get_inputs()]
        return runner.run(None, dict(zip(names, arrays)))
    with torch.no_grad():
        return [t.numpy() for t in _as_tuple(runner(*(torch.from_numpy(a) for a in arrays)))]


# ----------------------------------------------------- int8 offline separation with onnxruntime
INT8_GRAPH_VERSION = 1   # part of a cached graph's key: made again when OfflineGraph or its quantisation changes


class OnnxOfflineModel(nn.Module):
    """An offline model's int8 ONNX export run by onnxruntime, called as the model is: ``(B, C, T)``
    in, ``(B, n_src, C, T)`` out (CPU float32 tensors). It carries what separation reads from a model
    (``sample_rate``, ``kernel_size``, ``stride``, ``n_src``, ``n_channels``, ``frugal_path``, and
    ``lstm_hidden`` for :func:`asteroid_frugal.inference.lstm_units`), so
    :func:`asteroid_frugal.inference.separate_blocks` runs it as it is (at ``precision="float32"``:
    the graph computes with int8 weights itself), ``chunks_per_call`` chunks per call at most (None:
    the batch it is given; onnxruntime quantises activations over a whole call, so the output of a
    chunk depends on the chunks beside it unless this is 1).

    Its onnxruntime session (the int8 weights, about a quarter of the float ones) is opened at the
    first call (:meth:`open`) and dropped by :meth:`close` (opened again at the next call): a caller
    running several models one after another holds one session at a time."""

    def __init__(self, graph_path: Path, model, threads: int, chunks_per_call=None, session=None):
        super().__init__()
        self.graph_path, self.threads, self.session = Path(graph_path), int(threads), session
        self.chunks_per_call = None if chunks_per_call is None else max(1, int(chunks_per_call))
        for name in ("sample_rate", "kernel_size", "stride", "n_src", "n_channels"):
            setattr(self, name, getattr(model, name))
        self.lstm_hidden = lstm_units(model)     # what precision="auto" decides on
        self.frugal_path = f"{getattr(model, 'frugal_path', type(model).__name__)} (int8, onnxruntime)"

    def open(self):
        """The onnxruntime session (opened from :attr:`graph_path` when closed); a graph onnxruntime
        cannot read: a :class:`~asteroid_frugal.utils.FrugalError`."""
        if self.session is None:
            self.session = open_int8_session(self.graph_path, self.threads)
        return self.session

    def close(self) -> None:
        """Drop the session and the memory it holds (opened again by the next call)."""
        self.session = None

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        x = mixture.detach().to("cpu", torch.float32).contiguous().numpy()
        session = self.open()
        release_heap()     # the pages the last call's activations freed: its peak is the process's
        return torch.from_numpy(session.run(None, {MIXTURE: x})[0])


def open_int8_session(path, threads: int):
    """An onnxruntime session on an int8 graph (:func:`session_options`); one
    :class:`~asteroid_frugal.utils.FrugalError` line when onnxruntime cannot load it."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for an unreadable graph
        raise FrugalError(f"{path}: onnxruntime cannot load the int8 graph ({str(err).splitlines()[0]})") from None


def int8_graph_key(model_sha256: str) -> str:
    """The cache key of a model file's int8 graph: the file's content and every version that shapes
    the graph (this module's :data:`INT8_GRAPH_VERSION`, PyTorch's exporter, onnxruntime's quantiser)."""
    import hashlib

    import onnxruntime

    text = f"{model_sha256}|{INT8_GRAPH_VERSION}|{torch.__version__}|{onnxruntime.__version__}|opset{OPSET}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def session_options(threads: int):
    """onnxruntime options for ``threads`` intra-op threads; no spin-waiting where the process' OpenMP
    wait policy is passive (a busy machine: :mod:`asteroid_frugal.runtime`), as PyTorch's threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = max(1, int(threads)), 1
    # no memory arena: an arena keeps the most a session ever held (a batch of chunks' activations,
    # 0.5 GB and more per paper-size model) for the session's life, one arena per model
    opts.enable_cpu_mem_arena = False
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def cached_int8_model(model, model_sha256: str, cache_dir, threads: int, chunks_per_call=None) -> OnnxOfflineModel:
    """``model`` as an int8 onnxruntime model (``chunks_per_call``: :class:`OnnxOfflineModel`): its
    graph is exported and quantised once (:func:`export`, ``int8=True``; seconds per paper-size
    model) into ``cache_dir`` under :func:`int8_graph_key` and read from there by later runs. A
    cached graph onnxruntime cannot read is made again; a cache folder that cannot be written gets
    the graph in a temporary folder for this run (logged). ``model`` may be without its weights
    (:func:`asteroid_frugal.inference.load_model` with ``weights=False``): they are read from its
    file only when its graph must be made, and let go once it is. Weights holding NaN or inf:
    :class:`~asteroid_frugal.inference.NonFiniteOutputError` (no graph is ever made of them, so a
    cached graph vouches for its model's)."""
    if not is_weightless(model):
        check_finite_weights(model)
    key = int8_graph_key(model_sha256)
    path = Path(cache_dir) / f"{key}.int8.onnx"
    for attempt in (1, 2):
        if not path.is_file():
            path = _export_int8(model, path, cache_dir)
        try:
            return OnnxOfflineModel(path, model, threads, chunks_per_call, session=open_int8_session(path, threads))
        except FrugalError as err:
            if attempt == 2:
                raise
            log.warning("%s: unreadable cached int8 graph (%s): made again", path,
                        str(err).split("int8 graph (", 1)[-1].rstrip(")"))
            path.unlink(missing_ok=True)
    raise AssertionError("unreachable")


def _export_int8(model, path: Path, cache_dir) -> Path:
    """Export ``model``'s int8 graph to ``path`` (a temporary folder when ``cache_dir`` cannot be
    written); a model without weights is loaded from its file for it, and let go after."""
    if is_weightless(model):
        model = load_model(model.frugal_path)
        check_finite_weights(model)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log.info("%s: exporting its int8 graph for onnxruntime to %s (once per model file)",
                 getattr(model, "frugal_path", "model"), path)
        return export(model, "onnx", path, int8=True)
    except (OSError, FrugalError) as err:
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="asteroid_frugal_int8_"))
        log.warning("int8 graph cache %s not writable (%s): exported for this run only", cache_dir, err)
        return export(model, "onnx", scratch / path.name, int8=True)


class _ExportedStreamer(BlockStreamer):
    """Block-by-block separation with an exported streaming step (see module docstring)."""

    fmt = ""

    def __init__(self, path, n_src: int, n_channels: int, kernel_size: int, n_layers: int,
                 hidden_size: int, sample_rate: float):
        self.runner = load_exported(path, self.fmt)
        self._zero = np.zeros((n_layers, 1, hidden_size), np.float32)
        super().__init__(n_src, n_channels, kernel_size, sample_rate)

    @classmethod
    def for_model(cls, path, model):
        """The driver for ``path``, exported from ``model`` (its shapes)."""
        return cls(path, int(model.n_src), int(model.n_channels), int(model.kernel_size),
                   int(model.masker.n_layers), int(model.masker.hidden_size), float(model.sample_rate))

    def reset(self) -> None:
        super().reset()
        self._state = (self._zero, self._zero)

    def _separate_frames(self, frames: torch.Tensor) -> torch.Tensor:
        est, h, c = run_exported(self.runner, self.fmt, [frames.numpy(), *self._state], streaming=True)
        self._state = (h, c)
        return torch.from_numpy(np.asarray(est))


class OnnxStreamingSeparator(_ExportedStreamer):
    """:class:`~asteroid_frugal.streaming.StreamingSeparator`'s API on an ONNX streaming step (onnxruntime):
    the same buffering and input rules (int16/int32 blocks divided by their full scale, a block holding
    NaN or inf replaced by silence, counted in ``nonfinite_blocks``; see
    :class:`~asteroid_frugal.streaming.BlockStreamer`)."""

    fmt = "onnx"


class TorchScriptStreamingSeparator(_ExportedStreamer):
    """The same on a TorchScript streaming step."""

    fmt = "torchscript"


def export_checked(model_path, fmt: str, out, streaming: bool = False, int8: bool = False) -> Path:
    """Load a model (file, experiment or publish folder), export it (:func:`export`) and check the
    file against PyTorch (:func:`max_deviation`): a float export that deviates by more than 1e-4
    of the peak is removed (an error); an ``int8`` one's deviation is only logged. ``out`` is
    checked (:func:`check_out_file`) before the model is read. Returns the path."""
    check_format(fmt, int8)
    check_out_file(out, fmt)
    model = load_model(model_path)
    if streaming:
        check_causal(model, model.frugal_path)
    out = export(model, fmt, out, streaming, int8)
    dev = max_deviation(model, out, fmt, streaming)
    kind = ("int8 " if int8 else "") + ("streaming step" if streaming else "offline model")
    if not dev < 1e-4 and not int8:
        out.unlink()
        raise FrugalError(f"{out}: the exported {kind} deviates from PyTorch by {dev:.2e} "
                          f"(relative to the peak, limit 1e-4): file removed")
    log.info("wrote %s (%s, %s, %.1f MB); max deviation from PyTorch on random audio %.1e of the peak",
             out, fmt, kind, out.stat().st_size / 2 ** 20, dev)
    return out
