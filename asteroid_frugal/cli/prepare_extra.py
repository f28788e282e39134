"""Stage 1: extra data: decode and index extra stem folders, Slakh2100 roots and rendered MIDI.

    local/prepare_extra.py --set 'data.extra_roots=[/data/stems, /data/slakh2100_flac_redux]'
    local/prepare_extra.py --extra_roots "/data/stems /data/slakh2100_flac_redux"

Writes ``<data.root>/extra_index.json`` (see :mod:`asteroid_frugal.data.extra`); with no
``data.extra_roots`` (nor ``midi_render.midi_dirs``) the index is empty.
"""
import argparse
import json
import logging
from typing import Optional, Sequence

from ..data.extra import prepare_extra
from .common import add_config_args, config_from_args, run

log = logging.getLogger("asteroid_frugal")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser, "prepare_extra")
    parser.add_argument("--extra_roots", action="extend", nargs="+", default=None, metavar="FOLDER",
                        help="sets data.extra_roots to these folders (space-separated, as run.sh's "
                             "--extra_roots; default: conf.yml's data.extra_roots)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.extra_roots is not None:   # a list-valued key: the folders become one override
        roots = [r for item in args.extra_roots for r in item.split()]
        args.overrides.append(f"data.extra_roots={json.dumps(roots)}")
    conf = config_from_args(args)
    if not conf["data"]["extra_roots"]:
        log.info("stage 1: no data.extra_roots configured; writing an empty extra index")
    return prepare_extra(conf, progress=not args.no_progress)


def cli() -> None:
    """Entry point (local/prepare_extra.py, python -m asteroid_frugal.cli.prepare_extra)."""
    run(main)


if __name__ == "__main__":
    cli()
