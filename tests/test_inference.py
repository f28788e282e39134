"""Chunked inference: exact lengths, exact cross-fades, equality with one pass away from seams,
bounded chunk sizes, batching invariance, and model loading errors."""
import pathlib

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

import asteroid_frugal  # noqa: F401  (registers FrugalTasNet)
from asteroid.models import BaseModel
from asteroid_frugal.inference import (NonFiniteOutputError, balanced_chunk, check_precision_device, chunk_plan,
                                       crossfade_ramp, int8_model, load_model, load_model_package, separate_long)
from asteroid_frugal.model import FrugalTasNet
from asteroid_frugal.utils import FrugalError, UnsafeFileError

SR = 8000


class ScaleModel(nn.Module):
    """Returns ``[x, 2x, -x]``: any error in chunking or cross-fading shows exactly.

    Records the shapes it was given (the chunk sizes bound the memory).
    """

    def __init__(self, stride=20):
        super().__init__()
        self.sample_rate, self.stride, self.n_src = SR, stride, 3
        self.seen = []
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        return torch.stack([x, 2 * x, -x], dim=1)


@pytest.fixture
def tiny(tiny_model_args):
    torch.manual_seed(0)
    return FrugalTasNet(**tiny_model_args).eval()


@pytest.mark.parametrize("n_samples", [1, 19, 20, 799, 8000, 8001, 8000 * 3 - 7, 8000 * 7 + 13])
@pytest.mark.parametrize("overlap", [0.0, 0.1, 0.5])
def test_crossfades_reproduce_the_signal_exactly(n_samples, overlap):
    """With an identity-like model every sample is the fade-weighted sum of chunks: weights sum to 1."""
    model = ScaleModel()
    x = torch.randn(2, n_samples)
    out = separate_long(model, x, chunk_seconds=1.0, overlap_seconds=overlap, batch_chunks=3)
    assert out.shape == (3, 2, n_samples)
    torch.testing.assert_close(out, torch.stack([x, 2 * x, -x]), rtol=1e-5, atol=1e-6)
    # bounded memory: the model never sees more than batch_chunks chunks of chunk_seconds
    assert all(b <= 3 and t <= SR for b, _, t in model.seen)


