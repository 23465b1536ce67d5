"""Single-file agents (CleanRL style): ``agents.sac``; run through ``train.py``."""

AGENTS = ("sac",)
