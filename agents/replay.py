"""The replay buffer of the off-policy agents (SAC, DQN), kept on the training device."""

from __future__ import annotations

import numpy as np
import torch

FIELDS = ("obs", "next_obs", "actions", "rewards", "terminations")


class ReplayBuffer:
    """A ring buffer of transitions kept on the training device; sampling stays there.

    ``add`` takes one vector-env step (``(num_envs, ...)`` arrays) and a mask of the copies
    whose transition is real: with next-step autoreset the step after an episode's end only
    resets, and must not be stored.
    """

    def __init__(self, capacity: int, obs_shape, obs_dtype, action_shape, action_dtype, device):
        self.capacity, self.device = capacity, device
        # empty, not zeros: only the first `size` rows are ever read, and zero-filling a
        # million humanoid transitions costs seconds and touches gigabytes up front
        self.obs = torch.empty((capacity, *obs_shape), dtype=obs_dtype, device=device)
        self.next_obs = torch.empty_like(self.obs)
        self.actions = torch.empty((capacity, *action_shape), dtype=action_dtype, device=device)
        self.rewards = torch.empty(capacity, dtype=torch.float32, device=device)
        self.terminations = torch.empty(capacity, dtype=torch.float32, device=device)
        self.position = 0
        self.size = 0

    def add(self, obs, next_obs, actions, rewards, terminations, valid) -> None:
        keep = np.flatnonzero(valid)
        if keep.size == 0:
            return
        idx = (self.position + np.arange(keep.size)) % self.capacity
        idx_t = torch.as_tensor(idx, device=self.device)
        for store, values in (
            (self.obs, obs),
            (self.next_obs, next_obs),
            (self.actions, actions),
            (self.rewards, rewards),
            (self.terminations, terminations),
        ):
            store[idx_t] = torch.as_tensor(values[keep], device=self.device).to(store.dtype)
        self.position = int((self.position + keep.size) % self.capacity)
        self.size = min(self.size + keep.size, self.capacity)

    def sample(self, batch_size: int):
        idx = torch.randint(0, self.size, (batch_size,), device=self.device)
        return (
            self.obs[idx],
            self.actions[idx],
            self.rewards[idx],
            self.next_obs[idx],
            self.terminations[idx],
        )

    def state_dict(self) -> dict:
        """The filled transitions and the write position. Copies: ``torch.save`` of a slice
        would write the slice's whole storage, i.e. the entire allocated buffer."""
        n = self.size
        return {
            "position": self.position,
            "size": n,
            **{k: getattr(self, k)[:n].to("cpu", copy=True) for k in FIELDS},
        }

    def load_state_dict(self, state: dict) -> None:
        n = state["size"]
        for key in FIELDS:
            getattr(self, key)[:n] = state[key].to(self.device)
        self.position, self.size = state["position"], n
