"""What the RL evidence grids (``benchmarks/evidence/*.py``) and their analyses share: a grid's
``train.py`` runs and what each needs next, read from its folder; running them, parents before
their branches, in this process or several processes at once; reading a run's evaluation
curve; refusing a grid that does not come from one clean commit; writing the outputs.

A run's state is the sweep's (:func:`experiments.sweep.execution.next_step`): ``done`` (its
summary says finished), ``resume`` (it has a checkpoint: ``train.py --resume``) or ``start``
(no checkpoint: a folder it left is deleted and the run started again).
"""

from __future__ import annotations

import importlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks._stats import provenance_problem, run_provenance, runs_by_commit, write_result_json
from experiments.report.load import RunData, read_run
from experiments.report.markdown import jsonable
from experiments.runs import CONFIG_FILE, UnreadableFile, read_json
from experiments.sweep.execution import next_step, set_aside_unreadable_summary

ROOT = Path(__file__).resolve().parents[1]
ALLOW_MIXED = "--allow-mixed-commits"
EVAL = "eval/episodic_return"


class Refused(Exception):
    """Bad input: one line on stderr, exit code 2 (:func:`refusing`)."""


def refusing(prog: str, analysis: Callable[[], dict]) -> dict:
    """``analysis()``, with a :class:`Refused` said in one line on stderr and exit code 2."""
    try:
        return analysis()
    except Refused as err:
        print(f"{prog}: {err}", file=sys.stderr)
        raise SystemExit(2) from None


# --- running a grid ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GridRun:
    """One ``train.py`` run of a grid, in ``runs_dir / name`` (a name may hold a ``/``)."""

    runs_dir: Path
    name: str
    agent: str
    argv: tuple[str, ...]
    """the flags that start it, but ``--agent`` and its folder (``--runs-dir``, ``--run-name``)"""
    parent: str | None = None
    """the name of the run of the grid it branches from, which must finish first"""

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.name

    @property
    def log(self) -> Path:
        """Its console when it runs in a process of its own: ``<run folder>.out``."""
        return self.run_dir.with_name(self.run_dir.name + ".out")

    def next_step(self) -> tuple[str, list[str]]:
        """What the run needs now (``done``, ``resume``, ``start``) and the train.py flags that
        do it after ``--agent`` (none when done)."""
        action, _ = next_step(self.run_dir)
        if action == "done":
            return action, []
        if action == "resume":
            return action, ["--resume", str(self.run_dir)]
        folder = ["--runs-dir", str(self.run_dir.parent), "--run-name", self.run_dir.name]
        return action, [*self.argv, *folder]


def describe(runs: list[GridRun]) -> list[str]:
    """A line per run: what it needs now and the command that does it."""
    lines = []
    for run in runs:
        action, argv = run.next_step()
        command = shlex.join(["python", "train.py", "--agent", run.agent, *argv])
        lines.append(f"{action:6s} {run.name}" + (f": {command}" if argv else ""))
    return lines


def train_here(agent: str, argv: list[str]) -> int:
    """Run train.py's work in this process, as ``train.py --agent AGENT ARGV`` would (the
    agent's ``main`` under :func:`agents.cli.run_cli`); its exit code."""
    from agents.cli import parse_args, run_cli

    module = importlib.import_module(f"agents.{agent}")

    def train() -> dict:
        return module.main(parse_args(module.Args, agent, argv, prog=f"train.py --agent {agent}"))

    try:
        run_cli(train)
    except SystemExit as exit_:  # run_cli's and the parser's ends, as a process would exit
        return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    return 0


