"""The replay buffer of the off-policy agents (SAC, DQN), kept on the training device."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

FIELDS = ("obs", "next_obs", "actions", "rewards", "terminations")
STAGING_SLOTS = 4
"""host staging rows in flight: a slot is written again only after its copy has finished"""


class Transitions(NamedTuple):
    """A sampled minibatch, one row per transition; in the order the agents' updates take it."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminations: torch.Tensor


class ReplayBuffer:
    """A ring buffer of transitions kept on the training device; sampling stays there.

    ``add`` takes one vector-env step (``(num_envs, ...)`` arrays) and a mask of the copies
    whose transition is real: with next-step autoreset the step after an episode's end only
    resets, and must not be stored.

    On a GPU (``staged``, the default there) a step's fields are packed as bytes into one
    pinned host row per copy (``max_rows``: the number of env copies) and reach the device in
    **one** asynchronous copy, then are unpacked into the stores by device ops: no host round
    trip and no per-field transfer per step. On the CPU the fields are written straight into
    the stores.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape,
        obs_dtype,
        action_shape,
        action_dtype,
        device,
        max_rows: int = 1,
        staged: bool | None = None,
    ):
        self.capacity, self.device = capacity, torch.device(device)
        # empty, not zeros: only the first `size` rows are ever read, and zero-filling a
        # million humanoid transitions costs seconds and touches gigabytes up front
        self.obs = torch.empty((capacity, *obs_shape), dtype=obs_dtype, device=device)
        self.next_obs = torch.empty_like(self.obs)
        self.actions = torch.empty((capacity, *action_shape), dtype=action_dtype, device=device)
        self.rewards = torch.empty(capacity, dtype=torch.float32, device=device)
        self.terminations = torch.empty(capacity, dtype=torch.float32, device=device)
        self.position = 0
        self.size = 0
        self.staged = self.device.type == "cuda" if staged is None else staged
        if self.staged:
            self._make_staging(max_rows)

    def _make_staging(self, max_rows: int) -> None:
        """Byte layout of one transition (each field 8-byte aligned, so that its bytes can be
        viewed as its dtype) and the host and device staging rows."""
        self.layout = []
        offset = 0
        for name in FIELDS:
            store = getattr(self, name)
            nbytes = store[0].numel() * store.element_size()
            self.layout.append((name, offset, nbytes))
            offset += -(-nbytes // 8) * 8
        pin = self.device.type == "cuda"
        self.host_rows = [
            torch.empty((max_rows, offset), dtype=torch.uint8, pin_memory=pin)
            for _ in range(STAGING_SLOTS)
        ]
        self.device_rows = torch.empty((max_rows, offset), dtype=torch.uint8, device=self.device)
        # CUDA events: when each slot's copy finished (None: the slot was never used)
        self.copied = [torch.cuda.Event() if pin else None for _ in range(STAGING_SLOTS)]
        self.used = [False] * STAGING_SLOTS
        self.slot = 0

    def add(self, obs, next_obs, actions, rewards, terminations, valid) -> None:
        keep = np.flatnonzero(valid)
        if keep.size == 0:
            return
        values = dict(zip(FIELDS, (obs, next_obs, actions, rewards, terminations), strict=True))
        idx = (self.position + torch.arange(keep.size, device=self.device)) % self.capacity
        if self.staged:
            self._add_staged(values, keep, idx)
        else:
            for name, field in values.items():
                store = getattr(self, name)
                store[idx] = torch.as_tensor(field[keep], device=self.device).to(store.dtype)
        self.position = int((self.position + keep.size) % self.capacity)
        self.size = min(self.size + keep.size, self.capacity)

    def _add_staged(self, values: dict, keep: np.ndarray, idx: torch.Tensor) -> None:
        n = keep.size
        host, event = self.host_rows[self.slot], self.copied[self.slot]
        if event is not None and self.used[self.slot]:
            event.synchronize()  # the slot's previous copy has finished: safe to overwrite
        rows = host.numpy()
        for name, offset, nbytes in self.layout:
            store = getattr(self, name)
            dtype = torch.empty((), dtype=store.dtype).numpy().dtype
            field = np.ascontiguousarray(values[name][keep], dtype=dtype)
            rows[:n, offset : offset + nbytes] = field.reshape(n, -1).view(np.uint8)
        device_rows = self.device_rows[:n]
        device_rows.copy_(host[:n], non_blocking=True)
        if event is not None:
            event.record()
        self.used[self.slot] = True
        self.slot = (self.slot + 1) % STAGING_SLOTS
        for name, offset, nbytes in self.layout:
            store = getattr(self, name)
            packed = device_rows[:, offset : offset + nbytes].view(store.dtype)
            store[idx] = packed.reshape(n, *store.shape[1:])

    def clear(self) -> None:
        """Forget every transition (the storage stays allocated)."""
        self.position = self.size = 0

    def sample(self, batch_size: int) -> Transitions:
        idx = torch.randint(0, self.size, (batch_size,), device=self.device)
        return Transitions(
            self.obs[idx],
            self.actions[idx],
            self.rewards[idx],
            self.next_obs[idx],
            self.terminations[idx],
        )

    def state_dict(self) -> dict:
        """The filled transitions, oldest first (copies: ``torch.save`` of a slice would write
        the slice's whole storage, i.e. the entire allocated buffer)."""
        first = self.position if self.size == self.capacity else 0
        order = (first + torch.arange(self.size, device=self.device)) % self.capacity
        return {"size": self.size, **{k: getattr(self, k)[order].cpu() for k in FIELDS}}

    def load_state_dict(self, state: dict) -> None:
        """Take the saved transitions, the newest ``capacity`` of them when this buffer is
        smaller than the saved one (another ``--buffer-size``)."""
        n = min(state["size"], self.capacity)
        for key in FIELDS:
            getattr(self, key)[:n] = state[key][state["size"] - n :].to(self.device)
        if "position" in state and state["size"] == self.capacity:  # saved unordered: keep it
            self.position, self.size = int(state["position"]), n
        else:
            self.position, self.size = n % self.capacity, n


class LearningGate:
    """When an off-policy agent updates: from ``opens_at`` on (its ``--learning-starts``), and
    again after a pause: a resume without the replay buffer refills it first, and a buffer
    emptied at a task switch (``--clear-buffer-on-switch``) takes new transitions first.

    The plasticity methods' schedules start where the updates do, so a period crossed while
    the agent waited is not made up at its first update. ``opens_at`` is part of the
    checkpoint, so a resume keeps a pause that was under way.
    """

    def __init__(self, opens_at: int, handles, step: int = 0):
        self.opens_at = opens_at
        self.handles = list(handles)
        self._start(max(opens_at, step))

    def _start(self, step: int) -> None:
        for handle in self.handles:
            handle.start(step)

    def open(self, step: int) -> bool:
        """Whether the agent updates at ``step``."""
        return step > self.opens_at

    def pause(self, step: int, steps: int) -> None:
        """No updates for the ``steps`` env steps after ``step``."""
        self.opens_at = step + steps
        self._start(self.opens_at)

    def refill_notice(self, step: int) -> str:
        """The console line of a resume that refills the buffer first."""
        return (
            f"no replay buffer in the checkpoint: refilling it with {self.opens_at - step} "
            "steps of the current policy before the updates resume (--refill-steps)"
        )
