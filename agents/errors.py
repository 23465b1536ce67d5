"""The two ways a command ends on purpose with one line and exit code 2 (see
:func:`agents.cli.run_cli`): a mistake in its inputs, or a training run that diverged."""


class UserError(Exception):
    """A mistake in the command or its inputs: reported as one line, exit code 2."""


class TrainingDiverged(Exception):
    """A loss became NaN or Inf; the last good checkpoint is kept."""
