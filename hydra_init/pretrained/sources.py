"""Where a checkpoint comes from: a local path, ``file://``, ``http(s)://``, or a registered scheme.

:func:`locate` turns the ``checkpoint`` string of a Pretrained rule into a local
file, downloading URLs into torch's hub cache, and checks an optional sha256.
Users add their own schemes (a model zoo, an artifact store) with
:func:`register_checkpoint_scheme`; a resolver maps the part after
``scheme://`` to a path, a URL or another registered scheme.

>>> register_checkpoint_scheme("zoo", lambda name: f"/models/{name}.pth", replace=True)
>>> "zoo" in checkpoint_schemes()
True
>>> resolve_location("zoo://resnet18")
'/models/resnet18.pth'
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import torch

from ..errors import InitConfigError, did_you_mean
from .refusals import checkpoint_files

__all__ = [
    "Located",
    "Resolver",
    "checkpoint_schemes",
    "download_path",
    "file_sha256",
    "locate",
    "register_checkpoint_scheme",
    "resolve_location",
]

log = logging.getLogger("hydra_init")

Resolver = Callable[[str], str]
"""Maps the part after ``scheme://`` to a path, a URL, or another ``scheme://`` location."""

_BUILTIN = ("file", "http", "https")
_SCHEMES: dict[str, Resolver] = {}
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$", re.DOTALL)
_MAX_HOPS = 8


def register_checkpoint_scheme(scheme: str, resolver: Resolver, *, replace: bool = False) -> None:
    """Make ``scheme://name`` usable as a Pretrained ``checkpoint``.

    ``resolver(name)`` returns a local path, an ``http(s)://``/``file://`` URL or
    another registered ``scheme://`` location. It may raise any exception with a
    helpful message for an unknown name; the engine reports it as an
    :class:`~hydra_init.InitConfigError` naming the config key. Registering a
    different resolver under a taken scheme needs ``replace=True``.

    Example:
        >>> import hydra_init
        >>> zoo = {"tiny": "https://example.invalid/tiny-1a2b3c4d.pth"}
        >>> hydra_init.register_checkpoint_scheme("myzoo", zoo.__getitem__, replace=True)
        >>> resolve_location("myzoo://tiny")
        'https://example.invalid/tiny-1a2b3c4d.pth'
    """
    if not isinstance(scheme, str) or not _SCHEME_RE.match(f"{scheme}://"):
        raise ValueError(f"invalid scheme name {scheme!r}: use letters, digits, '+', '-', '.'")
    scheme = scheme.lower()
    if scheme in _BUILTIN:
        raise ValueError(f"{scheme}:// is built in and cannot be replaced")
    if not callable(resolver):
        raise TypeError(f"resolver for {scheme}:// must be callable, got {resolver!r}")
    current = _SCHEMES.get(scheme)
    if current is not None and current is not resolver and not replace:
        raise ValueError(f"{scheme}:// is already registered; pass replace=True to replace it")
    _SCHEMES[scheme] = resolver


def checkpoint_schemes() -> list[str]:
    """Every scheme a ``checkpoint`` may use, built-in ones first.

    >>> checkpoint_schemes()[:3]
    ['file', 'http', 'https']
    """
    return [*_BUILTIN, *sorted(_SCHEMES)]


def _split(location: str) -> tuple[str | None, str]:
    found = _SCHEME_RE.match(location)
    if found is None:
        return None, location
    return found.group(1).lower(), found.group(2)


def resolve_location(location: str, key: str = "checkpoint") -> str:
    """Follow registered schemes until a path or a ``file``/``http(s)`` URL remains.

    >>> resolve_location("/data/model.pth")
    '/data/model.pth'
    """
    seen = [location]
    current = location
    for _ in range(_MAX_HOPS):
        scheme, rest = _split(current)
        if scheme is None or scheme in _BUILTIN:
            return current
        resolver = _SCHEMES.get(scheme)
        if resolver is None:
            raise InitConfigError(
                key, f"unknown checkpoint scheme {scheme + '://'!r} in {location!r}",
                valid="a local path or " + ", ".join(s + "://" for s in checkpoint_schemes()),
                hint=did_you_mean(scheme, checkpoint_schemes())
                or f"register it with hydra_init.register_checkpoint_scheme({scheme!r}, resolver)",
            )
        try:
            current = resolver(rest)
        except Exception as exc:
            raise InitConfigError(
                key, f"{scheme}:// cannot resolve {rest!r}: {exc}",
                hint="check the name, or give a path or an http(s):// URL instead",
            ) from None
        if not isinstance(current, str) or not current:
            raise InitConfigError(
                key, f"the {scheme}:// resolver returned {current!r} for {rest!r}",
                valid="a path or a URL string",
            )
        seen.append(current)
    raise InitConfigError(
        key, f"checkpoint scheme resolution does not end: {' -> '.join(seen)}",
        hint="a registered resolver returns a location that leads back to itself",
    )


