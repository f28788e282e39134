"""The listening page: ``index.html`` beside separated stems, to judge a separation by ear.

    write_separation_page("stems", ["album/"], "separation.json")   # asteroid-frugal-separate --report
    write_examples_page("exp/vocals/results/examples", tracks_table, facts)   # stage 4's example tracks

Per song: an audio player for the mixture and for each stem (and each reference stem with the
song's scores, where stage 4 has them), a spectrogram per file, and the models and settings that
made the stems. The page works from the file system, offline: every link is relative to the page,
the style is inline, and there is no script, font or image from elsewhere. Spectrograms (PNG, log
frequency, the first :data:`SPECTROGRAM_SECONDS` seconds of a file) go to ``index_files/<song>/``
beside the page and are drawn again only when their audio file is newer.

The separation command's page (:func:`write_separation_page`) covers every song of its output
folder, those of earlier runs too: each song's record (``separation.json``, wherever the
``--filename`` template put it: the models, settings and stem files) and stems on disk. Its mixture player links to the song's input file when one of the
given inputs is that file (same name and size) on the output folder's file system; a MUSDB18-HQ
style input (``<song>/mixture.wav``) also gives the reference stems beside it.
"""
import html
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence
from urllib.parse import quote

import numpy as np

from ..audio import AUDIO_EXTENSIONS
from ..data.types import MIXTURE
from ..metrics import METRICS
from ..utils import FrugalError, atomic_path, read_json, write_text_atomic

log = logging.getLogger("asteroid_frugal.reports.listening")

PAGE = "index.html"
ASSETS = "index_files"        # beside the page: the spectrograms, one folder per song
SPECTROGRAM_SECONDS = 30      # a spectrogram shows at most the first 30 s of its file
RECORD_BYTES = 1 << 20        # a .json file larger than this is not read as a separation record

STYLE = """
body{font-family:sans-serif;margin:1.5em;max-width:75em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin:1.6em 0 .4em}
table{border-collapse:collapse}td,th{padding:.3em .6em;vertical-align:top;text-align:left}
tr+tr>*{border-top:1px solid #ddd}th{font-weight:600;color:#555}
audio{width:320px;display:block}img{display:block;margin-top:.2em}
.num{text-align:right;font-variant-numeric:tabular-nums}.note{color:#777;font-size:.9em}
ul.settings{font-size:.9em;color:#444}code{font-size:.95em}
"""


# ------------------------------------------------------------------------ what a page shows
@dataclass
class Stem:
    """One row of a song's table: a stem's file, its reference file and its scores."""

    name: str
    path: Optional[Path]
    reference: Optional[Path] = None
    scores: Dict[str, float] = field(default_factory=dict)


