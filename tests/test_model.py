"""FrugalTasNet: shapes, normalisation, scale equivariance, Asteroid round trip, parameters, learning;
build_model: the config's model, its inconsistent combinations as one-line errors."""
import pytest
import torch

from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr
from asteroid.models import BaseModel
from asteroid_frugal.config import load_config
from asteroid_frugal.model import FrugalTasNet, build_model, count_parameters, frame_signal, overlap_add
from asteroid_frugal.utils import FrugalError

from conftest import REPO


@pytest.mark.parametrize("shape,expected", [
    ((3, 2, 1001), (3, 2, 2, 1001)),   # batch, stereo, odd length
    ((2, 999), (2, 2, 999)),           # one stereo example
    ((1, 1, 437), (1, 2, 1, 437)),     # batch of mono into a stereo model
    ((555,), (2, 555)),                # one mono example
    ((1, 2, 7), (1, 2, 2, 7)),         # shorter than one segment
])
def test_output_shapes(tiny_model_args, shape, expected):
    model = FrugalTasNet(**tiny_model_args).eval()
    with torch.no_grad():
        out = model(torch.randn(*shape))
    assert tuple(out.shape) == expected
    assert torch.isfinite(out).all()


def test_mono_model_takes_stereo_as_two_channels(tiny_model_args):
    model = FrugalTasNet(**{**tiny_model_args, "n_channels": 1}).eval()
    x = torch.randn(2, 2, 300)
    with torch.no_grad():
        out = model(x)
        left = model(x[:, :1])
    assert out.shape == (2, 2, 2, 300)
    torch.testing.assert_close(out[:, :, :1], left)


def test_three_channels_into_stereo_model_is_a_clear_error(tiny_model_args):
    with pytest.raises(ValueError, match="channel"):
        FrugalTasNet(**tiny_model_args)(torch.randn(1, 3, 100))


@pytest.mark.parametrize("mask_act", ["softmax", "sigmoid"])
def test_masks_over_sources(tiny_model_args, mask_act):
    model = FrugalTasNet(**{**tiny_model_args, "mask_act": mask_act, "n_src": 3}).eval()
    masks = model.get_masks(torch.randn(2, 2, 400))
    assert masks.shape[:2] == (2, 3)
    assert ((masks >= 0) & (masks <= 1)).all()
    if mask_act == "softmax":
        torch.testing.assert_close(masks.sum(dim=1), torch.ones_like(masks[:, 0]))
    else:
        assert not torch.allclose(masks.sum(dim=1), torch.ones_like(masks[:, 0]))


def test_softmax_masks_make_estimates_sum_to_the_encoded_mixture(tiny_model_args):
    """Masks summing to one => sum of estimates = decoder(encoder(x)), whatever the separator."""
    model = FrugalTasNet(**tiny_model_args).eval()
    x = torch.randn(2, 2, 400)
    with torch.no_grad():
        est = model(x)
        feats, norms = model.encoder(x)
        recon = model.decoder(feats.unsqueeze(1), norms, x.shape[-1])[:, 0]
    torch.testing.assert_close(est.sum(dim=1), recon, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("stride", [None, 10])
def test_exact_scale_equivariance(tiny_model_args, stride):
    model = FrugalTasNet(**{**tiny_model_args, "stride": stride}).eval()
    x = torch.randn(2, 2, 1003)
    with torch.no_grad():
        ref = model(x)
        for a in (1e-3, 0.37, 25.0):
            torch.testing.assert_close(model(a * x), a * ref, rtol=1e-4, atol=1e-6 * a)


def test_each_segment_is_l2_normalised(tiny_model_args):
    model = FrugalTasNet(**tiny_model_args).eval()
    x = torch.randn(1, 2, 200)
    x[..., :20] *= 1000.0  # a loud first segment must not change the features of the others
    feats_loud, norms = model.encoder(x)
    y = x.clone()
    y[..., :20] /= 1000.0
    feats_quiet, _ = model.encoder(y)
    torch.testing.assert_close(feats_loud, feats_quiet, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norms[0, 0, 0], x[0, :, :20].norm(), rtol=1e-5, atol=0)


def test_silent_input_gives_silent_output(tiny_model_args):
    model = FrugalTasNet(**tiny_model_args).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 2, 500))
    assert torch.isfinite(out).all() and out.abs().max() == 0


@pytest.mark.parametrize("stride", [20, 10, 5])
def test_framing_round_trip(stride):
    x = torch.randn(2, 2, 333)
    frames, padded = frame_signal(x, 20, stride)
    assert padded >= 333 and frames.shape[-1] == 40
    torch.testing.assert_close(overlap_add(frames, 2, 20, stride, 333), x)


