"""Time-based progress reporting for long initializations, with no dependency.

A small model initializes in milliseconds and must stay silent; a model whose
init takes more than a couple of seconds should show that it is alive.
:class:`Progress` does both: it prints nothing until ``delay`` seconds have
passed, then one log line every ``interval`` seconds, and a closing line if it
printed anything at all. Updates may come from several threads at once (the
engine draws tiles on a thread pool).

The engine calls it from :func:`hydra_init.engine.execute.execute`; any long loop can
use it the same way::

    with Progress(total=sum(p.numel() for p in model.parameters()), desc="init") as progress:
        for task, size in work:
            task()
            progress.update(size)

Example (a fake clock shows when lines appear; real runs use ``time.monotonic``):

    >>> import logging, sys
    >>> demo = logging.getLogger("progress_demo"); demo.propagate = False
    >>> demo.addHandler(logging.StreamHandler(sys.stdout)); demo.setLevel(logging.INFO)
    >>> now = [0.0]
    >>> progress = Progress(total=4_000_000, desc="init", logger=demo, clock=lambda: now[0])
    >>> progress.update(1_000_000)          # 0 s: too early, silent
    >>> now[0] = 3.0; progress.update(1_000_000)
    init: 2.00M/4.00M values (50%), 3.0 s elapsed, ~3.0 s left
    >>> now[0] = 4.0; progress.update(1_000_000)   # less than `interval` since the last line
    >>> now[0] = 6.0; progress.close()
    init: done, 3.00M/4.00M values in 6.0 s
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

__all__ = ["Progress", "format_count"]

log = logging.getLogger("hydra_init")


def format_count(n: float) -> str:
    """A compact count: ``950``, ``12.3k``, ``4.00M``, ``1.20G``.

    >>> [format_count(n) for n in (950, 12_345, 4_000_000, 1.2e9)]
    ['950', '12.3k', '4.00M', '1.20G']
    """
    for factor, suffix, digits in ((1e9, "G", 2), (1e6, "M", 2), (1e3, "k", 1)):
        if abs(n) >= factor:
            return f"{n / factor:.{digits}f}{suffix}"
    return f"{n:.0f}"


class Progress:
    """Report progress of a long job as periodic log lines, silently for short jobs.

    Args:
        total: the amount of work (e.g. values to fill); ``0`` disables percentages.
        desc: the prefix of every line.
        unit: what is counted, shown after the counts.
        delay: seconds of silence before the first line (fast jobs print nothing).
        interval: minimum seconds between two lines.
        logger: where lines go (INFO level); the ``hydra_init`` logger by default,
            so a Hydra job records them in its log file.
        clock: a monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        total: int,
        *,
        desc: str = "hydra_init",
        unit: str = "values",
        delay: float = 2.0,
        interval: float = 5.0,
        logger: logging.Logger = log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if delay < 0 or interval <= 0:
            raise ValueError(f"need delay >= 0 and interval > 0, got {delay}, {interval}")
        self.total = int(total)
        self.desc = desc
        self.unit = unit
        self.delay = delay
        self.interval = interval
        self.logger = logger
        self.clock = clock
        self.done = 0
        self.lines = 0
        self._start = clock()
        self._last: float | None = None
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ counting
    def update(self, n: int = 1) -> None:
        """Count ``n`` more units of finished work; maybe print a line. Thread-safe."""
        with self._lock:
            self.done += int(n)
            now = self.clock()
            elapsed = now - self._start
            due = elapsed >= self.delay and (self._last is None or now - self._last >= self.interval)
            if due and not self._closed:
                self._last = now
                self.lines += 1
                self.logger.info("%s", self._line(elapsed))

    def wrap(self, tasks: Iterable[Callable[[], None]], size: int) -> list[Callable[[], None]]:
        """Tasks that count ``size`` units of work in total once they have all run.

        The engine's work is a list of zero-argument tasks (tiles of a tensor);
        wrapping the tasks of one parameter with the parameter's ``numel()``
        spreads its size evenly over its tasks.

        >>> progress = Progress(total=10, delay=60)
        >>> for task in progress.wrap([lambda: None] * 4, 10):
        ...     task()
        >>> progress.done
        10
        """
        tasks = list(tasks)
        if not tasks:
            self.update(size)
            return []
        shares = _split(int(size), len(tasks))
        return [_counted(task, share, self.update) for task, share in zip(tasks, shares, strict=True)]

    def close(self) -> None:
        """Print the closing line (only if a progress line was printed)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.lines:
                elapsed = self.clock() - self._start
                of_total = f"/{format_count(self.total)}" if self.total else ""
                self.logger.info(
                    "%s: done, %s%s %s in %.1f s",
                    self.desc, format_count(self.done), of_total, self.unit, elapsed,
                )

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ text
    def _line(self, elapsed: float) -> str:
        text = f"{self.desc}: {format_count(self.done)}"
        if self.total > 0:
            fraction = min(self.done / self.total, 1.0)
            text += f"/{format_count(self.total)} {self.unit} ({fraction:.0%}), {elapsed:.1f} s elapsed"
            if 0 < fraction < 1:
                text += f", ~{elapsed * (1 - fraction) / fraction:.1f} s left"
        else:
            text += f" {self.unit}, {elapsed:.1f} s elapsed"
        return text


def _split(size: int, parts: int) -> Sequence[int]:
    """``size`` split into ``parts`` integers that differ by at most one."""
    base, extra = divmod(size, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _counted(task: Callable[[], None], share: int, update: Callable[[int], None]) -> Callable[[], None]:
    def run() -> None:
        task()
        update(share)

    return run
