"""Run a grid of ``train.py`` runs on Ray: ``python sweep.py --help``; the sweep itself is
:mod:`experiments.sweep`."""

import sys

from experiments.sweep.cli import cli

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
