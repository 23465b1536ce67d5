"""The report's figures (matplotlib on the Agg backend, one PNG each) and its file writes, whose
failure is one line. :func:`pyplot`, :func:`colors`, :func:`subplots`, :func:`steps_axis` and
:func:`save` also draw the RL benchmarks' figures."""

from __future__ import annotations

import math
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from experiments.report.load import ReportError
from experiments.report.stats import METRICS


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "legend.fontsize": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "figure.dpi": 110,
        }
    )
    return plt


def colors(methods: list[str]) -> dict[str, tuple]:
    """A fixed colour per method (tab10 in grid order)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {method: cmap(i % 10) for i, method in enumerate(methods)}


def subplots(plt, count: int, width: float = 4.6, height: float = 3.3):
    """A row of ``count`` axes (wrapped at three)."""
    cols = min(count, 3)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def steps_axis(ax) -> None:
    """Label an env-steps x axis in thousands (k) or millions (M)."""
    from matplotlib.ticker import FuncFormatter

    def fmt(x, _):
        if abs(x) >= 1e6:
            return f"{x / 1e6:g}M"
        if abs(x) >= 1e3:
            return f"{x / 1e3:g}k"
        return f"{x:g}"

    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    ax.set_xlabel("env steps")


@contextmanager
def writing(path: Path):
    """Report a failed write of ``path`` (a read-only folder, a file in the way, a full disk)
    as one line."""
    try:
        yield
    except OSError as err:
        raise ReportError(
            f"cannot write {path} ({err.strerror}): pass --out with a folder you can write to "
            "and that has free space"
        ) from None


def writable_folder(out: Path) -> Path:
    """``out``, made if needed, after checking that a file can be written in it (before any
    statistic is computed)."""
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    return out


def save(fig, path: Path) -> str:
    """Write a figure and close it; returns its file name."""
    if fig.get_layout_engine() is None:  # figures with sub-figures lay themselves out
        fig.tight_layout()
    import matplotlib.pyplot as plt

    try:
        with writing(path):
            fig.savefig(path, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path.name


def draw_band(ax, steps, center, low, high, color, label: str, lw: float, alpha: float) -> None:
    """A line with its band shaded; a lone point (a metric logged once) as a marker with its
    band as an error bar, since a line and a band of one point draw nothing."""
    if len(steps) == 1:
        below, above = center - low, high - center
        ax.errorbar(steps, center, yerr=[below, above], fmt="o", color=color, label=label)
        return
    ax.plot(steps, center, color=color, label=label, lw=lw)
    ax.fill_between(steps, low, high, color=color, alpha=alpha)


def plot_final_returns(stats: dict, methods: list[str], out: Path) -> str:
    """IQM of the final return with its 95% CI per method, each run as a dot, one panel per
    env."""
    plt = pyplot()
    palette = colors(methods)
    fig, axes = subplots(plt, len(stats), height=1.3 + 0.5 * len(methods))
    rng = np.random.default_rng(0)
    for ax, (env, per_method) in zip(axes, stats.items(), strict=True):
        for row, method in enumerate(methods):
            entry = per_method.get(method, {})
            if not entry.get("n"):
                continue
            y = len(methods) - 1 - row
            low, high = entry["iqm_ci"]
            ax.hlines(y, low, high, color=palette[method], lw=6, alpha=0.35)
            ax.plot(entry["iqm"], y, "o", color=palette[method], ms=7)
            jitter = rng.uniform(-0.15, 0.15, len(entry["scores"]))
            ax.plot(entry["scores"], y + jitter, ".", color="k", ms=4, alpha=0.6)
        ax.set_yticks(range(len(methods)), list(reversed(methods)))
        ax.set_xlabel("final evaluation return")
        ax.set_title(f"{env}: IQM and 95% CI")
        ax.grid(axis="y", visible=False)
    return save(fig, out / "final_return.png")


def plot_profiles(profiles: dict, methods: list[str], out: Path) -> str:
    """Performance profiles (fraction of runs whose final return exceeds τ), one panel per env."""
    plt = pyplot()
    palette = colors(methods)
    fig, axes = subplots(plt, len(profiles))
    for ax, (env, (taus, curves, cis)) in zip(axes, profiles.items(), strict=True):
        for method in methods:
            if method not in curves:
                continue
            ax.plot(taus, curves[method], color=palette[method], label=method, lw=2)
            ax.fill_between(taus, cis[method][0], cis[method][1], color=palette[method], alpha=0.2)
        ax.set_xlabel("final evaluation return τ")
        ax.set_ylabel("fraction of runs with return > τ")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{env}: performance profile")
        ax.legend(frameon=False)
    return save(fig, out / "performance_profiles.png")


def plot_curves(curves: dict, switches: dict, methods: list[str], out: Path) -> str:
    """Evaluation return against env steps: IQM and 95% CI band per method, one panel per env;
    dotted lines at the task switches."""
    plt = pyplot()
    palette = colors(methods)
    fig, axes = subplots(plt, len(curves))
    for ax, (env, per_method) in zip(axes, curves.items(), strict=True):
        for step in switches.get(env, []):
            ax.axvline(step, color="0.6", ls=":", lw=1)
        for method in methods:
            if method not in per_method or per_method[method][0].size == 0:
                continue
            draw_band(ax, *per_method[method], palette[method], method, lw=2, alpha=0.2)
        steps_axis(ax)
        ax.set_ylabel("evaluation return (IQM, 95% CI)")
        ax.set_title(env + (" (dotted: task switches)" if switches.get(env) else ""))
        ax.legend(frameon=False)
    return save(fig, out / "learning_curves.png")


def plot_periods(tables: dict, methods: list[str], out: Path) -> str:
    """Mean training return per task period (mean over runs, range shaded), one panel per env."""
    plt = pyplot()
    palette = colors(methods)
    fig, axes = subplots(plt, len(tables))
    for ax, (env, per_method) in zip(axes, tables.items(), strict=True):
        for method in methods:
            table = per_method.get(method)
            if not table:
                continue
            x = np.arange(1, len(table["means"]) + 1)
            ax.plot(x, table["means"], "o-", color=palette[method], label=method, lw=2)
            ax.fill_between(x, table["low"], table["high"], color=palette[method], alpha=0.15)
        ax.set_xlabel(period_axis(per_method))
        ax.set_ylabel("mean training episode return")
        ax.set_title(f"{env}: return per task period")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(frameon=False)
    return save(fig, out / "task_periods.png")


def period_axis(per_method: dict) -> str:
    """The x label of an env's periods: task visits, or new perturbations in a stream."""
    perturbation = next(t["perturbation"] for t in per_method.values() if t)
    if perturbation is None:
        return "task period (k-th task visit)"
    return f"period (a new {perturbation} in each after the first)"