@dataclass
class Song:
    """One song of a page; ``key``: its folder under ``index_files/`` (its path relative to the page)."""

    title: str
    key: str
    mixture: Optional[Path]
    stems: List[Stem]
    notes: List[str] = field(default_factory=list)
    settings: List[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ spectrograms
def read_excerpt(path: Path, seconds: float):
    """``(mono samples, sample rate)`` of the first ``seconds`` of a file, or None when soundfile
    cannot read it (the page then shows no spectrogram for it)."""
    import soundfile as sf

    try:
        sr = int(sf.info(str(path)).samplerate)
        data, _ = sf.read(str(path), frames=int(seconds * sr), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError):
        return None
    return data.mean(axis=1), sr


def log_spectrogram(x: np.ndarray, sr: int, n_fft: int = 2048, n_bands: int = 120, n_frames: int = 400):
    """``(dBFS [bands, frames], lowest Hz, highest Hz)``: power in log-spaced bands (mel-like)."""
    x = np.pad(x, (0, max(0, n_fft - x.size)))
    hop = max(n_fft // 4, (x.size - n_fft) // n_frames + 1)
    window = np.hanning(n_fft).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * window
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 / (window.sum() / 2) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    fmin, fmax = 30.0, sr / 2
    edges = np.geomspace(fmin, fmax, n_bands + 1)
    weights = np.zeros((n_bands, freqs.size), dtype=np.float32)
    for i in range(n_bands):
        inside = (freqs >= edges[i]) & (freqs < edges[i + 1])
        weights[i, inside if inside.any() else np.argmin(np.abs(freqs - np.sqrt(edges[i] * edges[i + 1])))] = 1
    bands = (weights / weights.sum(axis=1, keepdims=True)) @ power.T
    return 10 * np.log10(bands + 1e-12), fmin, fmax


def draw_spectrogram(audio_path: Path, png: Path) -> bool:
    """Write ``png`` for ``audio_path`` unless a newer one exists; False when it cannot be read."""
    if png.is_file() and png.stat().st_mtime >= audio_path.stat().st_mtime:
        return True
    excerpt = read_excerpt(audio_path, SPECTROGRAM_SECONDS)
    if excerpt is None:
        return False
    x, sr = excerpt
    save_png(plot_spectrogram(*log_spectrogram(x, sr), x.size / sr), png)
    return True


def plot_spectrogram(db: np.ndarray, fmin: float, fmax: float, seconds: float) -> np.ndarray:
    """The picture (RGB pixels, 320 x 92) of :func:`log_spectrogram`'s bands over ``seconds``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4.0, 1.15), dpi=80)
    ax = fig.add_axes((0.1, 0.2, 0.87, 0.78))
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-100, vmax=-20, interpolation="nearest",
              extent=(0, seconds, np.log10(fmin), np.log10(fmax)))
    ticks = [f for f in (100, 1000, 10000) if fmin < f < fmax]
    ax.set_yticks(np.log10(ticks), [f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks])
    ax.tick_params(labelsize=6, length=2, pad=1)
    ax.set_xlabel("s", fontsize=6, labelpad=0)
    fig.canvas.draw()
    pixels = np.array(fig.canvas.buffer_rgba())[..., :3]
    plt.close(fig)
    return pixels


def save_png(pixels: np.ndarray, png: Path) -> None:
    """An RGB picture as a 64-colour PNG (a third of the bytes of a full-colour one)."""
    from PIL import Image   # matplotlib's own PNG writer

    with atomic_path(png, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(pixels)).quantize(colors=64).save(tmp, format="PNG", optimize=True)


# ----------------------------------------------------------------------------------- the page
def url(page_dir: Path, path: Path) -> str:
    """``path`` as a link relative to the page's folder, percent-encoded, then HTML-escaped."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(page_dir)).replace(os.sep, "/")
    return html.escape(quote(rel), quote=True)


def text(value) -> str:
    return html.escape(str(value), quote=True)


def player(page_dir: Path, path: Optional[Path], png: Optional[Path], label: str) -> str:
    """A player and, when it could be drawn, the spectrogram of one file (or a note why not)."""
    if path is None:
        return '<span class="note">not available</span>'
    cell = f'<audio controls preload="metadata" src="{url(page_dir, path)}" title="{text(label)}"></audio>'
    if png is not None and draw_spectrogram(path, png):
        cell += f'<img src="{url(page_dir, png)}" alt="spectrogram of {text(label)}" width="320" height="92">'
    elif png is not None:
        cell += '<span class="note">no spectrogram (format not readable here)</span>'
    return cell


def stem_row(page_dir: Path, song: Song, stem: Stem, columns: Dict[str, bool]) -> str:
    assets = page_dir / ASSETS / song.key
    cells = [f"<th>{text(stem.name)}</th>",
             f"<td>{player(page_dir, stem.path, assets / f'{stem.name}.png', stem.name)}</td>"]
    if columns["reference"]:
        ref_png = assets / "references" / f"{stem.name}.png"
        cells.append(f"<td>{player(page_dir, stem.reference, ref_png, stem.name + ' (reference)')}</td>"
                     if stem.reference else "<td></td>")
    if columns["scores"]:
        cells += [f'<td class="num">{score(stem.scores.get(m))}</td>' for m in METRICS]
    return "<tr>" + "".join(cells) + "</tr>"


def score(value) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.2f}"


def song_section(page_dir: Path, song: Song, shared_settings: bool) -> str:
    columns = dict(reference=any(s.reference for s in song.stems), scores=any(s.scores for s in song.stems))
    head = ["<th>stem</th>", "<th>separated</th>"] + (["<th>reference</th>"] if columns["reference"] else []) \
        + ([f'<th class="num">{m} (dB)</th>' for m in METRICS] if columns["scores"] else [])
    rows = [stem_row(page_dir, song, s, columns) for s in [Stem(MIXTURE, song.mixture), *song.stems]]
    out = [f"<section><h2>{text(song.title)}</h2>"]
    out += [f'<p class="note">{text(n)}</p>' for n in song.notes]
    out += ["<table><tr>" + "".join(head) + "</tr>", *rows, "</table>"]
    if song.settings and not shared_settings:
        out.append(settings_list(song.settings))
    return "\n".join(out + ["</section>"])


def settings_list(lines: Sequence[str]) -> str:
    """The models and settings, one per line (Markdown-style ``code`` spans kept as code)."""
    items = [re.sub(r"`([^`]*)`", r"<code>\1</code>", text(line)) for line in lines]
    return '<ul class="settings">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def render_page(page_dir: Path, title: str, intro: str, songs: Sequence[Song]) -> str:
    """The whole page (draws the spectrograms it shows)."""
    shared = len({tuple(s.settings) for s in songs}) == 1
    body = [f"<h1>{text(title)}</h1>", f"<p>{text(intro)}</p>"]
    if shared and songs[0].settings:
        body += ["<h2>Models and settings</h2>", settings_list(songs[0].settings)]
    body += [song_section(page_dir, s, shared) for s in songs] or ['<p class="note">no songs</p>']
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{text(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_page(page_dir, title: str, intro: str, songs: Sequence[Song]) -> Path:
    """Write ``page_dir/index.html`` (atomically) and the spectrograms it shows; returns its path."""
    page_dir = Path(page_dir)
    page = page_dir / PAGE
    write_text_atomic(page, render_page(page_dir, title, intro, songs))
    log.info("listening page: %s (%d song(s))", page, len(songs))
    return page


def intro_text(what: str) -> str:
    return (f"{what} Spectrograms: the first {SPECTROGRAM_SECONDS} s of each file, log frequency "
            f"(30 Hz to half the sample rate), -100 to -20 dBFS. Open this file in a browser; it needs "
            f"no network.")


# ------------------------------------------------------------------ the separation command's page
def write_separation_page(out_dir, inputs: Sequence, manifest: str) -> Path:
    """``OUT/index.html`` over every song of ``out_dir`` that has a separation record (``manifest``,
    the separation command's ``separation.json``, or a record named by another ``--filename``
    template); ``inputs``: the files and folders of the run, where the mixtures are looked for."""
    out_dir = Path(out_dir)
    songs = [song for path in record_files(out_dir, manifest)
             if (song := separated_song(out_dir, path, manifest, inputs)) is not None]
    return write_page(out_dir, f"Separated songs: {out_dir.resolve().name}",
                      intro_text(f"{len(songs)} song(s) of {out_dir.resolve().name}."), songs)


def record_files(out_dir: Path, manifest: str) -> List[Path]:
    """The separation records under ``out_dir``: every ``manifest`` file, and any other small
    ``.json`` file that reads as one (a ``--filename`` template such as ``{track}_{stem}.{ext}`` names
    them ``<track>_separation.json``); temporary (``.``-prefixed) and page folders aside."""
    found = []
    for path in out_dir.rglob("*.json"):
        rel = path.relative_to(out_dir)
        if any(part.startswith(".") or part == ASSETS for part in rel.parts[:-1]) or not path.is_file():
            continue
        if path.name == manifest or (path.stat().st_size < RECORD_BYTES and read_record(path) is not None):
            found.append(path)
    return sorted(found)


def read_record(path: Path) -> Optional[Dict]:
    """A separation record (its models, stems and settings) read from ``path``, or None."""
    try:
        record = read_json(path)
    except FrugalError:
        return None
    if isinstance(record, dict) and isinstance(record.get("stems"), list) and isinstance(record.get("models"), list):
        return record
    return None


def separated_song(out_dir: Path, record_path: Path, manifest: str, inputs: Sequence) -> Optional[Song]:
    """One song's record as a :class:`Song` (None, with a warning, when it is unreadable). Its stems:
    the record's ``files`` (relative to the record), else ``<stem>.<ext>`` beside it (older records);
    its name: the record's ``track``, else the record's folder."""
    record = read_record(record_path)
    if record is None:
        log.warning("%s: not on the listening page (not a readable separation record)", record_path)
        return None
    try:
        names, settings = list(record["stems"]), dict(record.get("settings") or {})
        files = dict(record.get("files") or {})
    except (KeyError, TypeError, ValueError) as err:
        log.warning("%s: not on the listening page (%s)", record_path, err)
        return None
    folder = record_path.parent
    track = record.get("track")
    rel = Path(track) if isinstance(track, str) and track else folder.relative_to(out_dir)
    source, notes = find_mixture(out_dir, rel, record, inputs)
    stems = [Stem(n, recorded_file(out_dir, folder, files.get(n)) or stem_file(folder, n, settings.get("format")),
                  reference_beside(source, n)) for n in names]
    notes += [f"{s.name}: no file" + (f" ({files[s.name]})" if s.name in files else f" in {folder.name}/")
              for s in stems if s.path is None]
    return Song(rel.as_posix(), rel.as_posix(), source, stems, notes, record_lines(record))


def recorded_file(out_dir: Path, folder: Path, name) -> Optional[Path]:
    """A stem file a record names (relative to its folder), when it exists inside ``out_dir``."""
    if not isinstance(name, str) or not name:
        return None
    path = Path(os.path.normpath(folder / name))
    inside = Path(os.path.normpath(out_dir))
    return path if inside in path.parents and path.is_file() else None


def stem_file(folder: Path, name: str, fmt: Optional[str]) -> Optional[Path]:
    """``folder/<name>.<fmt>``, else the one audio file named ``<name>.*`` there."""
    if fmt and (folder / f"{name}.{fmt}").is_file():
        return folder / f"{name}.{fmt}"
    return next((p for p in sorted(folder.glob(f"{name}.*")) if p.suffix.lower() in AUDIO_EXTENSIONS), None)


def find_mixture(out_dir: Path, rel: Path, record: Dict, inputs: Sequence):
    """``(input file or None, notes)``: the song's input among ``inputs`` (same name and size), when
    it is on the output folder's file system (a relative link to it then exists)."""
    info = record.get("input") or {}
    name = str(info.get("file") or "")
    path = locate_input(rel, name, info.get("bytes"), inputs) if name else None
    if path is None:
        return None, ([f"input {name}: not among this run's inputs, so not linked"] if name else [])
    try:
        same_fs = os.stat(path).st_dev == os.stat(out_dir).st_dev
        os.path.relpath(path.resolve(), out_dir.resolve())   # raises across Windows drives
    except (OSError, ValueError):
        same_fs = False
    if not same_fs:
        return None, [f"input {path}: on another file system than the page, not linked"]
    return path, []


def locate_input(rel: Path, name: str, size, inputs: Sequence) -> Optional[Path]:
    """The input file named ``name`` (of ``size`` bytes when known) that gave the song folder ``rel``."""
    for item in map(Path, inputs):
        if item.is_dir():
            candidates = [item / rel.parent / name, item / rel / name]
            if rel == Path(item.resolve().name):
                candidates.append(item / name)     # a song folder given on its own
        else:
            candidates = [item]
        for path in candidates:
            if path.name == name and path.is_file() and size in (None, path.stat().st_size):
                return path
    return None


def reference_beside(mixture: Optional[Path], name: str) -> Optional[Path]:
    """``<name>.<ext>`` beside a ``mixture.<ext>`` input (MUSDB18-HQ layout), if there is one."""
    if mixture is None or mixture.name.split(".")[0].lower() != MIXTURE:
        return None
    return next((p for p in (mixture.parent / f"{name}{s}" for s in AUDIO_EXTENSIONS) if p.is_file()), None)


def record_lines(record: Dict) -> List[str]:
    """A separation record's models and settings, one line each."""
    lines = [f"{m.get('target')} model: `{m.get('file')}` (sha256 {str(m.get('sha256', ''))[:12]})"
             for m in record.get("models") or []]
    settings = record.get("settings") or {}
    if settings:
        lines.append("settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()))
    return lines


# ------------------------------------------------------------------------------- stage 4's page
def write_examples_page(examples_dir, tracks_table, facts: Sequence[str]) -> Optional[Path]:
    """``examples/index.html`` over stage 4's example tracks (``examples/<track>/``: mixture, stems,
    ``references/``); ``tracks_table``: per-track scores (columns track, target and the metrics,
    ``all_metrics.csv``); ``facts``: the evaluation's models and settings, one line each. Nothing
    is written when there is no example folder."""
    examples_dir = Path(examples_dir)
    folders = sorted(p for p in examples_dir.glob("*") if p.is_dir() and p.name != ASSETS
                     and (p / f"{MIXTURE}.wav").is_file()) if examples_dir.is_dir() else []
    if not folders:
        return None
    scores = track_scores(tracks_table)
    songs = [example_song(f, scores.get(f.name, {}), list(facts)) for f in folders]
    return write_page(examples_dir, "Example separations of the evaluation",
                      intro_text(f"{len(songs)} example track(s): an excerpt from the middle of each song; "
                                 f"scores: BSS Eval v4 of the whole track (median over 1 s frames)."), songs)


def track_scores(tracks_table) -> Dict[str, Dict[str, Dict[str, float]]]:
    """``{example folder name: {target: {metric: value}}}`` (a track's folder: its name, ``/`` as ``_``)."""
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for row in tracks_table.to_dict("records"):
        folder = str(row["track"]).replace("/", "_").replace(os.sep, "_")
        out.setdefault(folder, {})[str(row["target"])] = {m: float(row[m]) for m in METRICS if m in row}
    return out


def example_song(folder: Path, scores: Dict[str, Dict[str, float]], facts: List[str]) -> Song:
    """One example track: the stems in score-table order, then any other file of the folder."""
    files = {p.stem: p for p in sorted(folder.glob("*.wav")) if p.stem != MIXTURE}
    names = [n for n in scores if n in files] + [n for n in files if n not in scores]
    refs = folder / "references"
    stems = [Stem(n, files[n], refs / f"{n}.wav" if (refs / f"{n}.wav").is_file() else None, scores.get(n, {}))
             for n in names]
    return Song(folder.name, folder.name, folder / f"{MIXTURE}.wav", stems, settings=facts)
