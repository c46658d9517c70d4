"""Exact truncated-normal sampling, with the cheapest exact method for each interval.

``N(mean, std^2)`` conditioned on ``[a, b]`` (the distribution of
``torch.nn.init.trunc_normal_``). :func:`trunc_plan` picks, per interval, the
cheapest exact method - normal proposals where only out-of-bounds elements are
redrawn (``|z|`` for one-sided intervals), the inverse CDF in float64, or
Robert's (1995) exponential proposal in the tails - and :func:`trunc_normal_`
runs it on proposals from a source (a torch generator stream or the
counter-based hash of :mod:`hydra_init.sampling.generators`). Every element's value is the
first accepted proposal of its own sequence. :func:`trunc_normal_tile_` fills a tile from
a torch generator, with a faster route to the same bits for zero-mean normal proposals.

>>> trunc_plan(-2.0, 2.0).method, trunc_plan(8.0, float("inf")).method
('normal', 'exp')
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .generators import TorchSource
from .scratch import thread_array, thread_buffer

if TYPE_CHECKING:
    from .draws import Restart, TruncNormalDraw

__all__ = ["trunc_normal_", "trunc_normal_tile_", "trunc_plan"]

_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
# The inverse CDF works in upper-tail probabilities q; below _ICDF_MIN_TAIL, float64
# loses precision in erfinv(2q - 1), so those draws are redone from the exact tail
# beyond _ICDF_TAIL_START (where q == _ICDF_MIN_TAIL) with the exponential proposal.
_ICDF_MIN_TAIL = 1e-9
_ICDF_TAIL_START = 5.997807015007686
_NO_UNDERFLOW = 1e-20  # |z| > 1e-13 for every nonzero draw, so |z * std| stays a normal float
_EXP_ONLY_BEYOND = 30.0  # standard units; beyond, erfc underflows and exp acceptance is ~1
# Relative costs in normal draws (CPU estimates that choose the method; they are part of
# the value format, since the method decides the values): normal proposals
# cost _COST_NORMAL for the first round plus _COST_REDRAW per redrawn element.
_COST_NORMAL, _COST_REDRAW, _COST_ICDF, _COST_EXP = 1.2, 2.0, 2.0, 2.4


def _normal_cost(acceptance: float) -> float:
    return _COST_NORMAL + _COST_REDRAW * (1.0 / acceptance - 1.0)


def _upper_tail(x: float) -> float:
    """``P(Z > x)`` for a standard normal, accurate in the upper tail."""
    return 0.5 * math.erfc(x / _SQRT2)


@dataclass(frozen=True)
class _TruncPlan:
    """How to sample a standard normal on ``[lo, hi]`` (after an optional mirror)."""

    method: str  # "normal", "icdf" or "exp"
    lo: float
    hi: float
    flip: bool = False  # negate the result (the interval was mirrored)
    fold: bool = False  # normal: propose |z| (the interval lies on one side of 0)
    p_lo: float = 0.0  # icdf: probabilities at the interval's ends
    p_hi: float = 0.0
    upper: bool = False  # icdf: p_lo/p_hi are upper-tail probabilities
    tail: _TruncPlan | None = None  # icdf: redraws for probabilities below _ICDF_MIN_TAIL
    rate: float = 0.0  # exp: proposal rate, truncated span and acceptance peak
    span: float = 1.0
    peak: float = 0.0
    acceptance: float = 1.0  # the expected fraction of proposals kept


def _exp_plan(alpha: float, beta: float, flip: bool) -> _TruncPlan:
    rate = 0.5 * (alpha + math.sqrt(alpha * alpha + 4.0))
    span = -math.expm1(-rate * (beta - alpha)) if math.isfinite(beta) else 1.0
    crest = min(rate, beta)
    plan = _TruncPlan("exp", alpha, beta, flip, rate=rate, span=span, peak=(crest - rate) ** 2)
    mass = _upper_tail(alpha) - _upper_tail(beta)
    if alpha < _EXP_ONLY_BEYOND and mass > 0.0:
        plan = dataclasses.replace(plan, acceptance=_exp_acceptance(plan, mass))
    return plan


def _exp_acceptance(plan: _TruncPlan, mass: float) -> float:
    """Acceptance rate of the exponential proposal for a right-tail interval of ``mass``."""
    log_acceptance = (
        math.log(mass) + math.log(plan.rate) + _LOG_SQRT_2PI + plan.rate * plan.lo
        - 0.5 * plan.rate * plan.rate + 0.5 * plan.peak - math.log(plan.span)
    )
    return math.exp(min(log_acceptance, 0.0))


@functools.lru_cache(maxsize=4096)
def trunc_plan(alpha: float, beta: float) -> _TruncPlan:
    """Pick the cheapest exact method for ``N(0, 1)`` conditioned on ``[alpha, beta]``.

    Candidates: normal proposals (``|z|`` when the interval is on one side of 0)
    rejected outside the interval; the inverse CDF in float64; Robert's (1995)
    exponential proposal for tails. The expected cost of each is its cost per
    proposal over its acceptance rate.
    """
    flip = beta <= 0.0
    if flip:
        alpha, beta = -beta, -alpha
    if alpha < 0.0:  # the interval holds the mode; probabilities stay within (0.19, 0.81)
        mass = 1.0 - _upper_tail(-alpha) - _upper_tail(beta)
        if _normal_cost(mass) <= _COST_ICDF:
            return _TruncPlan("normal", alpha, beta, flip, acceptance=mass)
        return _TruncPlan("icdf", alpha, beta, flip, p_lo=_upper_tail(-alpha), p_hi=1.0 - _upper_tail(beta))
    exp_plan = _exp_plan(alpha, beta, flip)
    q_lo, q_hi = _upper_tail(alpha), _upper_tail(beta)
    mass = q_lo - q_hi
    if alpha >= _EXP_ONLY_BEYOND or mass <= 0.0:  # erfc underflows; exp acceptance is ~1 there
        return exp_plan
    costs = {"normal": _normal_cost(2.0 * mass), "exp": _COST_EXP / exp_plan.acceptance}
    if q_lo >= 10 * _ICDF_MIN_TAIL:  # at most 10% of draws fall back to the tail
        costs["icdf"] = _COST_ICDF
    best = min(costs, key=costs.__getitem__)
    if best == "normal":
        return _TruncPlan("normal", alpha, beta, flip, fold=True, acceptance=2.0 * mass)
    if best == "exp":
        return exp_plan
    tail = _exp_plan(max(alpha, _ICDF_TAIL_START), beta, flip) if q_hi < _ICDF_MIN_TAIL else None
    return _TruncPlan("icdf", alpha, beta, flip, p_lo=q_hi, p_hi=q_lo, upper=True, tail=tail)


def _array(t: torch.Tensor):
    """A numpy view on CPU (its masks and indexing are several times faster), else the tensor."""
    return t.numpy() if t.device.type == "cpu" else t


_SCRATCH_LIMIT = 1 << 20  # values: the largest masks kept per thread


def _scratch_masks(numel: int) -> tuple[np.ndarray, np.ndarray]:
    """This thread's two reusable masks of ``numel`` values (fresh ones beyond the limit)."""
    if numel > _SCRATCH_LIMIT:
        return np.empty(numel, dtype=bool), np.empty(numel, dtype=bool)
    return thread_array(numel, np.bool_, 0), thread_array(numel, np.bool_, 1)


