"""What the RL evidence scripts (``benchmarks/evidence/*.py``) share: starting ``train.py``
runs (in this process, or several processes at once), knowing which are done, reading a run's
evaluation curve, and refusing a grid that does not come from one clean commit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # train.py and report.py, run from a checkout

import report  # noqa: E402
from benchmarks._stats import provenance_problem, run_provenance, runs_by_commit  # noqa: E402

ALLOW_MIXED = "--allow-mixed-commits"
EVAL = "eval/episodic_return"


class Refused(Exception):
    """Bad input or a failed run: one line on stderr, exit code 2."""


def run_state(run_dir: Path) -> str:
    """``"finished"``, ``"unfinished"`` (a folder without a finished summary: resume it) or
    ``"absent"``."""
    if not (run_dir / "config.json").exists():
        return "absent"
    return (
        "finished"
        if report.is_finished(report.read_json(run_dir / "summary.json"))
        else ("unfinished")
    )


def resume_or(run_dir: Path, agent: str, start: list[str]) -> list[str] | None:
    """The ``train.py`` arguments that bring ``run_dir`` to its end: None when it has
    finished, a ``--resume`` of it when it started, else ``start``."""
    state = run_state(run_dir)
    if state == "finished":
        return None
    if state == "unfinished":
        return ["--agent", agent, "--resume", str(run_dir)]
    return start


def train(commands: list[list[str]], jobs: int, logs: Path) -> None:
    """Run ``train.py`` with each argument list: one after another in this process when
    ``jobs`` is 1, else in up to ``jobs`` processes at once, each writing its console to
    ``logs/<i>.log``. A run that fails stops the grid with :class:`Refused`."""
    if jobs <= 1:
        import train as train_py

        for argv in commands:
            print("train.py " + " ".join(argv), flush=True)
            train_py.main(argv)
        return
    logs.mkdir(parents=True, exist_ok=True)

    def one(item: tuple[int, list[str]]) -> tuple[list[str], int, Path]:
        index, argv = item
        log = logs / f"{index}.log"
        with log.open("w") as out:
            code = subprocess.call(
                [sys.executable, str(ROOT / "train.py"), *argv], stdout=out, stderr=out, cwd=ROOT
            )
        return argv, code, log

    with ThreadPoolExecutor(jobs) as pool:
        for argv, code, log in pool.map(one, enumerate(commands)):
            print(f"exit {code}: train.py {' '.join(argv)}", flush=True)
            if code != 0:
                raise Refused(f"train.py exited with {code}: see {log}, fix it and run again")


def split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    """A script's own arguments and those after ``--``, which go to every train.py run."""
    if "--" not in argv:
        return argv, []
    return argv[: argv.index("--")], argv[argv.index("--") + 1 :]


def write_outputs(out: Path, result: dict, markdown: str, plot: Callable[[Path], None]) -> None:
    """``out.json`` (NaN as null), ``out.md`` and the figure ``out.png``; prints the table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report.jsonable(result)))
    out.with_suffix(".md").write_text(markdown)
    plot(out.with_suffix(".png"))
    print(markdown)


def eval_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A run's evaluation returns: steps and values, in step order."""
    steps, values = report.read_scalars(run_dir / "scalars.jsonl").get(
        EVAL, (np.zeros(0, int), np.zeros(0))
    )
    order = np.argsort(steps, kind="stable")
    return steps[order], values[order]


def between(curve: tuple[np.ndarray, np.ndarray], start: int, stop: int) -> np.ndarray:
    """The curve's values at steps in ``(start, stop]``."""
    steps, values = curve
    return values[(steps > start) & (steps <= stop)]


def provenance(configs: dict[str, Path], allow_mixed: bool) -> dict:
    """The grid's code: ``{"problem", "runs_by_commit", "dirty"}`` from each run's
    ``config.json`` (name → path). Runs from several commits or a dirty tree are refused
    unless ``allow_mixed``."""
    found = {name: run_provenance(report.read_json(path) or {}) for name, path in configs.items()}
    problem = provenance_problem(found)
    if problem and not allow_mixed:
        raise Refused(
            f"{problem}: rerun them on one clean commit, or pass {ALLOW_MIXED} to analyse them "
            "anyway (the output then lists each commit's runs)"
        )
    return {
        "problem": problem,
        "runs_by_commit": runs_by_commit(found),
        "dirty": sorted(name for name, p in found.items() if p["dirty"]),
    }


def provenance_line(record: dict) -> str:
    """One markdown paragraph: the commit of a clean grid, else each commit's run count."""
    by_commit = record["runs_by_commit"]
    if record["problem"] is None:
        return f"Every run ran on commit `{next(iter(by_commit))}` with a clean tree."
    counts = "; ".join(f"`{commit}`: {len(names)} runs" for commit, names in by_commit.items())
    return f"Code: {record['problem']} (analysed with {ALLOW_MIXED}): {counts}."
