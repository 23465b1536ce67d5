"""When something periodic is due: one small object for every cadence of a training loop.

Training loops advance their step counter by more than one at a time (``num_envs`` per vector
step, a whole rollout per PPO iteration), so ``step % period == 0`` can be stepped over.
:class:`Every` instead remembers which multiple of its period it last fired at and fires once
each time the counter has crossed a new multiple, however far it jumped::

    checkpoints = Every(50_000, start=global_step)   # a resumed run does not catch up
    ...
    if checkpoints.due(global_step):
        save()

It serves the plasticity methods' interventions (``fire_every``, ``reset_every``, …), the
agents' metrics, evaluation and checkpoint cadences, and the Stable-Baselines3 callback, so the
crossing rule lives here alone. Its position is part of a checkpoint (:meth:`state_dict`).
"""

from __future__ import annotations


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