def train_process(agent: str, argv: list[str], log: Path) -> int:
    """Run ``train.py --agent AGENT ARGV`` in a process of its own on one thread, its console
    written to ``log``; its exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        return subprocess.call(
            [sys.executable, "train.py", "--agent", agent, *argv],
            cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def execute(run: GridRun, in_process: bool) -> bool:
    """Bring one run to its end; whether it got there. A run started afresh loses the folder
    it left (no checkpoint: nothing to continue from); a process's log is deleted when its run
    finishes and kept when it fails."""
    action, argv = run.next_step()
    if action == "done":
        return True
    if action == "resume":
        set_aside_unreadable_summary(run.run_dir)
    elif run.run_dir.exists():
        shutil.rmtree(run.run_dir)
    start = time.time()
    code = train_here(run.agent, argv) if in_process else train_process(run.agent, argv, run.log)
    print(f"{run.name}: exit {code} after {time.time() - start:.0f} s", flush=True)
    if code == 0 and not in_process:
        run.log.unlink()
    return code == 0


def run_grid(runs: list[GridRun], jobs: int) -> int:
    """Bring every run of the grid to its end: first the runs without a parent, then the
    branches of those that did not fail. ``jobs`` 1 runs them one after another in this process
    (the console shows them); more runs up to ``jobs`` train.py processes at once, each writing
    to its :attr:`GridRun.log`. Returns how many runs did not finish: the failed ones and the
    branches of a failed parent, which are not started."""
    failed: set[str] = set()
    in_process = jobs <= 1

    def wave(todo: list[GridRun]) -> None:
        ready = [run for run in todo if run.parent not in failed]
        failed.update(run.name for run in todo if run.parent in failed)
        if in_process:
            finished = [execute(run, in_process=True) for run in ready]
        else:
            with ThreadPoolExecutor(jobs) as pool:
                finished = list(pool.map(lambda run: execute(run, in_process=False), ready))
        failed.update(run.name for run, done in zip(ready, finished, strict=True) if not done)

    wave([run for run in runs if run.parent is None])
    wave([run for run in runs if run.parent is not None])
    if failed:
        where = "above" if in_process else "in their .out logs beside the run folders"
        print(f"{len(failed)} runs did not finish ({', '.join(sorted(failed))}): see {where}",
              file=sys.stderr)  # fmt: skip
    return len(failed)


def complete(runs: list[GridRun], jobs: int) -> None:
    """:func:`run_grid`, refusing to go on to an analysis when a run did not finish."""
    unfinished = run_grid(runs, jobs)
    if unfinished:
        raise Refused(
            f"{unfinished} runs did not finish: fix what stopped them and run the command again "
            "(it resumes), or pass --analyse-only to read the finished ones"
        )


def split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    """A script's own arguments and those after ``--``, which go to every train.py run."""
    if "--" not in argv:
        return argv, []
    return argv[: argv.index("--")], argv[argv.index("--") + 1 :]


# --- reading a grid ---------------------------------------------------------------------------


def finished_run(run_dir: Path, name: str) -> RunData | None:
    """The run of a folder when it has finished; else None, and ``name`` is said on stderr
    with why it is left out."""
    try:
        run = read_run(run_dir)
    except UnreadableFile as err:
        print(f"left out {name}: {err}", file=sys.stderr)
        return None
    if not run.finished:
        print(f"left out {name}: not finished", file=sys.stderr)
        return None
    return run


def eval_curve(run: RunData) -> tuple[np.ndarray, np.ndarray]:
    """A run's evaluation returns: their steps and values, as logged (steps ascending)."""
    steps, values = run.scalars.get(EVAL, (np.zeros(0, int), np.zeros(0)))
    return np.asarray(steps), np.asarray(values, dtype=float)


def between(curve: tuple[np.ndarray, np.ndarray], start: int, stop: int) -> np.ndarray:
    """The curve's values at steps in ``(start, stop]``."""
    steps, values = curve
    return values[(steps > start) & (steps <= stop)]


def provenance(run_dirs: dict[str, Path], allow_mixed: bool) -> dict:
    """The grid's code: ``{"problem", "runs_by_commit", "resumed"}`` from the ``config.json``
    of each run (name → folder; :func:`benchmarks._stats.run_provenance`). Runs from several
    commits or a dirty tree are refused unless ``allow_mixed``; ``resumed`` says how each
    resumed run's replay buffer came back."""
    found = {name: run_provenance(read_json(path / CONFIG_FILE) or {})
             for name, path in run_dirs.items()}  # fmt: skip
    problem = provenance_problem(found)
    if problem and not allow_mixed:
        raise Refused(
            f"{problem}: rerun them on one clean commit, or pass {ALLOW_MIXED} to analyse them "
            "anyway (the output then lists each commit's runs)"
        )
    return {
        "problem": problem,
        "runs_by_commit": runs_by_commit(found),
        "resumed": {name: p["resumes"] for name, p in found.items() if p["resumes"]},
    }


def provenance_lines(record: dict) -> list[str]:
    """The markdown section of :func:`provenance`: each commit's run count, the problem, the
    resumed runs and how their buffer came back."""
    lines = ["## Provenance", ""]
    for commit, names in record["runs_by_commit"].items():
        lines.append(f"- `{commit}`: {len(names)} runs")
    if record["problem"]:
        lines.append(f"- **{record['problem']}** (analysed with {ALLOW_MIXED})")
    for name, resumes in record["resumed"].items():
        how = "; ".join(f"at {r['step']:,}, buffer {r['buffer']}" for r in resumes)
        lines.append(f"- {name} resumed: {how}")
    return lines


def write_outputs(out: Path, result: dict, markdown: str, plot: Callable[[Path], None]) -> None:
    """``out.json`` (:func:`benchmarks._stats.write_result_json`), the figure ``out.png`` and
    ``out.md``; prints the markdown."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result_json(out.with_suffix(".json"), jsonable(result))
    plot(out.with_suffix(".png"))
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
