"""The run folder ``runs/<run_name>/``: config, logged scalars, checkpoint files, summary.

:class:`Run` creates (or, with ``--resume``, reopens) the folder and writes everything in it:
``config.json`` (the settings, and what they resolved to: device, versions, git commit),
TensorBoard events and ``scalars.jsonl`` (one JSON object per line; NaN and Inf written as
``null``), ``checkpoints/step_<N>.pt`` and ``summary.json``.

A resumed run writes nothing until :meth:`Run.open` (called once the checkpoint has been
restored): a refused ``--resume`` leaves the folder as it was. Then the rows logged after the
checkpoint's step by the interrupted process are dropped from ``scalars.jsonl`` and purged from
TensorBoard, so the logs continue from the checkpoint without steps going backwards.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib.util
import json
import math
import platform
import re
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from agents.cli import CommonArgs, UserError, run_folder
from agents.files import read_checkpoint, write_atomic, write_json_atomic
from plasticity import InterventionReport

ROOT = Path(__file__).resolve().parents[1]


def jsonable(value):
    """Dataclasses and dicts as plain JSON values; NaN and ±Inf as None (strict JSON)."""
    if dataclasses.is_dataclass(value):
        return {k: jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def git_commit(root: Path = ROOT) -> str | None:
    """The project's git commit, ``+dirty`` when a tracked file has uncommitted changes or a
    Python file is not tracked (new code a run may import); None outside a checkout. Other
    untracked files (run folders, results) leave it clean."""
    try:
        run = lambda *cmd: subprocess.run(  # noqa: E731
            ["git", *cmd], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        changed = run("status", "--porcelain", "--untracked-files=no")
        new_code = run("status", "--porcelain", "--untracked-files=all", "--", "*.py")
        return commit + ("+dirty" if changed or new_code else "")
    except (OSError, subprocess.SubprocessError):
        return None


def folder_name(text: str) -> str:
    return text.replace("/", "-").replace(":", "-").replace(",", "-").replace("+", "-")


class Run:
    """A run folder: config, scalars (TensorBoard + JSONL), checkpoints, summary.

    A new run is ``<runs_dir>/<run_name>`` (default ``<env>__<agent>-<method>__<exp_name>__
    <seed>__<unix time>``); with ``args.resume`` the given folder is reopened and its latest
    checkpoint found. ``resolved`` (device, threads, …) is recorded beside the settings.
    """

    def __init__(self, agent: str, args: CommonArgs, resolved: dict | None = None):
        self.agent = agent
        self.keep = args.keep_checkpoints
        self.track = args.track
        self.resumed_from: int | None = None
        self._writer = self._scalars = None
        # wall time of the processes before this one (from the checkpoint) and this one's start
        self.elapsed_before, self.started = 0.0, time.perf_counter()
        if "/" in args.exp_name:
            raise UserError(f"--exp-name {args.exp_name!r} contains '/': use a plain name")
        if args.track and importlib.util.find_spec("wandb") is None:
            raise UserError(
                "--track needs Weights & Biases: pip install wandb (or the 'track' extra)"
            )
        self.resolved = {**(resolved or {}), **software_versions()}  # this process's
        config = {"agent": agent, **jsonable(args), "resolved": self.resolved}
        self.source: Path | None = None  # the checkpoint file this run starts from
        self.branch: dict | None = None
        if args.branch_from:
            self.source, saved = self._check_branchable(agent, args)
            self._new_folder_args = args  # created at open(): a refused branch writes nothing
            self.changed = changed_settings(saved, config)
            self.branch = {"parent": str(self.source.parents[1]), "changed": self.changed}
            self.config = {**config, "branch": self.branch}  # its step: once the file is read
        elif args.resume:
            self.dir = Path(args.resume)
            saved = self._check_resumable(args)
            self.changed = changed_settings(saved, config)
            # the run's first resolution stays; each resume records its own (another machine?)
            resume = {"changed": self.changed, "resolved": config["resolved"]}
            self._resume_record = resume  # its step is known once the checkpoint is read
            history = [*saved.get("resumes", []), resume]
            original = saved.get("resolved", config["resolved"])
            self.config = {**config, "resolved": original, "resumes": history}
            if "branch" in saved:  # a resumed branch still records where it came from
                self.config["branch"] = saved["branch"]
            self.source = self.latest_checkpoint()
        else:
            self.dir = self._new_folder(agent, args)
            self.changed = {}
            self.config = config
            self._write_config()

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def origin(self) -> str:
        """How this run began, as the flag that said so (for messages): ``--resume <run>``,
        ``--branch-from <checkpoint>``, or the run folder of a new run."""
        if self.branch is not None:
            return f"--branch-from {self.source}"
        return f"--resume {self.dir}" if self.resumed_from is not None else str(self.dir)

    def _check_branchable(self, agent: str, args: CommonArgs) -> tuple[Path, dict]:
        """The checkpoint file a branch starts from and its run's saved config; a UserError
        saying why not otherwise (another agent or env, no such checkpoint)."""
        given = Path(args.branch_from)
        parent = run_folder(given)
        where = f"--branch-from {args.branch_from}"
        try:
            saved = json.loads((parent / "config.json").read_text())
        except (OSError, ValueError):
            raise UserError(
                f"{where}: not a run folder or checkpoint of one (no readable "
                f"{parent / 'config.json'}); pass runs/<run> or runs/<run>/checkpoints/step_<N>.pt"
            ) from None
        if not isinstance(saved, dict) or saved.get("agent") != agent:
            found = saved.get("agent") if isinstance(saved, dict) else None
            raise UserError(f"{where}: that run is a {found} run; branch it with --agent {found}")
        if saved.get("env") != args.env:
            raise UserError(
                f"{where}: that run trained on {saved.get('env')}, not --env {args.env}; a "
                "branch continues on its parent's env"
            )
        checkpoints = checkpoint_files(parent)
        source = given if given.suffix == ".pt" else (checkpoints[-1] if checkpoints else None)
        if source is None or not source.is_file():
            kept = ", ".join(p.name for p in checkpoints) or "none"
            raise UserError(f"{where}: no such checkpoint (the run keeps: {kept})")
        return source, saved

    def _check_resumable(self, args: CommonArgs) -> dict:
        """The saved config of a run that can be resumed; a UserError saying why otherwise."""
        if not (self.dir / "config.json").is_file():
            raise UserError(
                f"--resume {args.resume}: not a run folder (no config.json); "
                f"pass a folder under {args.runs_dir}/"
            )
        try:
            saved = json.loads((self.dir / "config.json").read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"--resume {args.resume}: config.json cannot be read ({err})") from None
        if not isinstance(saved, dict) or saved.get("agent") != self.agent:
            saved = saved if isinstance(saved, dict) else {}
            raise UserError(
                f"--resume {args.resume}: that run is a {saved.get('agent')} run; "
                f"resume it with --agent {saved.get('agent')}"
            )
        if self.latest_checkpoint() is None:
            raise UserError(f"--resume {args.resume}: the run has no checkpoint to resume from")
        return saved

    def _new_folder(self, agent: str, args: CommonArgs) -> Path:
        runs = Path(args.runs_dir)
        try:
            runs.mkdir(parents=True, exist_ok=True)
            if args.run_name is not None:
                if args.run_name in ("", ".", "..") or "/" in args.run_name:
                    raise UserError(
                        f"--run-name {args.run_name!r} is not a folder name: use letters, "
                        "digits and -_. without '/'"
                    )
                folder = runs / args.run_name
                if (folder / "config.json").exists():
                    raise UserError(
                        f"run {folder} exists already: continue it with --resume {folder}, "
                        "or choose another --run-name"
                    )
                folder.mkdir(exist_ok=True)
                return folder
            name = "__".join(
                (
                    folder_name(args.env),
                    f"{agent}-{folder_name(args.method)}",
                    args.exp_name,
                    str(args.seed),
                    str(int(time.time())),
                )
            )
            copy = 1
            while True:  # runs started in the same second (a sweep) get _2, _3, ...
                folder = runs / (name if copy == 1 else f"{name}_{copy}")
                try:
                    folder.mkdir()
                    return folder
                except FileExistsError:
                    copy += 1
        except OSError as err:
            if err.errno == errno.ENAMETOOLONG:
                raise UserError(
                    f"the run folder's name would be longer than the file system allows "
                    f"({len(Path(err.filename or '').name)} characters): shorten --exp-name "
                    "or pass a shorter --run-name"
                ) from None
            raise UserError(
                f"--runs-dir {args.runs_dir}: cannot create a run folder there "
                f"({err.strerror or err}); choose a writable folder"
            ) from None

    def _write_config(self) -> None:
        write_json_atomic(self.dir / "config.json", self.config)

    def record_start(self, **facts) -> None:
        """Add facts about how this run took up its checkpoint (how its replay buffer and
        optimizer came back) to ``config.json``: a resume's entry under ``resumes``, or the
        ``branch`` record; written when the run opens."""
        (self.branch if self.branch is not None else self._resume_record).update(facts)

    # --- logs -----------------------------------------------------------------------------

    def open(self) -> None:
        """Start writing logs (a resumed run or a branch: once its checkpoint is restored).
        Rows past the checkpoint's step, logged by the process that was stopped, are dropped;
        a branch begins its ``scalars.jsonl`` with its parent's rows up to the branch step, so
        its learning curve starts at step 0."""
        if self._scalars is not None:
            return
        from torch.utils.tensorboard import SummaryWriter

        if self.branch is not None:
            self.dir = self._new_folder(self.agent, self._new_folder_args)
            self._write_config()
            kept = rows_through(self.source.parents[1] / "scalars.jsonl", self.branch["step"])
            write_atomic(self.dir / "scalars.jsonl", lambda file: file.write(kept))
        scalars = self.dir / "scalars.jsonl"
        purge_step = None
        if self.resumed_from is not None:
            purge_step = self.resumed_from + 1
            self._remove_partial_checkpoints()
            if scalars.is_file():
                kept = rows_through(scalars, self.resumed_from)
                write_atomic(scalars, lambda file: file.write(kept))
            self._resume_record["step"] = self.resumed_from
            self._write_config()
        if self.track:
            start_tracking(self)  # before the writer: W&B mirrors TensorBoard's events
        self._writer = SummaryWriter(str(self.dir), purge_step=purge_step)
        if self.resumed_from is None:
            table = "\n".join(f"|{k}|{v}|" for k, v in flatten(self.config).items())
            self._writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)
        self._scalars = open(scalars, "a")  # noqa: SIM115 (closed in close())

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Write scalars at ``step`` to TensorBoard and one JSON line (NaN/Inf as null);
        nothing for no scalars."""
        if not scalars:
            return
        self.open()
        clean = {k: float(v) for k, v in scalars.items()}
        for key, value in clean.items():
            self._writer.add_scalar(key, value, step)
        self._scalars.write(json.dumps(jsonable({"step": step, **clean})) + "\n")
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

    # --- checkpoints ----------------------------------------------------------------------

    def checkpoint_dir(self) -> Path:
        return self.dir / "checkpoints"

    def checkpoints(self) -> list[Path]:
        """The checkpoint files, oldest first."""
        return checkpoint_files(self.dir)

    def _remove_partial_checkpoints(self) -> None:
        """Delete checkpoint files a killed process left half-written (never renamed into
        place, so never complete): they only take disk space."""
        for partial in self.checkpoint_dir().glob("*.tmp"):  # `*` matches a leading dot too
            partial.unlink()

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def save_checkpoint(self, step: int, state: dict) -> Path:
        """Write ``state`` atomically as ``checkpoints/step_<step>.pt``; keep the newest
        ``--keep-checkpoints`` (0: all)."""
        folder = self.checkpoint_dir()
        folder.mkdir(exist_ok=True)
        path = folder / f"step_{step}.pt"
        state = {"agent": self.agent, "step": step, "wall_time_s": self.wall_time(), **state}
        write_atomic(path, lambda file: torch.save(state, file))
        if self.keep:
            for stale in self.checkpoints()[: -self.keep]:
                stale.unlink()
        return path

    def load_checkpoint(self, device: torch.device) -> dict:
        """The checkpoint this run starts from (a resume: the latest; a branch: its parent's);
        a truncated, foreign or unsafe file is a UserError."""
        path = self.source
        try:
            state = read_checkpoint(path, device)
        except UserError:
            raise
        except Exception as err:  # a truncated or foreign file: say which and stop
            if self.branch is not None:
                hint = "branch from another checkpoint of that run"
            elif older := self.checkpoints()[:-1]:
                hint = f"delete it to resume from the previous one ({older[-1].name})"
            else:
                hint = "it is the run's only checkpoint: start the run afresh"
            raise UserError(f"checkpoint {path} cannot be read ({err}); {hint}") from None
        if not isinstance(state, dict) or state.get("agent") != self.agent:
            raise UserError(f"checkpoint {path} is not a {self.agent} checkpoint")
        if self.branch is not None:  # the parent's time is the parent's
            self.branch["step"] = int(state["step"])
        else:
            self.resumed_from = int(state["step"])
            self.elapsed_before = float(state.get("wall_time_s", 0.0))
        return state

    def wall_time(self) -> float:
        """Seconds the run has taken, over every process that trained it (a resumed run adds
        the time its checkpoint carries)."""
        return self.elapsed_before + time.perf_counter() - self.started

    # --- the end --------------------------------------------------------------------------

    def finished(self) -> bool:
        """Whether the run's summary says it finished (summaries from before the status field
        were written only by finished runs)."""
        try:
            summary = json.loads((self.dir / "summary.json").read_text())
        except (OSError, ValueError):  # none, or cut short by a kill: not finished
            return False
        return isinstance(summary, dict) and summary.get("status") in (None, "finished")

    def write_summary(self, summary: dict) -> None:
        write_json_atomic(self.dir / "summary.json", jsonable(summary))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._scalars.close()
        if self.track:
            import wandb

            wandb.finish()


