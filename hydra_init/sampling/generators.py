"""Generators and proposal sources: a seeded torch generator per thread, or the counter-based hash.

Tiles draw from a ``torch.Generator`` whose whole mt19937 state is derived from the
64-bit tile seed (:class:`CpuSeeder`); small tensors and truncated-normal redraws
read proposals from :class:`HashSource`, where element ``j`` of call ``c`` is a hash of
``(key, c, j)``. Both sources offer ``normal(out, index)`` and ``uniform(out, index)``.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from .keys import (
    DOMAIN_HASH,
    MASK64,
    NP_27,
    NP_30,
    NP_31,
    NP_32,
    NP_GOLDEN,
    NP_LOW32,
    NP_M1,
    NP_M2,
    U,
    bits_to_normal,
    bits_to_uniform,
    hash_bits,
    mix64,
    stream,
)

__all__ = ["FULL_STATE_SEEDING", "CpuSeeder", "HashSource", "TorchSource", "generator", "tile_states"]

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
_STATE_STEPS = (np.arange(1, 313, dtype=np.uint64) * NP_GOLDEN).astype(np.uint64)


class CpuSeeder:
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
        np.add(_STATE_STEPS, U(seed & MASK64), out=w)
        for shift, multiplier in ((NP_30, NP_M1), (NP_27, NP_M2), (NP_31, None)):
            np.right_shift(w, shift, out=t)
            np.bitwise_xor(w, t, out=w)
            if multiplier is not None:
                np.multiply(w, multiplier, out=w)
        np.bitwise_and(w, NP_LOW32, out=self.even)
        np.right_shift(w, NP_32, out=self.odd)

    def seed(self, gen: torch.Generator, seed: int) -> None:
        self.fill(seed)
        gen.set_state(self.tensor)

    def load(self, gen: torch.Generator, words: np.ndarray) -> None:
        """Set ``gen`` to a state computed by :func:`tile_states` (one row of it)."""
        self.record["state"] = words
        gen.set_state(self.tensor)


def tile_states(seeds: list[int]) -> np.ndarray:
    """The mt19937 states :meth:`CpuSeeder.fill` derives from each seed, in one vectorized pass.

    One row of 624 words per seed: a tensor's tiles are seeded together instead of paying
    a dozen small numpy calls per tile (a tenth of a uniform tile's time).

    >>> seeder = CpuSeeder(); seeder.fill(7)
    >>> bool((tile_states([7])[0] == seeder.record["state"]).all())
    True
    """
    w = np.asarray(seeds, dtype=np.uint64).reshape(-1, 1) + _STATE_STEPS
    w ^= w >> NP_30
    w *= NP_M1
    w ^= w >> NP_27
    w *= NP_M2
    w ^= w >> NP_31
    out = np.empty((len(w), 624), dtype=np.uint64)
    np.bitwise_and(w, NP_LOW32, out=out[:, 0::2])
    np.right_shift(w, NP_32, out=out[:, 1::2])
    return out


def _full_state_seeding_works() -> bool:
    try:
        seeder = CpuSeeder()
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


def generator(device: torch.device, seed: int, state: np.ndarray | None = None) -> torch.Generator:
    """This thread's generator for ``device``, reset to the stream of ``seed``.

    ``state``: the seed's row of :func:`tile_states`, when computed beforehand (CPU).
    """
    cache = getattr(_local, "generators", None)
    if cache is None:
        cache = _local.generators = {}
    gen = cache.get(device)
    if gen is None:
        gen = cache[device] = torch.Generator(device=device)
    if device.type == "cpu" and FULL_STATE_SEEDING:
        seeder = getattr(_local, "seeder", None)
        if seeder is None:
            seeder = _local.seeder = CpuSeeder()
        if state is None:
            seeder.seed(gen, seed)
        else:
            seeder.load(gen, state)
    else:
        gen.manual_seed(seed)
    return gen


# ----------------------------------------------------------------------------- proposals
class TorchSource:
    """Proposals from a torch generator (tile path): a sequential stream."""

    sequential = True

    def __init__(self, gen: torch.Generator) -> None:
        self.gen = gen

    def normal(self, out: torch.Tensor, index: torch.Tensor | None) -> None:
        out.normal_(generator=self.gen)

    def uniform(self, out: torch.Tensor, index: torch.Tensor | None) -> None:
        out.uniform_(generator=self.gen)


class HashSource:
    """Counter-based proposals: call ``c`` gives element ``j`` a hash of ``(key, c, j)``.

    Each call is one proposal round, so an element's value depends on its own
    sequence of proposals only, never on which other elements were drawn with it.
    ``start``: the position of the buffer's first element in the whole tensor, or an
    array of every element's position (a region that is not one range).
    """

    sequential = False

    def __init__(self, key: int, start: int | np.ndarray = 0) -> None:
        self.base = mix64(key ^ DOMAIN_HASH)
        self.start = start
        self.calls = 0

    def _bits(self, out: torch.Tensor, index: np.ndarray | None) -> np.ndarray:
        salt = stream(self.base, self.calls)
        self.calls += 1
        start = self.start
        if isinstance(start, np.ndarray):
            positions = start.copy() if index is None else start[index]
        elif index is None:
            positions = np.arange(start, start + out.numel(), dtype=np.uint64)
        else:
            positions = index.astype(np.uint64) + U(start)
        return hash_bits(np.full(positions.shape, salt, dtype=np.uint64), positions)

    def normal(self, out: torch.Tensor, index: torch.Tensor | None) -> None:
        out.copy_(torch.from_numpy(bits_to_normal(self._bits(out, index))))

    def uniform(self, out: torch.Tensor, index: torch.Tensor | None) -> None:
        out.copy_(torch.from_numpy(bits_to_uniform(self._bits(out, index))))