def file_sha256(path: Path) -> str:
    """The hex sha256 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_path(url: str) -> Path:
    """Where ``url`` is cached: ``<torch hub dir>/checkpoints/hydra_init/<url digest>/<file name>``.

    The hub dir follows ``TORCH_HOME`` (``torch.hub.get_dir()``). The digest of the
    whole URL keeps two different ``model_final.pth`` apart, where a cache keyed by
    file name alone would silently hand back the wrong weights.
    """
    name = Path(unquote(urlparse(url).path)).name or "checkpoint"
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(torch.hub.get_dir()) / "checkpoints" / "hydra_init" / digest / name


def _download(url: str, sha256: str | None, key: str) -> tuple[Path, bool]:
    """The cached copy of ``url`` (downloaded if absent) and whether its hash was checked."""
    target = download_path(url)
    if target.is_file():
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("hydra_init: downloading %s to %s", url, target)
    try:
        # Writes a temporary file in the same folder and renames it when complete,
        # after checking the hash prefix: a failed or mismatching download never
        # lands in the cache.
        torch.hub.download_url_to_file(url, str(target), hash_prefix=sha256, progress=False)
    except RuntimeError as exc:
        if "invalid hash value" not in str(exc):
            raise
        raise InitConfigError(
            key, f"sha256 of the download from {url} does not match: {exc}",
            hint="the file on the server changed or the sha256 in the config is wrong; "
            "nothing was cached",
        ) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise InitConfigError(
            key, f"cannot download {url}: {exc}",
            hint="check the URL and the network; a file already in the cache is used offline",
        ) from None
    return target, sha256 is not None


@dataclass(frozen=True)
class Located:
    """A checkpoint found on disk.

    Attributes:
        location: the ``checkpoint`` string as written in the config.
        path: the local file to read.
        url: the URL it was downloaded from, if any (so errors can name the cached copy).
    """

    location: str
    path: Path
    url: str | None = None


def locate(location: str, *, sha256: str | None = None, key: str = "checkpoint") -> Located:
    """Find (or download) the file behind a ``checkpoint`` string and check its sha256.

    ``sha256`` may be the full hex digest or a prefix of at least 8 characters
    (torch hub's convention). Every problem is an :class:`InitConfigError` at
    ``key``, raised before any model tensor is touched.

    >>> locate("/no/such/model.pth")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hydra_init.errors.InitConfigError: checkpoint: checkpoint file not found: /no/such/model.pth...
    """
    resolved = resolve_location(location, key)
    scheme, rest = _split(resolved)
    expected = sha256.lower() if sha256 else None
    url, checked = None, False
    if scheme in ("http", "https"):
        url = resolved
        path, checked = _download(resolved, expected, key)
    else:
        path = Path(unquote(rest) if scheme == "file" else resolved).expanduser()
    origin = "" if resolved == location else f" (from {location})"
    if path.is_dir():
        raise _directory(path, origin, key)
    if not path.is_file():
        raise _not_found(path, origin, key)
    if expected and not checked:
        actual = file_sha256(path)
        if not actual.startswith(expected):
            cached = f" (cached copy of {url}; delete it to download again)" if url else ""
            raise InitConfigError(
                key, f"sha256 of {path}{cached} is {actual}, expected {expected}",
                hint="the file is not the one the config expects; fix the file or the sha256",
            )
    return Located(location, path, url)


def _directory(path: Path, origin: str, key: str) -> InitConfigError:
    inside = checkpoint_files(path)
    return InitConfigError(
        key, f"checkpoint {path}{origin} is a directory, not a file",
        valid="checkpoint files in it: " + ", ".join(inside) if inside else None,
        hint=f"name the checkpoint file inside it, e.g. {path / inside[0]}" if inside
        else "name the checkpoint file (e.g. model.pth or model.safetensors); this directory holds none",
    )


def _not_found(path: Path, origin: str, key: str) -> InitConfigError:
    """The missing file, with the closest names in its folder (or the folder that is missing)."""
    folder = path.parent
    relative = "" if path.is_absolute() else f", read relative to the current directory {Path.cwd()}"
    if not folder.is_dir():
        up = next((p for p in folder.parents if p.is_dir()), None)
        return InitConfigError(
            key, f"checkpoint file not found: {path}{origin}{relative}; its folder {folder} does not exist",
            hint=f"the nearest existing folder is {up.resolve()}; check the path" if up is not None
            else "check the path",
        )
    names = sorted(p.name for p in folder.iterdir())
    close = did_you_mean(path.name, names)
    listed = checkpoint_files(folder)
    hint = (f"{close[:-1]} (in {folder})?" if close else
            "relative paths are read from the current directory; give an absolute path" if relative else
            "check the file name")
    return InitConfigError(
        key, f"checkpoint file not found: {path}{origin}{relative}",
        valid=f"checkpoint files in {folder}: " + ", ".join(listed) if listed else None, hint=hint,
    )


def _torchvision(name: str) -> str:
    """``torchvision://resnet50`` (default weights) or ``torchvision://resnet50.IMAGENET1K_V1``."""
    try:
        from torchvision.models import get_model_weights
    except ImportError:
        raise LookupError("torchvision is not installed (pip install torchvision)") from None
    model, _, variant = name.partition(".")
    weights = get_model_weights(model)
    entry = weights[variant] if variant else weights.DEFAULT
    return str(entry.url)


register_checkpoint_scheme("torchvision", _torchvision)
