"""The replay buffer: direct and staged (one packed copy per step) writes, sampling, saving."""

import numpy as np
import pytest
import torch

from agents.replay import ReplayBuffer


@pytest.mark.parametrize(
    "obs_shape, obs_dtype, np_obs, action_shape, action_dtype, np_action",
    [
        ((4, 10, 10), torch.uint8, np.uint8, (), torch.long, np.int64),  # MinAtar / DQN
        ((17,), torch.float32, np.float64, (6,), torch.float32, np.float32),  # SAC
    ],
)
def test_staged_writes_store_what_direct_writes_store(
    obs_shape, obs_dtype, np_obs, action_shape, action_dtype, np_action
):
    rng = np.random.default_rng(0)
    buffers = [
        ReplayBuffer(10, obs_shape, obs_dtype, action_shape, action_dtype, "cpu", 3, staged)
        for staged in (False, True)
    ]
    for _ in range(7):  # 7 steps of 3 copies into 10 slots: wraps around
        step = (
            rng.integers(0, 255, (3, *obs_shape)).astype(np_obs),
            rng.integers(0, 255, (3, *obs_shape)).astype(np_obs),
            rng.integers(0, 6, (3, *action_shape)).astype(np_action),
            rng.normal(size=3),
            rng.random(3) < 0.5,
        )
        valid = rng.random(3) < 0.8
        for buffer in buffers:
            buffer.add(*step, valid=valid)
    direct, staged = buffers
    assert direct.size == staged.size and direct.position == staged.position
    for name in ("obs", "next_obs", "actions", "rewards", "terminations"):
        assert torch.equal(
            getattr(direct, name)[: direct.size], getattr(staged, name)[: staged.size]
        )


def test_saving_keeps_only_the_filled_part_and_loads_back():
    buffer = ReplayBuffer(1000, (3,), torch.float32, (1,), torch.float32, "cpu")
    obs = np.arange(6, dtype=np.float32).reshape(2, 3)
    buffer.add(obs, obs + 1, np.ones((2, 1)), np.ones(2), np.zeros(2), valid=np.array([1, 1]))
    state = buffer.state_dict()
    assert state["obs"].shape == (2, 3) and state["obs"].untyped_storage().nbytes() == 24
    restored = ReplayBuffer(1000, (3,), torch.float32, (1,), torch.float32, "cpu")
    restored.load_state_dict(state)
    assert restored.size == 2 and torch.equal(restored.next_obs[:2], torch.as_tensor(obs + 1))


def test_a_saved_buffer_loads_into_another_capacity_newest_first():
    buffer = ReplayBuffer(10, (1,), torch.float32, (), torch.long, "cpu")
    for value in range(13):  # wraps: holds 3..12, the oldest (3) at position 3
        obs = np.array([[value]], np.float32)
        buffer.add(obs, obs, np.zeros(1), np.zeros(1), np.zeros(1), valid=np.array([True]))
    state = buffer.state_dict()
    assert state["obs"].ravel().tolist() == list(range(3, 13))  # oldest first
    smaller = ReplayBuffer(5, (1,), torch.float32, (), torch.long, "cpu")
    smaller.load_state_dict(state)
    assert smaller.obs.ravel().tolist() == list(range(8, 13)) and smaller.position == 0
    larger = ReplayBuffer(20, (1,), torch.float32, (), torch.long, "cpu")
    larger.load_state_dict(state)
    assert larger.size == 10 and larger.position == 10
    assert larger.obs[:10].ravel().tolist() == list(range(3, 13))
