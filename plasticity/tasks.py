"""How a nonstationary environment tells a training loop about its tasks: the ``info`` keys.

A method's ``on_task_switch`` must run when the data changes. Environments announce their task
in the ``info`` dict of every ``step`` and ``reset`` under the keys below; this module is the
one place they are spelled. ``envs.nonstationary`` writes them (and ``envs`` re-exports them);
our agents and :class:`plasticity.sb3.PlasticityCallback` read them. Any other environment can
take part by reporting :data:`TASK_PERIOD`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

TASK_ID = "task_id"
"""index of the current task in the cycle's list"""
TASK_NAME = "task_name"
"""name of the current task"""
TASK_PERIOD = "task_period"
"""how many task switches happened so far (grows by one at each switch, never resets)"""
TASK_SWITCHED = "task_switched"
"""True only in the ``reset`` info that begins a new period"""
TASK_RETURN = "task_return"
"""on the step that ends an episode: its return on the task (a game's raw score for Atari)"""


def task_period(infos: Mapping | Sequence[Mapping]) -> int | None:
    """The largest task period reported in ``infos``; None when no environment reports one.

    ``infos`` is a gymnasium vector env's info dict (arrays with ``_<key>`` masks) or a
    sequence of per-environment info dicts (a Stable-Baselines3 ``VecEnv``). Copies of a vector
    env apply a switch at their own episode boundaries; the largest period says the switch has
    begun.
    """
    if isinstance(infos, Mapping):
        if TASK_PERIOD not in infos:
            return None
        periods = np.asarray(infos[TASK_PERIOD])
        reported = np.asarray(infos.get("_" + TASK_PERIOD, np.ones(periods.shape, bool)))
        return int(periods[reported].max()) if reported.any() else None
    periods = [info[TASK_PERIOD] for info in infos if TASK_PERIOD in info]
    return int(max(periods)) if periods else None
