"""Stage 0: data preparation: decode MUSDB18 / MUSDB18-HQ, or generate the built-in corpus.

    local/prepare_data.py                                  # the built-in corpus (default_corpus section)
    local/prepare_data.py --musdb_root /data/musdb18       # MUSDB18 (.stem.mp4) or MUSDB18-HQ (wav folders)
    local/prepare_data.py --musdb_download yes             # musdb's 7 s sample (needs internet)

Prepared tracks go to ``<data.root>/prepared/<corpus>/`` (see :mod:`asteroid_frugal.data.musdb_prep`).
"""
import argparse
from typing import Optional, Sequence

from ..data.musdb_prep import prepare_musdb
from .common import add_config_args, config_from_args, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="--musdb_root: a MUSDB18 or MUSDB18-HQ root (default: the built-in "
                                            "corpus); --musdb_download yes|no (default: conf.yml's data section)")
    add_config_args(parser, "prepare_data")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = build_parser().parse_args(argv)
    return prepare_musdb(config_from_args(args), progress=not args.no_progress)


def cli() -> None:
    """Entry point (local/prepare_data.py, python -m asteroid_frugal.cli.prepare_data)."""
    run(main)


if __name__ == "__main__":
    cli()