def _outside(z, lo, hi, inclusive: bool = False):
    """The mask of ``z`` below ``lo`` or above ``hi`` (``inclusive``: at or beyond them).

    On CPU (``z`` a numpy array) it is written into this thread's scratch masks, so it
    must be used before the next call: a fresh tile-sized mask per call costs page faults.
    """
    if not isinstance(z, np.ndarray):
        return (z <= lo) | (z >= hi) if inclusive else (z < lo) | (z > hi)
    low, high = _scratch_masks(len(z))
    (np.less_equal if inclusive else np.less)(z, lo, out=low)
    (np.greater_equal if inclusive else np.greater)(z, hi, out=high)
    return np.bitwise_or(low, high, out=low)


def _positions(mask):
    """``np.flatnonzero(mask)`` (a tensor's ``nonzero()`` off CPU), faster for sparse masks.

    At the few percent of a truncated normal's rejections, most 8-byte words of the
    mask are zero: only the bytes of the nonzero words are searched (about half the
    time of one ``flatnonzero`` over the whole mask).

    >>> _positions(np.array([0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1], dtype=bool)).tolist()
    [1, 8, 9, 17]
    """
    if not isinstance(mask, np.ndarray):
        return mask.nonzero().view(-1)
    body = len(mask) - len(mask) % 8
    words = mask[:body].view(np.uint64)
    hit = np.flatnonzero(words != 0)
    within = np.flatnonzero(words[hit].view(np.bool_))
    found = (hit[within >> 3] << 3) + (within & 7)
    if body == len(mask):
        return found
    return np.concatenate([found, np.flatnonzero(mask[body:]) + body])