def test_chunk_plan_is_on_the_segment_grid_with_equal_chunks():
    hop, chunk, overlap = 220, 220 * 100, 220 * 10
    n = 220 * 1234 + 17
    plan = chunk_plan(n, chunk, overlap, hop)
    padded = 220 * 1235
    assert all(start % hop == 0 for start, _, _ in plan)
    assert plan[0][0] == 0 and plan[-1][0] + chunk == padded  # last chunk is full length, ends at the grid end
    for (s0, _, out0), (s1, in1, _) in zip(plan, plan[1:]):
        assert in1 == out0 == s0 + chunk - overlap  # each fade-in meets the previous fade-out
        assert s1 <= in1
    for n, batch in ((n, b) for n in (hop * 50, chunk + 1, chunk * 3, n) for b in (1, 2, 4, 7)):
        length = balanced_chunk(n, chunk, overlap, hop, batch)
        assert length % hop == 0 and chunk // 2 <= length <= chunk
        count = len(chunk_plan(n, length, overlap, hop))
        shortest = -(-(chunk // 2) // hop) * hop
        assert count == 1 or count % batch == 0 or length == shortest  # full batches, or chunks at half length
    ramp = crossfade_ramp(overlap)
    torch.testing.assert_close(ramp + ramp.flip(0), torch.ones(overlap))  # symmetric raised cosine


def test_long_song_in_small_chunks_equals_one_pass_away_from_seams(tiny):
    """Chunks cut on the model's segment grid see identical segments; only the BLSTM's context
    beyond a chunk edge is missing, and its influence decays geometrically (forget gates < 1).
    0.5 s away from any chunk edge (200 segments here) it is far below float32 resolution, so
    there we require agreement to float32 rounding (1e-5 of the signal scale); at the seams the
    cross-fade of two estimates of the same thing stays within 1 % of one pass (40 dB)."""
    x = torch.randn(2, SR * 12 + 77) * 0.3
    with torch.no_grad():
        ref = tiny(x)
    chunk_s, overlap_s = 2.0013, 0.2507  # not multiples of the 20-sample grid: rounded onto it
    est = separate_long(tiny, x, chunk_seconds=chunk_s, overlap_seconds=overlap_s, batch_chunks=4)
    assert est.shape == ref.shape
    chunk, overlap = (round(s * SR / tiny.stride) * tiny.stride for s in (chunk_s, overlap_s))
    chunk = balanced_chunk(x.shape[-1], chunk, overlap, tiny.stride, 4)
    plan = chunk_plan(x.shape[-1], chunk, overlap, tiny.stride)
    assert len(plan) == 8  # 7 chunks of 2 s would leave the second batch 3/4 full
    near = torch.zeros(x.shape[-1], dtype=torch.bool)
    margin = SR // 2
    for start, _, _ in plan[1:]:
        near[max(0, start - margin): start + margin] = True
    for start, _, _ in plan[:-1]:
        end = start + chunk
        near[max(0, end - margin): end + margin] = True
    assert (~near).sum() > x.shape[-1] // 4  # the comparison covers a good part of the song
    scale = ref.abs().max()
    assert (est - ref)[..., ~near].abs().max() <= 1e-5 * scale
    err = (est - ref).pow(2).sum() / ref.pow(2).sum()
    assert err < 1e-4


def test_mono_and_grid_with_overlapping_segments(tiny_model_args):
    torch.manual_seed(1)
    model = FrugalTasNet(**{**tiny_model_args, "stride": 10}).eval()
    x = torch.randn(1, SR * 3 + 5)
    est = separate_long(model, x.numpy(), chunk_seconds=1.0, overlap_seconds=0.25, batch_chunks=2)
    assert est.shape == (2, 1, x.shape[-1]) and est.dtype == torch.float32
    with torch.no_grad():
        ref = model(x)
    assert ((est - ref).pow(2).sum() / ref.pow(2).sum()) < 1e-4


def test_batching_does_not_change_the_result(tiny):
    x = torch.randn(2, 52800)  # 8 chunks of 1 s with 0.2 s overlap: the same plan for 1 or 8 per batch
    one = separate_long(tiny, x, chunk_seconds=1.0, overlap_seconds=0.2, batch_chunks=1)
    many = separate_long(tiny, x, chunk_seconds=1.0, overlap_seconds=0.2, batch_chunks=8)
    torch.testing.assert_close(one, many, rtol=1e-4, atol=1e-6)


def test_a_model_taking_fewer_chunks_per_call_gets_the_same_chunks_one_call_at_a_time():
    """``chunks_per_call`` (onnxruntime's int8 graphs: memory grows with a call's batch): the chunks
    and their cross-fades stay those of ``batch_chunks`` (its balanced chunk length), only the calls
    are smaller; the output is the same."""
    x = torch.randn(2, 8000 * 5 + 123)
    batched, single = ScaleModel(), ScaleModel()
    single.chunks_per_call = 1
    ref = separate_long(batched, x, chunk_seconds=1.0, overlap_seconds=0.2, batch_chunks=4)
    out = separate_long(single, x, chunk_seconds=1.0, overlap_seconds=0.2, batch_chunks=4)
    assert torch.equal(out, ref)
    assert {s[0] for s in single.seen} == {1} and max(s[0] for s in batched.seen) == 4
    assert [s[1:] for s in single.seen] == [s[1:] for b in batched.seen for s in [b] * b[0]]   # the same chunks
    other = ScaleModel()
    separate_long(other, x, chunk_seconds=1.0, overlap_seconds=0.2, batch_chunks=1)
    assert other.seen[0][-1] != single.seen[0][-1]    # batch_chunks=1 would have planned other chunks


def test_a_model_loads_without_its_weights_for_its_settings(tmp_path, tiny):
    """``load_model(weights=False)``: the model's shape and settings on PyTorch's meta device, its
    weights neither read nor held (what a run on an int8 graph already made needs)."""
    from asteroid_frugal.inference import is_weightless, lstm_units, model_hop

    torch.save(tiny.serialize(), tmp_path / "best_model.pth")
    bare = load_model(tmp_path, weights=False)
    full = load_model(tmp_path)
    assert is_weightless(bare) and not is_weightless(full)
    assert all(p.device.type == "meta" for p in bare.parameters())
    for name in ("sample_rate", "kernel_size", "stride", "n_src", "n_channels"):
        assert getattr(bare, name) == getattr(full, name), name
    assert lstm_units(bare) == lstm_units(full) and model_hop(bare) == model_hop(full)
    assert bare.frugal_path == full.frugal_path
    package, _ = load_model_package(tmp_path, weights=False)
    assert all(t.device.type == "meta" for t in package["state_dict"].values())
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "best_model.pth").write_bytes(b"not a model")
    with pytest.raises(FrugalError) as weightless:
        load_model(tmp_path / "bad", weights=False)
    with pytest.raises(FrugalError) as whole:
        load_model(tmp_path / "bad")
    assert str(weightless.value) == str(whole.value)     # the same one-line error either way


def test_bfloat16_autocast_stays_close(tiny):
    x = torch.randn(2, SR * 2)
    ref = separate_long(tiny, x, chunk_seconds=1.0, overlap_seconds=0.2)
    bf = separate_long(tiny, x, chunk_seconds=1.0, overlap_seconds=0.2, precision="bfloat16")
    assert bf.dtype == torch.float32
    snr = 10 * torch.log10(ref.pow(2).sum() / (bf - ref).pow(2).sum())
    assert snr > 20, f"bf16 output only {snr:.1f} dB from float32"


def test_bad_arguments(tiny):
    x = torch.randn(2, SR)
    with pytest.raises(ValueError, match="overlap"):
        separate_long(tiny, x, chunk_seconds=1.0, overlap_seconds=0.6)
    with pytest.raises(ValueError, match="channels, samples"):
        separate_long(tiny, x[None])
    with pytest.raises(ValueError, match="precision"):
        separate_long(tiny, x, precision="int4")


def test_int8_runs_close_to_float32_on_a_copy_made_once(tiny):
    """int8: the model's dynamically quantised copy, on the CPU; the model itself is not changed."""
    x = torch.randn(2, SR * 2)
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    ref = separate_long(tiny, x, chunk_seconds=1.0, overlap_seconds=0.2)
    q8 = separate_long(tiny, x, chunk_seconds=1.0, overlap_seconds=0.2, precision="int8")
    assert q8.dtype == torch.float32 and q8.shape == ref.shape
    snr = 10 * torch.log10(ref.pow(2).sum() / (q8 - ref).pow(2).sum())
    assert 15 < snr < 200, f"int8 output {snr:.1f} dB from float32"   # close, and quantised (not float32 itself)
    after = tiny.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(isinstance(m, torch.nn.LSTM) and m.weight_ih_l0.dtype == torch.float32
               for m in tiny.modules() if isinstance(m, torch.nn.LSTM))
    first = int8_model(tiny)
    assert int8_model(tiny) is first                          # quantised once per model...
    with torch.no_grad():
        next(tiny.parameters()).mul_(1.5)
    assert int8_model(tiny) is not first                      # ...and again after its weights changed
    changed = separate_long(tiny, x, chunk_seconds=1.0, overlap_seconds=0.2, precision="int8")
    assert not torch.equal(changed, q8)


def test_int8_is_for_the_cpu_and_finite_weights(tiny):
    with pytest.raises(FrugalError, match="^precision int8 runs on the CPU only .* on cuda(:0)? use auto, float32"):
        check_precision_device("int8", "cuda")
    with pytest.raises(FrugalError, match="CPU only"):
        int8_model(tiny, "cuda")
    check_precision_device("int8", "cpu")
    check_precision_device("bfloat16", "cuda")
    with torch.no_grad():
        next(tiny.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteOutputError, match="holds non-finite weights .* cannot be quantised to int8"):
        separate_long(tiny, torch.randn(2, SR), precision="int8")


def test_load_model_from_file_experiment_and_publish_folders(tmp_path, tiny):
    package = tiny.serialize()
    (tmp_path / "exp").mkdir()
    torch.save(package, tmp_path / "exp" / "best_model.pth")
    (tmp_path / "pub").mkdir()
    torch.save(package, tmp_path / "pub" / "model.pth")
    x = torch.randn(2, 500)
    with torch.no_grad():
        ref = tiny(x)
    for where in (tmp_path / "exp" / "best_model.pth", tmp_path / "exp", tmp_path / "pub"):
        model = load_model(where)
        assert isinstance(model, FrugalTasNet) and not model.training
        with torch.no_grad():
            torch.testing.assert_close(model(x), ref)
    # the same file loads with Asteroid's own loader
    assert isinstance(BaseModel.from_pretrained(str(tmp_path / "exp" / "best_model.pth")), FrugalTasNet)


def test_load_model_errors_are_one_line_and_name_the_file(tmp_path):
    with pytest.raises(FrugalError, match="not found"):
        load_model(tmp_path / "nope.pth")
    with pytest.raises(FrugalError, match="no model file"):
        load_model(tmp_path)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"this is not a torch file")
    with pytest.raises(FrugalError, match="broken.pth: not a loadable model file") as info:
        load_model(broken)
    assert "\n" not in str(info.value)
    other = tmp_path / "other.pth"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(FrugalError, match="not a serialized Asteroid model"):
        load_model(other)
    bad_args = tmp_path / "bad_args.pth"
    torch.save(dict(model_name="FrugalTasNet", model_args=dict(n_src=2, stride=999, kernel_size=20),
                    state_dict={}), bad_args)
    with pytest.raises(FrugalError, match="cannot build model"):
        load_model(bad_args)


