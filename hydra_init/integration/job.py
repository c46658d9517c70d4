"""Where a Hydra job keeps its files, and the init report written there.

Outside a Hydra job (plain Python, the compose API) there is no job output
directory and nothing is written.

>>> job_output_dir() is None  # not inside a Hydra job
True
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

from ..engine.report import InitReport

__all__ = ["REPORT_FILE", "job_output_dir", "report_files", "write_report"]

REPORT_FILE = "init_report.json"
"""Name of the report a Hydra job writes next to its ``.hydra/`` folder."""

_written: dict[str, int] = {}  # output dir -> reports this process wrote there


def job_output_dir() -> Path | None:
    """The running Hydra job's output directory (``hydra.runtime.output_dir``), or ``None``."""
    if not HydraConfig.initialized():
        return None
    output_dir = HydraConfig.get().runtime.output_dir
    return Path(output_dir) if output_dir else None


def write_report(report: InitReport, directory: str | os.PathLike | None = None) -> Path | None:
    """Write ``report`` as JSON into the job's output directory; returns the path.

    The first report of a job is ``init_report.json``; a job that initializes
    several models (a GAN's two halves) gets ``init_report_2.json`` and so on,
    in call order, instead of overwriting the first.

    Args:
        report: the report to write.
        directory: where to write; default: the running Hydra job's output
            directory. Outside a Hydra job (and with no ``directory``) nothing is
            written and ``None`` is returned.
    """
    target = Path(directory) if directory is not None else job_output_dir()
    if target is None:
        return None
    target.mkdir(parents=True, exist_ok=True)
    count = _written.get(str(target), 0) + 1
    _written[str(target)] = count
    name = REPORT_FILE if count == 1 else REPORT_FILE.replace(".json", f"_{count}.json")
    path = target / name
    path.write_text(report.to_json() + "\n")
    return path


def report_files(directory: str | os.PathLike) -> list[Path]:
    """The init reports a job wrote into ``directory``, in the order they were written."""
    first = Path(directory) / REPORT_FILE
    if not first.is_file():
        return []
    rest = sorted(
        Path(directory).glob(REPORT_FILE.replace(".json", "_*.json")),
        key=lambda p: int(p.stem.rsplit("_", 1)[1]) if p.stem.rsplit("_", 1)[1].isdigit() else 0,
    )
    return [first, *rest]
