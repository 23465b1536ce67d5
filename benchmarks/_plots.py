"""The benchmarks' figures: matplotlib without a display (the RL benchmarks that read sweeps draw
with :mod:`experiments.report.figures` instead, in the report's style)."""


def pyplot():
    """matplotlib's pyplot on the file-only Agg back end (no display on this machine)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
