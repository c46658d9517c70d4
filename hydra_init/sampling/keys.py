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

import functools
import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["SMALL", "TILE", "TILE_ACCELERATOR", "bits_to_normal", "bits_to_uniform", "derive_key",
           "hash_bits", "hash_salts", "mix64", "stream", "tile_seed", "tile_size"]

TILE = 1 << 17
"""Elements per tile on CPU. Part of the value format of large CPU tensors."""

TILE_ACCELERATOR = 1 << 24
"""Elements per tile on other devices (CUDA...), where a kernel launch per small tile
would dominate. Part of the value format there."""

SMALL = 1 << 12
"""Tensors with at most this many elements use the counter-based generator."""

MASK64 = (1 << 64) - 1
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
    text = f"{int(seed)}\x00{path}\x00{_shape_text(tuple(shape))}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


@functools.lru_cache(maxsize=4096)
def _shape_text(shape: tuple[int, ...]) -> str:
    return ",".join(map(str, shape))


def tile_seed(key: int, index: int) -> int:
    """The 64-bit generator seed of tile ``index`` of the tensor with ``key``."""
    return stream(mix64(key ^ DOMAIN_TILE), index)


def tile_size(device: torch.device | str) -> int:
    """Elements per tile on this device type (:data:`TILE` on CPU)."""
    return TILE if torch.device(device).type == "cpu" else TILE_ACCELERATOR


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