def start_tracking(run: Run) -> None:
    """Mirror the run to Weights & Biases (``--track``), as CleanRL does: the config, and the
    TensorBoard scalars synced as they are written. A resumed run continues its W&B run."""
    import wandb

    wandb.init(
        project=run.config["wandb_project_name"],
        entity=run.config["wandb_entity"],
        name=run.name,
        id=re.sub(r"[^\w.-]", "-", run.name)[-64:],
        resume="allow",
        config=run.config,
        dir=str(run.dir),
        sync_tensorboard=True,
    )


def checkpoint_files(run_dir: Path) -> list[Path]:
    """A run folder's checkpoint files (``checkpoints/step_<N>.pt``), oldest first; files whose
    name carries no step are not checkpoints."""
    steps = {}
    for path in (run_dir / "checkpoints").glob("step_*.pt"):
        if path.stem[5:].isdigit():
            steps[path] = int(path.stem[5:])
    return sorted(steps, key=steps.get)


def rows_through(scalars: Path, step: int) -> bytes:
    """The lines of a ``scalars.jsonl`` logged at or before ``step`` (a line cut short by a
    killed process is left out)."""
    lines = scalars.read_text().splitlines(keepends=True) if scalars.is_file() else []
    return "".join(
        line for line in lines if (row := row_of(line)) is not None and row["step"] <= step
    ).encode()


def row_of(line: str) -> dict | None:
    """One ``scalars.jsonl`` row, or None for a line a killed process left cut short."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) and "step" in row else None


def software_versions() -> dict:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def flatten(config: dict, prefix: str = "") -> dict:
    """``{"plasticity": {"fire_every": 5}}`` -> ``{"plasticity.fire_every": 5}``."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            flat[prefix + key] = value
    return flat


def changed_settings(saved: dict, current: dict) -> dict[str, list]:
    """Settings whose value differs between the saved config and this command:
    ``{"q_lr": [old, new]}`` (``resume``, ``branch_from`` and the resolved facts are not
    settings)."""
    before, after = flatten(saved), flatten(current)
    skip = ("resume", "branch_from", "run_name", "resolved.")
    return {
        key: [before[key], value]
        for key, value in after.items()
        if key in before and not key.startswith(skip) and before[key] != value
    }
