"""Training episodes and task switches, read from a vector env's ``infos``."""

from __future__ import annotations

import math

import numpy as np

from plasticity.tasks import TASK_ID, TASK_NAME, TASK_RETURN, task_period


def mean_or_nan(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


class EpisodeTracker:
    """Episode returns (overall and per task) and the task period, from vector-env ``infos``.

    :meth:`update` returns the rows to log; the caller logs them.
    """

    def __init__(self):
        self.recent: list[float] = []
        self.period = 0

    def update(self, infos: dict) -> tuple[list[dict[str, float]], bool]:
        """Rows for the episodes that ended (one each) and a task switch; whether one began.

        A cycle reports ``task_return`` (the game score for Atari), other envs the
        ``episode`` statistics of ``RecordEpisodeStatistics``.
        """
        if TASK_RETURN in infos:
            done, returns = infos["_" + TASK_RETURN], infos[TASK_RETURN]
        elif "episode" in infos:
            done, returns = infos["_episode"], infos["episode"]["r"]
        else:
            done, returns = np.zeros(0, bool), np.zeros(0)
        rows = []
        for i in np.flatnonzero(done):
            value = float(returns[i])
            self.recent = [*self.recent[-19:], value]
            row = {"charts/episodic_return": value}
            if TASK_NAME in infos:
                row[f"charts/episodic_return/{infos[TASK_NAME][i]}"] = value
            rows.append(row)
        period = task_period(infos)
        if period is None or period <= self.period:
            return rows, False
        self.period = period
        rows.append(
            {"charts/task_id": float(np.max(infos[TASK_ID])), "charts/task_period": float(period)}
        )
        return rows, True

    @property
    def mean_return(self) -> float:
        """Mean return of the last 20 training episodes (NaN before the first one ends)."""
        return mean_or_nan(self.recent)
