"""Seeded, tiled, parallel sampling: the values behind every initializer.

Value format (part of the reproducibility contract; see ``docs/performance.md``)
--------------------------------------------------------------------------------
A parameter's values are a function of a 64-bit *key* (a hash of the seed, the
parameter's path and its shape, :func:`derive_key`), its draw, its device type
and dtype - nothing else: not the thread count, not the order in which
parameters are visited, not which other parameters exist, not how the tensor
is sharded. Two generators produce them, chosen by the tensor's total size:

* **Small tensors** (``numel <= SMALL``): element ``j`` is a pure function of
  ``(key, j)``, computed by a counter-based SplitMix64 hash (Box-Muller for
  normals, 53-bit uniforms). All small tensors of a plan are drawn in one
  vectorized batch, so ten thousand tiny parameters cost a few milliseconds.
* **Large tensors**: the flattened tensor is cut into tiles of
  :func:`tile_size` elements; tile ``i`` is drawn by its own ``torch.Generator``
  whose *whole* state is derived from ``(key, i)`` (on CPU the mt19937 state is
  filled from the 64-bit tile seed, because ``manual_seed`` keeps only 32 bits
  and would make tile streams collide in big models). Tiles run on a thread pool,
  one generator per thread.

Either way any contiguous range of a tensor (a shard) can be drawn alone and
matches the same range of a full draw bit for bit.

Truncated normals (:mod:`hydra_init.truncnormal`) are exact (the distribution of
``torch.nn.init.trunc_normal_``: a normal conditioned on ``[a, b]``) and cost
about one to three normal draws whatever the bounds: wide intervals reject and
redraw only the out-of-bounds elements, narrow or one-sided-bounded intervals use
the inverse CDF in float64, and intervals far in a tail use Robert's (1995)
exponential proposal. Every element's value is the first accepted proposal of
its own sequence, so the result does not depend on batching.

Example:
    >>> import torch
    >>> w = torch.empty(3, 4)
    >>> fill_(w, NormalDraw(0.0, 0.02), derive_key(7, "fc.weight", w.shape))
    >>> v = torch.empty(3, 4)
    >>> fill_(v, NormalDraw(0.0, 0.02), derive_key(7, "fc.weight", v.shape))
    >>> torch.equal(w, v)
    True
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch

from .draws import (
    DiracDraw,
    Draw,
    EyeDraw,
    FillDraw,
    NormalDraw,
    OrthogonalDraw,
    TruncNormalDraw,
    UniformDraw,
)
from .truncnormal import trunc_normal_

__all__ = [
    "SMALL",
    "TILE",
    "DiracDraw",
    "Draw",
    "EyeDraw",
    "FillDraw",
    "Job",
    "NormalDraw",
    "OrthogonalDraw",
    "TruncNormalDraw",
    "UniformDraw",
    "derive_key",
    "fill_",
    "fill_range_",
    "job_tasks",
    "materialize",
    "range_tasks",
    "run_parallel",
    "tile_seed",
    "tile_size",
]

TILE = 1 << 17
"""Elements per tile on CPU. Part of the value format of large CPU tensors."""

TILE_ACCELERATOR = 1 << 24
"""Elements per tile on other devices (CUDA...), where a kernel launch per small tile
would dominate. Part of the value format there."""

SMALL = 1 << 12
"""Tensors with at most this many elements use the counter-based generator."""

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_DOMAIN_TILE = 0x5449_4C45_5345_4544  # "TILESEED"
_DOMAIN_HASH = 0x4841_5348_5354_524D  # "HASHSTRM"


# ----------------------------------------------------------------------------- keys
def _mix64(x: int) -> int:
    """The SplitMix64 finalizer on a Python int (a bijection of 64-bit words)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _stream(base: int, index: int) -> int:
    """Output ``index`` of the SplitMix64 stream that starts at ``base``."""
    return _mix64(base + (index + 1) * _GOLDEN)


_U = np.uint64
_NP_GOLDEN, _NP_M1, _NP_M2 = _U(_GOLDEN), _U(0xBF58476D1CE4E5B9), _U(0x94D049BB133111EB)
_NP_30, _NP_27, _NP_31, _NP_32, _NP_11 = _U(30), _U(27), _U(31), _U(32), _U(11)
_NP_LOW32 = _U(0xFFFFFFFF)


