"""What an intervention during learning costs and what it buys: the analysis of the FIRE
paper's RL protocol at small scale (``benchmarks/evidence/midpoint_minatar.py``).

Every seed's ``none`` run (``parent-none-s<seed>``) is the parent of that seed's branches
(``<protocol>-<method>-s<seed>``), which apply their method to the parent's checkpoint: at the
midpoint (``midpoint``) or at each quarter (``periodic``); ``every_layer`` is the follow-up
comparing FIRE on every layer at the midpoint with the midpoint's FIRE and reset. From each
run's evaluation returns (every 5k steps, 10 episodes, ε 0) and the protocol's intervention
steps, the four measures of ``benchmarks/_midpoint.py`` (dip, recovery, AUC after, final),
the dip's windows the 15k steps up to an intervention and the 10k steps after it, and their
family of comparisons (each method against ``none``, FIRE, or the follow-up's focus, against
each other method; paired over seeds, Welch beside it, Holm per measure), named before any
result is read.

The grid's runs must come from one clean commit: the analysis refuses runs from several
commits or from a dirty tree (one line, exit code 2) unless ``--allow-mixed-commits`` is
given, and then lists each commit's runs. Resumed runs are listed with how their replay buffer
came back.

Run: ``python -m benchmarks.midpoint_rl benchmarks/results/evidence/midpoint --out
benchmarks/results/midpoint_minatar`` (writes ``.md``, ``.json`` and ``.png``).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

from benchmarks import _midpoint
from benchmarks._rl_grid import (
    ALLOW_MIXED,
    Refused,
    eval_curve,
    finished_run,
    provenance,
    refusing,
    write_outputs,
)
from experiments.report.load import RunData

BEFORE, AFTER = 15_000, 10_000
"""The windows of the dip: evaluations in ``(t − BEFORE, t]`` against those in
``(t, t + AFTER]``."""
EVAL_EVERY = 5_000
RUN_NAME = re.compile(r"(?P<group>parent|midpoint|periodic)-(?P<method>.+)-s(?P<seed>\d+)$")


def load(folder: Path) -> dict[tuple[str, str], dict[int, RunData]]:
    """The finished runs of the folder by (group, method) and seed; other folders are named
    on stderr and left out."""
    runs: dict[tuple[str, str], dict[int, RunData]] = {}
    for run_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        match = RUN_NAME.match(run_dir.name)
        run = finished_run(run_dir, run_dir.name) if match else None
        if run is not None:
            runs.setdefault((match["group"], match["method"]), {})[int(match["seed"])] = run
    return runs


def analyse_protocol(protocol: str, runs: dict, total: int) -> dict | None:
    """:func:`benchmarks._midpoint.analyse` of one protocol's runs and their parents; None
    when it has no finished branch (a follow-up reading another protocol's runs: none of its
    focus method)."""
    spec = _midpoint.PROTOCOLS[protocol]
    groups = {"none": runs.get(("parent", "none"), {})}
    groups.update({m: runs.get((spec.runs, m), {}) for m in spec.methods})
    if not any(groups[m] for m in spec.own_methods):  # a follow-up needs runs of its own
        return None
    curves = {g: {s: eval_curve(r) for s, r in by_seed.items()} for g, by_seed in groups.items()}
    steps_at = _midpoint.intervention_steps(protocol, total)
    return _midpoint.analyse(curves, steps_at, total, (BEFORE, AFTER), EVAL_EVERY, spec.focus)


def main(argv: list[str] | None = None) -> dict:
    return refusing("midpoint_rl.py", lambda: analyse(sys.argv[1:] if argv is None else argv))


def analyse(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="the grid's folder of runs")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix")
    parser.add_argument(
        ALLOW_MIXED,
        action="store_true",
        help="analyse runs from several commits or a dirty tree (the output lists the commits)",
    )
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        raise Refused(f"{args.runs} is not a folder: pass the grid's folder of runs")
    runs = load(args.runs)
    parents = runs.get(("parent", "none"), {})
    if not parents:
        raise Refused(f"{args.runs} holds no finished parent-none-s<seed> run: run the grid first")
    code = provenance(
        {run.name: run.dir for by_seed in runs.values() for run in by_seed.values()},
        args.allow_mixed_commits,
    )
    first = next(iter(parents.values()))
    total = int(first.summary["total_timesteps"])
    result = {
        "command": shlex.join(["python", "-m", "benchmarks.midpoint_rl", *argv]),
        "env": first.env,
        "total_timesteps": total,
        "windows": {"before": BEFORE, "after": AFTER},
        "protocols": {},
        "provenance": code,
    }
    for protocol in _midpoint.PROTOCOLS:
        analysed = analyse_protocol(protocol, runs, total)
        if analysed is not None:
            result["protocols"][protocol] = analysed
    what = (
        f"DQN on `{result['env']}`, {total:,} steps; each method a branch of its seed's `none` "
        "run (`benchmarks/evidence/midpoint_minatar.py`)"
    )
    write_outputs(
        args.out,
        result,
        _midpoint.markdown(_midpoint.intro(what, (BEFORE, AFTER)), result),
        lambda path: _midpoint.plot(result, path, "env steps"),
    )
    return result


if __name__ == "__main__":
    main()
