"""The run folder ``runs/<run_name>/``: config, logged scalars, checkpoint files, summary.

- :class:`Run` creates (or, with ``--resume``, reopens) the folder and writes everything in it:
  ``config.json``, TensorBoard events and ``scalars.jsonl``, ``checkpoints/step_<N>.pt``,
  ``summary.json``.
- :func:`finish_run` logs the final evaluation and writes the summary.
- :func:`raise_if_diverged` stops a run whose loss went NaN/Inf.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from agents.cli import CommonArgs, TrainingDiverged, UserError
from agents.episodes import mean_or_nan
from plasticity import InterventionReport, MethodHandle

CHECKPOINTS_KEPT = 2


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class Run:
    """A run folder: config, scalars (TensorBoard + JSONL), checkpoints, summary.

    A new run is ``<runs_dir>/<env>__<exp_name>__<seed>__<unix time>``; with ``args.resume``
    the given folder is reopened, its latest checkpoint found, and logging appends to it.
    """

    def __init__(self, agent: str, args: CommonArgs):
        self.agent = agent
        if args.resume:
            self.dir = Path(args.resume)
            if not (self.dir / "config.json").is_file():
                raise UserError(
                    f"--resume {args.resume}: not a run folder (no config.json); "
                    f"pass a folder under {args.runs_dir}/"
                )
            saved = json.loads((self.dir / "config.json").read_text())
            if saved.get("agent") != agent:
                raise UserError(
                    f"--resume {args.resume}: that run is a {saved.get('agent')} run; "
                    f"resume it with --agent {saved.get('agent')}"
                )
            if self.latest_checkpoint() is None:
                raise UserError(f"--resume {args.resume}: the run has no checkpoint to resume from")
        elif args.run_name is not None:
            if args.run_name in ("", ".", "..") or "/" in args.run_name:
                raise UserError(
                    f"--run-name {args.run_name!r} is not a folder name: use letters, digits "
                    "and -_. without '/'"
                )
            self.dir = Path(args.runs_dir) / args.run_name
            if (self.dir / "config.json").exists():
                raise UserError(
                    f"run {self.dir} exists already: continue it with --resume {self.dir}, "
                    "or choose another --run-name"
                )
            self.dir.mkdir(parents=True, exist_ok=True)
        else:
            env_name = args.env.replace("/", "-").replace(":", "-").replace(",", "-")
            method = args.method.replace("+", "-")
            name = f"{env_name}__{agent}-{method}__{args.exp_name}__{args.seed}__{int(time.time())}"
            self.dir = Path(args.runs_dir) / name
            Path(args.runs_dir).mkdir(parents=True, exist_ok=True)
            copy = 1
            while True:  # runs started in the same second (a sweep) get _2, _3, ...
                try:
                    self.dir.mkdir(exist_ok=False)
                    break
                except FileExistsError:
                    copy += 1
                    self.dir = Path(args.runs_dir) / f"{name}_{copy}"
        if not args.resume:
            config = {"agent": agent, **_jsonable(args)}
            (self.dir / "config.json").write_text(json.dumps(config, indent=2))
        self.name = self.dir.name
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.dir))
        self._scalars = open(self.dir / "scalars.jsonl", "a")  # noqa: SIM115 (closed in close())

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Write scalars at ``step`` to TensorBoard and one JSON line."""
        clean = {k: float(v) for k, v in scalars.items()}
        for key, value in clean.items():
            self.writer.add_scalar(key, value, step)
        self._scalars.write(json.dumps({"step": step, **clean}) + "\n")
        self._scalars.flush()

    def log_rows(self, step: int, rows: Iterable[dict[str, float]]) -> None:
        """Log each row at ``step`` (one JSON line each: episodes that ended together)."""
        for row in rows:
            self.log(step, row)

    def log_interventions(
        self, step: int, network: str, reports: list[InterventionReport], count: int
    ) -> None:
        """One row per intervention report (``<network>/<method>/<layer>/<metric>`` and
        totals), then ``interventions/<network>``: the network's running ``count``."""
        for report in reports:
            self.log(step, report.scalars(f"{network}/"))
        if reports:
            self.log(step, {f"interventions/{network}": count})

    def checkpoint_dir(self) -> Path:
        return self.dir / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.checkpoint_dir().glob("step_*.pt"), key=lambda p: int(p.stem[5:]))
        return found[-1] if found else None

    def save_checkpoint(self, step: int, state: dict) -> Path:
        """Write ``state`` atomically as ``checkpoints/step_<step>.pt``; keep the newest two."""
        folder = self.checkpoint_dir()
        folder.mkdir(exist_ok=True)
        path = folder / f"step_{step}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save({"agent": self.agent, "step": step, **state}, tmp)
        os.replace(tmp, path)
        old = sorted(folder.glob("step_*.pt"), key=lambda p: int(p.stem[5:]))[:-CHECKPOINTS_KEPT]
        for stale in old:
            stale.unlink()
        return path

    def load_checkpoint(self, device: torch.device) -> dict:
        path = self.latest_checkpoint()
        try:
            state = torch.load(path, map_location=device, weights_only=False)
        except Exception as err:  # a truncated or foreign file: say which and stop
            raise UserError(
                f"checkpoint {path} cannot be read ({err}); delete it to use the previous one"
            ) from None
        if state.get("agent") != self.agent:
            raise UserError(f"checkpoint {path} is not a {self.agent} checkpoint")
        return state

    def write_summary(self, summary: dict) -> None:
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2))

    def close(self) -> None:
        self.writer.close()
        self._scalars.close()


def finish_run(
    run: Run,
    args: CommonArgs,
    step: int,
    sps: float,
    eval_returns: list[float],
    handles: dict[str, MethodHandle],
    **extra,
) -> dict:
    """Log the final evaluation, write ``summary.json`` and close the run; returns the summary.

    ``handles`` maps network names (``actor``, ``critic``, ``q``) to their method handles: the
    summary gives each network's method and intervention count. ``extra`` adds agent fields.
    """
    if eval_returns:
        run.log(step, {"eval/episodic_return": mean_or_nan(eval_returns)})
    summary = {
        "agent": run.agent,
        "env": args.env,
        "method": args.method,
        **{f"{name}_method": handle.method.name for name, handle in handles.items()},
        "total_timesteps": step,
        "final_eval_return": mean_or_nan(eval_returns),
        "final_eval_returns": eval_returns,
        "sps": sps,
        **extra,
        "interventions": {name: handle.interventions for name, handle in handles.items()},
        "run_dir": str(run.dir),
    }
    run.write_summary(summary)
    run.close()
    return summary


def raise_if_diverged(nonfinite: torch.Tensor, run: Run, step: int) -> None:
    """Stop the run when a loss was NaN/Inf (a flag kept on the device, read only here).

    Called before every checkpoint, so the last checkpoint written is the last good one.
    """
    if bool(nonfinite):
        raise TrainingDiverged(
            f"a loss became NaN/Inf before step {step}; the last good checkpoint is kept in "
            f"{run.dir} (lower the learning rates?)"
        )


def progress_bar(total: int, initial: int):
    """A tqdm bar over env steps (plain lines when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=1.0, disable=None
    )