def _refill_in_order_(target, pending, accepted: Callable[[int], np.ndarray | torch.Tensor],
                      acceptance: float) -> None:
    """Give each of the ``pending`` positions of ``target``, in order, the next accepted
    proposal of a sequential stream.

    ``accepted(n)`` draws ``n`` fresh proposals and returns the accepted ones, in order.
    A batch is sized for the acceptance rate (part of the value format), so one or two
    batches do.
    """
    while len(pending):
        wanted = len(pending)
        kept = accepted(int(wanted / acceptance * 1.1) + 16)[:wanted]
        target[pending[: len(kept)]] = kept
        pending = pending[len(kept) :]


def _propose(plan: _TruncPlan, out: torch.Tensor, index, src):
    """Write one proposal per element of ``out``; return the rejection mask (``None``: all kept)."""
    if plan.method == "normal":
        src.normal(out, index)
        z = _array(out)
        if plan.fold:  # numpy on CPU, for the reason given in trunc_normal_
            out.abs_() if z is out else np.abs(z, out=z)
        return _outside(z, plan.lo, plan.hi)
    if plan.method == "icdf":
        u = out if out.dtype == torch.float64 else torch.empty_like(out, dtype=torch.float64)
        src.uniform(u, index)
        p = u.mul_(plan.p_hi - plan.p_lo).add_(plan.p_lo)  # a probability in [p_lo, p_hi)
        rejected = _array(p) < _ICDF_MIN_TAIL if plan.tail is not None else None
        z = p.mul_(2.0).sub_(1.0).erfinv_().mul_(-_SQRT2 if plan.upper else _SQRT2)
        z.clamp_(plan.lo, plan.hi)
        if z is not out:
            out.copy_(z)
        return rejected
    # Robert (1995): exponential proposal on [lo, hi], kept with exp(-(z - rate)^2 / 2) / peak.
    src.uniform(out, index)
    z = out.mul_(-plan.span).log1p_().div_(-plan.rate).add_(plan.lo).clamp_(plan.lo, plan.hi)
    ratio = (z - plan.rate).square_().sub_(plan.peak).mul_(-0.5).exp_()
    u = torch.empty_like(out)
    src.uniform(u, index)
    return _array(u) >= _array(ratio)


