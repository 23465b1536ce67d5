"""benchmarks/_stats.py against independent computations: scipy.stats' t-tests, a Holm
example worked by hand, and the provenance of runs from their config.json records."""

import math

import numpy as np
import pytest
from scipy import stats

from benchmarks._stats import (
    compare_by_seed,
    fmt_p,
    holm,
    holm_family,
    paired_difference,
    provenance_problem,
    run_provenance,
    runs_by_commit,
    welch_difference,
)

A = [12.1, 14.3, 9.8, 15.2, 11.7]
B = [8.4, 10.9, 7.7, 13.0, 9.1, 6.5, 10.2]


def test_welch_difference_matches_scipy():
    result = welch_difference(A, B)
    reference = stats.ttest_ind(A, B, equal_var=False)
    assert result["mean"] == pytest.approx(np.mean(A) - np.mean(B))
    assert result["t"] == pytest.approx(reference.statistic)
    assert result["p"] == pytest.approx(reference.pvalue)
    assert result["dof"] == pytest.approx(reference.df)
    low, high = reference.confidence_interval(0.95)
    assert (result["low"], result["high"]) == pytest.approx((low, high))
    assert (result["n_a"], result["n_b"]) == (5, 7)


def test_paired_difference_matches_scipy():
    b = B[:5]
    result = paired_difference(A, b)
    reference = stats.ttest_rel(A, b)
    assert result["t"] == pytest.approx(reference.statistic)
    assert result["p"] == pytest.approx(reference.pvalue)
    low, high = reference.confidence_interval(0.95)
    assert (result["low"], result["high"]) == pytest.approx((low, high))
    assert result["n"] == 5 and result["dof"] == 4
    # a pair with a missing value is left out; lengths must agree
    partial = paired_difference([*A, math.nan], [*b, 1.0])
    assert partial["n"] == 5 and partial["p"] == pytest.approx(reference.pvalue)
    with pytest.raises(ValueError):
        paired_difference(A, B)


def test_differences_without_spread_or_data():
    same = paired_difference([3.0, 4.0, 5.0], [1.0, 2.0, 3.0])  # exactly +2 on every pair
    assert same["mean"] == 2.0 and same["half"] == 0.0 and same["p"] == 0.0
    assert paired_difference([1.0, 2.0], [1.0, 2.0])["p"] == 1.0
    few = welch_difference([1.0], B)
    assert few["mean"] == pytest.approx(1.0 - np.mean(B)) and math.isnan(few["p"])
    assert math.isnan(welch_difference([], B)["mean"])


def test_holm_matches_a_worked_example():
    # m = 4, sorted 0.005 < 0.01 < 0.03 < 0.04:
    # 4·0.005 = 0.02; 3·0.01 = 0.03; 2·0.03 = 0.06; 1·0.04 = 0.04 → max(0.06, 0.04) = 0.06
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02})
    # capped at 1; a comparison that could not be made still counts in m (here m = 3)
    adjusted = holm({"x": 0.2, "y": 0.6, "missing": math.nan})
    assert adjusted["x"] == pytest.approx(0.6) and adjusted["y"] == 1.0
    assert math.isnan(adjusted["missing"])
    assert holm({"only": 0.03}) == {"only": 0.03}
    assert [fmt_p(p) for p in (0.0004, 0.0312, math.nan)] == ["<0.001", "0.031", "—"]


def config(commit, *resumes):
    return {"resolved": {"git_commit": commit}, "resumes": list(resumes)}


def test_compare_by_seed_pairs_only_the_shared_seeds_and_holm_adjusts_both_ways():
    a = dict(zip([1, 2, 3, 4, 5], A, strict=True))
    b = dict(zip([2, 3, 4, 5, 6], B[:5], strict=True))  # seeds 2-5 shared
    test = compare_by_seed(a, b)
    welch = stats.ttest_ind(A, B[:5], equal_var=False)
    assert test["p"] == pytest.approx(welch.pvalue) and test["n_a"] == test["n_b"] == 5
    paired = stats.ttest_rel(A[1:], B[:4])  # seed 2 is A[1] and B[0], …
    assert test["paired"]["n"] == 4 and test["paired"]["p"] == pytest.approx(paired.pvalue)
    other = compare_by_seed(b, a)
    family = {"a − b": test, "b − a": other}
    holm_family(family)
    # two tests of equal p: each adjusted to twice its p, Welch's and the paired ones apart
    assert test["holm_p"] == pytest.approx(min(1.0, 2 * welch.pvalue))
    assert test["paired"]["holm_p"] == pytest.approx(min(1.0, 2 * paired.pvalue))
    assert other["paired"]["holm_p"] == pytest.approx(test["paired"]["holm_p"])


def test_run_provenance_reads_commits_and_resumes():
    clean = run_provenance(config("aaa"))
    assert clean == {"recorded": ["aaa"], "commits": ["aaa"], "dirty": False, "resumes": []}
    resumed = run_provenance(
        config(
            "aaa+dirty",
            {"step": 40, "resolved": {"git_commit": "aaa+dirty"}},  # before buffers were recorded
            {
                "step": 90,
                "resolved": {"git_commit": "bbb"},
                "buffer": "refilled",
                "refill_steps": 1000,
            },  # fmt: skip
            {"step": 95, "resolved": {"git_commit": "bbb"}, "buffer": "saved"},
        )
    )
    assert resumed["commits"] == ["aaa", "bbb"] and resumed["dirty"]
    assert [r["buffer"] for r in resumed["resumes"]] == [
        "unknown",
        "refilled (1,000 steps)",
        "saved",
    ]
    assert [r["step"] for r in resumed["resumes"]] == [40, 90, 95]
    assert [r["commit"] for r in resumed["resumes"]] == ["aaa+dirty", "bbb", "bbb"]
    assert run_provenance({})["commits"] == ["unknown"]


def test_provenance_problem_names_what_differs():
    one = {"r1": run_provenance(config("aaa")), "r2": run_provenance(config("aaa"))}
    assert provenance_problem(one) is None
    mixed = {**one, "r3": run_provenance(config("bbb+dirty"))}
    line = provenance_problem(mixed)
    assert "3 runs" in line and "2 commits" in line and "1 ran on a tree with uncommitted" in line
    dirty_only = provenance_problem({"a": run_provenance({"resolved": {"git_commit": "c+dirty"}})})
    assert dirty_only == "of the 1 runs of this grid, 1 ran on a tree with uncommitted changes"
    assert runs_by_commit(mixed) == {"aaa": ["r1", "r2"], "bbb+dirty": ["r3"]}
    dirty = {"r1": run_provenance(config("aaa+dirty"))}
    assert "uncommitted" in provenance_problem(dirty)
    assert "no commit" in provenance_problem({"r1": run_provenance({})})
