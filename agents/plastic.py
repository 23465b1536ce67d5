"""A network of an agent together with its plasticity method, in one object.

:class:`PlasticNetwork` holds what every network of every agent carries around its algorithm:
the method's handle (:func:`agents.cli.attach_method`: optimizer, penalty, interventions), a
:class:`plasticity.PlasticityMonitor`, its target copies, the curvature probe, and the logging
of what its interventions did. The agent's updates use it as they would the handle
(``q_plasticity.optimizer.step()``, ``q_plasticity.penalty(loss)``); the run's
:class:`agents.lifecycle.Lifecycle`, with which it is registered, checkpoints and restores it,
and measures its metrics again after an intervention.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from agents.cli import CommonArgs, attach_method
from agents.lifecycle import Lifecycle, curvature, prefixed
from plasticity import InterventionReport, PlasticityMonitor
from plasticity._layers import Inputs


class PlasticNetwork:
    """``network``, named ``name`` (``actor``, ``critic``, ``q``: its name in flags, logs,
    checkpoints and the summary), with the method ``args`` name for it.

    ``targets`` are the network's target copies by checkpoint name (``{"q_target": …}``): the
    handle re-syncs them after each intervention that changes the function. ``batch_inputs``
    picks the network's arguments from a replay batch (default: the observations), for the
    probe of a task switch. ``activation``, when given, is the hidden nonlinearity the method
    and the monitor read units with. Other keywords go to the method's ``attach``.

    The intervention calls (:meth:`after_update`, :meth:`after_minibatch`,
    :meth:`on_task_switch`, :meth:`before_epoch`) are the handle's, and log what acted at the
    step the loop reached (:attr:`Lifecycle.step`); any other attribute is the handle's.
    """

    def __init__(
        self,
        args: CommonArgs,
        name: str,
        network: nn.Module,
        lr: float,
        *,
        heads: tuple[str, ...],
        targets: dict[str, nn.Module] | None = None,
        batch_inputs: Callable = lambda batch: batch.obs,
        activation: Callable | None = None,
        **method_settings,
    ):
        self.name, self.network, self.batch_inputs = name, network, batch_inputs
        self.targets = dict(targets or {})
        monitor_settings = {} if activation is None else {"activation": activation}
        if self.targets:
            method_settings["targets"] = list(self.targets.values())
        self.handle = attach_method(
            args, name, network, lr, heads=heads, **monitor_settings, **method_settings
        )
        self.monitor = PlasticityMonitor(network, heads=heads, name=name, **monitor_settings)
        self.life: Lifecycle | None = None  # set when the lifecycle registers this network
        self.measured: tuple | None = None  # inputs and gradient norm of this step's metrics
        self.followers: list[Callable[[list[InterventionReport]], None]] = []

    def __getattr__(self, attribute: str):
        if attribute == "handle":  # not set yet: no recursion while constructing
            raise AttributeError(attribute)
        return getattr(self.handle, attribute)

    # --- interventions, logged -------------------------------------------------------------

    def after_update(self, step: int, inputs: Inputs | None = None, **settings) -> list:
        return self._logged(self.handle.after_update(step, inputs, **settings))

    def after_minibatch(self, inputs: Inputs) -> list:
        return self._logged(self.handle.after_minibatch(inputs))

    def on_task_switch(self, inputs: Inputs | None = None) -> list:
        return self._logged(self.handle.on_task_switch(inputs))

    def before_epoch(self, inputs: Inputs) -> list:
        return self._logged(self.handle.before_epoch(inputs))

    def follow_interventions(self, follower: Callable[[list[InterventionReport]], None]):
        """Call ``follower(reports)`` after each of the calls above (SAC's temperature reset
        follows the critic's)."""
        self.followers.append(follower)

    def _logged(self, reports: list[InterventionReport]) -> list[InterventionReport]:
        self.life.log_interventions(self.life.step, self.name, reports)
        for follower in self.followers:
            follower(reports)
        return reports

    # --- measurements ---------------------------------------------------------------------

    def measure(self, inputs: Inputs, grad_norm) -> dict[str, float]:
        """The monitor's metrics on ``inputs`` as ``<name>/<metric>``, with the gradient norm
        the last update returned; remembered, so that the lifecycle measures them again under
        ``<name>/after_intervention/`` when an intervention follows at this step."""
        self.measured = (inputs, grad_norm)
        return prefixed(self.name, self.monitor.measure(inputs, grad_norm))

    def curvature(self, loss_fn: Callable[[nn.Module], object]) -> dict[str, float]:
        """The network's K-FAC ε-ranks under ``loss_fn(network)`` (see
        :func:`agents.lifecycle.curvature`)."""
        return curvature(self.name, self.network, loss_fn)

    def checkpointed(self) -> dict[str, nn.Module]:
        """The modules a checkpoint holds for this network, by name: it and its targets."""
        return {self.name: self.network, **self.targets}
