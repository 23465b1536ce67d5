"""Everything around an agent's algorithm, behind a few calls, so each agent file reads as its
algorithm::

    life = Lifecycle(args, run, tracker, policy, checkpoint, handles, start_step, total_steps)
    while life.running(global_step):
        ...                                        # act, step the envs
        switched = life.episodes(global_step, infos)   # log episodes; did the task switch?
        ...                                        # update the networks
        if life.metrics_due(global_step, nonfinite):
            life.log_metrics(global_step, scalars)
        life.after_step(global_step, nonfinite)    # evaluation, checkpoint when due
    envs.close()
    return life.finish(global_step, nonfinite)

It owns the cadences (``--metrics-every``, ``--eval-every``, ``--checkpoint-every``, each a
:class:`plasticity.schedule.Every`), the console (progress, evaluation lines, metric tables),
the clocks (``sps``, ``train_sps``, wall time), a clean stop on Ctrl-C or SIGTERM (the loop
ends, a checkpoint and a summary marked ``interrupted`` are written; a second Ctrl-C stops at
once), the divergence check (a NaN/Inf loss flag read before each checkpoint, so the last
checkpoint written is a good one), and the final checkpoint, evaluation and ``summary.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from agents.cli import STOP, CommonArgs, TrainingDiverged
from agents.console import Console
from agents.environments import evaluate, video_folder
from agents.episodes import EpisodeTracker, mean_or_nan
from agents.run import Run
from plasticity import InterventionReport, MethodHandle
from plasticity.methods import is_announced
from plasticity.metrics import kfac_eps_ranks
from plasticity.schedule import Every

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
    """Bookkeeping of one training run (see the module docstring).

    ``policy(obs) -> action`` is the deterministic policy evaluated; ``checkpoint(step)``
    writes the agent's checkpoint; ``handles`` maps network names (``actor``, ``critic``,
    ``q``) to their method handles, whose interventions the summary counts; ``eval_kwargs`` go
    to the evaluation env (SAC's ``action_repeat``). A stop asked for by Ctrl-C or SIGTERM
    reaches the loop through :data:`agents.cli.STOP` (installed by the command line).
    """

    def __init__(
        self,
        args: CommonArgs,
        run: Run,
        tracker: EpisodeTracker,
        policy: Callable[[np.ndarray], np.ndarray],
        checkpoint: Callable[[int], None],
        handles: dict[str, MethodHandle],
        start_step: int,
        total_steps: int,
        **eval_kwargs,
    ):
        self.args, self.run, self.tracker = args, run, tracker
        self.policy, self.checkpoint, self.handles = policy, checkpoint, handles
        self.total_steps = total_steps
        self.eval_kwargs = eval_kwargs
        self.metrics = Every(args.metrics_every, start=start_step)
        self.evaluations = Every(args.eval_every, start=start_step)
        self.checkpoints = Every(args.checkpoint_every, start=start_step)
        self.start_step, self.start_time = start_step, time.perf_counter()
        self.first_update: int | None = None
        self.loop_step = start_step  # the step at the top of the current loop iteration
        self.intervened_at: int | None = None  # the last step an intervention rewrote weights
        self.train_clock: tuple[int, float] | None = None
        self.eval_returns: list[float] = []
        run.open()
        self.console = Console(args.verbose, total_steps, start_step)
        self.say(start_line(args, run, start_step, handles))
        self.stop = STOP

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
        rows, switched = self.tracker.update(infos)
        self.run.log_rows(step, rows)
        return switched

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

    def metrics_due(self, step: int, nonfinite: torch.Tensor) -> bool:
        """Whether plasticity metrics are due at ``step``; if so, first stop the run when a
        loss went NaN/Inf (the agent's ``nonfinite`` flag): the metrics would fail on it."""
        if not self.metrics.due(step):
            return False
        self.raise_if_diverged(step, nonfinite)
        return True

    def sps(self, step: int) -> float:
        """Env steps per second since this process started training."""
        return (step - self.start_step) / max(time.perf_counter() - self.start_time, 1e-9)

    def log_metrics(self, step: int, scalars: dict[str, float]) -> None:
        """Log ``scalars`` at ``step`` and show them on the console."""
        self.run.log(step, scalars)
        self.console.metrics(step, scalars)

    def after_step(self, step: int, nonfinite: torch.Tensor) -> None:
        """Evaluate and checkpoint when due (the final ones are :meth:`finish`'s)."""
        if self.evaluations.due(step) and self.args.eval_episodes and step < self.total_steps:
            self.evaluate(step, f"step_{step}")
        if self.checkpoints.due(step) and step < self.total_steps:
            self.raise_if_diverged(step, nonfinite)
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

    def raise_if_diverged(self, step: int, nonfinite: torch.Tensor) -> None:
        """Stop the run when a loss was NaN/Inf (a flag kept on the device, read only here):
        the summary says so, and the last checkpoint written, from before, is kept."""
        if not bool(nonfinite):
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

    def finish(self, step: int, nonfinite: torch.Tensor, **extra) -> dict:
        """Final checkpoint and evaluation, ``summary.json``; returns the summary.

        A stopped run (Ctrl-C, SIGTERM) is checkpointed and summarized as ``interrupted``,
        without the final evaluation. ``extra`` adds agent fields.
        """
        end_time = time.perf_counter()
        self.console.close()
        self.raise_if_diverged(step, nonfinite)
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
