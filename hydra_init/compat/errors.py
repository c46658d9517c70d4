"""Errors that are both :class:`~hydra_init.InitConfigError` and the type mmengine raises.

Ported code catches mmengine's types (``except TypeError:``), and ported tests
expect them (``pytest.raises(RuntimeError)``). Every compat entry point turns the
engine's :class:`~hydra_init.InitConfigError` into a subclass that is also the
exception type mmengine raises for the same mistake; the message stays ours.

>>> err = as_mmengine_error(InitConfigError("init_cfg.bias", "expected a number, got '1'"))
>>> isinstance(err, TypeError), isinstance(err, InitConfigError)
(True, True)
>>> type(err).__name__
'InitConfigTypeError'
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator

from ..errors import InitConfigError

__all__ = ["as_mmengine_error", "dual_error", "mmengine_errors", "mmengine_type"]


@functools.cache
def dual_error(kind: type[BaseException]) -> type[InitConfigError]:
    """The subclass of :class:`InitConfigError` that is also a ``kind`` (cached per type).

    >>> issubclass(dual_error(RuntimeError), RuntimeError)
    True
    """
    if issubclass(InitConfigError, kind):
        return InitConfigError
    # BaseException's __str__: KeyError's would quote the message
    namespace = {"__module__": __name__, "__str__": BaseException.__str__}
    return type(f"InitConfig{kind.__name__}", (InitConfigError, kind), namespace)


# (key pattern, problem pattern, the type mmengine raises); first match wins.
_MMENGINE_TYPES: list[tuple[re.Pattern[str], re.Pattern[str], type[BaseException]]] = [
    # the registry: build_from_cfg raises KeyError for a name it does not hold
    (re.compile(r"\.type$"), re.compile(r"^unknown initializer"), KeyError),
    # an initializer's constructor: unexpected keyword argument
    (re.compile(r"."), re.compile(r"^unknown rule key|has no argument"), TypeError),
    # load_checkpoint on a missing file
    (re.compile(r"checkpoint"), re.compile(r"file not found"), FileNotFoundError),
    # BaseInit's argument checks and _initialize_override's `override` check
    (re.compile(r"\.(bias|bias_prob)$"), re.compile(r"^expected"), TypeError),
    (re.compile(r"\.layer(\[\d+\])?$"), re.compile(r"^expected"), TypeError),
    (re.compile(r"\.override$"), re.compile(r"^expected"), TypeError),
    # xavier_init / kaiming_init: assert distribution in ['uniform', 'normal']
    (re.compile(r"\.distribution$"), re.compile(r"invalid value|mmengine has"), AssertionError),
    # _initialize_override: hasattr(module, name) or RuntimeError
    (re.compile(r"\.override(\[\d+\])?\.name$"), re.compile(r"matches no module"), RuntimeError),
    # torch's normal_/uniform_ refuse a negative std and a > b
    (re.compile(r"\.std$"), re.compile(r"is negative"), RuntimeError),
    (re.compile(r"\.a$"), re.compile(r"is above b"), RuntimeError),
]


def mmengine_type(err: InitConfigError) -> type[BaseException] | None:
    """The exception type mmengine raises for the mistake ``err`` describes, if it differs."""
    for key, problem, kind in _MMENGINE_TYPES:
        if key.search(err.key) and problem.search(err.problem):
            return kind
    return None


def as_mmengine_error(err: InitConfigError) -> InitConfigError:
    """``err`` as the dual-typed error (the same instance when mmengine raises ValueError too)."""
    kind = mmengine_type(err)
    if kind is None or isinstance(err, kind):
        return err
    out = dual_error(kind)(err.key, err.problem, valid=err.valid, hint=err.hint)
    out.__cause__ = err.__cause__
    return out


@contextlib.contextmanager
def mmengine_errors() -> Iterator[None]:
    """Re-raise :class:`InitConfigError` from the body as :func:`as_mmengine_error` does."""
    try:
        yield
    except InitConfigError as exc:
        converted = as_mmengine_error(exc)
        if converted is exc:
            raise
        raise converted.with_traceback(exc.__traceback__) from exc.__cause__
