"""The one error type for bad init configs, and the did-you-mean helper.

Every config problem is raised as :class:`InitConfigError` before any tensor is
written, so a failed :func:`hydra_init.apply` leaves the model unchanged.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["InitConfigError", "InitExecutionError", "closest", "did_you_mean"]


class InitConfigError(ValueError):
    """A bad init config: names the key path, what is valid, and the likely fix.

    Attributes:
        key: dotted path of the offending config key, e.g. ``init.rules.conv.mode``.
        problem: what is wrong.
        valid: what would be valid, or ``None``.
        hint: the suggested fix (often a did-you-mean), or ``None``.

    Example:
        >>> err = InitConfigError("init.rules.conv.type", "unknown initializer 'Kaimin'",
        ...                       valid="Constant, Kaiming, Normal", hint="did you mean 'Kaiming'?")
        >>> print(err)
        init.rules.conv.type: unknown initializer 'Kaimin'. Valid: Constant, Kaiming, Normal. \
Hint: did you mean 'Kaiming'?
    """

    def __init__(
        self, key: str, problem: str, *, valid: str | None = None, hint: str | None = None
    ) -> None:
        self.key = key
        self.problem = problem
        self.valid = valid
        self.hint = hint
        parts = [f"{key}: {problem}" if key else problem]
        if valid:
            parts.append(f"Valid: {valid}")
        if hint:
            parts.append(f"Hint: {hint}")
        super().__init__(". ".join(parts))


class InitExecutionError(RuntimeError):
    """Writing an accepted plan failed half-way (something the plan could not foresee).

    The message says whether the model was restored to its state before the call
    (:mod:`hydra_init.engine.restore`); the original error is the ``__cause__``.
    """


def closest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to ``word`` (case-insensitive), best first.

    >>> closest("Conv2D", ["Conv2d", "Linear", "ConvTranspose2d"])
    ['Conv2d']
    >>> sorted(closest("BatchNorm", ["BatchNorm1d", "BatchNorm2d", "Linear"]))
    ['BatchNorm1d', 'BatchNorm2d']
    """
    pool = sorted(set(candidates))
    lowered = {c.lower(): c for c in pool}
    exact = lowered.get(word.lower())
    if exact is not None and exact != word:
        return [exact]
    hits = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.6)
    return [lowered[h] for h in hits]


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A ``did you mean 'x'?`` phrase for ``word``, or ``None`` when nothing is close.

    >>> did_you_mean("kaimin_conv", ["kaiming_conv", "xavier"])
    "did you mean 'kaiming_conv'?"
    """
    hits = closest(word, candidates)
    if not hits:
        return None
    return "did you mean " + " or ".join(repr(h) for h in hits) + "?"
