"""Seed statistics shared by the benchmarks, and the provenance check of a grid's runs.

With 5 to 10 seeds a percentile bootstrap over seeds is too narrow (it can only resample the
values it has, and it never reaches beyond their range); Student-t intervals are the usual
choice at this size and are what the tables of these benchmarks report as primary: the
interval of a mean ``mean ± t_{0.975, n−1} · s / √n`` (:func:`mean_ci`), Welch's interval of
a difference of two independent groups' means (:func:`welch_difference`) and the paired
interval of a mean difference over shared seeds (:func:`paired_difference`), each with the
two-sided p-value of the same t statistic. A script names its family of comparisons before it
reads any result, and reports Holm–Bonferroni adjusted p-values over that family
(:func:`holm`). Values bounded in [0, 1] (accuracies) can give an interval that crosses the
bound; it is reported as computed, not clipped.

A grid's runs are comparable when they ran the same code: :func:`run_provenance` reads the
commit (and whether the tree was dirty) each run started and resumed on, and how each resume
refilled its replay buffer; :func:`provenance_problem` says why a grid is not one clean commit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _finite(values: Sequence[float]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """``{"mean", "low", "high", "half", "n"}``: the mean of the finite ``values`` and its
    Student-t interval at ``level`` (NaN bounds for fewer than two values)."""
    from scipy import stats

    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "half": math.nan, "n": 0}
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "half": math.nan, "n": n}
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "low": mean - half, "high": mean + half, "half": half, "n": n}


def _t_test(diff: float, se2: float, dof: float, level: float) -> dict[str, float]:
    """Interval and two-sided p-value of a difference ``diff`` with squared standard error
    ``se2`` on ``dof`` degrees of freedom. Data without spread (``se2 == 0``) give a zero-width
    interval, and p = 1 when the difference is 0, else p = 0 (the t statistic is infinite)."""
    from scipy import stats

    if se2 == 0:
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        return {"low": diff, "high": diff, "half": 0.0, "t": t, "dof": dof, "p": float(t == 0)}
    se = math.sqrt(se2)
    half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), dof))
    return {"low": diff - half, "high": diff + half, "half": half, "t": t, "dof": dof, "p": p}


def welch_difference(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> dict[str, float]:
    """Welch's t-interval and two-sided p-value of ``mean(a) − mean(b)`` for two independent
    groups (unequal variances, Welch–Satterthwaite degrees of freedom), the comparison of
    groups that share no runs: ``{"mean", "low", "high", "half", "t", "dof", "p", "n_a",
    "n_b"}`` over the finite values; NaN but the mean when a group has fewer than two."""
    x, y = _finite(a), _finite(b)
    diff = float(x.mean() - y.mean()) if x.size and y.size else math.nan
    out = {"mean": diff, "n_a": int(x.size), "n_b": int(y.size)}
    if x.size < 2 or y.size < 2:
        return {**out, **dict.fromkeys(("low", "high", "half", "t", "dof", "p"), math.nan)}
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    dof = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1)) if va + vb else math.nan
    return {**out, **_t_test(diff, va + vb, dof, level)}


def paired_difference(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> dict[str, float]:
    """The paired t-interval and two-sided p-value of the mean of ``a[i] − b[i]`` (pairs
    sharing a seed, so the seed's own spread cancels): ``{"mean", "low", "high", "half", "t",
    "dof", "p", "n"}`` over the pairs where both are finite; NaN but the mean below two."""
    d = _finite([x - y for x, y in zip(a, b, strict=True)])
    out = {"mean": float(d.mean()) if d.size else math.nan, "n": int(d.size)}
    if d.size < 2:
        return {**out, **dict.fromkeys(("low", "high", "half", "t", "dof", "p"), math.nan)}
    return {**out, **_t_test(out["mean"], d.var(ddof=1) / d.size, d.size - 1, level)}


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm–Bonferroni adjusted p-values of a family of comparisons (name → two-sided p).

    Sorted ascending, the i-th of m p-values becomes ``max_{j ≤ i} min(1, (m − j + 1)·p_(j))``;
    a comparison is significant at level α for the family when its adjusted p is at most α
    (Holm 1979, strong control of the family-wise error). The family is every name passed,
    fixed before the results are read: a comparison that could not be made (NaN p) still
    counts in m, ranked last, and its adjusted p is NaN.
    """
    order = sorted(pvalues, key=lambda k: (not math.isfinite(pvalues[k]), pvalues[k]))
    m = len(order)
    adjusted, running = {}, 0.0
    for rank, name in enumerate(order):
        p = pvalues[name]
        if not math.isfinite(p):
            adjusted[name] = math.nan
            continue
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[name] = running
    return {name: adjusted[name] for name in pvalues}


def compare_by_seed(
    a: dict[int, float], b: dict[int, float], level: float = 0.95
) -> dict[str, float | dict]:
    """Two groups' values keyed by seed, compared both ways: :func:`welch_difference` of the
    groups, with ``"paired"`` holding :func:`paired_difference` over the seeds both have (for
    groups whose runs of a seed share its randomness up to where they differ)."""
    shared = sorted(set(a) & set(b))
    test = welch_difference(list(a.values()), list(b.values()), level)
    test["paired"] = paired_difference([a[s] for s in shared], [b[s] for s in shared], level)
    return test


