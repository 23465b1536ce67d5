"""Aggregate a sweep into a report: final returns with confidence intervals, curves, figures.

    python report.py runs/<sweep_name>

reads the run folders of a sweep (``sweep.json`` when there is one, each run's
``config.json``, ``summary.json`` and ``scalars.jsonl``; no Ray needed) and writes
``report.md``, ``report.json`` and PNG figures into that folder (``--out`` elsewhere):

- final evaluation return per env and method: mean, median, IQM (interquartile mean) with 95%
  stratified-bootstrap confidence intervals, performance profiles and the probability of
  improvement of each method over ``--baseline`` (default ``none`` when the sweep ran it; a
  method it did not run is refused). The statistics are those
  of Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice" (arXiv
  2108.13264), computed by their library ``rliable``. rliable draws its bootstrap resamples
  from numpy's global random generator: each estimate here seeds it with ``--seed`` first, so
  any number in the report is reproduced by seeding numpy and calling rliable on that one
  score matrix;
- learning curves: evaluation return against env steps, IQM and 95% CI band per method;
- task cycles and perturbed envs: mean training return in each task period, and first against
  later visits of each task (does the k-th visit learn as fast as the first?); in a perturbation
  stream (``--permute-observations``, ``--permute-actions``, ``--redraw-friction``, read from
  the runs' ``config.json``) every period after the first is a new permutation (or friction),
  labelled ``permutation k``, and compared with the first period;
- plasticity metrics against env steps per method (dormant ratio, effective rank, DfI, weight
  norm) with the interventions marked;
- compute: wall time and steps/s of every run.

A partly finished sweep works: the statistics use the finished runs, and the report and
stderr name every run left out and why (not started, no summary yet, interrupted, a file that
cannot be read) and the data left out of the finished ones (lines of ``scalars.jsonl`` cut
short, NaN evaluations, a missing final return). Runs are grouped by env and method (and agent,
when the sweep has several).

Exit code 2, with one line on stderr and nothing written: a missing sweep folder, an unreadable
``sweep.json``, an ``--out`` folder that cannot be written. Exit code 2 after the report is
written: a run's ``config.json``, ``summary.json`` or ``scalars.jsonl`` could not be read (the
run is left out; the line says how to repair it).

Modules: :mod:`~experiments.report.load` (the sweep and its runs, through
:mod:`experiments.runs`), :mod:`~experiments.report.stats` (rliable's estimates, task periods,
metric curves), :mod:`~experiments.report.figures`, :mod:`~experiments.report.markdown` and
:mod:`~experiments.report.cli` (``python report.py``).
"""
