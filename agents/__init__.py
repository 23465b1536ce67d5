"""Single-file agents (CleanRL style): ``agents.sac``, ``agents.dqn``, ``agents.ppo``.

Run them through ``train.py --agent NAME`` or as ``python -m agents.NAME``.
"""

AGENTS = ("sac", "dqn", "ppo")
