"""Curves a Hydra job logs for the sweep summary (loss per step, a statistic per layer ...).

A job records named curves with :func:`log_curve`; they land in ``curves.json``
in the job's output directory, next to ``init_report.json``. ``hydra-init
summary <multirun dir>`` then draws one picture per curve name, a line per job,
coloured by the job's overrides (seeds of one setting share a colour).

Non-finite values (a loss that became NaN) are stored as ``null`` and drawn as
a gap, with the run marked as diverged.

Example:
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> path = log_curve("train_loss", [2.3, 1.1, 0.4], x=[0, 10, 20], directory=out)
    >>> path = log_curve("activation_std", [1.0, 0.5, float("nan")], xlabel="layer",
    ...                  yscale="log", directory=out)
    >>> curves = read_curves(out)
    >>> sorted(curves), curves["activation_std"].y
    (['activation_std', 'train_loss'], [1.0, 0.5, None])
    >>> curves["activation_std"].diverged
    True
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["CURVES_FILE", "Curve", "log_curve", "read_curves"]

CURVES_FILE = "curves.json"
"""Name of the file a job's curves are written to, in its output directory."""

_SCALES = ("linear", "log", "symlog")


@dataclass
class Curve:
    """One named series of a job: ``y`` over ``x`` (``x`` defaults to 0, 1, 2 ...).

    ``None`` in ``y`` stands for a non-finite value.
    """

    name: str
    y: list[float | None]
    x: list[float] = field(default_factory=list)
    xlabel: str = "step"
    ylabel: str = ""
    yscale: str = "linear"

    def __post_init__(self) -> None:
        if not self.x:
            self.x = list(range(len(self.y)))
        if len(self.x) != len(self.y):
            raise ValueError(f"curve {self.name!r}: {len(self.x)} x values for {len(self.y)} y values")
        if self.yscale not in _SCALES:
            raise ValueError(f"curve {self.name!r}: yscale must be one of {_SCALES}, got {self.yscale!r}")

    @property
    def diverged(self) -> bool:
        """Whether the curve ends on a non-finite value."""
        return bool(self.y) and self.y[-1] is None


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def log_curve(
    name: str,
    y: Sequence[float],
    x: Sequence[float] | None = None,
    *,
    xlabel: str = "step",
    ylabel: str = "",
    yscale: str = "linear",
    directory: str | os.PathLike | None = None,
) -> Path | None:
    """Record a curve in the job's ``curves.json`` (replacing a curve of the same name).

    Args:
        name: the curve's name; one summary picture is drawn per name.
        y: the values (non-finite ones are kept as gaps).
        x: positions of the values; default ``0, 1, 2, ...``.
        xlabel, ylabel: axis labels of the summary picture.
        yscale: ``linear``, ``log`` or ``symlog``.
        directory: where ``curves.json`` goes; default the running Hydra job's
            output directory. Outside a Hydra job (and with no ``directory``)
            nothing is written and ``None`` is returned.

    Returns:
        The path of ``curves.json``, or ``None`` when nothing was written.
    """
    curve = Curve(
        name, [_finite_or_none(v) for v in y], [float(v) for v in x] if x is not None else [],
        xlabel, ylabel or name, yscale,
    )
    if directory is None:
        from ..integration.job import job_output_dir

        directory = job_output_dir()
        if directory is None:
            return None
    path = Path(directory) / CURVES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = json.loads(path.read_text()) if path.is_file() else {}
    record = asdict(curve)
    del record["name"]
    stored[name] = record
    path.write_text(json.dumps(stored, indent=1) + "\n")
    return path


def read_curves(directory: str | os.PathLike) -> dict[str, Curve]:
    """The curves a job logged in ``directory`` (empty if it logged none)."""
    path = Path(directory) / CURVES_FILE
    if not path.is_file():
        return {}
    return {name: Curve(name=name, **record) for name, record in json.loads(path.read_text()).items()}
