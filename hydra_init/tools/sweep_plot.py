"""Pictures of a sweep: the metric of every job, and the curves the jobs logged.

Needs matplotlib (the ``plot`` extra: ``pip install hydra-init[plot]``); it is
imported only when a picture is drawn, with the non-interactive Agg backend.

Jobs are grouped by their overrides without the seed ones (``seed=1``,
``init.seed=1``), so the seeds of one setting share a colour:

>>> group_of("init=normal init.std=0.01 seed=2")
'init=normal init.std=0.01'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .curves import Curve, read_curves

__all__ = [
    "group_of",
    "metric_columns",
    "plot_curves",
    "plot_metrics",
    "plot_sweep",
    "require_matplotlib",
    "seed_of",
    "setting_labels",
]

_SEED = re.compile(r"^[+~]*(?:[\w.]*\.)?seed=")


def group_of(overrides: str) -> str:
    """A job's overrides without the seed overrides: the setting it belongs to."""
    kept = [token for token in overrides.split() if not _SEED.match(token)]
    return " ".join(kept) or "(no overrides)"


def seed_of(overrides: str) -> str:
    """A job's seed overrides alone (``""`` without any): what sets its line style.

    >>> seed_of("init=normal init.std=0.01 seed=2")
    'seed=2'
    """
    return " ".join(token for token in overrides.split() if _SEED.match(token))


