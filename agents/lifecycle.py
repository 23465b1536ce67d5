"""Everything around an agent's algorithm, behind a few calls, so each agent file reads as its
algorithm::

    life = Lifecycle(args, "dqn", envs, policy, [q_plasticity], buffer=rb)
    global_step = life.start_step                  # 0, or the step of the checkpoint resumed
    while life.running(global_step):
        ...                                        # act, step the envs
        if life.episodes(global_step, infos):      # log episodes; did a task switch begin?
            life.switch_task(global_step, probe)   # off-policy: probe, on_task_switch, buffer
        if life.learning(global_step):             # off-policy: the learning gate
            ...                                    # update the networks
            life.note_nonfinite(diverged)
        if life.metrics_due(global_step):          # measured before the interventions
            life.log_metrics(global_step, scalars)
        ...                                        # the step's interventions
        life.after_step(global_step)               # scalars logged; evaluation, checkpoint
    envs.close()
    return life.finish(global_step)

It owns the run folder (:class:`agents.run.Run`), checkpoints (the registered
:class:`agents.plastic.PlasticNetwork` s, their targets and handles, the replay buffer with
``--save-buffer``, the learning gate, the agent's ``extras``) and starting from one
(``--resume``, ``--branch-from``: :func:`agents.checkpoints.restore_checkpoint`), the cadences
(``--metrics-every``, ``--eval-every``, ``--checkpoint-every``, each a
:class:`plasticity.schedule.Every`), the console (progress, evaluation lines, metric tables),
the clocks (``sps``, ``train_sps``, wall time), a clean stop on Ctrl-C or SIGTERM (the loop
ends, a checkpoint and a summary marked ``interrupted`` are written; a second Ctrl-C stops at
once), the divergence check (a NaN/Inf loss flag kept on the device, read before each
checkpoint, so the last checkpoint written is a good one), and the final checkpoint,
evaluation and ``summary.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.checkpoints import checkpoint_state, learning_gate, restore_checkpoint
from agents.cli import STOP, CommonArgs, TrainingDiverged, user_errors
from agents.console import Console
from agents.environments import evaluate, resolved_settings, video_folder
from agents.episodes import EpisodeTracker, mean_or_nan
from agents.replay import ReplayBuffer, Transitions
from agents.run import Run
from plasticity import InterventionReport, MethodHandle
from plasticity.methods import is_announced
from plasticity.metrics import kfac_eps_ranks
from plasticity.schedule import Every

if TYPE_CHECKING:
    from agents.plastic import PlasticNetwork

STEADY_AFTER = 100
"""env steps after the first update before ``train_sps`` starts counting (compilation)"""


def prefixed(network: str, metrics: dict[str, float]) -> dict[str, float]:
    """``{"dormant_ratio": …}`` of one network as ``{"<network>/dormant_ratio": …}``."""
    return {f"{network}/{key}": value for key, value in metrics.items()}


def after_intervention(scalars: dict[str, float]) -> dict[str, float]:
    """Network metrics measured after an intervention (``{"critic/dormant_ratio": …}``) under
    their own keys (``{"critic/after_intervention/dormant_ratio": …}``): the metrics of a step
    proper are measured before its interventions, so that a method that acts at every metrics
    step (ReDo's recycling) does not log only its own after-image."""
    return {key.replace("/", "/after_intervention/", 1): value for key, value in scalars.items()}


CURVATURE_MAX_INPUTS = 1024
"""layers fed more inputs are left out of the curvature ranks: the eigendecomposition of their
input factor (a Nature CNN's 3136 → 512 layer) would take seconds at every metrics step"""


def rng_kept(device: torch.device):
    """A context in which random draws leave the training's generators (CPU, and the device's
    on CUDA) as they were: metrics taken or not, the run is the same."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def curvature(name: str, network: nn.Module, loss_fn) -> dict[str, float]:
    """``<name>/<layer>/kfac_eps_rank`` (and normalized) of ``network`` under the loss
    ``loss_fn(network)`` on a probe batch: the curvature ranks whose collapse at task switches
    "Spectral Collapse Drives Loss of Plasticity" (arXiv 2509.22335) reports. Nothing when the
    loss is not finite (a NaN reward before the first update): the divergence check stops the
    run."""
    too_wide = [
        layer_name
        for layer_name, layer in network.named_modules()
        if isinstance(layer, nn.Linear) and layer.in_features > CURVATURE_MAX_INPUTS
    ]
    with rng_kept(next(network.parameters()).device):
        with torch.no_grad():
            if not torch.isfinite(loss_fn(network)):
                return {}
        return prefixed(name, kfac_eps_ranks(network, loss_fn, exclude=too_wide))


class Lifecycle:
    """Bookkeeping of one training run of ``agent`` (see the module docstring).

    Creating it creates the run folder (after the agent's checks, so a refused command writes
    nothing), restores the checkpoint the run starts from, if any (before the first
    ``envs.reset``), and opens the logs. ``policy(obs) -> action`` is the deterministic policy
    evaluated; ``networks`` are the agent's networks with their methods, registered here (their
    interventions are logged at :attr:`step`); ``buffer`` is an off-policy agent's replay
    buffer (with it come the learning gate, the refill after a resume without the buffer and
    :meth:`switch_task`); ``extras`` are the agent's own checkpoint entries (objects with
    ``state_dict()``, merged into the checkpoint, and ``load_state_dict(checkpoint)``);
    ``total_steps`` is where the run ends (default ``--total-timesteps``); ``eval_kwargs`` go to
    the evaluation env (SAC's ``action_repeat``). A stop asked for by Ctrl-C or SIGTERM reaches
    the loop through :data:`agents.cli.STOP` (installed by the command line).
    """

    def __init__(
        self,
        args: CommonArgs,
        agent: str,
        envs: gym.vector.VectorEnv,
        policy: Callable[[np.ndarray], np.ndarray],
        networks: list[PlasticNetwork],
        *,
        buffer: ReplayBuffer | None = None,
        extras: Sequence = (),
        total_steps: int | None = None,
        **eval_kwargs,
    ):
        self.args, self.envs, self.policy = args, envs, policy
        self.networks, self.buffer, self.extras = networks, buffer, extras
        self.handles = {network.name: network.handle for network in networks}
        self.total_steps = args.total_timesteps if total_steps is None else total_steps
        self.eval_kwargs = eval_kwargs
        self.device = next(networks[0].network.parameters()).device
        self.tracker = EpisodeTracker()
        self.run = run = Run(agent, args, resolved_settings(args, self.device, envs))
        restored = self._restore() if run.source is not None else None
        start_step = 0 if restored is None else restored["step"]
        self.gate = None
        if buffer is not None:  # when the updates (re)start
            self.gate = learning_gate(args, self.handles.values(), restored)
        self.metrics = Every(args.metrics_every, start=start_step)
        self.evaluations = Every(args.eval_every, start=start_step)
        self.checkpoints = Every(args.checkpoint_every, start=start_step)
        self.start_step, self.start_time = start_step, time.perf_counter()
        self.first_update: int | None = None
        self.loop_step = start_step  # the step at the top of the current loop iteration
        self.step = start_step  # the step the loop reached: where interventions are logged
        self.intervened_at: int | None = None  # the last step an intervention rewrote weights
        self.train_clock: tuple[int, float] | None = None
        self.eval_returns: list[float] = []
        self.measured_at: int | None = None  # the last step metrics were due at
        self.pending: tuple[int, dict[str, float]] | None = None  # scalars to write
        # a loss went NaN/Inf: a flag on the device, read at log and checkpoint points only
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        for network in networks:
            network.life = self
        run.open()
        self.console = Console(args.verbose, self.total_steps, start_step)
        self.say(start_line(args, run, start_step, self.handles))
        if restored is not None and buffer is not None and "buffer" not in restored:
            self.say(self.gate.refill_notice(start_step))
        self.stop = STOP

    def _checkpointed_networks(self) -> dict[str, nn.Module]:
        return {k: v for network in self.networks for k, v in network.checkpointed().items()}

    def _restore(self) -> dict:
        """Load the checkpoint this run starts from (see :func:`restore_checkpoint`), and the
        agent's extras from it; the checkpoint."""
        state = restore_checkpoint(
            self.run,
            self.args,
            self.device,
            self._checkpointed_networks(),
            self.handles,
            self.envs,
            self.tracker,
            self.buffer,
            total_steps=self.total_steps,
        )
        with user_errors(self.run.origin):
            for extra in self.extras:
                extra.load_state_dict(state)
        return state

    def checkpoint(self, step: int) -> None:
        """Write the checkpoint of ``step`` (what :meth:`_restore` reads)."""
        save_buffer = self.buffer is not None and self.args.save_buffer
        state = checkpoint_state(
            self._checkpointed_networks(),
            self.handles,
            self.envs,
            self.tracker.period,
            self.buffer if save_buffer else None,
            self.gate,
        )
        for extra in self.extras:
            state.update(extra.state_dict())
        self.run.save_checkpoint(step, state)

    def say(self, text: str) -> None:
        """A line on the console, clear of the progress bar (shown at every verbosity)."""
        self.console.say(text)

    # --- the loop -------------------------------------------------------------------------

    def running(self, step: int) -> bool:
        """Whether the loop goes on: steps remain and no stop was asked for. Moves the
        progress display."""
        self.console.progress(step, self.tracker.mean_return)
        self.loop_step = step
        return step < self.total_steps and self.stop.requested is None

    def episodes(self, step: int, infos: dict) -> bool:
        """Log the episodes that ended at ``step``; whether a task switch began."""
        self.step = step
        rows, switched = self.tracker.update(infos)
        self.run.log_rows(step, rows)
        return switched

    def switch_task(self, step: int, curvature: Callable[[Transitions], dict]) -> None:
        """An off-policy agent's task switch, begun at ``step``: on a probe batch from the
        replay buffer, the ``curvature`` ranks as the switch begins are logged and each network's
        ``on_task_switch`` runs; with ``--clear-buffer-on-switch`` the buffer is emptied and the
        updates pause for ``--learning-starts`` new steps (a warm start: only the networks carry
        over). Nothing on an empty buffer or at the run's last step."""
        if self.buffer.size == 0 or not self.intervening(step):
            return
        probe = self.buffer.sample(self.args.batch_size)
        self.run.log(step, curvature(probe))
        for network in self.networks:
            network.on_task_switch(inputs=network.batch_inputs(probe))
        if self.args.clear_buffer_on_switch:
            self.buffer.clear()
            self.gate.pause(step, self.args.learning_starts)

    def learning(self, step: int) -> bool:
        """Whether an off-policy agent updates at ``step`` (its learning gate is open); if so,
        :meth:`training` is told."""
        if not self.gate.open(step):
            return False
        self.training(step)
        return True

    def log_interventions(self, step: int, network: str, reports: list[InterventionReport]):
        """Log what ``network``'s method did at ``step`` (every report) and say on the console
        each intervention that reinitialized weights."""
        self.run.log_interventions(step, network, reports, self.handles[network].interventions)
        for report in reports:
            if report.reinitialized:
                self.intervened_at = step
            if is_announced(report):
                self.console.intervention(step, network, report)

    def intervening(self, step: int) -> bool:
        """Whether interventions may run at ``step``: not at the run's last step, where no
        update would follow them and the final evaluation would see a freshly reinitialized
        network instead of the trained one."""
        return step < self.total_steps

    def training(self, step: int) -> None:
        """The agent updated its networks at ``step`` (starts the ``train_sps`` clock)."""
        if self.first_update is None:
            self.first_update = step
            # metrics steps crossed before the loop step that led here passed with no update
            # to measure: the first table comes at a scheduled step, not at learning_starts + 1
            self.metrics.skip_to(self.loop_step)
        if self.train_clock is None and step >= self.first_update + STEADY_AFTER:
            self.train_clock = (step, time.perf_counter())

    def note_nonfinite(self, diverged: torch.Tensor) -> None:
        """Keep an update's NaN/Inf flag (a device tensor, not read here: no sync)."""
        torch.logical_or(self.nonfinite, diverged, out=self.nonfinite)

    def metrics_due(self, step: int) -> bool:
        """Whether plasticity metrics are due at ``step``; if so, first stop the run when a
        loss went NaN/Inf (:meth:`note_nonfinite`): the metrics would fail on it."""
        if not self.metrics.due(step):
            return False
        self.raise_if_diverged(step)
        self.measured_at = step
        return True

    def sps(self, step: int) -> float:
        """Env steps per second since this process started training."""
        return (step - self.start_step) / max(time.perf_counter() - self.start_time, 1e-9)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Log ``scalars`` at ``step`` now (not shown on the console)."""
        self.run.log(step, scalars)

    def log_metrics(self, step: int, scalars: dict[str, float]) -> None:
        """The losses and metrics of ``step``, measured before its interventions (those of a
        step proper: a method that acts at every metrics step, ReDo's recycling, would
        otherwise log only its own after-image). Written by :meth:`after_step`, once the step's
        interventions ran, and shown on the console when metrics were due at ``step``; when an
        intervention rewrote weights at ``step``, each network measured at it
        (:meth:`PlasticNetwork.measure`) is measured again, on the same inputs, under
        ``<network>/after_intervention/``."""
        self.pending = (step, scalars)

    def _write_pending(self) -> None:
        if self.pending is None:
            return
        (step, scalars), self.pending = self.pending, None
        for network in self.networks:
            if network.measured is not None and self.intervened_at == step:
                scalars.update(after_intervention(network.measure(*network.measured)))
            network.measured = None
        self.run.log(step, scalars)
        if self.measured_at == step:
            self.console.metrics(step, scalars)

    def after_step(self, step: int) -> None:
        """Write the step's scalars (:meth:`log_metrics`); evaluate and checkpoint when due
        (the final ones are :meth:`finish`'s)."""
        self._write_pending()
        if self.evaluations.due(step) and self.args.eval_episodes and step < self.total_steps:
            self.evaluate(step, f"step_{step}")
        if self.checkpoints.due(step) and step < self.total_steps:
            self.raise_if_diverged(step)
            self.checkpoint(step)

    def evaluate(self, step: int, tag: str) -> list[float]:
        """Evaluation episodes of the policy on the task the training loop is on; logged."""
        video = video_folder(self.run.name, tag) if self.args.capture_video else None
        self.eval_returns = evaluate(
            self.args,
            self.run.name,
            self.policy,
            tag,
            self.tracker.period,
            video=video,
            **self.eval_kwargs,
        )
        self.run.log(step, {"eval/episodic_return": mean_or_nan(self.eval_returns)})
        self.console.evaluation(step, self.eval_returns, video)
        return self.eval_returns

    def raise_if_diverged(self, step: int) -> None:
        """Stop the run when a loss was NaN/Inf (a flag kept on the device, read only here):
        the summary says so, and the last checkpoint written, from before, is kept."""
        if not bool(self.nonfinite):
            return
        latest = self.run.latest_checkpoint()
        if latest is not None:
            kept = (
                f"the last good checkpoint, {latest.name}, is kept in {self.run.dir}: "
                f"resume from it with lower learning rates (--resume {self.run.dir})"
            )
        else:
            kept = "no checkpoint had been written yet; lower the learning rates and start again"
        self._close(self._summary(step, "diverged"))
        raise TrainingDiverged(f"a loss became NaN/Inf before step {step}; {kept}")

    # --- the end --------------------------------------------------------------------------

    def finish(self, step: int, **extra) -> dict:
        """Final checkpoint and evaluation, ``summary.json``; returns the summary.

        A stopped run (Ctrl-C, SIGTERM) is checkpointed and summarized as ``interrupted``,
        without the final evaluation. ``extra`` adds agent fields.
        """
        end_time = time.perf_counter()
        self.console.close()
        self.raise_if_diverged(step)
        self.checkpoint(step)
        status = "finished" if self.stop.requested is None else "interrupted"
        if status == "finished" and self.args.eval_episodes:
            self.evaluate(step, "final")
        sps = (step - self.start_step) / max(end_time - self.start_time, 1e-9)
        if self.train_clock is not None:
            clock_step, clock_time = self.train_clock
            train_sps = (step - clock_step) / max(end_time - clock_time, 1e-9)
        else:
            train_sps = 0.0
        summary = self._summary(step, status)
        summary.update(sps=sps, train_sps=train_sps, **extra)
        self._close(summary)
        return summary

    def _summary(self, step: int, status: str) -> dict:
        args, handles = self.args, self.handles
        return {
            "agent": self.run.agent,
            "env": args.env,
            "method": args.method,
            **{f"{name}_method": handle.method.name for name, handle in handles.items()},
            "seed": args.seed,
            "env_ids": self.run.resolved.get("env_ids"),
            "status": status,
            "total_timesteps": step,
            "final_eval_return": mean_or_nan(self.eval_returns),
            "final_eval_returns": self.eval_returns,
            "wall_time_s": self.run.wall_time(),
            "interventions": {name: handle.interventions for name, handle in handles.items()},
            "interventions_by_method": {
                name: dict(handle.interventions_by_method) for name, handle in handles.items()
            },
            "run_dir": str(self.run.dir),
        }

    def _close(self, summary: dict) -> None:
        self.run.write_summary(summary)
        self.run.close()


def start_line(
    args: CommonArgs, run: Run, start_step: int, handles: dict[str, MethodHandle]
) -> str:
    """What runs where: agent, env, method (each network's, when they differ), device and
    threads, run folder; a resumed run's step and the settings given anew."""
    resolved = run.resolved
    methods = {name: handle.method.name for name, handle in handles.items()}
    if len(set(methods.values())) == 1:
        method = f"method {next(iter(methods.values()))}"
    else:
        method = "methods " + ", ".join(f"{name} {value}" for name, value in methods.items())
    line = (
        f"{run.agent} on {args.env}, {method}, {args.total_timesteps:,} steps | "
        f"device {resolved['device']}, {args.threads} thread{'s' if args.threads > 1 else ''} | "
        f"run folder {run.dir}"
    )
    if run.branch is not None:
        optimizers = ", ".join(f"{k} {v}" for k, v in run.branch.get("optimizer", {}).items())
        return (
            f"{line}\nbranched from {run.branch['parent']} at step {start_step:,} "
            f"(optimizer state: {optimizers})"
        )
    if run.resumed_from is None:
        return line
    changed = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in run.changed.items())
    return f"{line}\nresumed at step {start_step:,}" + (f"; changed: {changed}" if changed else "")
