"""Single-file agents (CleanRL style): ``agents.sac``, ``agents.ppo``; run through ``train.py``."""

AGENTS = ("sac", "ppo")
