"""When something periodic is due: one small object for every cadence of a training loop.

Training loops advance their step counter by more than one at a time (``num_envs`` per vector
step, a whole rollout per PPO iteration), so ``step % period == 0`` can be stepped over.
:class:`Every` instead remembers which multiple of its period it last fired at and fires once
each time the counter has crossed a new multiple, however far it jumped::

    checkpoints = Every(50_000, start=global_step)   # a resumed run does not catch up
    ...
    if checkpoints.due(global_step):
        save()

:class:`At` is its one-off counterpart: due once at each of a list of steps (FIRE once at a
task boundary or a run's midpoint, ``fire_at``). They serve the plasticity methods'
interventions (``fire_every``, ``fire_at``, ``reset_every``, …), the agents' metrics,
evaluation and checkpoint cadences, and the Stable-Baselines3 callback, so the crossing rule
lives here alone. Their positions are part of a checkpoint (``state_dict``).
"""

from __future__ import annotations

import bisect
import numbers
from collections.abc import Iterable


class Every:
    """Due once each time the step counter crosses a multiple of ``period`` (0: never due).

    ``start``: the step the counter starts from; multiples at or before it are not due (a
    resumed run, or a callback attached to a model that trained before, does not catch up).
    """

    def __init__(self, period: int, start: int = 0):
        if period < 0:
            raise ValueError(f"a period must be 0 (never) or a positive step count, got {period}")
        self.period = int(period)
        self.last = self._index(start)

    def _index(self, step: int) -> int:
        return step // self.period if self.period else 0

    def crossings(self, step: int) -> int:
        """How many multiples of the period the counter crossed since the last call (or the
        start), up to ``step``; consumes them."""
        if not self.period:
            return 0
        index = self._index(step)
        count = max(0, index - self.last)
        self.last = max(self.last, index)
        return count

    def due(self, step: int) -> bool:
        """Whether ``step`` crossed a multiple not crossed before; consumes it."""
        return self.crossings(step) > 0

    def skip_to(self, step: int) -> None:
        """Consume every multiple up to ``step`` without firing."""
        self.last = max(self.last, self._index(step))

    def state_dict(self) -> dict:
        return {"period": self.period, "last": self.last}

    def load_state_dict(self, state: dict) -> None:
        """Restore the position; a checkpoint saved with another period is re-expressed in
        this one (the step it had reached is what counts)."""
        reached = state["last"] * state["period"]
        self.last = self._index(reached)

    def __repr__(self) -> str:
        return f"Every({self.period}, last={self.last})"


def _is_positive_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


class At:
    """Due once each time the step counter reaches one of the listed ``steps`` (none: never).

    The one-off counterpart of :class:`Every`, with the same interface: FIRE applied once at a
    data boundary or a run's midpoint, as in its paper (arXiv 2602.08040: SAC at update 500k
    of 1M, DQN at step 1.25M of 2.5M). A listed step counts as reached when the counter is at
    or past it, however far it jumped; steps at or before ``start`` are not due (no catch-up).
    """

    def __init__(self, steps: Iterable[int] = (), start: int = 0):
        steps = list(steps)
        bad = [s for s in steps if not _is_positive_int(s)]
        if bad:
            raise ValueError(f"steps must be positive integers, got {bad[0]!r} in {steps}")
        self.steps = sorted({int(s) for s in steps})
        self.reached = int(start)

    def crossings(self, step: int) -> int:
        """How many listed steps the counter reached since the last call (or the start), up to
        ``step``; consumes them."""
        count = bisect.bisect_right(self.steps, step) - bisect.bisect_right(
            self.steps, self.reached
        )
        self.reached = max(self.reached, step)
        return max(0, count)

    def due(self, step: int) -> bool:
        """Whether ``step`` reached a listed step not reached before; consumes it."""
        return self.crossings(step) > 0

    def skip_to(self, step: int) -> None:
        """Consume every listed step up to ``step`` without firing."""
        self.reached = max(self.reached, step)

    def state_dict(self) -> dict:
        return {"steps": list(self.steps), "reached": self.reached}

    def load_state_dict(self, state: dict) -> None:
        """Restore the position; the step reached is what counts, so a run resumed with another
        list fires at the listed steps it has not reached yet."""
        self.reached = int(state["reached"])

    def __repr__(self) -> str:
        return f"At({self.steps}, reached={self.reached})"