def _trunc_standard_(z: torch.Tensor, plan: _TruncPlan, src) -> None:
    """Fill 1-D ``z`` with ``N(0, 1)`` conditioned on the plan's interval, exactly.

    After a first proposal per element, rejected elements are redrawn until each
    has accepted once. A counter-based source redraws element by element (a value
    depends on its own proposals only); a sequential stream draws a batch sized
    for the acceptance rate and hands its accepted values out in order (i.i.d.
    accepted proposals, so the same distribution, in one or two rounds).
    Positions are numpy arrays on CPU and tensors elsewhere.
    """
    rejected = _propose(plan, z, None, src)
    if rejected is None:
        return
    target = _array(z)
    pending = _positions(rejected)
    redraw = plan.tail or plan  # the inverse CDF hands its far-tail draws to the tail plan
    if src.sequential:

        def accepted(n: int):
            candidate = torch.empty(n, dtype=z.dtype, device=z.device)
            return _array(candidate)[~_propose(redraw, candidate, None, src)]

        _refill_in_order_(target, pending, accepted, redraw.acceptance)
        return
    while len(pending):
        candidate = torch.empty(len(pending), dtype=z.dtype, device=z.device)
        rejected = _propose(redraw, candidate, pending, src)
        target[pending[~rejected]] = _array(candidate)[~rejected]
        pending = pending[rejected]


def trunc_normal_(out: torch.Tensor, d: TruncNormalDraw, src) -> None:
    """Fill 1-D ``out`` (float32/float64) with the truncated normal of ``d``.

    The standard draw ``z`` becomes ``clamp(s * z * std + mean, a, b)`` with
    ``s = -1`` for a mirrored plan. Two passes are skipped without changing a bit:
    the sign flip rides on the multiply (IEEE multiplication is sign-symmetric),
    and adding a zero mean to normal proposals of a torch generator is the
    identity when the plan is not mirrored (``normal_`` never returns ``-0.0``: it
    adds its own zero mean; and ``|z| > 1e-13``, so ``z * std`` cannot underflow
    for ``std >= _NO_UNDERFLOW``). Counter-based normals, inverse-CDF draws and
    mirrored zeros can be ``-0.0``, which ``+ 0.0`` turns into ``+0.0``: they keep the add.
    """
    plan = trunc_plan((d.a - d.mean) / d.std, (d.b - d.mean) / d.std)
    _trunc_standard_(out, plan, src)
    exact_without_add = d.mean == 0.0 and plan.method == "normal" and src.sequential and not plan.flip
    add = not (exact_without_add and abs(d.std) >= _NO_UNDERFLOW)
    scale = -d.std if plan.flip else d.std
    if out.device.type == "cpu":
        # numpy, not torch: the same IEEE ops (a Python float meets a float32 array as a
        # float32), but single-threaded. torch's elementwise kernels would start an OpenMP
        # team inside every pool thread, whose spinning made this step 75% of a tile.
        z = out.numpy()
        np.multiply(z, scale, out=z)
        if add:
            np.add(z, d.mean, out=z)
        np.clip(z, d.a, d.b, out=z)
        return
    out.mul_(scale)
    if add:
        out.add_(d.mean)
    out.clamp_(d.a, d.b)


# ----------------------------------------------------------------------------- tiles
class _Undecided(Exception):
    """A scaled proposal equals a scaled bound, so whether its unscaled value was in bounds is unknown."""


@functools.cache
def _kernel_scales_exactly() -> bool:
    """Whether torch's CPU ``normal_(0, std)`` gives ``normal_()`` times ``std``, bit for bit.

    Its vectorized kernel (buffers of 16 or more values) ends with ``fma(z, std, 0)``,
    which is the rounded product; checked here once, float32 and float64, so that a
    torch build that computes otherwise keeps the plain route.
    """
    for dtype in (torch.float32, torch.float64):
        for numel, std in ((16, 0.02), (37, 3.0), (4099, 1.0 / 3.0)):
            gen = torch.Generator().manual_seed(numel)
            scaled = torch.empty(numel, dtype=dtype).normal_(0.0, std, generator=gen).numpy()
            gen.manual_seed(numel)
            plain = torch.empty(numel, dtype=dtype).normal_(generator=gen).numpy()
            np.multiply(plain, std, out=plain)  # as trunc_normal_ scales: in the buffer's dtype
            if plain.tobytes() != scaled.tobytes():
                return False
    return True