MOST_MARKED = 20
"""Methods with more intervention steps than this get no vertical lines in metric figures."""


def plot_metrics(net: str, per_env: dict, methods: list[str], out: Path) -> str:
    """Plasticity metrics of ``net`` against env steps (rows: envs; columns: metrics); mean over
    runs with the range shaded; interventions as thin vertical lines in the method's colour."""
    plt = pyplot()
    palette = colors(methods)
    envs = list(per_env)
    fig = plt.figure(figsize=(4.2 * len(METRICS), 3.4 * len(envs)), layout="constrained")
    # one sub-figure per env, titled once: env names are too long for every axis
    rows = np.atleast_1d(fig.subfigures(len(envs), 1))
    for row, env in zip(rows, envs, strict=True):
        row.suptitle(f"{env}: {net} network")
        axes = row.subplots(1, len(METRICS), squeeze=False)[0]
        for col, (metric, title) in enumerate(METRICS.items()):
            ax = axes[col]
            positive = True
            for method in methods:
                entry = per_env[env].get(method)
                if not entry:
                    continue
                # periodic recyclers (ReDo every 1000 updates) would cover the axes in lines
                marked = entry["interventions"]
                for step in marked if len(marked) <= MOST_MARKED else []:
                    ax.axvline(step, color=palette[method], lw=0.8, alpha=0.35, ls="--")
                steps, mean, low, high = entry["curves"][metric]
                if steps.size == 0:
                    continue
                positive &= bool(np.all(low > 0))
                draw_band(ax, steps, mean, low, high, palette[method], method, lw=1.8, alpha=0.15)
            if metric == "dfi" and positive and ax.has_data():
                ax.set_yscale("log")
            steps_axis(ax)
            ax.set_ylabel(title)
            if col == 0:
                ax.legend(frameon=False)
    return save(fig, out / f"metrics_{net}.png")
