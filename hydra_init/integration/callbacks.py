"""Hydra callbacks: a sweep summary of what every job initialized, and a fair share of cores.

Select them from the command line or an app's defaults list::

    python train.py -m init=kaiming_conv,xavier hydra/callbacks=init_summary
    python train.py -m hydra/launcher=submitit_local hydra/callbacks=[init_summary,torch_threads]

``on_job_end`` runs where the job ran (a joblib worker, a submitit process, a
Slurm node), so each job leaves its row's data in its own output directory
(``hydra_init_job.json``, next to ``init_report.json``) and the launching process
collects them in ``on_multirun_end``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import numbers
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .job import output_dir_of, report_files
from .threads import limit_threads

__all__ = [
    "InitProbeCallback", "InitSummaryCallback", "TorchThreadsCallback", "collect_rows", "job_dirs",
    "markdown_table", "varying_overrides",
]

log = logging.getLogger("hydra_init")

JOB_FILE = "hydra_init_job.json"
"""What a job leaves for the summary: its number, overrides, status and returned metric."""
SUMMARY_NAME = "init_summary"
"""Stem of the summary files in the sweep directory (``.csv``, ``.json``, ``.md``)."""


def _metric(value: Any) -> Any:
    """A JSON-ready form of a job's return value (scalars, tensors, mappings of them)."""
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):  # a tensor with several elements
            return str(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(float(value)) else str(float(value))
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {str(k): _metric(v) for k, v in value.items()}
    return str(value)


class InitSummaryCallback(Callback):
    """Writes ``init_summary.{csv,json,md}`` into the sweep directory at the end of a multirun.

    One row per job: its number, overrides, status, the metric it returned,
    and what its init did (parameters initialized / left at their defaults,
    parameters written per rule, seed) read from the job's ``init_report.json``.

    Args:
        name: stem of the summary files.
    """

    def __init__(self, name: str = SUMMARY_NAME) -> None:
        self.name = name

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        # A re-used sweep dir may hold job dirs of an earlier, larger sweep: forget their rows.
        for stale in sweep_dir.glob(f"*/{JOB_FILE}") if sweep_dir.is_dir() else ():
            stale.unlink()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        mode = OmegaConf.select(config, "hydra.mode", default=None)
        if getattr(mode, "name", mode) == RunMode.RUN.name:
            return  # a single run has no sweep to summarize
        record: dict[str, Any] = {
            "job": int(config.hydra.job.num) if OmegaConf.select(config, "hydra.job.num") is not None
            else None,
            "overrides": list(job_return.overrides or []),
            "status": job_return.status.name,
        }
        if job_return.status == JobStatus.COMPLETED:
            record["metric"] = _metric(job_return.return_value)
        else:
            error = job_return._return_value
            record["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
        output_dir = output_dir_of(config.hydra)
        if output_dir is None:
            log.debug("init_summary: job has no output directory; %s not written", JOB_FILE)
            return
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / JOB_FILE).write_text(json.dumps(record, indent=2) + "\n")
        except Exception as exc:  # a callback's bookkeeping must never fail the job
            log.warning("init_summary: could not write %s (%s)", output_dir / JOB_FILE, exc)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        rows = collect_rows(sweep_dir)
        if not rows:
            log.warning("init_summary: no job records under %s", sweep_dir)
            return
        paths = write_summary(rows, sweep_dir, self.name)
        log.info("init summary (%s):\n%s", ", ".join(str(p) for p in paths), markdown_table(rows))


def _init_columns(job_dir: Path) -> dict[str, Any]:
    """What the job's init reports say: counts, per-rule writes, seed, warnings."""
    reports = [json.loads(p.read_text()) for p in report_files(job_dir)]
    if not reports:
        return {"initialized": None, "default": None, "rules": "", "seed": None, "warnings": 0}
    totals = [r["totals"] for r in reports]
    written: dict[str, int] = {}
    for r in reports:
        for label, info in r["rules"].items():
            written[label] = written.get(label, 0) + int(info.get("written", 0))
    return {
        "initialized": sum(t["rule"] + t["reset"] + t["pretrained"] for t in totals),
        "default": sum(t["default"] for t in totals),
        "rules": " ".join(f"{label}:{n}" for label, n in written.items()),
        "seed": reports[0]["seed"] if len(reports) == 1 else ",".join(str(r["seed"]) for r in reports),
        "warnings": sum(len(r["warnings"]) for r in reports),
    }


def _hydra_record(job_dir: Path) -> dict[str, Any]:
    """What Hydra itself leaves in every job's ``.hydra/``: the job number and the overrides."""
    import yaml

    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    hydra_file = job_dir / ".hydra" / "hydra.yaml"
    num = None
    if hydra_file.is_file():
        hydra_cfg = yaml.safe_load(hydra_file.read_text()) or {}
        num = ((hydra_cfg.get("hydra") or {}).get("job") or {}).get("num")
    return {"job": num if isinstance(num, int) else None, "overrides": [str(o) for o in overrides],
            "status": None}


def job_dirs(sweep_dir: str | Path, hydra_files: bool = False) -> list[Path]:
    """Job directories under ``sweep_dir``: those with a job record (``hydra_init_job.json``), and
    with ``hydra_files`` also those with Hydra's own ``.hydra/overrides.yaml`` (a run without the
    ``init_summary`` callback; ``sweep_dir`` itself when it is a single run's directory)."""
    root = Path(sweep_dir)
    found = {p.parent for p in root.glob(f"**/{JOB_FILE}")}
    if hydra_files:
        found |= {p.parent.parent for p in root.glob("**/.hydra/overrides.yaml")}
    return sorted(found)


def collect_rows(sweep_dir: str | Path, hydra_files: bool = False) -> list[dict[str, Any]]:
    """One row per job directory under ``sweep_dir`` (see :func:`job_dirs`), by job number.

    A job's record (``hydra_init_job.json``, left by the ``init_summary`` callback)
    gives its status and returned metric; without one (``hydra_files``) the row is
    read from the job's ``.hydra/`` files and its init reports, with no metric.
    """
    rows = []
    for job_dir in job_dirs(sweep_dir, hydra_files):
        job_file = job_dir / JOB_FILE
        record = json.loads(job_file.read_text()) if job_file.is_file() else _hydra_record(job_dir)
        row: dict[str, Any] = {
            "job": record.get("job"),
            "overrides": " ".join(record.get("overrides", [])),
            "status": record.get("status"),
        }
        metric = record.get("metric")
        if isinstance(metric, dict):
            row.update({f"metric.{k}": v for k, v in metric.items()})
        else:
            row["metric"] = metric
        row.update(_init_columns(job_dir))
        row["error"] = record.get("error", "")
        row["dir"] = str(job_dir.relative_to(sweep_dir))
        rows.append(row)
    return sorted(rows, key=lambda r: (r["job"] is None, r["job"] or 0, r["dir"]))


def varying_overrides(rows: list[dict[str, Any]]) -> list[str]:
    """Keep in each row's ``overrides`` only those that vary across the rows; returns the shared ones.

    >>> rows = [{"overrides": "init=xavier init.bias=0 +init/rules=[head_zero]"},
    ...         {"overrides": "init=normal init.bias=0 +init/rules=[head_zero]"}]
    >>> varying_overrides(rows), [r["overrides"] for r in rows]
    (['init.bias=0', '+init/rules=[head_zero]'], ['init=xavier', 'init=normal'])
    """
    tokens = [str(row.get("overrides") or "").split() for row in rows]
    if len(rows) < 2:
        return []
    shared = [t for t in tokens[0] if all(t in other for other in tokens[1:])]
    for row, own in zip(rows, tokens, strict=True):
        row["overrides"] = " ".join(t for t in own if t not in shared)
    return shared


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    if not any(row.get("error") for row in rows):
        columns.remove("error")
    return columns


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a GitHub-flavoured Markdown table.

    >>> print(markdown_table([{"job": 0, "overrides": "init=xavier", "metric": 0.5, "error": ""}]))
    | job | overrides | metric |
    |---|---|---|
    | 0 | init=xavier | 0.5 |
    """
    columns = _columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(row.get(c)).replace("|", "\\|") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_summary(rows: list[dict[str, Any]], directory: Path, name: str = SUMMARY_NAME) -> list[Path]:
    """Write ``<name>.csv``, ``<name>.json`` and ``<name>.md`` into ``directory``."""
    columns = _columns(rows)
    csv_path, json_path, md_path = (directory / f"{name}.{ext}" for ext in ("csv", "json", "md"))
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({c: _cell(row.get(c)) for c in columns} for row in rows)
    json_path.write_text(json.dumps(rows, indent=2) + "\n")
    md_path.write_text(markdown_table(rows) + "\n")
    return [csv_path, json_path, md_path]


class TorchThreadsCallback(Callback):
    """Gives each job of a parallel sweep its share of the CPU cores (``torch.set_num_threads``).

    See :func:`hydra_init.integration.threads.job_threads` for how the share is
    computed from the launcher's config.
    """

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        limit_threads(config)


class InitProbeCallback(Callback):
    """Probes each job's freshly initialized model before the job runs (``probe.json`` in its dir).

    Builds the model from the job's ``model`` node, applies its ``init`` node and
    runs :func:`hydra_init.tools.probe.probe` on the batch of its ``probe`` node
    (see :mod:`hydra_init.tools.probe_cli`). The job's own model is not touched
    (the probe builds its own copy) and the global random state is left as it
    was. The per-layer output and weight-gradient stds are also logged as the
    curves ``probe_act_std`` and ``probe_grad_std``, which ``hydra-init summary``
    overlays; a width sweep gets the coordinate check ``probe_coord_check.png``.

    Args:
        model_key, init_key, probe_key: the config nodes of the model, init and probe settings.
        device: where the probe's copy of the model is built.
        plot: also draw ``probe.png`` in the job dir (``auto``: if matplotlib is installed).
    """

    def __init__(self, model_key: str = "model", init_key: str = "init", probe_key: str = "probe",
                 device: str = "cpu", plot: str = "no") -> None:
        self.model_key, self.init_key, self.probe_key = model_key, init_key, probe_key
        self.device, self.plot = device, plot

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from ..tools.cli import _build_model
        from ..tools.curves import log_curve
        from ..tools.probe_cli import probe_config, probe_document, write_probe

        model_cfg = OmegaConf.select(config, self.model_key)
        if model_cfg is None:
            raise ValueError(f"init_probe: the job config has no {self.model_key!r} node (set model_key)")
        init_cfg = OmegaConf.select(config, self.init_key)
        report, batch = probe_config(config, model_cfg, init_cfg, init_key=self.init_key,
                                     probe_key=self.probe_key,
                                     build=lambda: _build_model(model_cfg, self.device))
        overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
        output_dir = Path(config.hydra.runtime.output_dir)
        write_probe(probe_document(report, init_cfg, overrides, batch=batch), output_dir, self.plot)
        weighted = report.weighted()
        depth = list(range(1, len(weighted) + 1))
        for name, values, ylabel in (
            ("probe_act_std", [lay.act_std for lay in weighted], "std of the layer's output at init"),
            ("probe_grad_std", [lay.grad_std for lay in weighted], "std of the weight gradient at init"),
        ):
            log_curve(name, [math.nan if v is None else v for v in values], depth, directory=output_dir,
                      xlabel="layer with parameters (forward order)", ylabel=ylabel, yscale="log")
        log.info("init_probe (%s):\n%s", output_dir / "probe.json", report.summary())
