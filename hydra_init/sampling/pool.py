"""The thread pool: run tasks on ``torch.get_num_threads()`` threads, uneven tasks balanced."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["Task", "run_parallel"]

Task = Callable[[], None]
_local = threading.local()

# ----------------------------------------------------------------------------- thread pool
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool_after_fork() -> None:
    """A forked child (DataLoader worker, forked rank) has no pool threads: start afresh."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), cores))


def run_parallel(tasks: Sequence[Task]) -> None:
    """Run tasks on ``torch.get_num_threads()`` threads (the caller's included).

    Each thread pulls the next task from a shared queue, so uneven tasks balance.
    Values never depend on which thread runs which task. A task that itself calls
    ``run_parallel`` runs its tasks inline (no nested pools, no deadlock).
    """
    workers = min(_workers(), len(tasks))
    if workers <= 1 or getattr(_local, "draining", False):
        with torch.no_grad():
            for task in tasks:
                task()
        return
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < workers - 1:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers - 1, thread_name_prefix="hydra_init")
        pool = _pool
    queue = iter(tasks)
    lock = threading.Lock()
    failed = threading.Event()

    def drain() -> None:
        _local.draining = True
        try:
            while not failed.is_set():
                with lock:
                    task = next(queue, None)
                if task is None:
                    return
                try:
                    with torch.no_grad():  # grad mode is per thread; tasks write in place
                        task()
                except BaseException:
                    failed.set()
                    raise
        finally:
            _local.draining = False

    futures = [pool.submit(drain) for _ in range(workers - 1)]
    try:
        drain()
    finally:
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error


