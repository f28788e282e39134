#!/usr/bin/env python
"""Stage 2 of run.sh: training-set shaping (manifests for one target). Options: --help."""
from asteroid_frugal.cli.shape_trainset import cli

if __name__ == "__main__":
    cli()