def setting_labels(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each job's setting: its overrides without seeds and without those every job shares.

    >>> setting_labels([{"overrides": "init=xavier seed=0 train.steps=20"},
    ...                 {"overrides": "init=normal init.std=0.01 seed=1 train.steps=20"}])
    ['init=xavier', 'init=normal init.std=0.01']
    """
    groups = [group_of(str(row.get("overrides", ""))).split() for row in rows]
    common = set.intersection(*(set(g) for g in groups)) if len(groups) > 1 else set()
    return [" ".join(t for t in g if t not in common) or " ".join(g) or "(no overrides)" for g in groups]


def metric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Columns holding a returned metric (``metric`` or ``metric.<key>``) with a number somewhere."""
    columns: list[str] = []
    for row in rows:
        for column, value in row.items():
            if (column == "metric" or column.startswith("metric.")) and column not in columns and _number(
                value
            ) is not None:
                columns.append(column)
    return columns


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` with the Agg backend, or an ImportError naming the extra to install."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - the dev environment has matplotlib
        raise ImportError(
            "drawing the sweep needs matplotlib: pip install 'hydra-init[plot]'"
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _groups(labels: Sequence[str]) -> dict[str, int]:
    """Group label -> colour index, in order of first appearance."""
    order: dict[str, int] = {}
    for label in labels:
        order.setdefault(label, len(order))
    return order


def plot_metrics(rows: Sequence[Mapping[str, Any]], path: Path, title: str = "") -> Path | None:
    """One panel per metric column: every job as a dot, its setting's mean as a bar.

    Settings are rows (labels read horizontally); a metric whose positive values
    span more than three decades gets a log axis (bars: geometric means). Returns ``None`` (and draws
    nothing) when no job returned a number.
    """
    columns = metric_columns(rows)
    if not columns:
        return None
    plt = require_matplotlib()
    labels = setting_labels(rows)
    groups = _groups(labels)
    colors = plt.get_cmap("tab10")
    label_width = max(len(g) for g in groups)
    fig, axes = plt.subplots(
        1, len(columns), sharey=True, squeeze=False,
        figsize=(0.09 * label_width + 3.4 * len(columns), 0.45 * len(groups) + 1.6),
    )
    for ax, column in zip(axes[0], columns, strict=True):
        values_of: dict[str, list[float | None]] = {group: [] for group in groups}
        for row, label in zip(rows, labels, strict=True):
            values_of[label].append(_number(row.get(column)))
        finite = [v for values in values_of.values() for v in values if v is not None]
        log_axis = bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 1e3
        if log_axis:
            ax.set_xscale("log")
        for group, index in groups.items():
            values = values_of[group]
            ok = [v for v in values if v is not None]
            color = colors(index % 10)
            if ok:
                # on a log axis the bar is the geometric mean, the centre the eye sees there
                mean = math.exp(sum(map(math.log, ok)) / len(ok)) if log_axis else sum(ok) / len(ok)
                ax.barh(index, mean, left=min(finite) / 10 if log_axis else 0, color=color, alpha=0.35,
                        height=0.7)
                offsets = [(i - (len(ok) - 1) / 2) * 0.15 for i in range(len(ok))]
                ax.scatter(ok, [index + o for o in offsets], color=color, zorder=3, s=16)
            if len(ok) < len(values):
                ax.annotate(f"{len(values) - len(ok)} not finite", (0.02, index), va="center",
                            xycoords=("axes fraction", "data"), fontsize=8, color="crimson")
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels(list(groups), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(column.removeprefix("metric."), fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(
    name: str, curves: Sequence[tuple[str, Curve]], path: Path, title: str = "",
    seeds: Sequence[str] | None = None,
) -> Path:
    """All jobs' curves called ``name`` in one picture, a colour per setting, a line style per seed.

    ``curves`` holds ``(setting label, curve)`` pairs, ``seeds`` each curve's seed
    overrides (:func:`seed_of`). On a log scale the y range
    follows the runs that did not diverge; a diverged run's values beyond it are
    drawn as triangles at the edge, and its last finite value gets a cross.
    """
    plt = require_matplotlib()
    labels = [label for label, _ in curves]
    groups = _groups(labels)
    colors = plt.get_cmap("tab10")
    first = curves[0][1]
    fig, ax = plt.subplots(figsize=(7.0 + 0.06 * max(len(label) for label in labels), 4.6))
    ax.set_yscale(first.yscale)
    healthy = [v for _, c in curves if not c.diverged for v in c.y if v is not None and _plottable(v, c)]
    limits = _limits(healthy, first.yscale) if healthy else None
    seen: set[str] = set()
    seeds = list(seeds) if seeds is not None else [""] * len(curves)
    styles = {seed: _STYLES[i % len(_STYLES)] for i, seed in enumerate(dict.fromkeys(seeds))}
    for (label, curve), seed in zip(curves, seeds, strict=True):
        color = colors(groups[label] % 10)
        diverged = curve.diverged
        legend = f"{label} (diverged)" if diverged else label
        points = [(x, y) for x, y in zip(curve.x, curve.y, strict=True)
                  if y is not None and _plottable(y, curve)]
        shown = label not in seen
        seen.add(label)
        if limits is not None and diverged:
            inside = [(x, y) for x, y in points if limits[0] <= y <= limits[1]]
            beyond = [(x, limits[1] if y > limits[1] else limits[0]) for x, y in points
                      if not limits[0] <= y <= limits[1]]
            if beyond:
                ax.scatter(*zip(*beyond, strict=True), marker="^", color=color, zorder=3, s=30,
                           clip_on=False)
            points = inside
        if points:
            ax.plot(*zip(*points, strict=True), color=color, lw=1.2, alpha=0.8, ls=styles[seed],
                    marker="o" if len(points) == 1 else None, label=legend if shown else None)
        elif shown:
            ax.plot([], [], color=color, label=legend)
        if diverged and points:
            ax.scatter([points[-1][0]], [points[-1][1]], marker="x", color=color, zorder=3)
    if len(styles) > 1:
        for seed, style in styles.items():
            ax.plot([], [], color="0.4", ls=style, label=seed or "(no seed)")
    if limits is not None:
        ax.set_ylim(*limits)
    ax.set_xlabel(first.xlabel)
    ax.set_ylabel(first.ylabel or name)
    ax.set_title(title or name, fontsize=11)
    ax.grid(alpha=0.3, which="both" if first.yscale == "linear" else "major")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


_STYLES = ("-", "--", ":", "-.")
"""Line styles of the seeds of a setting, in order of first appearance."""


def _plottable(value: float, curve: Curve) -> bool:
    return curve.yscale != "log" or value > 0


def _limits(values: Sequence[float], scale: str) -> tuple[float, float] | None:
    """The y range of the healthy runs, with a margin (a decade on a log scale)."""
    if scale != "log":
        return None
    return min(values) / 10.0, max(values) * 10.0


def plot_sweep(
    rows: Sequence[Mapping[str, Any]], job_dirs: Sequence[Path], out_dir: Path, title: str = ""
) -> list[Path]:
    """Draw ``init_summary.png`` (metrics) and ``curve_<name>.png`` per logged curve name.

    Args:
        rows: the summary rows (one per job, with ``overrides`` and metric columns).
        job_dirs: each row's job output directory, where its ``curves.json`` is.
        out_dir: where the pictures are written.
        title: a title for every picture.

    Returns:
        The paths written (nothing for a sweep with neither metrics nor curves).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    metrics = plot_metrics(rows, out_dir / "init_summary.png", title)
    if metrics is not None:
        written.append(metrics)
    by_name: dict[str, list[tuple[str, Curve, str]]] = {}
    for label, row, job_dir in zip(setting_labels(rows), rows, job_dirs, strict=True):
        for name, curve in read_curves(job_dir).items():
            by_name.setdefault(name, []).append((label, curve, seed_of(str(row.get("overrides", "")))))
    for name, found in by_name.items():
        safe = re.sub(r"[^\w.-]+", "_", name)
        written.append(plot_curves(name, [(label, curve) for label, curve, _ in found],
                                   out_dir / f"curve_{safe}.png", title, [seed for *_, seed in found]))
    from .probe_plot import plot_sweep_probes  # a width sweep of init_probe jobs: the coordinate check

    return written + plot_sweep_probes(rows, job_dirs, out_dir, title)