def _mix64_np(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer, in place on a ``uint64`` array (wrapping arithmetic)."""
    x ^= x >> _NP_30
    x *= _NP_M1
    x ^= x >> _NP_27
    x *= _NP_M2
    x ^= x >> _NP_31
    return x


def derive_key(seed: int, path: str, shape: Sequence[int]) -> int:
    """The 64-bit key of a parameter: a hash of ``(seed, path, shape)``.

    The key does not depend on the rule's arguments, so two inits from the same
    family see the same noise: sweeping ``std`` rescales one draw (common random
    numbers make init ablations cleaner).

    >>> derive_key(0, "fc.weight", (2, 3)) == derive_key(0, "fc.weight", (2, 3))
    True
    >>> derive_key(0, "fc.weight", (2, 3)) == derive_key(1, "fc.weight", (2, 3))
    False
    """
    text = f"{int(seed)}\x00{path}\x00{','.join(map(str, shape))}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def tile_seed(key: int, index: int) -> int:
    """The 64-bit generator seed of tile ``index`` of the tensor with ``key``."""
    return _stream(_mix64(key ^ _DOMAIN_TILE), index)


def tile_size(device: torch.device | str) -> int:
    """Elements per tile on this device type (:data:`TILE` on CPU)."""
    return TILE if torch.device(device).type == "cpu" else TILE_ACCELERATOR


# ----------------------------------------------------------------------------- generators
# torch's CPU generator (mt19937) keeps only the low 32 bits of manual_seed(), so
# tiles of a big model would share streams (birthday bound: ~T^2 / 2^33 for T
# tiles). We fill the 624-word state from the 64-bit tile seed instead. The byte
# layout is torch's CPUGeneratorImplState; it is checked at import and we fall
# back to manual_seed() if it ever changes.
_STATE_DTYPE = np.dtype(
    [
        ("seed", "<u8"), ("left", "<i4"), ("seeded", "<i4"), ("next", "<u8"),
        ("state", "<u8", (624,)), ("normal_x", "<f8"), ("normal_y", "<f8"),
        ("normal_rho", "<f8"), ("normal_is_valid", "<i4"), ("pad0", "<i4"),
        ("next_float", "<f4"), ("next_float_valid", "u1"), ("pad1", "u1", (3,)),
    ]
)
_STATE_STEPS = (np.arange(1, 313, dtype=np.uint64) * _NP_GOLDEN).astype(np.uint64)


class _CpuSeeder:
    """Sets a CPU generator's mt19937 state from a 64-bit seed (one per thread, buffers reused).

    The 624 state words are the first 312 outputs of the SplitMix64 stream of the
    seed, split into 32-bit halves.
    """

    def __init__(self) -> None:
        self.record = np.zeros((), dtype=_STATE_DTYPE)
        self.record["left"], self.record["seeded"], self.record["next"] = 1, 1, 0
        state = self.record["state"]
        self.even, self.odd = state[0::2], state[1::2]
        self.words = np.empty(312, dtype=np.uint64)
        self.scratch = np.empty(312, dtype=np.uint64)
        self.tensor = torch.from_numpy(self.record.reshape(1).view(np.uint8))

    def fill(self, seed: int) -> None:
        w, t = self.words, self.scratch
        np.add(_STATE_STEPS, _U(seed & _MASK64), out=w)
        for shift, multiplier in ((_NP_30, _NP_M1), (_NP_27, _NP_M2), (_NP_31, None)):
            np.right_shift(w, shift, out=t)
            np.bitwise_xor(w, t, out=w)
            if multiplier is not None:
                np.multiply(w, multiplier, out=w)
        np.bitwise_and(w, _NP_LOW32, out=self.even)
        np.right_shift(w, _NP_32, out=self.odd)

    def seed(self, gen: torch.Generator, seed: int) -> None:
        self.fill(seed)
        gen.set_state(self.tensor)


def _full_state_seeding_works() -> bool:
    try:
        seeder = _CpuSeeder()
        gen = torch.Generator()
        seeder.seed(gen, 0x0123_4567_89AB_CDEF)
        back = gen.get_state().numpy().view(_STATE_DTYPE)[0]
        return _STATE_DTYPE.itemsize == 5056 and bool(
            np.array_equal(back["state"], seeder.record["state"]) and back["left"] == 1
        )
    except (RuntimeError, ValueError, TypeError):  # pragma: no cover - other torch builds
        return False


FULL_STATE_SEEDING = _full_state_seeding_works()
"""Whether CPU tile generators get a 64-bit-derived state (else ``manual_seed``, 32 bits)."""

_local = threading.local()


def _generator(device: torch.device, seed: int) -> torch.Generator:
    """This thread's generator for ``device``, reset to the stream of ``seed``."""
    cache = getattr(_local, "generators", None)
    if cache is None:
        cache = _local.generators = {}
    gen = cache.get(device)
    if gen is None:
        gen = cache[device] = torch.Generator(device=device)
    if device.type == "cpu" and FULL_STATE_SEEDING:
        seeder = getattr(_local, "seeder", None)
        if seeder is None:
            seeder = _local.seeder = _CpuSeeder()
        seeder.seed(gen, seed)
    else:
        gen.manual_seed(seed)
    return gen


# ----------------------------------------------------------------------------- proposals
class _TorchSource:
    """Proposals from a torch generator (tile path): a sequential stream."""

    sequential = True

    def __init__(self, gen: torch.Generator) -> None:
        self.gen = gen

    def normal(self, out: torch.Tensor, index: torch.Tensor | None) -> None:
        out.normal_(generator=self.gen)

    def uniform(self, out: torch.Tensor, index: torch.Tensor | None) -> None:
        out.uniform_(generator=self.gen)


class _HashSource:
    """Counter-based proposals: call ``c`` gives element ``j`` a hash of ``(key, c, j)``.

    Each call is one proposal round, so an element's value depends on its own
    sequence of proposals only, never on which other elements were drawn with it.
    """

    sequential = False

    def __init__(self, key: int, start: int) -> None:
        self.base = _mix64(key ^ _DOMAIN_HASH)
        self.start = start
        self.calls = 0

    def _bits(self, out: torch.Tensor, index: torch.Tensor | None) -> np.ndarray:
        salt = _stream(self.base, self.calls)
        self.calls += 1
        if index is None:
            positions = np.arange(self.start, self.start + out.numel(), dtype=np.uint64)
        else:
            positions = index.astype(np.uint64) + _U(self.start)
        return _hash_bits(np.full(positions.shape, salt, dtype=np.uint64), positions)

    def normal(self, out: torch.Tensor, index: torch.Tensor | None) -> None:
        out.copy_(torch.from_numpy(_bits_to_normal(self._bits(out, index))))

    def uniform(self, out: torch.Tensor, index: torch.Tensor | None) -> None:
        out.copy_(torch.from_numpy(_bits_to_uniform(self._bits(out, index))))


def _hash_bits(salts: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``mix64(salt + (position + 1) * golden)`` elementwise (``uint64``; reuses ``positions``)."""
    positions += _U(1)
    positions *= _NP_GOLDEN
    positions += salts
    return _mix64_np(positions)


def _bits_to_uniform(bits: np.ndarray) -> np.ndarray:
    """53-bit uniforms in ``[0, 1)``."""
    return (bits >> _NP_11).astype(np.float64) * (2.0**-53)


def _bits_to_normal(bits: np.ndarray) -> np.ndarray:
    """Standard normals by Box-Muller from the two 32-bit halves of each word.

    ``1 - u`` is exact for a 32-bit ``u``, so ``log(1 - u)`` loses nothing; the
    cosine runs in torch (vectorized float64, several times faster than numpy's).
    """
    radius = (bits >> _NP_32).astype(np.float64)
    radius *= -(2.0**-32)
    radius += 1.0
    np.log(radius, out=radius)
    radius *= -2.0
    np.sqrt(radius, out=radius)
    angle = (bits & _NP_LOW32).astype(np.float64)
    torch.from_numpy(angle).mul_(2.0 * math.pi * 2.0**-32).cos_()
    angle *= radius
    return angle


# ----------------------------------------------------------------------------- one tile / one small tensor
def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _draw_into_(buf: torch.Tensor, draw: Draw, src) -> None:
    """Fill 1-D float32/float64 ``buf`` with ``draw`` from a proposal source."""
    if isinstance(draw, NormalDraw):
        src.normal(buf, None)
        buf.mul_(draw.std).add_(draw.mean)
    elif isinstance(draw, UniformDraw):
        src.uniform(buf, None)
        buf.mul_(draw.high - draw.low).add_(draw.low)
    elif isinstance(draw, TruncNormalDraw):
        trunc_normal_(buf, draw, src)
    else:  # pragma: no cover - guarded by callers
        raise TypeError(f"{type(draw).__name__} is not an elementwise random draw")


def _draw_tile_(buf: torch.Tensor, draw: Draw, seed: int) -> None:
    """Fill ``buf`` (one whole tile) from the generator of ``seed``."""
    gen = _generator(buf.device, seed)
    if isinstance(draw, NormalDraw):  # the common case, in one pass
        buf.normal_(draw.mean, draw.std, generator=gen)
    elif isinstance(draw, UniformDraw):
        buf.uniform_(draw.low, draw.high, generator=gen)
    else:
        _draw_into_(buf, draw, _TorchSource(gen))


# ----------------------------------------------------------------------------- jobs and tasks
Task = Callable[[], None]


class Job(NamedTuple):
    """Fill ``out`` with elements ``[start, start + out.numel())`` of a tensor's draw.

    ``out`` is contiguous, and 1-D unless the job is a :class:`FillDraw` or
    small (``numel <= SMALL``: then any shape, read in row-major order);
    ``numel`` is the size of the whole (global) tensor, which decides the
    generator and where tiles end. ``key`` is unused by fills.
    """

    out: torch.Tensor
    draw: Draw
    key: int
    numel: int
    start: int = 0


def _tile_tasks(job: Job) -> list[Task]:
    out, draw, key, numel, start = job.out, job.draw, job.key, job.numel, job.start
    stop = start + out.numel()
    tile = tile_size(out.device)
    direct = out.dtype == _compute_dtype(out.dtype)
    tasks: list[Task] = []
    for index in range(start // tile, -(-stop // tile)):
        lo, hi = index * tile, min((index + 1) * tile, numel)
        seed = tile_seed(key, index)
        if direct and start <= lo and hi <= stop:
            view = out[lo - start : hi - start]
            tasks.append(lambda view=view, seed=seed: _draw_tile_(view, draw, seed))
            continue

        def partial(lo: int = lo, hi: int = hi, seed: int = seed) -> None:
            buf = torch.empty(hi - lo, dtype=_compute_dtype(out.dtype), device=out.device)
            _draw_tile_(buf, draw, seed)
            a, b = max(lo, start), min(hi, stop)
            out[a - start : b - start].copy_(buf[a - lo : b - lo])

        tasks.append(partial)
    return tasks


def _hash_salts(keys: Sequence[int], call: int = 0) -> np.ndarray:
    """``_stream(_mix64(key ^ _DOMAIN_HASH), call)`` for many keys at once."""
    base = np.array(keys, dtype=np.uint64)
    base ^= _U(_DOMAIN_HASH)
    _mix64_np(base)
    base += _U(((call + 1) * _GOLDEN) & _MASK64)
    return _mix64_np(base)


def _small_normal_uniform(jobs: Sequence[Job]) -> np.ndarray:
    """All elements of small Normal/Uniform jobs in one vectorized pass (float64)."""
    draws = [j.draw for j in jobs]
    counts = np.array([j.out.numel() for j in jobs], dtype=np.int64)
    starts = np.array([j.start for j in jobs], dtype=np.int64)
    normal = np.array([type(d) is NormalDraw for d in draws], dtype=bool)
    scale = np.array([d.std if type(d) is NormalDraw else d.high - d.low for d in draws], dtype=np.float64)
    shift = np.array([d.mean if type(d) is NormalDraw else d.low for d in draws], dtype=np.float64)
    offsets = np.cumsum(counts) - counts
    positions = np.arange(int(counts.sum()), dtype=np.int64)
    positions += np.repeat(starts - offsets, counts)
    bits = _hash_bits(np.repeat(_hash_salts([j.key for j in jobs]), counts), positions.astype(np.uint64))
    if normal.all():
        values = _bits_to_normal(bits)
    elif not normal.any():
        values = _bits_to_uniform(bits)
    else:
        values = np.where(np.repeat(normal, counts), _bits_to_normal(bits), _bits_to_uniform(bits))
    values *= np.repeat(scale, counts)
    values += np.repeat(shift, counts)
    return values


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _small_group_(jobs: Sequence[Job], shape: torch.Size) -> None:
    """Fill small Normal/Uniform jobs whose outputs share one shape, device and dtype."""
    values = _small_normal_uniform(jobs)
    out = jobs[0].out
    cast = _NUMPY_DTYPES.get(out.dtype)
    flat = torch.from_numpy(values.astype(cast)) if cast else torch.from_numpy(values).to(out.dtype)
    parts = flat.to(out.device).view(len(jobs), *shape).unbind(0)  # views without a Python loop
    torch._foreach_copy_([j.out for j in jobs], list(parts))


def _small_task(jobs: Sequence[Job]) -> Task:
    def run() -> None:
        groups: dict[tuple, list[Job]] = {}
        for j in jobs:  # values are per element, so any grouping gives the same values
            out = j.out
            trunc = type(j.draw) is TruncNormalDraw
            groups.setdefault((out.shape, out.device, out.dtype, trunc), []).append(j)
        for (shape, _, _, trunc), members in groups.items():
            if not trunc:
                _small_group_(members, shape)
                continue
            for j in members:
                buf = torch.empty(j.out.numel(), dtype=torch.float64)
                trunc_normal_(buf, j.draw, _HashSource(j.key, j.start))
                j.out.copy_(buf.view(j.out.shape))

    return run


def _fill_task(jobs: Sequence[Job]) -> Task:
    def run() -> None:
        by_device: dict[torch.device, list[Job]] = {}
        for j in jobs:
            if j.out.is_floating_point():
                by_device.setdefault(j.out.device, []).append(j)
            else:  # integer/bool buffers-as-parameters: a float scalar list cannot be added to them
                j.out.fill_(j.draw.value)
        for group in by_device.values():
            outs = [j.out for j in group]
            torch._foreach_zero_(outs)
            if any(j.draw.value != 0.0 for j in group):
                torch._foreach_add_(outs, [float(j.draw.value) for j in group])

    return run


_SMALL_BATCH_ELEMENTS = 1 << 18  # a batch task's size: big enough to amortize, small enough to balance


def job_tasks(jobs: Iterable[Job]) -> list[Task]:
    """Tasks that execute ``jobs``: tiles of large tensors, batches of small ones, fills.

    How jobs are batched never changes values (see the module docstring).
    """
    tiles: list[Task] = []
    fills: list[Job] = []
    small: list[Job] = []
    for job in jobs:
        if not job.out.numel():
            continue
        if isinstance(job.draw, FillDraw):
            fills.append(job)
        elif job.numel <= SMALL:
            small.append(job)
        else:
            tiles.extend(_tile_tasks(job))
    tasks = tiles
    batch: list[Job] = []
    size = 0
    for job in small:
        batch.append(job)
        size += job.out.numel()
        if size >= _SMALL_BATCH_ELEMENTS:
            tasks.append(_small_task(batch))
            batch, size = [], 0
    if batch:
        tasks.append(_small_task(batch))
    if fills:
        tasks.append(_fill_task(fills))
    return tasks


def range_tasks(out: torch.Tensor, draw: Draw, key: int, numel: int, start: int = 0) -> list[Task]:
    """Tasks that fill 1-D ``out`` with elements ``[start, start + len(out))`` of a draw."""
    return job_tasks([Job(out, draw, key, numel, start)])


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


def fill_range_(out: torch.Tensor, draw: Draw, key: int, numel: int, start: int = 0) -> None:
    """Fill 1-D ``out`` with elements ``[start, start + out.numel())`` of an elementwise draw."""
    run_parallel(range_tasks(out, draw, key, numel, start))


# ----------------------------------------------------------------------------- whole tensors
_qr_lock = threading.Lock()


def materialize(
    draw: Draw, shape: torch.Size, key: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The whole tensor of a draw, computed deterministically from ``key``.

    Orthogonal matrices come from a QR decomposition of a seeded normal matrix,
    computed in float64 on one thread so that every process (every rank of a
    sharded model) gets the same bits.
    """
    shape = torch.Size(shape)
    if draw.elementwise:
        out = torch.empty(shape.numel(), dtype=dtype, device=device)
        fill_range_(out, draw, key, shape.numel())
        return out.view(shape)
    if isinstance(draw, OrthogonalDraw):
        rows = shape[0]
        cols = shape.numel() // rows
        flat = torch.empty(rows * cols, dtype=torch.float64, device=device)
        fill_range_(flat, NormalDraw(0.0, 1.0), key, rows * cols)
        matrix = flat.view(rows, cols)
        if rows < cols:
            matrix = matrix.t()
        with _qr_lock:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                q, r = torch.linalg.qr(matrix)
            finally:
                torch.set_num_threads(threads)
        q = q * torch.sign(torch.diagonal(r, 0))
        if rows < cols:
            q = q.t()
        return (q * draw.gain).reshape(shape).to(dtype)
    out = torch.empty(shape, dtype=dtype, device=device)
    if isinstance(draw, DiracDraw):
        torch.nn.init.dirac_(out, draw.groups)
    elif isinstance(draw, EyeDraw):
        torch.nn.init.eye_(out)
    else:  # pragma: no cover
        raise TypeError(f"unknown draw {draw!r}")
    return out


def fill_(tensor: torch.Tensor, draw: Draw, key: int) -> None:
    """Fill a plain tensor in place with its draw (tiled and parallel when possible)."""
    with torch.no_grad():
        if draw.elementwise and tensor.is_contiguous():
            fill_range_(tensor.view(-1), draw, key, tensor.numel())
        else:
            tensor.copy_(materialize(draw, tensor.shape, key, tensor.dtype, tensor.device))
