"""What a user watching the terminal, or reading a log file, sees of a run.

On a terminal: a progress bar (steps, steps/s, recent return). When output goes to a file (nohup,
a cluster job, a sweep's ``train.log``): a plain progress line every ``progress_every`` seconds
instead, with the ETA. With ``--verbose 1`` (the default) also one line per evaluation and, at
every metrics step, a table of the run's scalars grouped like Stable-Baselines3's
``verbose=1`` output.
"""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict
from datetime import timedelta

from tqdm import tqdm

from plasticity import InterventionReport


def duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds))) if math.isfinite(seconds) else "?"


def number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}"


def scalar_table(step: int, scalars: dict[str, float]) -> str:
    """A boxed table of the network-level scalars (``group/name``; per-layer keys left out)."""
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for key, value in scalars.items():
        parts = key.split("/")
        if len(parts) == 2:
            groups[parts[0]][parts[1]] = value
    rows = [("step", "", number(step))]
    for group in sorted(groups):
        rows.append((f"{group}/", None, None))
        rows.extend(("", name, number(value)) for name, value in sorted(groups[group].items()))
    left = max(len(a) + len(b or "") + 4 for a, b, _ in rows)
    right = max(len(c or "") for _, _, c in rows)
    rule = "-" * (left + right + 7)
    lines = [rule]
    for group, name, value in rows:
        label = f"{group}{'    ' + name if name else ''}" if value is not None else group
        lines.append(f"| {label:<{left}} | {value or '':<{right}} |")
    lines.append(rule)
    return "\n".join(lines)


class Console:
    """Progress, evaluation lines and metric tables on stdout/stderr (see the module doc)."""

    def __init__(self, verbose: int, total: int, initial: int, progress_every: float = 30.0):
        self.verbose = verbose
        self.total, self.step = total, initial
        self.progress_every = progress_every
        self.start_time, self.start_step = time.perf_counter(), initial
        self.last_line = self.start_time
        interactive = sys.stderr.isatty()
        self.bar = None
        if verbose and interactive:
            self.bar = tqdm(
                total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=1.0
            )

    def say(self, text: str) -> None:
        """One line (or block) of text, kept clear of the progress bar."""
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def progress(self, step: int, mean_return: float) -> None:
        """The run is at ``step``: move the bar, or print a plain line every so often."""
        advanced, self.step = step - self.step, step
        if not self.verbose:
            return
        now = time.perf_counter()
        sps = (step - self.start_step) / max(now - self.start_time, 1e-9)
        if self.bar is not None:
            self.bar.update(advanced)
            if now - self.last_line >= 1.0:
                self.bar.set_postfix(ret=f"{mean_return:.1f}", sps=f"{sps:.0f}", refresh=False)
                self.last_line = now
        elif now - self.last_line >= self.progress_every:
            self.last_line = now
            eta = (self.total - step) / sps if sps > 0 else math.inf
            print(
                f"step {step:,}/{self.total:,} ({100 * step / self.total:.0f}%) | "
                f"{sps:.0f} steps/s | return {mean_return:.1f} | "
                f"elapsed {duration(now - self.start_time)} | ETA {duration(eta)}",
                flush=True,
            )

    def metrics(self, step: int, scalars: dict[str, float]) -> None:
        if self.verbose:
            self.say(scalar_table(step, scalars))

    def intervention(self, step: int, network: str, report: InterventionReport) -> None:
        """One line for an intervention that reinitialized weights (what, where, and
        :meth:`plasticity.InterventionReport.summary`)."""
        if self.verbose:
            self.say(report.console_line(step, network))

    def evaluation(self, step: int, returns: list[float], video: str | None = None) -> None:
        if self.verbose and returns:
            mean = sum(returns) / len(returns)
            spread = math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns))
            where = f"; video in {video}/" if video else ""
            self.say(
                f"eval at step {step:,}: return {mean:.1f} ± {spread:.1f} "
                f"({len(returns)} episodes){where}"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
