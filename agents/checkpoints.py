"""What a checkpoint holds, and putting it back: networks, method handles, RNGs, task clock.

A checkpoint (``runs/<run>/checkpoints/step_<N>.pt``, written by :class:`agents.run.Run`) is a
dict with ``agent`` and ``step``, each network's ``state_dict`` under the network's own name
(SAC ``actor``, ``critic``, ``critic_target``; DQN ``q``, ``q_target``; PPO ``actor``,
``critic``), ``plasticity`` (each network's :class:`plasticity.MethodHandle` state: optimizer,
schedules, counters), ``rng`` (Python, NumPy, torch and CUDA generators), ``task_cycle`` (the
switch clocks of a cycling env and the task period reached) and, with ``--save-buffer``,
``buffer``; agents add their own extras (SAC's temperature). Checkpoints written before this
layout (DQN's ``q_network``, ``<name>_plasticity`` keys, a list of clock ticks) are upgraded
when read.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.cli import CommonArgs, OffPolicyArgs, UserError, refill_steps, user_errors
from agents.environments import cycle_states, restore_cycles
from agents.episodes import EpisodeTracker
from agents.replay import LearningGate, ReplayBuffer
from agents.run import Run
from plasticity import AdamO, MethodHandle

# keys of checkpoints from before one name per network: old name -> new name
RENAMED = {"q_network": "q", "target_network": "q_target"}


def rng_state() -> dict:
    """The generators' states as tensors and plain values (``weights_only`` loads them):
    NumPy's key array as a list of ints."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, keys.tolist(), position, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Put back :func:`rng_state` (older checkpoints hold NumPy's keys as an array)."""
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state(
        (name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian)
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_state(
    networks: dict[str, nn.Module],
    handles: dict[str, MethodHandle],
    envs: gym.vector.VectorEnv,
    task_period: int,
    buffer: ReplayBuffer | None = None,
    gate: LearningGate | None = None,
) -> dict:
    """What :func:`restore_checkpoint` reads: networks and method handles by name, RNGs, the
    task cycle's clocks and ``task_period`` (the period the training loop has reached), the
    replay buffer when given, and an off-policy agent's :class:`LearningGate`."""
    state = {name: network.state_dict() for name, network in networks.items()}
    state["plasticity"] = {name: handle.state_dict() for name, handle in handles.items()}
    state["rng"] = rng_state()
    clocks = cycle_states(envs)
    if clocks is not None:
        state["task_cycle"] = {"copies": clocks, "period": task_period}
    if buffer is not None:
        state["buffer"] = buffer.state_dict()
    if gate is not None:
        state["learning_gate"] = {"opens_at": gate.opens_at}
    return state


def learning_gate(args: OffPolicyArgs, handles, state: dict | None = None) -> LearningGate:
    """The off-policy agent's :class:`LearningGate`: ``--learning-starts`` for a new run; for a
    resumed one the gate it had (a pause under way included), or, without the saved buffer, a
    refill of ``--refill-steps`` (default ``--learning-starts``) first. The refill's steps count
    toward ``--total-timesteps``: a resume whose refill would leave no update is a UserError
    (one that only finishes a run stopped in its final evaluation needs no update)."""
    if state is None:
        return LearningGate(args.learning_starts, handles)
    step = state["step"]
    if args.branch_from:  # the branch's interventions due at its first step are not skipped
        opens_at = state.get("learning_gate", {}).get("opens_at", args.learning_starts)
        return LearningGate(opens_at, handles, step - 1)
    if "buffer" not in state:
        refill = refill_steps(args)
        if step < args.total_timesteps <= step + refill:
            raise UserError(
                f"--resume {args.resume}: the checkpoint at step {step:,} holds no replay "
                f"buffer, and refilling it ({refill:,} steps) would use up --total-timesteps "
                f"{args.total_timesteps:,} before any update: raise --total-timesteps, lower "
                "--refill-steps, or keep the buffer in checkpoints with --save-buffer"
            )
        gate = LearningGate(args.learning_starts, handles, step)
        gate.pause(step, refill)
        return gate
    opens_at = state.get("learning_gate", {}).get("opens_at", args.learning_starts)
    return LearningGate(opens_at, handles, step)