def test_encoder_gates_are_independent(tiny_model_args):
    model = FrugalTasNet(**tiny_model_args)
    assert not torch.equal(model.encoder.U.weight, model.encoder.V.weight)


def test_from_pretrained_round_trip_file_and_dict(tiny_model_args, tmp_path):
    model = FrugalTasNet(**{**tiny_model_args, "stride": 10}).eval()
    path = tmp_path / "model.pth"
    torch.save(model.serialize(), path)
    # torch's safe loader (the default of torch >= 2.6) accepts the file: plain types only
    conf = torch.load(path, weights_only=True)
    assert conf["model_name"] == "FrugalTasNet"
    x = torch.randn(2, 2, 777)
    with torch.no_grad():
        ref = model(x)
        from_file = BaseModel.from_pretrained(str(path)).eval()
        from_dict = BaseModel.from_pretrained(model.serialize()).eval()
        assert type(from_file) is FrugalTasNet and type(from_dict) is FrugalTasNet
        assert from_file.get_model_args() == model.get_model_args()
        torch.testing.assert_close(from_file(x), ref, rtol=0, atol=0)
        torch.testing.assert_close(from_dict(x), ref, rtol=0, atol=0)


def _lstm_params(n_in, hidden, bidirectional):
    # per direction: input-hidden 4H x I, hidden-hidden 4H x H, two bias vectors 4H each
    return (2 if bidirectional else 1) * (4 * hidden * (n_in + hidden) + 8 * hidden)


def test_paper_configuration_parameter_count():
    """Paper: N=500, L=220, 4 BLSTM layers of 500 cells, stereo, 2 sources (conf.yml's defaults)."""
    model = build_model(load_config())
    n, l, c, h, s = 500, 220, 2, 500, 2
    expected = (
        2 * c * l * n                        # gated encoder U and V (no bias)
        + 2 * n                              # layer norm gain and bias
        + _lstm_params(n, h, True)           # LSTM layer 1
        + 3 * _lstm_params(2 * h, h, True)   # LSTM layers 2-4
        + 2 * h * s * n + s * n              # mask layer
        + n * c * l                          # decoder basis (no bias)
    )
    assert expected == 23_694_000
    assert count_parameters(model) == expected


def test_a_few_steps_lower_the_sisnr_loss(tiny_model_args):
    torch.manual_seed(0)
    model = FrugalTasNet(**tiny_model_args)
    t = torch.arange(2000) / 8000.0
    tone = torch.sin(2 * torch.pi * 440 * t).expand(2, 2, -1)
    noise = 0.5 * torch.randn(2, 2, 2000)
    mix, targets = tone + noise, torch.stack([tone, noise], dim=1)
    loss_fn = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss():
        est = model(mix)
        return loss_fn(est.flatten(2), targets.flatten(2))

    first = loss().item()
    for _ in range(30):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert loss().item() < first - 3.0  # at least 3 dB better


def test_model_knobs_come_from_the_config_only():
    """No conf.yml value repeated as a constructor default: a call without them is refused."""
    with pytest.raises(TypeError, match="n_filters"):
        FrugalTasNet()
    conf = load_config(overrides=["filterbank.n_filters=12", "masker.hidden_size=6", "masker.n_layers=2",
                                  "masker.skip_every=1", "masker.mask_act=sigmoid", "data.sample_rate=8000"])
    args = build_model(conf).get_model_args()
    assert (args["n_filters"], args["hidden_size"], args["n_layers"], args["skip_every"]) == (12, 6, 2, 1)
    assert args["mask_act"] == "sigmoid" and args["sample_rate"] == 8000 and args["stride"] == 220


def test_model_file_saved_before_the_causal_key_loads_as_offline(tiny_model_args):
    package = FrugalTasNet(**tiny_model_args).serialize()
    del package["model_args"]["causal"]
    assert BaseModel.from_pretrained(package).causal is False


def test_inconsistent_causal_config_is_a_one_line_error():
    conf = load_config(overrides=["masker.causal=true"])  # bidirectional left on
    with pytest.raises(FrugalError, match="unidirectional"):
        build_model(conf)
    conf = load_config(overlays=[REPO / "egs/realtime/conf.yml"], overrides=["filterbank.stride=110"])
    with pytest.raises(FrugalError, match="stride"):
        build_model(conf)
    assert build_model(load_config(overlays=[REPO / "egs/realtime/conf.yml"],
                                   overrides=["masker.hidden_size=8", "filterbank.n_filters=8"])).causal
