"""local/render_midi.py's options: shortcut flags and --soundfont become midi_render keys."""
import pytest

from asteroid_frugal.cli import render_midi
from asteroid_frugal.utils import FrugalError


def _fake_font(path):
    path.write_bytes(b"RIFF\0\0\0\0sfbk")          # what check_soundfont reads
    return path


@pytest.fixture
def captured(monkeypatch):
    """Options render_midi_dir would get (nothing rendered)."""
    seen = {}

    def fake_render(midi_dir, out_dir, opts, progress=True):
        seen["opts"] = opts
        return {"rendered": 1, "already_rendered": 0}

    monkeypatch.setattr(render_midi, "render_midi_dir", fake_render)
    return seen


def test_flags_set_midi_render_keys(tmp_path, captured):
    fonts = [_fake_font(tmp_path / "a.sf2"), _fake_font(tmp_path / "b.sf2"), _fake_font(tmp_path / "c.sf2")]
    render_midi.main([str(tmp_path), str(tmp_path / "out"), "--soundfont", str(fonts[0]), str(fonts[1]),
                      "--soundfont", str(fonts[2]), "--jobs", "3", "--max_seconds", "1.5", "--sample_rate", "22050",
                      "--format", "flac", "--set", "midi_render.reverb=false"])
    opts = captured["opts"]
    assert opts.soundfonts == fonts and opts.jobs == 3 and opts.max_seconds == 1.5
    assert opts.sample_rate == 22050 and opts.format == "flac" and opts.reverb is False


def test_soundfont_flag_wins_over_set(tmp_path, captured):
    font = _fake_font(tmp_path / "mine.sf2")
    render_midi.main([str(tmp_path), str(tmp_path / "out"), "--set", "midi_render.soundfonts=[/nowhere.sf2]",
                      "--soundfont", str(font)])
    assert captured["opts"].soundfonts == [font]


@pytest.mark.parametrize("flag, value, match", [
    ("--format", "mp3", "format 'mp3' is not one of wav, flac"),
    ("--jobs", "two", "midi_render.jobs='two': expected an integer"),
    ("--max_seconds", "-1", "midi_render.max_seconds=-1"),
])
def test_bad_flag_values_are_one_line_errors(tmp_path, captured, flag, value, match):
    with pytest.raises(FrugalError, match=match) as err:
        render_midi.main([str(tmp_path), str(tmp_path / "out"), flag, value])
    assert "\n" not in str(err.value)


def test_nothing_rendered_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(render_midi, "render_midi_dir", lambda *a, **k: {"rendered": 0, "already_rendered": 0})
    with pytest.raises(FrugalError, match="no song could be rendered"):
        render_midi.main([str(tmp_path), str(tmp_path / "out"), "--soundfont", str(_fake_font(tmp_path / "a.sf2"))])
