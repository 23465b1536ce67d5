"""plasticity: keep neural networks trainable on changing data.

A framework-agnostic library of plain PyTorch functions and optimizers (no RL loop inside):

- isometry: :func:`newton_schulz`, :func:`polar`, :func:`deviation_from_isometry`,
  :func:`isometry_penalty`;
- the :class:`AdamO` optimizer (Adam + decoupled isometry step) and :func:`adamo_param_groups`;
- the :class:`Kron` optimizer (PSGD-Kron, :mod:`plasticity.kron`);
- in-place interventions that reset the optimizer state they invalidate: :func:`fire_`,
  :func:`full_reset_`, :func:`shrink_perturb_`, :func:`redo_`, :func:`clear_optimizer_state_`;
- regularizers: :func:`l2_init_penalty`, :func:`l2_penalty`, :func:`parseval_penalty`,
  :func:`spectral_penalty`, :func:`effective_rank_ascent_`;
- the rules of the newer methods, one module each: :mod:`plasticity.continual_backprop`,
  :mod:`plasticity.injection`, :mod:`plasticity.dash`, :mod:`plasticity.snr`,
  :mod:`plasticity.nap`; TRAC and a combined (Muon + Adam) optimizer in :mod:`plasticity.optim`;
- architecture choices (a normalization before each nonlinearity, CReLU, deep Fourier
  features): :mod:`plasticity.architecture`;
- named methods for training loops: :func:`make_method`, :func:`method_names`, and
  :func:`register` with :class:`MethodPart` to add one;
- :mod:`plasticity.metrics` and :class:`PlasticityMonitor`.
"""

from plasticity import metrics
from plasticity.interventions import (
    InterventionReport,
    clear_optimizer_state_,
    fire_,
    full_reset_,
    network_parameters,
    redo_,
    shrink_perturb_,
    sync_targets,
)
from plasticity.isometry import (
    deviation_from_isometry,
    isometry_grad,
    isometry_penalty,
    newton_schulz,
    polar,
    squared_frobenius_error,
)
from plasticity.kron import Kron
from plasticity.methods import (
    METHODS,
    Method,
    MethodConfig,
    MethodHandle,
    MethodPart,
    PartKind,
    ScheduledIntervention,
    make_method,
    method_names,
    register,
)
from plasticity.metrics import PlasticityMonitor
from plasticity.optim import AdamO, adamo_param_groups, isometry_parameters
from plasticity.regularizers import (
    effective_rank_ascent_,
    l2_init_penalty,
    l2_penalty,
    parseval_penalty,
    spectral_penalty,
)

__all__ = [
    "METHODS",
    "AdamO",
    "InterventionReport",
    "Kron",
    "Method",
    "MethodConfig",
    "MethodHandle",
    "MethodPart",
    "PartKind",
    "PlasticityMonitor",
    "ScheduledIntervention",
    "adamo_param_groups",
    "clear_optimizer_state_",
    "deviation_from_isometry",
    "effective_rank_ascent_",
    "fire_",
    "full_reset_",
    "isometry_grad",
    "isometry_parameters",
    "isometry_penalty",
    "l2_init_penalty",
    "l2_penalty",
    "make_method",
    "method_names",
    "metrics",
    "network_parameters",
    "newton_schulz",
    "parseval_penalty",
    "polar",
    "redo_",
    "register",
    "shrink_perturb_",
    "spectral_penalty",
    "squared_frobenius_error",
    "sync_targets",
]
