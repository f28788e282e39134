"""The original TasNet (Luo & Mesgarani, ICASSP 2018) for stereo music, on Asteroid's API.

Not Asteroid's ``LSTMTasNet`` (no per-segment normalisation, no skip connections,
softmax over time, mono only). Here:

* the waveform is cut into segments of ``kernel_size`` samples (hop ``stride``);
  each segment (all channels together) is L2-normalised and its norm restored at
  the output, so the model is exactly scale-equivariant;
* gated encoder ``ReLU(x U) * sigmoid(x V)`` over the *joint* stereo segment
  (U and V are initialised independently);
* layer norm, a deep (bi)LSTM with identity skip connections between every
  ``skip_every`` layers, one mask per source normalised over sources;
* a linear decoder back to stereo segments, overlap-added when ``stride < kernel_size``.

``causal=True`` (conf.yml ``masker.causal``) is the real-time variant: a unidirectional
LSTM, non-overlapping segments (``stride == kernel_size``) and only per-segment
normalisation, so output segment ``k`` depends on input segments ``0..k`` alone and the
algorithmic latency is one segment (220 samples = 5 ms at 44.1 kHz). Such a model runs
block by block with :class:`asteroid_frugal.streaming.StreamingSeparator`.

Input shapes: ``(time,)`` mono example, ``(channels, time)`` one example,
``(batch, channels, time)``. Output: ``(n_src, time)``, ``(n_src, channels, time)``,
``(batch, n_src, channels, time)``.
"""
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from asteroid.models.base_models import BaseEncoderMaskerDecoder

from .utils import FrugalError

MODEL_NAME = "FrugalTasNet"


