"""Where a Hydra job keeps its files, and the init report written there.

Outside a Hydra job (plain Python, the compose API) there is no job output
directory and nothing is written. Under the compose API with
``return_hydra_config=True`` and ``HydraConfig().set_config(cfg)`` (the test
pattern of lightning-hydra-template) ``hydra.runtime.output_dir`` is unset
(``???``): that is "no output directory" too, never an error. Writing a report
cannot fail a build: a directory that cannot be written is logged at WARNING
and skipped.

>>> job_output_dir() is None  # not inside a Hydra job
True
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from ..engine.report import InitReport

__all__ = ["REPORT_FILE", "job_output_dir", "output_dir_of", "report_files", "write_report"]

REPORT_FILE = "init_report.json"
"""Name of the report a Hydra job writes next to its ``.hydra/`` folder."""

log = logging.getLogger("hydra_init")

_written: dict[str, int] = {}  # output dir -> reports this process wrote there


def output_dir_of(hydra_cfg: object) -> Path | None:
    """``hydra.runtime.output_dir`` of a ``hydra`` node, or ``None`` when unset or missing (``???``).

    >>> from omegaconf import OmegaConf
    >>> output_dir_of(OmegaConf.create({"runtime": {"output_dir": "???"}})) is None
    True
    >>> str(output_dir_of(OmegaConf.create({"runtime": {"output_dir": "/tmp/run"}})))
    '/tmp/run'
    """
    try:
        value = OmegaConf.select(hydra_cfg, "runtime.output_dir", default=None, throw_on_missing=False)
    except Exception:  # an unresolvable interpolation: no directory either
        return None
    return Path(str(value)) if value else None


def job_output_dir() -> Path | None:
    """The running Hydra job's output directory (``hydra.runtime.output_dir``), or ``None``."""
    if not HydraConfig.initialized():
        return None
    return output_dir_of(HydraConfig.get())


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
        log.debug("hydra_init: no job output directory (not in a Hydra job run); %s not written",
                  REPORT_FILE)
        return None
    count = _written.get(str(target), 0) + 1
    name = REPORT_FILE if count == 1 else REPORT_FILE.replace(".json", f"_{count}.json")
    path = target / name
    try:
        target.mkdir(parents=True, exist_ok=True)
        path.write_text(report.to_json() + "\n")
    except Exception as exc:  # a report must never fail the build (read-only dir, full disk ...)
        log.warning("hydra_init: could not write %s (%s); the model is initialized all the same", path, exc)
        return None
    _written[str(target)] = count
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