@contextmanager
def hyperparameters_kept(optimizer: torch.optim.Optimizer):
    """Around loading an optimizer's saved state: keep the hyperparameters it was built with
    (learning rate, betas, eps, …), so a resumed run's flags win over the checkpoint's."""
    settings = [
        {k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups
    ]
    yield
    for group, setting in zip(optimizer.param_groups, settings, strict=True):
        group.update(setting)


def load_optimizer(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load an optimizer's saved moments and steps; its hyperparameters stay this run's."""
    with hyperparameters_kept(optimizer):
        optimizer.load_state_dict(state)


def upgrade(state: dict, handle_names) -> dict:
    """A checkpoint from before one name per network, in today's layout (others unchanged)."""
    state = {RENAMED.get(key, key): value for key, value in state.items()}
    if "plasticity" not in state:
        state["plasticity"] = {name: state.pop(f"{name}_plasticity") for name in handle_names}
    clock = state.get("task_cycle")
    if clock is not None and "ticks" in clock:
        state["task_cycle"] = {
            "copies": [{"ticks": ticks} for ticks in clock["ticks"]],
            "period": clock["period"],
        }
    return state


def load_networks(state: dict, networks: dict[str, nn.Module], origin: str) -> None:
    """Load ``state[name]`` into each network; a missing or misfitting one is a UserError."""
    for name, network in networks.items():
        try:
            network.load_state_dict(state[name])
        except (KeyError, RuntimeError) as err:
            first = str(err).splitlines()[0]
            raise UserError(
                f"{origin}: the checkpoint does not fit this {name} ({first}); "
                "use the same env and network settings"
            ) from None


def carry_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict, network: nn.Module) -> str:
    """Carry another method's saved optimizer state into ``optimizer``; its hyperparameters
    stay this run's. When it is the same kind (the same parameter groups, of the same sizes,
    with the same settings' names: Adam into Adam, AdamO into AdamO) the whole state is loaded
    (``"carried"``); Adam's moments go into AdamO parameter by parameter (``"moments"``, see
    :func:`carry_adam_moments`); otherwise the optimizer starts afresh (``"fresh"``)."""
    groups, saved_groups = optimizer.param_groups, saved["param_groups"]
    same_kind = len(groups) == len(saved_groups) and all(
        len(group["params"]) == len(saved_group["params"]) and group.keys() == saved_group.keys()
        for group, saved_group in zip(groups, saved_groups, strict=False)
    )
    if same_kind:
        load_optimizer(optimizer, saved)
        return "carried"
    return "moments" if carry_adam_moments(optimizer, saved, network) else "fresh"


ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")


@torch.no_grad()
def carry_adam_moments(optimizer: torch.optim.Optimizer, saved: dict, network: nn.Module) -> bool:
    """Adam's saved moments and steps into an :class:`plasticity.AdamO` whose parameter groups
    differ (it keeps heads and biases out of the isometry step), matched by parameter.

    AdamO's state is Adam's plus its isometry window, so a branch that adds AdamO to a parent
    trained with Adam continues Adam's moments, as a branch to FIRE (which keeps them) does;
    without this it would restart with fresh moments, and the comparison would mix the two.
    The saved state must be a plain Adam's: one group over ``network.parameters()`` in order,
    shapes matching. Whether it was carried."""
    params = list(network.parameters())
    saved_groups = saved["param_groups"]
    if not isinstance(optimizer, AdamO) or len(saved_groups) != 1:
        return False
    saved_ids = saved_groups[0]["params"]
    if len(saved_ids) != len(params):
        return False
    states = [saved["state"].get(i) for i in saved_ids]
    if any(
        state is not None and (set(ADAM_STATE) - state.keys() or state["exp_avg"].shape != p.shape)
        for state, p in zip(states, params, strict=True)
    ):
        return False
    by_param = dict(zip(params, states, strict=True))
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = by_param.get(p)
            if state is None:
                continue
            step_device = p.device if group["fused"] else "cpu"  # where AdamO keeps its step
            optimizer.state[p] = {
                "step": torch.as_tensor(state["step"], dtype=torch.float32).to(step_device),
                "exp_avg": state["exp_avg"].to(p).clone(),
                "exp_avg_sq": state["exp_avg_sq"].to(p).clone(),
            }
    return True


def restore_checkpoint(
    run: Run,
    args: CommonArgs,
    device: torch.device,
    networks: dict[str, nn.Module],
    handles: dict[str, MethodHandle],
    envs: gym.vector.VectorEnv,
    tracker: EpisodeTracker,
    buffer: ReplayBuffer | None = None,
    total_steps: int | None = None,
) -> dict:
    """Load the checkpoint a run starts from into networks, method handles and buffer: a
    resumed run's latest, or a branch's parent's (``--branch-from``).

    Also restores the random number generators, the task cycle's clocks and the tracker's
    task period, so the run stays on its task and switches where the uninterrupted one would
    (call it before the first ``envs.reset``). A resume restores the method handles whole; a
    branch, whose method is its own, takes the parent's optimizer state where the optimizer is
    the same kind (:func:`carry_optimizer_state`), starts its schedules so that what is due at
    the branch step runs at the first update after it, and needs the parent's replay buffer.
    A mismatch (other networks, another ``--method`` on a resume, a branch without a buffer) or
    a run already at ``total_steps`` (default ``--total-timesteps``) is a UserError. Returns the
    checkpoint, for the agent's own extras and ``state["step"]``.
    """
    with user_errors(run.origin):
        try:
            state = upgrade(run.load_checkpoint(device), handles)
            load_networks(state, networks, run.origin)
            for name, handle in handles.items():
                saved = state["plasticity"][name]
                if run.branch is None:
                    with hyperparameters_kept(handle.optimizer):
                        handle.load_state_dict(saved)
                    continue
                run.branch.setdefault("optimizer", {})[name] = carry_optimizer_state(
                    handle.optimizer, saved["optimizer"], handle.network
                )
                handle.start(state["step"] - 1)
            if buffer is not None and "buffer" in state:
                buffer.load_state_dict(state["buffer"])
                run.record_start(buffer="saved")
            elif buffer is not None and run.branch is not None:
                raise UserError(
                    f"{run.origin}: that checkpoint holds no replay buffer, and every branch "
                    "must start from the same data: train the parent with --save-buffer"
                )
            elif buffer is not None:  # an analysis must know: the data came from a new policy
                run.record_start(buffer="refilled", refill_steps=refill_steps(args))
            set_rng_state(state["rng"])
        except KeyError as err:
            raise ValueError(f"the checkpoint lacks {err}; it is not from this agent") from None
    if "task_cycle" in state:
        restore_cycles(envs, state["task_cycle"]["copies"], run.origin)
        tracker.period = state["task_cycle"]["period"]
    limit = args.total_timesteps if total_steps is None else total_steps
    if state["step"] >= limit and (run.branch is not None or run.finished()):
        raise UserError(
            f"{run.origin}: the run is already at step {state['step']} (--total-timesteps "
            f"{limit}); raise --total-timesteps to train on"
        )
    return state  # a resume at the limit but unfinished (stopped in its final evaluation)