def frame_signal(wav: torch.Tensor, kernel_size: int, stride: int):
    """Cut ``(B, C, T)`` into frames ``(B, K, C*L)``; pads the end so frames cover T.

    Returns the frames and the padded length.
    """
    batch, n_chan, n_samples = wav.shape
    n_frames = max(1, -(-(max(n_samples, kernel_size) - kernel_size) // stride) + 1)
    padded = (n_frames - 1) * stride + kernel_size
    wav = F.pad(wav, (0, padded - n_samples))
    frames = wav.unfold(-1, kernel_size, stride)  # (B, C, K, L)
    frames = frames.permute(0, 2, 1, 3).reshape(batch, n_frames, n_chan * kernel_size)
    return frames, padded


def overlap_add(frames: torch.Tensor, n_chan: int, kernel_size: int, stride: int, length: int):
    """Inverse of :func:`frame_signal`: ``(..., K, C*L)`` -> ``(..., C, length)``.

    Overlapping frames are averaged (sum divided by the number of frames covering
    each sample), so ``overlap_add(frame_signal(x))`` returns ``x`` exactly.
    """
    lead = frames.shape[:-2]
    n_frames = frames.shape[-2]
    padded = (n_frames - 1) * stride + kernel_size
    if stride == kernel_size:
        out = frames.reshape(*lead, n_frames, n_chan, kernel_size).transpose(-3, -2)
        out = out.reshape(*lead, n_chan, padded)
    else:
        flat = frames.reshape(-1, n_frames, n_chan, kernel_size).permute(0, 2, 3, 1)
        flat = flat.reshape(-1, n_chan * kernel_size, n_frames)
        out = F.fold(flat, (1, padded), (1, kernel_size), stride=(1, stride))
        ones = torch.ones(1, kernel_size, n_frames, dtype=frames.dtype, device=frames.device)
        count = F.fold(ones, (1, padded), (1, kernel_size), stride=(1, stride))
        out = (out / count).reshape(*lead, n_chan, padded)
    return out[..., :length]


class GatedSegmentEncoder(nn.Module):
    """Segment, L2-normalise each segment, then ``ReLU(xU) * sigmoid(xV)``."""

    def __init__(self, n_filters: int, kernel_size: int, stride: int, n_channels: int, eps: float = 1e-8):
        super().__init__()
        self.n_filters, self.kernel_size, self.stride = n_filters, kernel_size, stride
        self.n_channels, self.eps = n_channels, eps
        # Two independent nn.Linear modules: U and V get independent random inits
        # (Asteroid's LSTMTasNet deep-copies one into the other).
        self.U = nn.Linear(n_channels * kernel_size, n_filters, bias=False)
        self.V = nn.Linear(n_channels * kernel_size, n_filters, bias=False)

    def forward(self, wav: torch.Tensor):
        """``(B, C, T)`` -> features ``(B, N, K)`` and segment norms ``(B, K, 1)``."""
        frames, _ = frame_signal(wav, self.kernel_size, self.stride)
        norms = frames.norm(dim=-1, keepdim=True)
        frames = frames / (norms + self.eps)
        feats = F.relu(self.U(frames)) * torch.sigmoid(self.V(frames))
        return feats.transpose(1, 2), norms


class TasNetLSTMMasker(nn.Module):
    """Layer norm + deep (bi)LSTM with skip connections + one mask per source."""

    def __init__(self, in_chan: int, n_src: int, hidden_size: int, n_layers: int,
                 bidirectional: bool, skip_every: int, dropout: float, mask_act: str):
        super().__init__()
        if mask_act not in ("softmax", "sigmoid"):
            raise ValueError(f"mask_act must be 'softmax' or 'sigmoid', got {mask_act!r}")
        if skip_every < 1 or n_layers % skip_every:
            raise ValueError(f"n_layers ({n_layers}) must be a multiple of skip_every ({skip_every})")
        self.in_chan, self.n_src, self.hidden_size = in_chan, n_src, hidden_size
        self.n_layers, self.bidirectional, self.skip_every = n_layers, bidirectional, skip_every
        self.dropout, self.mask_act = dropout, mask_act
        out_dim = hidden_size * (2 if bidirectional else 1)
        self.norm = nn.LayerNorm(in_chan)
        # One multi-layer nn.LSTM per block of `skip_every` layers keeps cuDNN's fused
        # kernels; an identity skip connection joins consecutive blocks.
        self.blocks = nn.ModuleList(
            nn.LSTM(in_chan if b == 0 else out_dim, hidden_size, num_layers=skip_every,
                    batch_first=True, bidirectional=bidirectional,
                    dropout=dropout if skip_every > 1 else 0.0)
            for b in range(n_layers // skip_every)
        )
        self.mask_net = nn.Linear(out_dim, n_src * in_chan)

    def forward(self, tf_rep: torch.Tensor) -> torch.Tensor:
        """``(B, N, K)`` -> masks ``(B, n_src, N, K)``."""
        return self.forward_stateful(tf_rep)[0]

    def forward_stateful(self, tf_rep: torch.Tensor, state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None):
        """Masks for ``(B, N, K)`` frames that continue a sequence: ``(masks, (h, c))``.

        ``state`` is the ``(h, c)`` returned by the previous call (``None``: start of a
        sequence), each ``(n_layers, B, hidden_size)``, layers in order. Running a
        sequence in pieces with the state carried over gives the masks of one call on
        the whole sequence; only a unidirectional LSTM has such a state.
        """
        if state is not None and self.bidirectional:
            raise ValueError("a bidirectional LSTM cannot continue a sequence from a state")
        batch, n_feat, n_frames = tf_rep.shape
        x = self.norm(tf_rep.transpose(1, 2))
        h_out, c_out = [], []
        k = self.skip_every
        for b, block in enumerate(self.blocks):
            block_state = None if state is None else (state[0][b * k:(b + 1) * k], state[1][b * k:(b + 1) * k])
            y, (h, c) = block(x, block_state)
            h_out.append(h)
            c_out.append(c)
            x = y + x if b > 0 else y
        masks = self.mask_net(x).view(batch, n_frames, self.n_src, n_feat)
        masks = masks.permute(0, 2, 3, 1)
        masks = torch.softmax(masks, dim=1) if self.mask_act == "softmax" else torch.sigmoid(masks)
        return masks, (torch.cat(h_out), torch.cat(c_out))

    def get_config(self):
        return dict(hidden_size=self.hidden_size, n_layers=self.n_layers,
                    bidirectional=self.bidirectional, skip_every=self.skip_every,
                    dropout=self.dropout, mask_act=self.mask_act)


class SegmentDecoder(nn.Module):
    """Linear basis back to ``C*L``-sample segments, times the segment norms, overlap-added."""

    def __init__(self, n_filters: int, kernel_size: int, stride: int, n_channels: int):
        super().__init__()
        self.kernel_size, self.stride, self.n_channels = kernel_size, stride, n_channels
        self.B = nn.Linear(n_filters, n_channels * kernel_size, bias=False)

    def forward(self, masked: torch.Tensor, norms: torch.Tensor, length: int) -> torch.Tensor:
        """``(B, n_src, N, K)``, ``(B, K, 1)`` -> ``(B, n_src, C, length)``."""
        frames = self.B(masked.transpose(-1, -2)) * norms.unsqueeze(1)
        return overlap_add(frames, self.n_channels, self.kernel_size, self.stride, length)


class FrugalTasNet(BaseEncoderMaskerDecoder):
    """Original TasNet with a BLSTM separator, for (stereo) music; see module docstring.

    The keyword arguments are conf.yml's ``filterbank``, ``masker`` and ``data`` keys, with no
    config defaults here: :func:`build_model` passes the config's values, ``from_pretrained``
    the stored :meth:`get_model_args`.

    Args:
        n_filters: encoder filters N (``filterbank.n_filters``).
        kernel_size: segment length L in samples (``filterbank.kernel_size``).
        stride: hop between segments (None: L, as the original; L // 2 overlaps).
        n_channels: audio channels modelled jointly (``data.n_channels``; 2 for stereo music).
        hidden_size, n_layers, bidirectional, skip_every, dropout, mask_act: separator (``masker``).
        sample_rate: sampling rate the model was trained at (``data.sample_rate``).
        causal: real-time variant (``masker.causal``; needs ``bidirectional=False`` and
            ``stride == kernel_size``). Not a config default: model files saved before the
            real-time variant existed have no ``causal`` in their ``model_args``, and are not causal.
        n_src: number of sources (2: target and rest of the mixture).
        eps: guard of the segment normalisation.
    """

    def __init__(self, *, n_filters: int, kernel_size: int, stride: Optional[int], n_channels: int,
                 hidden_size: int, n_layers: int, bidirectional: bool, skip_every: int, dropout: float,
                 mask_act: str, sample_rate: float, causal: bool = False, n_src: int = 2, eps: float = 1e-8):
        stride = int(stride or kernel_size)
        if not 0 < stride <= kernel_size:
            raise ValueError(f"stride must be in (0, kernel_size], got {stride}")
        if causal and bidirectional:
            raise ValueError("causal=True needs a unidirectional LSTM (masker.bidirectional: false)")
        if causal and stride != kernel_size:
            raise ValueError(f"causal=True needs non-overlapping segments (stride == kernel_size "
                             f"= {kernel_size}, filterbank.stride: null), got stride {stride}")
        encoder = GatedSegmentEncoder(n_filters, kernel_size, stride, n_channels, eps)
        masker = TasNetLSTMMasker(n_filters, n_src, hidden_size, n_layers, bidirectional,
                                  skip_every, dropout, mask_act)
        decoder = SegmentDecoder(n_filters, kernel_size, stride, n_channels)
        encoder.sample_rate = float(sample_rate)  # read by BaseEncoderMaskerDecoder
        super().__init__(encoder, masker, decoder)
        self.in_channels = n_channels
        self.n_src, self.n_filters, self.kernel_size, self.stride = n_src, n_filters, kernel_size, stride
        self.n_channels, self.eps, self.causal = n_channels, eps, bool(causal)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Separate ``wav``; see the module docstring for shapes."""
        ndim = wav.dim()
        if ndim not in (1, 2, 3):
            raise ValueError(f"expected a 1D, 2D or 3D waveform, got shape {tuple(wav.shape)}")
        x = wav.reshape((1, 1, -1) if ndim == 1 else (1, *wav.shape) if ndim == 2 else wav.shape)
        batch, in_chan, length = x.shape
        if in_chan == self.n_channels:
            est = self._separate(x)
        elif in_chan == 1:  # mono into a multichannel model: duplicate, then average back
            est = self._separate(x.expand(-1, self.n_channels, -1)).mean(dim=2, keepdim=True)
        elif self.n_channels == 1:  # multichannel into a mono model: channels as a batch
            est = self._separate(x.reshape(batch * in_chan, 1, length))
            est = est.reshape(batch, in_chan, self.n_src, length).transpose(1, 2)
        else:
            raise ValueError(f"model expects {self.n_channels} channel(s) (or mono), got {in_chan}")
        if ndim == 3:
            return est
        est = est[0]
        return est[:, 0] if ndim == 1 else est

    def _separate(self, wav: torch.Tensor) -> torch.Tensor:
        tf_rep, norms = self.encoder(wav)
        masks = self.forward_masker(tf_rep)
        return self.decoder(self.apply_masks(tf_rep, masks), norms, wav.shape[-1])

    def get_masks(self, wav: torch.Tensor) -> torch.Tensor:
        """Masks ``(B, n_src, N, K)`` for a ``(B, C, T)`` input (for inspection and tests)."""
        tf_rep, _ = self.encoder(wav)
        return self.forward_masker(tf_rep)

    def get_model_args(self):
        """Plain-typed constructor arguments (saved in serialized models)."""
        return dict(n_src=int(self.n_src), n_filters=int(self.n_filters),
                    kernel_size=int(self.kernel_size), stride=int(self.stride),
                    n_channels=int(self.n_channels), sample_rate=float(self.sample_rate),
                    eps=float(self.eps), causal=bool(self.causal), **self.masker.get_config())

    def serialize(self):
        """Like Asteroid's, but with plain types only.

        asteroid 0.7.0 stores ``torch.__version__`` (a TorchVersion object), which
        torch >= 2.6's default ``weights_only=True`` loader refuses, so
        ``from_pretrained`` would fail on the file. We store strings.
        """
        import asteroid
        import pytorch_lightning as pl

        return dict(
            model_name=MODEL_NAME,
            state_dict=self.get_state_dict(),
            model_args=self.get_model_args(),
            infos=dict(software_versions=dict(
                torch_version=str(torch.__version__),
                pytorch_lightning_version=str(pl.__version__),
                asteroid_version=str(asteroid.__version__),
            )),
        )


def build_model(conf: Dict[str, Any]) -> FrugalTasNet:
    """FrugalTasNet from the ``filterbank``/``masker``/``data`` sections; an inconsistent
    combination (e.g. ``masker.causal`` with a bidirectional LSTM) is a one-line :class:`FrugalError`."""
    fb, mk, data = conf["filterbank"], conf["masker"], conf["data"]
    try:
        return FrugalTasNet(
            n_src=2, n_filters=fb["n_filters"], kernel_size=fb["kernel_size"], stride=fb["stride"],
            n_channels=data["n_channels"], hidden_size=mk["hidden_size"], n_layers=mk["n_layers"],
            bidirectional=mk["bidirectional"], skip_every=mk["skip_every"], dropout=mk["dropout"],
            mask_act=mk["mask_act"], causal=mk["causal"], sample_rate=data["sample_rate"])
    except ValueError as err:  # an inconsistent filterbank/masker section
        raise FrugalError(f"model configuration (filterbank/masker sections): {err}") from None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
