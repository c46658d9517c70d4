"""Pictures of probes: one probe against depth, and a width sweep's coordinate check.

Needs matplotlib (the ``plot`` extra). The coordinate check (muP's "coord
check", at step 0) takes the ``probe.json`` of every job of a width sweep and
draws each layer's output std against the width, one panel per setting; a layer
whose std grows or shrinks with the width (the slope of log std over log width
beyond ``0.25``) is flagged:

>>> fit_slope([64, 128, 256], [1.0, 2.0, 4.0])  # std doubles with each doubling: width^1
1.0
>>> width_key([{"overrides": "model.width=64 init=xavier"}, {"overrides": "model.width=128 init=xavier"}])
'model.width'
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .sweep_plot import group_of, require_matplotlib

__all__ = ["SLOPE_LIMIT", "coord_check", "fit_slope", "plot_coord_check", "plot_probe", "width_key"]

SLOPE_LIMIT = 0.25
"""A layer whose output std scales as width^s with |s| above this is flagged (s = 0.5: sqrt(width))."""

_WIDTH_NAMES = re.compile(r"(width|d_model|hidden|n_embd|embed_dim|dim|channels|features|size)", re.I)


def plot_probe(document: Mapping[str, Any], path: Path, title: str = "") -> Path:
    """``probe.png``: output std (top) and gradient std (bottom) of every module call against depth.

    Layers with parameters are drawn bold; the shaded band is where no flag is
    raised (reference / threshold ... reference * threshold).
    """
    plt = require_matplotlib()
    layers = document["layers"]
    summary = document["summary"]
    xs = [layer["index"] for layer in layers]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8.0, 6.4))
    ref, threshold = summary["reference"], summary["threshold"]
    top.axhspan(ref / threshold, ref * threshold, color="tab:green", alpha=0.08, lw=0)
    top.axhline(ref, color="tab:green", lw=0.8, ls="--", label=f"reference {ref:.3g}")
    _series(top, layers, "act_std", weighted=False, color="0.6", label="output std (every module)")
    _series(top, layers, "act_std", weighted=True, color="tab:blue", label="output std (with parameters)")
    flagged = [(lay["index"], lay["act_std"]) for lay in layers if lay["flag"] and _ok(lay["act_std"])]
    if flagged:
        top.scatter(*zip(*flagged, strict=True), s=14, color="crimson", zorder=4,
                    label=f"flagged (beyond x{threshold:g})")
    _series(bottom, layers, "out_grad_std", weighted=False, color="0.6", label="output-gradient std")
    _series(bottom, layers, "grad_std", weighted=True, color="tab:orange", label="weight-gradient std")
    for ax, ylabel in ((top, "std of the module's output"), (bottom, "gradient std")):
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best", frameon=False)
    bottom.set_xlabel("module call, forward order")
    if len(layers) <= 40:
        bottom.set_xticks(xs)
        bottom.set_xticklabels([lay["label"] for lay in layers], rotation=90, fontsize=7)
    verdict = summary["verdict"]
    factor = summary["factor_per_layer"]
    top.set_title((title + "\n" if title else "") + f"signal {verdict}" +
                  (f", x{factor:.3g} per layer" if factor else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ok(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _series(ax: Any, layers: Sequence[Mapping[str, Any]], key: str, *, weighted: bool, color: str,
            label: str) -> None:
    points = [(lay["index"], lay[key]) for lay in layers
              if (not weighted or lay["params"]) and _ok(lay.get(key))]
    if points:
        ax.plot(*zip(*points, strict=True), color=color, lw=1.8 if weighted else 0.8,
                marker="o", ms=3.5 if weighted else 2, label=label, zorder=3 if weighted else 2)


# ---------------------------------------------------------------------------------- width sweeps
def fit_slope(widths: Sequence[float], stds: Sequence[float]) -> float | None:
    """Least-squares slope of log(std) over log(width); ``None`` with fewer than two usable points."""
    points = [(math.log(w), math.log(s)) for w, s in zip(widths, stds, strict=True) if _ok(s) and w > 0]
    if len({x for x, _ in points}) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return round(slope, 6)


def _tokens(overrides: str) -> dict[str, str]:
    return dict(t.lstrip("+").split("=", 1) for t in overrides.split() if "=" in t)


def width_key(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The swept override that looks like a width: integer values that differ, a width-like name."""
    seen: dict[str, set[str]] = {}
    for row in rows:
        for key, value in _tokens(str(row.get("overrides", ""))).items():
            seen.setdefault(key, set()).add(value)
    swept = [k for k, values in seen.items()
             if len(values) > 1 and all(v.isdigit() for v in values) and "seed" not in k]
    named = [k for k in swept if _WIDTH_NAMES.search(k.rsplit(".", 1)[-1])]
    preferred = [k for k in named if "width" in k.lower()]
    return (preferred or named or [None])[0]


