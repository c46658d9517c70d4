"""Keys and counter-based streams: the 64-bit words every value derives from.

A parameter's *key* hashes ``(seed, path, shape)`` (:func:`derive_key`). Tile ``i`` of a
large tensor gets the generator seed :func:`tile_seed` ``(key, i)``; element ``j`` of a
small tensor is a pure function of ``(key, j)`` through the SplitMix64 finalizer
(:func:`hash_bits`), turned into uniforms or normals by :func:`bits_to_uniform` and
:func:`bits_to_normal`. All of this is part of the value format (:mod:`hydra_init.sampling`).

>>> derive_key(0, "fc.weight", (2, 3)) == derive_key(0, "fc.weight", (2, 3))
True
"""

from __future__ import annotations

import enum
import functools
import hashlib
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["SMALL", "TILE", "TILE_ACCELERATOR", "TILE_WIDTH", "Grid", "Tiles", "bits_to_normal",
           "bits_to_uniform", "derive_key", "derive_keys", "hash_bits", "hash_salts", "mix64", "stream",
           "tile_grid", "tile_seed"]

TILE = 1 << 17
"""Elements per tile on CPU (at most). Part of the value format of large CPU tensors."""

TILE_WIDTH = 256
"""Columns per tile on CPU, where a tensor's rows are longer (a multiple of it otherwise).
Part of the value format: a column shard aligned to it draws only its own columns."""

TILE_ACCELERATOR = 1 << 24
"""Elements per tile on other devices (CUDA...), where a kernel launch per small tile
would dominate; tiles there are flat ranges. Part of the value format there."""

SMALL = 1 << 12
"""Tensors with at most this many elements use the counter-based generator."""

MASK64 = (1 << 64) - 1
_blake2b = hashlib.blake2b
GOLDEN = 0x9E3779B97F4A7C15
DOMAIN_TILE = 0x5449_4C45_5345_4544  # "TILESEED"
DOMAIN_HASH = 0x4841_5348_5354_524D  # "HASHSTRM"


# ----------------------------------------------------------------------------- keys
def mix64(x: int) -> int:
    """The SplitMix64 finalizer on a Python int (a bijection of 64-bit words)."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def stream(base: int, index: int) -> int:
    """Output ``index`` of the SplitMix64 stream that starts at ``base``."""
    return mix64(base + (index + 1) * GOLDEN)


U = np.uint64
NP_GOLDEN, NP_M1, NP_M2 = U(GOLDEN), U(0xBF58476D1CE4E5B9), U(0x94D049BB133111EB)
NP_30, NP_27, NP_31, NP_32, NP_11 = U(30), U(27), U(31), U(32), U(11)
NP_LOW32 = U(0xFFFFFFFF)


def mix64_np(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer, in place on a ``uint64`` array (wrapping arithmetic)."""
    x ^= x >> NP_30
    x *= NP_M1
    x ^= x >> NP_27
    x *= NP_M2
    x ^= x >> NP_31
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
    return derive_keys(seed, [path], shape)[0]


def derive_keys(seed: int, paths: Sequence[str], shape: Sequence[int]) -> list[int]:
    """:func:`derive_key` of many paths that share one shape (BLAKE2b-64 of
    ``"{seed}\\0{path}\\0{shape as d0,d1,...}"``, little-endian).

    >>> derive_keys(0, ["a", "b"], (2,)) == [derive_key(0, "a", (2,)), derive_key(0, "b", (2,))]
    True
    """
    head, tail = f"{int(seed)}\x00", f"\x00{_shape_text(tuple(shape))}"
    blake2b, from_bytes = _blake2b, int.from_bytes
    return [from_bytes(blake2b(f"{head}{path}{tail}".encode(), digest_size=8).digest(), "little")
            for path in paths]


@functools.lru_cache(maxsize=4096)
def _shape_text(shape: tuple[int, ...]) -> str:
    return ",".join(map(str, shape))


def tile_seed(key: int, index: int) -> int:
    """The 64-bit generator seed of tile ``index`` of the tensor with ``key``."""
    return stream(mix64(key ^ DOMAIN_TILE), index)


class Tiles(str, enum.Enum):
    """How large tensors are cut into tiles (``init.tiles``): part of the value format.

    ``flat``: runs of :data:`TILE` consecutive values of the flattened tensor (the
    fastest single-process init; a ``Shard(0)`` shard draws only its rows).
    ``blocks``: 2-D blocks of the weight, :data:`TILE_WIDTH` columns wide, so a
    column shard (tensor parallel ``Shard(1)``, 2-D meshes) draws only its own columns,
    at the cost of one copy per tile in a single process. Values differ between the
    two; within either, they do not depend on how the tensor is sharded.
    """

    flat = "flat"
    blocks = "blocks"


