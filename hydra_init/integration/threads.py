"""A fair share of CPU cores for each job of a parallel sweep.

Parallel launchers run several jobs on one machine at once, and torch's
default of one intra-op thread per core then oversubscribes the cores
(``n_jobs x cores`` threads). :func:`job_threads` reads the launcher's config
and says how many threads one job should use.

>>> from omegaconf import OmegaConf
>>> joblib = OmegaConf.create({"hydra": {"launcher": {
...     "_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}}})
>>> job_threads(joblib, cpus=8)
4
"""

from __future__ import annotations

import logging
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["available_cpus", "job_threads", "limit_threads"]

log = logging.getLogger("hydra_init")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a Slurm allocation, ``taskset``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def job_threads(config: DictConfig, cpus: int | None = None) -> int | None:
    """Threads one job of this sweep should use, or ``None`` to keep torch's default.

    * ``hydra.launcher.cpus_per_task`` (submitit, local or Slurm) when set;
    * joblib: ``cpus // n_jobs`` (``n_jobs=-1`` means one job per CPU, as in joblib);
    * submitit_local without ``cpus_per_task``: 1, since it starts every job of
      the sweep at once;
    * Slurm without ``cpus_per_task``: the CPUs of the job's allocation;
    * the basic launcher (one job at a time): ``None``.
    """
    launcher = OmegaConf.select(config, "hydra.launcher", default=None)
    if not isinstance(launcher, DictConfig):
        return None
    cpus = cpus or available_cpus()
    target = str(launcher.get("_target_") or "")
    per_task = launcher.get("cpus_per_task")
    if per_task:
        return int(per_task)
    if target.endswith("JoblibLauncher"):
        n_jobs = int(launcher.get("n_jobs") or -1)
        n_jobs = n_jobs if n_jobs > 0 else max(1, cpus + 1 + n_jobs)
        return max(1, cpus // n_jobs)
    if target.endswith("submitit_launcher.LocalLauncher"):
        return 1
    if target.endswith("SlurmLauncher"):
        return cpus
    return None


def limit_threads(config: Any = None) -> int | None:
    """Set ``torch.set_num_threads`` to this job's share; returns it (``None``: unchanged).

    ``config`` is the job's full config (with its ``hydra`` node); by default the
    running Hydra job's.
    """
    import torch

    if config is None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None
        config = OmegaConf.create({"hydra": HydraConfig.get()})
    threads = job_threads(config)
    if threads is not None:
        torch.set_num_threads(threads)
        log.debug("hydra_init: torch uses %d thread(s) in this job", threads)
    return threads