def holm_family(tests: dict[str, dict]) -> None:
    """Add ``holm_p`` to each of a family's :func:`compare_by_seed` results, in place: Holm
    over the family's Welch p-values, and separately over its paired p-values (under
    ``"paired"``)."""
    for pick in (lambda t: t, lambda t: t["paired"]):
        adjusted = holm({name: pick(t)["p"] for name, t in tests.items()})
        for name, t in tests.items():
            pick(t)["holm_p"] = adjusted[name]


def family_table(
    tests: dict[str, dict],
    comparisons: list[str],
    measures: dict[str, str],
    paired: bool,
    number: str = "+.3g",
) -> list[str]:
    """Markdown rows of a family of :func:`compare_by_seed` results named ``"<measure>:
    <comparison>"``: per measure (key → label) the difference [95% CI] (each in the format
    ``number``), p and Holm p, Welch's or (``paired``) the paired ones."""
    lines = [
        "| comparison | "
        + " | ".join(f"{label}: difference [95% CI] | p | Holm p" for label in measures.values())
        + " |",
        "|---|" + "---|---|---|" * len(measures),
    ]
    for name in comparisons:
        cells = []
        for key in measures:
            t = tests[f"{key}: {name}"]
            t = t["paired"] if paired else t
            cells += [f"{t['mean']:{number}} [{t['low']:{number}}, {t['high']:{number}}]"]
            cells += [fmt_p(t["p"]), fmt_p(t["holm_p"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


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


def fmt_p(p: float) -> str:
    """A p-value for a table: three decimals, ``<0.001`` below, ``—`` when there is none."""
    if not math.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


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


# --- provenance of a grid's runs --------------------------------------------------------------

DIRTY = "+dirty"
"""Suffix of ``resolved.git_commit`` in a run's ``config.json`` when the tree had uncommitted
changes (``agents/run.py``)."""


def run_provenance(config: dict) -> dict:
    """What code a run came from, from its ``config.json``: ``{"recorded": [...], "commits":
    [...], "dirty": bool, "resumes": [{"step", "commit", "buffer"}]}``. ``recorded``: the
    ``git_commit`` of its start, then of each resume, as written (``"unknown"`` where none
    was); ``commits``: those without ``+dirty``, each once. ``buffer`` says how a resume's
    replay buffer came back: ``"saved"``, ``"refilled (N steps)"`` by the current policy, or
    ``"unknown"`` for resumes recorded before the agents wrote it (7 Dec 2026)."""
    starts = [config.get("resolved", {})] + [
        r.get("resolved", {}) for r in config.get("resumes", [])
    ]
    recorded = [start.get("git_commit") or "unknown" for start in starts]
    resumes = []
    for record, commit in zip(config.get("resumes", []), recorded[1:], strict=True):
        buffer = record.get("buffer", "unknown")
        if buffer == "refilled" and "refill_steps" in record:
            buffer = f"refilled ({record['refill_steps']:,} steps)"
        resumes.append({"step": record.get("step"), "commit": commit, "buffer": buffer})
    commits = list(dict.fromkeys(c.removesuffix(DIRTY) for c in recorded))
    return {
        "recorded": recorded,
        "commits": commits,
        "dirty": any(c.endswith(DIRTY) for c in recorded),
        "resumes": resumes,
    }


def provenance_problem(runs: dict[str, dict]) -> str | None:
    """What keeps the runs (name → :func:`run_provenance`) from being one grid of one clean
    commit, as a clause ("the 12 runs of this grid come from 3 commits, …"); None when they
    are. A run resumed on another commit counts under both."""
    commits = {c for p in runs.values() for c in p["commits"]}
    dirty = [name for name, p in runs.items() if p["dirty"]]
    unknown = "unknown" in commits
    if len(commits) == 1 and not dirty and not unknown:
        return None
    parts = []
    if len(commits) > 1:
        parts.append(f"come from {len(commits)} commits")
    if dirty:
        parts.append(f"{len(dirty)} ran on a tree with uncommitted changes")
    if unknown:
        parts.append("some recorded no commit")
    if len(commits) > 1:  # "the 12 runs of this grid come from 3 commits, 2 ran on …"
        return f"the {len(runs)} runs of this grid {', '.join(parts)}"
    return f"of the {len(runs)} runs of this grid, {', '.join(parts)}"


def runs_by_commit(runs: dict[str, dict]) -> dict[str, list[str]]:
    """Commit as recorded (``+dirty`` kept) → the runs (names, sorted) that ran on it, the
    commits with the most runs first."""
    grouped: dict[str, list[str]] = {}
    for name in sorted(runs):
        for commit in dict.fromkeys(runs[name]["recorded"]):
            grouped.setdefault(commit, []).append(name)
    return dict(sorted(grouped.items(), key=lambda item: -len(item[1])))
