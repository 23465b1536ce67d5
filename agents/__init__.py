"""Single-file agents (CleanRL style): ``agents.sac``, ``agents.dqn``; run through ``train.py``."""

AGENTS = ("sac", "dqn")