class _RunsCode:
    """Pickles as a call to ``Path.touch(marker)``: unpickling it (weights_only=False) creates the marker."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_audio_file_given_as_a_model_says_what_it_is(tmp_path):
    wav = tmp_path / "song.wav"
    sf.write(wav, np.zeros((800, 2), np.float32), 8000)
    with pytest.raises(FrugalError) as err:
        load_model_package(wav)
    assert str(err.value) == (f"{wav}: not a loadable model file (best_model.pth, or an experiment or publish "
                              f"folder holding one): it is a WAV audio file")
    marker = tmp_path / "marker"
    crafted = tmp_path / "model.pth"
    torch.save({"state_dict": {}, "epoch": 0, "payload": _RunsCode(marker), "model_name": "FrugalTasNet",
                "model_args": {}}, crafted)
    with pytest.raises(UnsafeFileError, match="nothing in it was run .*only for a file you trust"):
        load_model_package(crafted)
    assert not marker.exists()


class PeakModel(ScaleModel):
    """ScaleModel that records the peak of what it was given."""

    def forward(self, x):
        self.peaks = getattr(self, "peaks", []) + [float(x.abs().max())]
        return super().forward(x)


def test_extreme_levels_are_normalised_exactly_and_normal_ones_untouched(tiny):
    """The model is scale-equivariant (L2-normalised segments, norms restored): a mixture whose
    peak is far outside audio levels is scaled by a power of two for the model and its estimates
    scaled back, so a 1e20 or 1e-30 song gives the normal-level stems times the scale, bit for bit."""
    from asteroid_frugal.inference import SAFE_PEAK, level_exponent

    x = torch.randn(2, SR * 2)
    x *= 0.75 / x.abs().max()                      # a peak in [0.5, 1): what normalisation gives
    ref = separate_long(tiny, x, chunk_seconds=1.0, overlap_seconds=0.2)
    for exponent in (67, -100):                    # peaks 1.1e20 and 5.9e-31
        est = separate_long(tiny, x * 2.0 ** exponent, chunk_seconds=1.0, overlap_seconds=0.2)
        assert bool(torch.isfinite(est).all())
        assert torch.equal(est * 2.0 ** -exponent, ref), exponent
    # inside the safe range the model sees the mixture as given (results unchanged bit for bit)
    for peak in (SAFE_PEAK[0] * 1.01, 1e-4, 0.3, 1.0, 7.5, SAFE_PEAK[1] * 0.99):
        assert level_exponent(x * (peak / 0.75)) == 0
        model = PeakModel()
        separate_long(model, x * (peak / 0.75), chunk_seconds=1.0, overlap_seconds=0.0)
        assert max(model.peaks) == pytest.approx(peak, rel=1e-6)
    assert level_exponent(torch.zeros(2, 10)) == 0
    with pytest.raises(FrugalError, match="NaN or infinite"):
        level_exponent(torch.tensor([[0.0, float("nan")]]))


def test_a_model_that_outputs_nan_is_an_error_naming_its_file(tmp_path, tiny):
    from asteroid_frugal.inference import NonFiniteOutputError

    package = tiny.serialize()
    for value in package["state_dict"].values():
        if value.is_floating_point():
            value.fill_(float("nan"))
    (tmp_path / "exp").mkdir()
    torch.save(package, tmp_path / "exp" / "best_model.pth")
    model = load_model(tmp_path / "exp")
    with pytest.raises(NonFiniteOutputError) as err:
        separate_long(model, torch.randn(2, SR), chunk_seconds=1.0, overlap_seconds=0.2)
    assert str(err.value) == f"model {tmp_path / 'exp' / 'best_model.pth'} produced non-finite audio (NaN/inf)"


@pytest.mark.parametrize("values,match", [
    (dict(chunk_seconds=0), r"evaluation.chunk_seconds=0 \(--chunk_seconds\): expected a positive number"),
    (dict(chunk_seconds=-5), r"chunk_seconds=-5 .*positive"),
    (dict(chunk_seconds=1, overlap_seconds=0.8), r"overlap_seconds=0.8 .*at most 0.5 s"),
    (dict(overlap_seconds=-1), r"overlap_seconds=-1 .*expected 0 to half a chunk"),
    (dict(batch_chunks=0), r"batch_chunks=0 .*at least 1"),
])
def test_chunking_options_are_checked_together_in_one_line(values, match):
    """``chunking(conf)``: what stage 4 and the separate command call before any work."""
    from asteroid_frugal.config import load_config
    from asteroid_frugal.inference import chunking

    conf = load_config()
    assert chunking(conf) == dict(chunk_seconds=30.0, overlap_seconds=1.0, batch_chunks=4)
    conf["evaluation"].update(values)     # past the config's own range checks, as a library caller could
    with pytest.raises(FrugalError, match=match) as err:
        chunking(conf)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------- songs that do not fit in memory
def _whole_song_stems(models, audio, sr, chunks):
    """The whole-song definition of the stems, written out (everything in memory at once): each
    model's input resampled, ``separate_long``, ``back_to_input``, the least-squares gain; ``other``
    the mixture minus the targets, ``accompaniment`` the vocals model's rest."""
    from asteroid_frugal.audio import resample
    from asteroid_frugal.inference import back_to_input, least_squares_gain

    mixture = torch.from_numpy(audio)
    stems = {}
    for tm in models:
        model_sr = int(tm.model.sample_rate)
        est = separate_long(tm.model, resample(audio, sr, model_sr), **chunks)
        target, rest = (back_to_input(est[i], model_sr, sr, audio.shape[-1]) for i in range(2))
        gain = least_squares_gain(mixture, target, rest)
        stems[tm.target], stems[f"rest_of_{tm.target}"] = target * gain, rest * gain
    other = mixture.clone()
    for tm in models:
        other -= stems[tm.target]
    return {"vocals": stems["vocals"], "drums": stems["drums"], "bass": stems["bass"], "other": other,
            "accompaniment": stems["rest_of_vocals"]}


