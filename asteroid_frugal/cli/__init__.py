"""The command line: the only place with argparse. One module per command; each has
``main(argv=None)`` (parse, resolve the config, call one library function) and ``cli()``
(the entry point: threading policy, one-line errors). ``local/<stage>.py``, the console
scripts and ``python -m asteroid_frugal.cli.<command>`` all end in ``cli()``.
Shared options and the shortcut-flag table: :mod:`asteroid_frugal.cli.common`."""
