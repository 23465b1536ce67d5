"""Seed statistics shared by the supervised benchmarks: means with 95% Student-t intervals.

With 5 seeds a percentile bootstrap over seeds is too narrow (it can only resample the five
values it has, and it never reaches beyond their range); the t-interval
``mean ± t_{0.975, n−1} · s / √n`` is the usual choice at this size and is what every table
of these benchmarks reports. Values bounded in [0, 1] (accuracies) can give an interval that
crosses the bound; it is reported as computed, not clipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """``{"mean", "low", "high", "half", "n"}``: the mean of the finite ``values`` and its
    Student-t interval at ``level`` (NaN bounds for fewer than two values)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = int(x.size)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "half": math.nan, "n": 0}
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "half": math.nan, "n": n}
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "low": mean - half, "high": mean + half, "half": half, "n": n}


def curve_ci(curves: Sequence[Sequence[float]], level: float = 0.95):
    """Pointwise mean and t-interval of equally long curves (one per seed): three arrays
    ``(mean, low, high)``; a point where fewer than two seeds are finite has NaN bounds."""
    matrix = np.asarray(curves, dtype=float)
    stats = [mean_ci(matrix[:, i], level) for i in range(matrix.shape[1])]
    return tuple(np.array([s[k] for s in stats]) for k in ("mean", "low", "high"))


def fmt(stat: dict[str, float], digits: int = 3) -> str:
    """``mean ± half`` (or the bare mean for one seed)."""
    if not math.isfinite(stat["mean"]):
        return "–"
    mean = round(stat["mean"], digits) + 0.0  # no "-0.000"
    if not math.isfinite(stat["half"]):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {stat['half']:.{digits}f}"


def rounded(obj, digits: int = 6):
    """``obj`` (JSON-like) with every float rounded to ``digits`` significant digits, to keep
    result files small; NaN and infinities stay as they are."""
    if isinstance(obj, float):
        if not math.isfinite(obj) or obj == 0.0:
            return obj
        return round(obj, digits - 1 - int(math.floor(math.log10(abs(obj)))))
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    return obj


def write_result_json(path: Path, content: dict) -> None:
    """Write a benchmark's result file: ``content`` after the torch version, the thread count
    (results move with the rounding, which the thread count changes) and the statistics used,
    floats rounded by :func:`rounded`, as compact JSON."""
    import torch

    header = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "statistics": "mean and 95% Student-t interval over seeds",
    }
    path.write_text(json.dumps(rounded({**header, **content}), separators=(",", ":")))
