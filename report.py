"""Aggregate a sweep into a report: ``python report.py --help``; the report itself is
:mod:`experiments.report`."""

import sys

from experiments.report.cli import cli

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