@pytest.fixture
def three_models(tiny_model_args):
    from asteroid_frugal.inference import TargetModel

    out = []
    for i, target in enumerate(("vocals", "drums", "bass")):   # bass at another rate: resampled both ways
        torch.manual_seed(i)
        args = {**tiny_model_args, "sample_rate": 16000 if target == "bass" else SR}
        out.append(TargetModel(target, FrugalTasNet(**args).eval(), f"{target}.pth"))
    return out


@pytest.mark.parametrize("exponent", [0, 80, -90])
def test_block_by_block_output_equals_separate_long(tiny, exponent):
    """separate_blocks, fed by small blocks through a BlockWindow (reads never go back), gives
    separate_long's output sample for sample, levels normalised the same way."""
    from asteroid_frugal.audio import BlockWindow
    from asteroid_frugal.inference import level_exponent, separate_blocks

    x = (torch.randn(2, SR * 7 + 13) * 0.3 * 2.0 ** exponent).numpy()
    ref = separate_long(tiny, x, chunk_seconds=1.0, overlap_seconds=0.2, batch_chunks=3)
    window = BlockWindow((x[:, i:i + 777] for i in range(0, x.shape[-1], 777)), 2)
    blocks = list(separate_blocks(tiny, lambda start, n: torch.from_numpy(window.read(start, n)), x.shape[-1], 2,
                                  1.0, 0.2, 3, device=None, progress=False, precision="float32",
                                  level=level_exponent(x)))
    assert len(blocks) > 5 and max(b.shape[-1] for b in blocks) <= SR + 1   # a block per chunk of 1 s
    torch.testing.assert_close(torch.cat(blocks, dim=-1), ref, rtol=0, atol=0)


