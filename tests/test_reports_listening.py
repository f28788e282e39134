"""The listening page: it parses, links only files that exist beside it (relative, no network),
escapes every name, and shows each song's players, spectrograms, references, scores and settings."""
import json
import os
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import soundfile as sf

from asteroid_frugal.reports import listening

ODD = "a <b> & \"c\" 'd'"          # a song name that must be escaped everywhere


class Links(HTMLParser):
    """Every src/href of a page, its text, and whether the tags balance."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links, self.text, self.tags, self.open = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        parent = {"td": "tr", "th": "tr", "tr": "table", "li": "ul"}.get(tag)
        assert parent is None or (self.open and self.open[-1] == parent), f"<{tag}> outside <{parent}>"
        self.links += [(tag, v) for k, v in attrs if k in ("src", "href")]
        if tag not in ("meta", "img", "br", "link", "source"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"</{tag}> closes nothing"

    def handle_data(self, data):
        self.text.append(data)


def check_page(page: Path) -> Links:
    """The page parses with balanced tags; every link is relative and names an existing file."""
    parser = Links()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    assert parser.open == [] and "script" not in parser.tags and "link" not in parser.tags
    for tag, link in parser.links:
        parts = urlsplit(link)
        assert not parts.scheme and not parts.netloc and not link.startswith("/"), link
        assert (page.parent / unquote(parts.path)).is_file(), f"{page.name}: <{tag}> {link} does not exist"
    return parser


def sine(path: Path, seconds=1.0, sr=8000, freq=440.0):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, np.stack([0.3 * np.sin(2 * np.pi * freq * t)] * 2).T, sr)
    return path


def separated(out: Path, rel: str, names, input_file: Path = None, fmt="wav"):
    """A song folder as the separation command leaves it: stems and separation.json."""
    folder = out / rel
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        sine(folder / f"{name}.{fmt}", freq=200.0 * (i + 1))
    record = dict(models=[dict(target=names[0], file="/models/best_model.pth", sha256="ab" * 32)], stems=list(names),
                  settings=dict(chunk_seconds=30, precision="float32", format=fmt, subtype="PCM_24"))
    if input_file is not None:
        record["input"] = dict(file=input_file.name, bytes=input_file.stat().st_size)
    (folder / "separation.json").write_text(json.dumps(record))
    return folder


def test_separation_page_links_every_stem_the_input_and_escapes_names(tmp_path):
    songs, out = tmp_path / "in put", tmp_path / "out"
    (songs / ODD).mkdir(parents=True)
    mixture = sine(songs / ODD / "mixture.wav")
    reference = sine(songs / ODD / "vocals.wav")                   # MUSDB18-HQ layout: references beside
    plain = sine(songs / "plain & simple.wav")
    separated(out, ODD, ["vocals", "accompaniment"], mixture)
    separated(out, "plain & simple", ["vocals", "accompaniment"], plain)
    page = listening.write_separation_page(out, [str(songs)], "separation.json")
    assert page == out / "index.html"
    parser = check_page(page)
    raw = page.read_text()
    assert ODD not in raw and "<b>" not in raw and "a &lt;b&gt; &amp; &quot;c&quot; &#x27;d&#x27;" in raw
    assert ODD in "".join(parser.text)
    targets = {os.path.normpath(page.parent / unquote(link)) for _, link in parser.links}
    for path in (mixture, reference, plain, out / ODD / "vocals.wav", out / "plain & simple" / "accompaniment.wav"):
        assert os.path.normpath(path) in targets, path
    images = [link for tag, link in parser.links if tag == "img"]
    assert len(images) == 7    # 2 mixtures, 4 stems, 1 reference
    assert all((out / unquote(i)).read_bytes()[:4] == b"\x89PNG" and (out / unquote(i)).stat().st_size < 40000
               for i in images)
    assert "/models/best_model.pth" in raw and "precision float32" in raw


def test_songs_of_earlier_runs_and_inputs_not_given_are_on_the_page_unlinked(tmp_path, caplog):
    out = tmp_path / "out"
    elsewhere = sine(tmp_path / "old.wav")
    separated(out, "old", ["drums", "no_drums"], elsewhere)
    separated(out, "live/new", ["drums", "no_drums"], fmt="flac")
    (out / ".new.partial-x").mkdir()
    (out / ".new.partial-x" / "separation.json").write_text("{}")     # an interrupted song: not a song
    (out / "broken").mkdir()
    (out / "broken" / "separation.json").write_text("{not json")
    page = listening.write_separation_page(out, [], "separation.json")
    parser = check_page(page)
    text = "".join(parser.text)
    assert "old" in text and "live/new" in text and "old.wav: not among this run's inputs" in text
    assert sum(tag == "audio" for tag, _ in parser.links) == 4 and "broken" not in text
    assert any("broken" in r.getMessage() and "not on the listening page" in r.getMessage() for r in caplog.records)


def test_an_input_on_another_file_system_is_named_not_linked(tmp_path, monkeypatch):
    out, song = tmp_path / "out", sine(tmp_path / "song.wav")
    separated(out, "song", ["bass", "no_bass"], song)
    real_stat = os.stat
    monkeypatch.setattr(listening.os, "stat", lambda p, *a, **k: os.stat_result(
        (*real_stat(p, *a, **k)[:2], 99, *real_stat(p, *a, **k)[3:])) if Path(p) == song else real_stat(p, *a, **k))
    parser = check_page(listening.write_separation_page(out, [str(song)], "separation.json"))
    assert "on another file system than the page, not linked" in "".join(parser.text)
    assert not any(link.endswith("song.wav") for _, link in parser.links)


def test_spectrograms_are_drawn_again_only_for_newer_audio(tmp_path):
    audio, png = sine(tmp_path / "x.wav"), tmp_path / "x.png"
    assert listening.draw_spectrogram(audio, png)
    os.utime(png, (1e9, 2e9))
    os.utime(audio, (1e9, 1e9))
    assert listening.draw_spectrogram(audio, png) and png.stat().st_mtime == 2e9      # kept
    os.utime(audio, (3e9, 3e9))
    assert listening.draw_spectrogram(audio, png) and png.stat().st_mtime != 2e9     # redrawn
    (tmp_path / "y.m4a").write_bytes(b"not audio")
    assert not listening.draw_spectrogram(tmp_path / "y.m4a", tmp_path / "y.png")
    db, low, high = listening.log_spectrogram(np.zeros(10), 8000)
    assert np.isfinite(db).all() and low < high == 4000


def test_examples_page_shows_references_and_scores(tmp_path):
    examples = tmp_path / "examples"
    for track in ("song a", "b&c"):
        folder = examples / track
        (folder / "references").mkdir(parents=True)
        for name in ("mixture", "vocals", "accompaniment"):
            sine(folder / f"{name}.wav")
        for name in ("vocals", "accompaniment"):
            sine(folder / "references" / f"{name}.wav")
    table = pd.DataFrame([dict(track=t, target=n, SDR=s, SIR=1.0, ISR=2.0, SAR=np.nan)
                          for t, s in (("song a", 5.125), ("b&c", -1.5)) for n in ("vocals", "accompaniment")])
    page = listening.write_examples_page(examples, table, ["vocals model: `exp/vocals/best_model.pth`"])
    parser = check_page(page)
    raw = page.read_text()
    assert "5.12" in raw and "-1.50" in raw and "<code>exp/vocals/best_model.pth</code>" in raw and "b&amp;c" in raw
    assert sum(tag == "audio" for tag, _ in parser.links) == 10 and sum(tag == "img" for tag, _ in parser.links) == 10
    assert listening.write_examples_page(tmp_path / "none", table, []) is None