class Grid(NamedTuple):
    """How a large tensor is cut into tiles: its 2-D view ``rows x cols``, and the tile shape.

    Tile ``(i, j)`` holds rows ``[i * tile_rows, ...)`` and columns ``[j * tile_cols, ...)`` of
    the view (the last ones cut short at the edges); its index is ``i * tile_columns + j``.
    """

    rows: int
    cols: int
    tile_rows: int
    tile_cols: int

    @property
    def tile_columns(self) -> int:
        """Tiles per row of tiles."""
        return -(-self.cols // self.tile_cols)


def tile_grid(shape: Sequence[int], device: torch.device, blocks: bool = False) -> Grid:
    """The tile grid of a tensor of ``shape`` on ``device`` (part of the value format).

    ``blocks=False`` (:attr:`Tiles.flat`): the view is ``(numel, 1)`` and tiles are runs
    of :data:`TILE` values on CPU, :data:`TILE_ACCELERATOR` on other devices.
    ``blocks=True`` (:attr:`Tiles.blocks`): on CPU the view is ``(shape[0], numel / shape[0])``
    (``(numel, 1)`` for a 1-D tensor)
    and tiles are blocks of it with at most :data:`TILE` values and :data:`TILE_WIDTH`
    columns (the whole row when rows are shorter; a multiple of it when a weight has so
    few rows that tiles would hold under a quarter of :data:`TILE`), so both a row shard
    and a column shard of a weight cover whole tiles, except at their edges; on other
    devices the same, with tiles of up to :data:`TILE_ACCELERATOR` values (at least 2^20).

    >>> cpu = torch.device("cpu")
    >>> tile_grid((768, 3072), cpu)
    Grid(rows=2359296, cols=1, tile_rows=131072, tile_cols=1)
    >>> tile_grid((768, 3072), cpu, blocks=True)
    Grid(rows=768, cols=3072, tile_rows=512, tile_cols=256)
    >>> tile_grid((100_000,), cpu, blocks=True)
    Grid(rows=100000, cols=1, tile_rows=100000, tile_cols=1)
    """
    cpu = device.type == "cpu"
    return _grid(tuple(shape), TILE if cpu else TILE_ACCELERATOR, TILE // 4 if cpu else 1 << 20, blocks)


@functools.lru_cache(maxsize=4096)
def _grid(shape: tuple[int, ...], area: int, least: int, blocks: bool) -> Grid:
    """Tiles of at most ``area`` values; block tiles of short rows widen to ``least`` values."""
    numel = math.prod(shape)
    if not blocks:
        return Grid(numel, 1, area, 1)
    rows = shape[0] if len(shape) >= 2 else numel
    if not numel:
        return Grid(rows, 0, 1, 1)
    cols = numel // rows
    tile_rows = min(rows, max(1, area // min(cols, TILE_WIDTH)))
    widths = max(1, -(-least // (tile_rows * TILE_WIDTH)))  # a few rows: wider tiles, not tiny ones
    return Grid(rows, cols, tile_rows, min(cols, TILE_WIDTH * widths))


def hash_bits(salts: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``mix64(salt + (position + 1) * golden)`` elementwise (``uint64``; reuses ``positions``)."""
    positions += U(1)
    positions *= NP_GOLDEN
    positions += salts
    return mix64_np(positions)


def bits_to_uniform(bits: np.ndarray) -> np.ndarray:
    """53-bit uniforms in ``[0, 1)``."""
    return (bits >> NP_11).astype(np.float64) * (2.0**-53)


def bits_to_normal(bits: np.ndarray) -> np.ndarray:
    """Standard normals by Box-Muller from the two 32-bit halves of each word.

    ``1 - u`` is exact for a 32-bit ``u``, so ``log(1 - u)`` loses nothing; the
    cosine runs in torch (vectorized float64, several times faster than numpy's).
    """
    radius = (bits >> NP_32).astype(np.float64)
    radius *= -(2.0**-32)
    radius += 1.0
    np.log(radius, out=radius)
    radius *= -2.0
    np.sqrt(radius, out=radius)
    angle = (bits & NP_LOW32).astype(np.float64)
    torch.from_numpy(angle).mul_(2.0 * math.pi * 2.0**-32).cos_()
    angle *= radius
    return angle


def hash_salts(keys: Sequence[int], call: int = 0) -> np.ndarray:
    """``stream(mix64(key ^ DOMAIN_HASH), call)`` for many keys at once."""
    base = np.array(keys, dtype=np.uint64)
    base ^= U(DOMAIN_HASH)
    mix64_np(base)
    base += U(((call + 1) * GOLDEN) & MASK64)
    return mix64_np(base)

