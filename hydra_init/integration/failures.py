"""How a bad init config fails inside a Hydra job: its message first, without our internals.

Hydra prints a job's exception as a traceback, and ``hydra.utils.instantiate``
wraps it in an ``InstantiationException``. The entry points of the Hydra glue
(:func:`~hydra_init.instantiate`, :func:`~hydra_init.initialized`,
:class:`~hydra_init.Init`) are wrapped by :func:`config_errors_first`: inside a
running Hydra job an :class:`~hydra_init.InitConfigError` is first logged as one
ERROR line (``[hydra_init][ERROR] - init.rules.conv.mode: invalid value ...``), and
it is re-raised with its traceback cut at the entry point, so what follows is
the user's frames, not the engine's. Outside a job nothing is logged.

>>> @config_errors_first
... def build():
...     raise InitConfigError("init.seed", "expected an integer, got 'x'")
>>> try:
...     build()
... except InitConfigError as err:
...     frames = [f.name for f in traceback.extract_tb(err.__traceback__)]
...     print(err, "| inner frame shown:", "build" in frames)
init.seed: expected an integer, got 'x' | inner frame shown: False
"""

from __future__ import annotations

import functools
import logging
import traceback  # noqa: F401  (the example above)
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import InitConfigError

__all__ = ["config_errors_first"]

log = logging.getLogger("hydra_init")

_F = TypeVar("_F", bound=Callable[..., Any])


def _in_job() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized()


def config_errors_first(fn: _F) -> _F:
    """Wrap an entry point: log an :class:`InitConfigError` once at ERROR in a job, cut its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InitConfigError as err:
            if not getattr(err, "_hydra_init_logged", False):
                err._hydra_init_logged = True  # type: ignore[attr-defined]  # nested entry points log once
                if _in_job():
                    log.error("%s", err)
            raise err.with_traceback(None) from None

    return wrapper  # type: ignore[return-value]
