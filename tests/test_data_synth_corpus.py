"""Built-in corpus v2 (generator ``synth``, NumPy only): deterministic songs with sung, centred
vocals, drums, bass and other at MUSDB18-like levels."""
import numpy as np
import pytest

from asteroid_frugal.data.layout import frame_levels_db
from asteroid_frugal.data.synth_corpus import Song, generate_song
from asteroid_frugal.data.types import SOURCES

SR = 44100


@pytest.fixture(scope="module")
def song():
    return generate_song(seed=0, split="train", index=0, seconds=8.0, sr=SR)


def test_song_is_deterministic_and_songs_differ(song):
    again = generate_song(seed=0, split="train", index=0, seconds=8.0, sr=SR)
    other = generate_song(seed=0, split="train", index=1, seconds=8.0, sr=SR)
    for s in SOURCES:
        assert song[s].shape == (2, 8 * SR) and song[s].dtype == np.float32
        np.testing.assert_array_equal(song[s], again[s])
        assert not np.allclose(song[s], other[s])


def test_vocals_are_pitched_with_gaps_and_centred(song):
    v = song["vocals"]
    levels = frame_levels_db(v)
    active = levels > -50
    assert 0.2 < active.mean() < 0.95          # sung passages and silent ones
    # centred: left and right nearly equal. The dry voice is identical in both channels;
    # the room reverb (up to 0.3 x a unit-energy decorrelated IR, RT60 up to 1.4 s) lowers the
    # correlation to 0.70-0.93 over the first songs, so 0.6 still rules out independent channels
    assert np.corrcoef(v[0], v[1])[0, 1] > 0.6
    assert abs(10 * np.log10(np.mean(v[0] ** 2) / np.mean(v[1] ** 2))) < 1.0
    # a voiced frame has a clear fundamental in the singing range and harmonics above it
    frame = int(np.argmax(levels)) * 4410
    x = v[0, frame:frame + 4096] * np.hanning(4096)
    spec = np.abs(np.fft.rfft(x, 16384))
    freqs = np.fft.rfftfreq(16384, 1 / SR)
    peak = freqs[np.argmax(spec * (freqs < 1200))]
    assert 80 < peak < 1100
    assert spec[(freqs > 1500) & (freqs < 4000)].max() > 1e-3 * spec.max()   # formant region energy


def test_levels_are_musdb_like(song):
    rms = {k: 20 * np.log10(np.sqrt(np.mean(a ** 2))) for k, a in song.items()}
    assert all(-40 < v < -8 for v in rms.values()), rms
    assert max(rms.values()) - min(rms.values()) < 15
    assert np.abs(sum(song.values())).max() <= 0.95 + 1e-6


def test_skeleton_has_sung_and_instrumental_sections():
    song = Song(np.random.default_rng(0), 30.0, SR)
    assert song.n == 30 * SR and song.n_bars * song.bar >= 30
    assert song.vocal_bar.any() and not song.vocal_bar.all()
    assert song.section_start[0] and not song.vocal_bar[0]             # an instrumental intro
    assert song.t2s(1.5) == int(1.5 * SR)
    assert all(len(song.chord(bar, 48)) == 3 for bar in range(song.n_bars))