def test_stems_block_by_block_equal_the_whole_song(three_models):
    """A song given in blocks of 1000 samples, at a rate none of the models runs at: the same
    stems as the whole song in memory, to float precision (only the order of the gain's float64 sums
    differs); separate_stems itself gives the whole-song stems."""
    from asteroid_frugal.inference import combine_stems, raw_outputs, separate_stems, separate_stream, stream_levels

    sr, chunks = 22050, dict(chunk_seconds=1.0, overlap_seconds=0.2, batch_chunks=2)
    audio = (0.3 * np.random.default_rng(0).standard_normal((2, sr * 5 + 11))).astype(np.float32)
    ref = _whole_song_stems(three_models, audio, sr, chunks)
    names = list(ref)
    blocks = lambda: (audio[:, i:i + 1000] for i in range(0, audio.shape[-1], 1000))   # noqa: E731
    outputs = {name: [] for name in raw_outputs(["vocals", "drums", "bass"], names)}
    levels = stream_levels(blocks(), sr, [SR, 16000])
    gains = separate_stream(three_models, blocks, sr, audio.shape[-1], 2,
                            {name: out.append for name, out in outputs.items()}, levels, precision="float32",
                            **chunks)
    raw = {name: np.concatenate(out, axis=-1) for name, out in outputs.items()}
    assert all(r.shape == audio.shape for r in raw.values())
    got = combine_stems(["vocals", "drums", "bass"], names, gains, audio, raw)
    in_memory = separate_stems(three_models, audio, sr, precision="float32", **chunks)
    for name in names:
        scale = float(ref[name].abs().max())
        np.testing.assert_allclose(got[name], ref[name].numpy(), rtol=0, atol=1e-6 * scale, err_msg=name)
        np.testing.assert_allclose(in_memory[name], ref[name].numpy(), rtol=0, atol=1e-6 * scale, err_msg=name)


