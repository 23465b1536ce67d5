"""Experiments on top of the agents: :mod:`experiments.sweep` (a grid of ``train.py`` runs on
Ray, ``python sweep.py``), :mod:`experiments.report` (statistics and figures of a sweep,
``python report.py``), :mod:`experiments.symmetry` (permutation symmetry of trained runs,
``python -m experiments.symmetry``) and :mod:`experiments.runs` (the one reader of run folders).

Layering: ``plasticity`` (the library) imports neither ``agents`` nor ``envs`` nor this package;
``agents`` and ``envs`` never import ``experiments``.
"""