def _scales_in_kernel(out: torch.Tensor, d: TruncNormalDraw, plan: _TruncPlan) -> bool:
    """Whether a tile of ``d`` in ``out`` can take the scaled route of :func:`_scaled_tile_`."""
    return (
        plan.method == "normal" and not plan.flip and d.mean == 0.0 and d.std >= _NO_UNDERFLOW
        and out.device.type == "cpu" and out.dtype in (torch.float32, torch.float64)
        and out.numel() >= 16 and out.is_contiguous() and _kernel_scales_exactly()
    )


def _scaled_tile_(out: torch.Tensor, d: TruncNormalDraw, plan: _TruncPlan, gen: torch.Generator) -> bool:
    """:func:`trunc_normal_` of one tile, with proposals drawn already scaled by ``std``.

    The plain route draws ``z``, keeps it when ``lo <= z <= hi`` and writes
    ``clamp(z * std, a, b)``. Here torch's kernel writes ``y = z * std`` (the same
    rounded product: :func:`_kernel_scales_exactly`), and rounding is monotonic, so
    ``y`` strictly between ``lo * std`` and ``hi * std`` (rounded) means ``z`` was kept,
    and ``y`` beyond them means it was rejected. A ``y`` equal to a scaled bound leaves
    the tile undecided (about one ±2 std tile in 400): this returns ``False`` and the
    caller draws the tile again the plain way. The multiply pass is gone, and so is
    the clamp when the scaled bounds lie within ``[a, b]``.
    """
    real = np.float32 if out.dtype == torch.float32 else np.float64
    std = real(d.std)
    low, high = real(real(plan.lo) * std), real(real(plan.hi) * std)

    def propose(buf: torch.Tensor) -> np.ndarray:
        buf.normal_(0.0, d.std, generator=gen)
        y = buf.numpy()
        if plan.fold:
            np.abs(y, out=y)
        return y

    def accepted(n: int) -> np.ndarray:
        values = propose(thread_buffer(n, out.dtype, out.device, slot=1))  # slot 0: partial tiles
        if _on_bound(values, low, high):
            raise _Undecided
        kept = _outside(values, low, high, inclusive=True)
        return values[np.logical_not(kept, out=kept)]

    y = propose(out)
    pending = _positions(_outside(y, low, high, inclusive=True))
    if _on_bound(y[pending], low, high):
        return False
    try:
        _refill_in_order_(y, pending, accepted, plan.acceptance)
    except _Undecided:
        return False
    if not (real(d.a) <= low and high <= real(d.b)):
        np.clip(y, d.a, d.b, out=y)
    return True


def _on_bound(values: np.ndarray, low, high) -> bool:
    """Whether one of ``values`` equals one of the (scaled) bounds."""
    return bool(np.count_nonzero(values == low) or np.count_nonzero(values == high))


def trunc_normal_tile_(out: torch.Tensor, d: TruncNormalDraw, restart: Restart) -> None:
    """Fill 1-D ``out`` (one tile) with the truncated normal of ``d``, from the tile's stream.

    The values are those of :func:`trunc_normal_` from the generator ``restart()``
    returns. For zero-mean normal proposals on CPU (the ±2 std ViT case) they come by a
    faster route, :func:`_scaled_tile_`; a tile it cannot decide is drawn again, the
    plain way, from a restarted stream.

    >>> from hydra_init.sampling import TruncNormalDraw
    >>> from hydra_init.sampling.generators import TorchSource
    >>> d = TruncNormalDraw(0.0, 0.02, -0.04, 0.04)
    >>> fast, plain = torch.empty(4096), torch.empty(4096)
    >>> trunc_normal_tile_(fast, d, lambda: torch.Generator().manual_seed(3))
    >>> trunc_normal_(plain, d, TorchSource(torch.Generator().manual_seed(3)))
    >>> torch.equal(fast, plain)
    True
    """
    plan = trunc_plan((d.a - d.mean) / d.std, (d.b - d.mean) / d.std)
    if not (_scales_in_kernel(out, d, plan) and _scaled_tile_(out, d, plan, restart())):
        trunc_normal_(out, d, TorchSource(restart()))