def coord_check(
    rows: Sequence[Mapping[str, Any]], job_dirs: Sequence[Path], key: str | None = None,
) -> dict[str, Any] | None:
    """Per setting and layer: the output std at every width, its slope and flag.

    Returns ``None`` when the jobs left no ``probe.json`` or no width was swept.
    Seeds of one setting and width are averaged (geometric mean).
    """
    key = key or width_key(rows)
    if key is None:
        return None
    settings: dict[str, dict[str, dict[int, list[float]]]] = {}
    order: dict[str, list[str]] = {}
    for row, job_dir, setting in zip(rows, job_dirs, _settings(rows, key), strict=True):
        path = Path(job_dir) / "probe.json"
        tokens = _tokens(str(row.get("overrides", "")))
        if not path.is_file() or key not in tokens:
            continue
        width = int(tokens[key])
        layers = [lay for lay in json.loads(path.read_text())["layers"] if lay["params"]]
        names = order.setdefault(setting, [])
        for layer in layers:
            if layer["label"] not in names:
                names.append(layer["label"])
            std = layer["act_std"]
            settings.setdefault(setting, {}).setdefault(layer["label"], {}).setdefault(width, []).append(
                std if _ok(std) else math.nan)
    if not settings:
        return None
    result: dict[str, Any] = {"width_key": key, "slope_limit": SLOPE_LIMIT, "settings": {}}
    for setting, per_layer in settings.items():
        layers = []
        for label in order[setting]:
            by_width = per_layer[label]
            widths = sorted(by_width)
            stds = [_geomean(by_width[w]) for w in widths]
            slope = fit_slope(widths, stds)
            flag = "" if slope is None or abs(slope) <= SLOPE_LIMIT else (
                "grows" if slope > 0 else "shrinks")
            layers.append({"label": label, "widths": widths, "act_std": stds, "slope": slope,
                           "flag": flag})
        result["settings"][setting] = layers
    return result


def _settings(rows: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    """Each job's setting: its overrides without seeds, the width and those every job shares."""
    groups = [[t for t in group_of(str(row.get("overrides", ""))).split()
               if t.lstrip("+").split("=", 1)[0] != key] for row in rows]
    common = set.intersection(*(set(g) for g in groups)) if len(groups) > 1 else set()
    return [" ".join(t for t in g if t not in common) or " ".join(g) or "(no overrides)" for g in groups]


def _geomean(values: Sequence[float]) -> float | None:
    ok = [v for v in values if _ok(v)]
    return math.exp(sum(map(math.log, ok)) / len(ok)) if ok else None


def describe(check: Mapping[str, Any]) -> str:
    """One line per setting: how many layers grow or shrink with the width, the steepest slope."""
    lines = []
    for setting, layers in check["settings"].items():
        slopes = [lay["slope"] for lay in layers if lay["slope"] is not None]
        grows = [lay["label"] for lay in layers if lay["flag"] == "grows"]
        shrinks = [lay["label"] for lay in layers if lay["flag"] == "shrinks"]
        steepest = max(slopes, key=abs) if slopes else None
        verdict = "flat" if not grows and not shrinks else ", ".join(
            part for part in (f"{len(grows)} grow" if grows else "",
                              f"{len(shrinks)} shrink" if shrinks else "") if part)
        lines.append(f"{setting}: {verdict} with {check['width_key']} ({len(layers)} layers; steepest "
                     f"std ~ width^{steepest:.2f})" if steepest is not None else f"{setting}: no data")
    return "\n".join(lines)


def plot_coord_check(check: Mapping[str, Any], path: Path, title: str = "") -> Path:
    """One panel per setting: each layer's output std against the width (log-log), colour by depth."""
    plt = require_matplotlib()
    settings = check["settings"]
    fig, axes = plt.subplots(1, len(settings), squeeze=False, sharey=True,
                             figsize=(4.6 * len(settings) + 1.2, 4.4))
    cmap = plt.get_cmap("viridis")
    for ax, (setting, layers) in zip(axes[0], settings.items(), strict=True):
        for i, layer in enumerate(layers):
            points = [(w, s) for w, s in zip(layer["widths"], layer["act_std"], strict=True) if _ok(s)]
            if not points:
                continue
            ax.plot(*zip(*points, strict=True), marker="o", ms=3, lw=1.6 if layer["flag"] else 1.0,
                    ls="-" if layer["flag"] else "--", color=cmap(i / max(1, len(layers) - 1)))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="major")
        flagged = sum(1 for lay in layers if lay["flag"])
        ax.set_title(f"{setting}\n{flagged} of {len(layers)} layers change with width"
                     if flagged else f"{setting}\nflat: no layer changes with width", fontsize=9)
        ax.set_xlabel(check["width_key"])
    axes[0][0].set_ylabel("std of the layer's output at init")
    norm = plt.Normalize(1, max(len(layers) for layers in settings.values()))
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[0].tolist(), pad=0.02)
    bar.set_label("layer with parameters (forward order)")
    fig.suptitle(title or "coordinate check at init (solid: std changes with width)", fontsize=10, y=1.04)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_sweep_probes(rows: Sequence[Mapping[str, Any]], job_dirs: Sequence[Path], out_dir: Path,
                      title: str = "") -> list[Path]:
    """The width sweep's coordinate check (``probe_coord_check.{png,json}``), if there is one."""
    check = coord_check(rows, job_dirs)
    if check is None:
        return []
    data = out_dir / "probe_coord_check.json"
    data.write_text(json.dumps(check, indent=1) + "\n")
    print("coordinate check at init:\n" + describe(check), file=sys.stderr)
    return [plot_coord_check(check, out_dir / "probe_coord_check.png", title), data]