def test_only_the_models_the_stems_need_are_run(three_models):
    from asteroid_frugal.inference import raw_outputs, separate_stems, separate_stems_array

    all3 = ["vocals", "drums", "bass"]
    assert raw_outputs(all3, ["vocals", "accompaniment"]) == ["vocals", "accompaniment"]
    assert raw_outputs(all3, ["drums"]) == ["drums"]
    assert raw_outputs(all3, ["other"]) == all3                      # the mixture minus every target
    assert raw_outputs(["vocals"], ["accompaniment"]) == ["accompaniment"]
    assert raw_outputs(["vocals", "drums"], ["rest", "vocals"]) == ["vocals", "drums"]
    with pytest.raises(FrugalError, match=r"no_drums: not made by the models given \(vocals\+drums\+bass make "
                                          r"vocals, drums, bass, other, accompaniment\)"):
        raw_outputs(all3, ["vocals", "no_drums"])

    def fail(x):
        raise AssertionError("a model whose stems are not asked for was run")
    for tm in three_models[1:]:
        tm.model.forward = fail
    audio = (0.3 * np.random.default_rng(1).standard_normal((2, SR * 2))).astype(np.float32)
    both = separate_stems_array(three_models, audio, SR, ["accompaniment", "vocals"], 1.0, 0.2, 2, "float32")
    alone = separate_stems(three_models[:1], audio, SR, 1.0, 0.2, 2)
    assert both.shape == (2, 2, SR * 2)
    np.testing.assert_array_equal(both[0], alone["accompaniment"])
    np.testing.assert_array_equal(both[1], alone["vocals"])


def test_how_each_stem_is_defined():
    """Targets: a model's target output times its gain; rests (accompaniment, no_drums, no_bass): its
    rest output times the same gain; other: the mixture minus the targets, so that the targets and
    other sum to the mixture; accompaniment: the vocals model's own rest (not mixture - vocals)."""
    from asteroid_frugal.inference import combine_stems

    rng = np.random.default_rng(2)
    mix = rng.standard_normal((2, 500)).astype(np.float32)
    raw = {n: rng.standard_normal((2, 500)).astype(np.float32) for n in ("vocals", "drums", "bass", "accompaniment")}
    gains = {"vocals": 1.5, "drums": 0.5, "bass": 2.0}
    expect = {"vocals": raw["vocals"] * 1.5, "drums": raw["drums"] * 0.5, "bass": raw["bass"] * 2.0,
              "accompaniment": raw["accompaniment"] * 1.5}
    stems = combine_stems(["vocals", "drums", "bass"], ["vocals", "drums", "bass", "other", "accompaniment"],
                          gains, mix, {k: v.copy() for k, v in raw.items()})
    for name, value in expect.items():
        np.testing.assert_allclose(stems[name], value, rtol=1e-6)
    np.testing.assert_allclose(stems["other"], mix - expect["vocals"] - expect["drums"] - expect["bass"], atol=1e-5)
    np.testing.assert_allclose(stems["vocals"] + stems["drums"] + stems["bass"] + stems["other"], mix, atol=1e-5)
    assert np.abs(stems["vocals"] + stems["accompaniment"] - mix).max() > 1     # a model's fit, not a subtraction
    one = combine_stems(["drums"], ["no_drums"], {"drums": 3.0}, mix, {"no_drums": raw["drums"].copy()})
    np.testing.assert_allclose(one["no_drums"], raw["drums"] * 3.0, rtol=1e-6)
