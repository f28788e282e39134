"""What every command shares: the config options, the shortcut flags, and the entry point.

Every knob is a key of ``conf.yml``; a command line reaches it through ``--conf``,
``--overlay`` and ``--set section.key=value``. A few keys also have a shortcut flag, listed in
:data:`SHORTCUTS` (the only table of them): ``--jobs 4`` is ``--set evaluation.jobs=4``, with
the key's conf.yml value as its default. Each command offers the shortcuts that concern it.
Four flags that are not one ``VALUE`` are defined by their command and also become a ``--set``:
``--extra_roots`` (prepare_extra) and ``--soundfont`` (render_midi), lists; ``--launcher``
(run_egs, its values listed) and ``--wait`` (run_egs, a switch: ``launcher.wait=true``).
"""
import argparse
import errno
import sys
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from tqdm import tqdm

from .. import runtime
from ..config import DEFAULT_CONF, load_config
from ..utils import FrugalError, disk_full_message, setup_logging

# The shortcut flags, every one of them: command -> {flag: conf key it sets}. "*": every command.
SHORTCUTS: Dict[str, Dict[str, str]] = {
    "*": {"threads": "runtime.threads"},
    "prepare_data": {"musdb_root": "data.musdb_root", "musdb_download": "data.musdb_download"},
    "prepare_extra": {},
    "render_midi": {"jobs": "midi_render.jobs", "max_seconds": "midi_render.max_seconds",
                    "sample_rate": "midi_render.sample_rate", "format": "midi_render.format"},
    "shape_trainset": {},
    "data_report": {},
    "train": {},
    "evaluate": {"split": "evaluation.split", "jobs": "evaluation.jobs", "backend": "evaluation.bss_backend",
                 "max_tracks": "evaluation.max_tracks", "device": "evaluation.device"},
    "publish": {"license": "publish.license"},
    "run_egs": {},
    "separate": {"device": "evaluation.device", "chunk_seconds": "evaluation.chunk_seconds",
                 "overlap_seconds": "evaluation.overlap_seconds", "batch_chunks": "evaluation.batch_chunks",
                 "precision": "separate.precision", "format": "separate.format", "subtype": "separate.subtype",
                 "filename": "separate.filename", "stems": "separate.stems", "clip": "separate.clip",
                 "mp3_bitrate": "separate.mp3_bitrate",
                 "block": "streaming.block", "stream_precision": "streaming.precision"},
    "export": {},
    "make_rehearsal": {"songs": "rehearsal.songs", "length_scale": "rehearsal.length_scale", "jobs": "rehearsal.jobs",
                       "subset": "rehearsal.subset"},
}


def add_config_args(parser: argparse.ArgumentParser, command: str) -> None:
    """``--conf``, ``--overlay`` (repeatable), ``--set section.key=value`` (repeatable) and the
    command's :data:`SHORTCUTS` (each defaults to its key's value in the config)."""
    parser.add_argument("--conf", default=str(DEFAULT_CONF), help="base config (default: the package's conf.yml)")
    parser.add_argument("--overlay", action="append", default=[],
                        help="config overlay merged on top of --conf (repeatable; several files separated by spaces)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (repeatable), e.g. --set training.epochs=5")
    for flag, key in {**SHORTCUTS["*"], **SHORTCUTS[command]}.items():
        parser.add_argument(f"--{flag}", dest=f"shortcut__{key}", default=None, metavar="VALUE",
                            help=f"shortcut for --set {key}=VALUE")


def overrides_from_args(args: argparse.Namespace) -> list:
    """The ``--set`` assignments, then one per shortcut flag given (so a shortcut wins)."""
    given = [f"{name[len('shortcut__'):]}={value}" for name, value in vars(args).items()
             if name.startswith("shortcut__") and value is not None]
    return [*args.overrides, *given]


def config_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    """The resolved config of a command line (defaults, overlays, overrides, shortcuts); checks the
    runtime values and puts an integer ``runtime.threads`` in effect (:func:`runtime.apply`)."""
    overlays = [o for item in args.overlay for o in str(item).split()]
    conf = load_config(args.conf, overlays, overrides_from_args(args))
    runtime.apply(conf)
    return conf


def runtime_request(argv: Sequence[str]) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """The resolved ``runtime`` section of a command line and which of its keys the command line
    set, and how (``{"threads": "--threads"}``, ``{"omp_wait_policy": "--set"}``): what
    :func:`runtime.decide` needs. The command's other options are ignored here."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_config_args(parser, "*")
    args, _ = parser.parse_known_args(list(argv))
    overlays = [o for item in args.overlay for o in str(item).split()]
    conf = load_config(args.conf, overlays, overrides_from_args(args))
    on_cmdline = {s.split("=", 1)[0].strip() for s in args.overrides if "=" in s}
    given = {key.split(".", 1)[1]: "--set" for key in on_cmdline if key.startswith("runtime.")}
    if getattr(args, "shortcut__runtime.threads") is not None:
        given["threads"] = "--threads"
    return conf["runtime"], given


def setup_process(argv: Sequence[str]) -> Dict[str, Any]:
    """The threading policy of a process started with ``argv`` (:func:`runtime.configure_process`);
    a command line whose config does not load is left to the command, which reports it in one
    line: the package's defaults are used meanwhile."""
    try:
        settings, given = runtime_request(argv)
    except FrugalError:
        settings, given = load_config()["runtime"], {}
    return runtime.configure_process(settings, given)


def run(main: Callable[[Optional[Sequence[str]]], Any], argv: Optional[Sequence[str]] = None) -> None:
    """Run a command's ``main`` with logging and a :class:`FrugalError` as ``error: ...``, exit 2.

    As an entry point (``argv`` None: the process's own command line) it first sets the
    process's threading policy (:func:`setup_process`, before any work; it may start
    the command again in place). Given ``argv`` (a test, an in-process caller) it leaves the
    process as it is."""
    setup_logging()
    try:
        if argv is None:
            argv = sys.argv[1:]
            setup_process(argv)
        main(list(argv))
    except FrugalError as err:
        close_progress_bars()
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        close_progress_bars()
        # a write the library does not route through utils' atomic writers (a library's own
        # files: Lightning's hparams.yaml, TensorBoard's events): still one line
        print(f"error: {disk_full_message(err.filename or '.')}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def close_progress_bars() -> None:
    """Close every progress bar a failed step left open, so that the error printed next has a
    line of its own and no bar redraws after it. tqdm keeps its open bars in the class attribute
    ``_instances`` (it has no public list of them)."""
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
