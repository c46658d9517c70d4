"""The presets of the ``init`` config group: names, one-line descriptions and knobs.

Every preset is a YAML file in hydra_init's ``conf/init/`` whose first line is a
``# description`` comment. Its knobs are the preset-level values its rules
interpolate (``std``, ``n_layer`` ...), read from the preset as Hydra composes
it, so they are exactly what ``init.<knob>=...`` overrides on the command line.

>>> names = preset_names()
>>> "kaiming_conv" in names and "gpt2" in names
True
>>> info = describe_preset("gpt2")
>>> info.knobs["n_layer"], info.knobs["std"], info.sized  # null: read from the model
(None, None, ('n_layer', 'std'))
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .schema import KNOBS

__all__ = [
    "PresetInfo",
    "compose",
    "describe_preset",
    "format_presets",
    "list_presets",
    "preset_dir",
    "preset_names",
    "rule_names",
]


@dataclass(frozen=True)
class PresetInfo:
    """One preset: its name, description, knobs (name -> default) and file."""

    name: str
    description: str
    path: Path
    knobs: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    sized: tuple[str, ...] = ()
    """Knobs read from the model when null (the preset's ``sizes``)."""


def preset_dir() -> Path:
    """The ``init`` group directory served by hydra_init's search-path plugin."""
    from . import conf_dir

    root = conf_dir()
    if root is None:  # pragma: no cover - hydra_init is importable here by definition
        raise FileNotFoundError("hydra_init's conf/ directory was not found")
    return root / "init"


def preset_names() -> list[str]:
    """Names of the presets (``init=<name>``), sorted."""
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def rule_names() -> list[str]:
    """Names of the single rules (``+init/rules=[<name>,...]``), sorted."""
    return sorted(p.stem for p in (preset_dir() / "rules").glob("*.yaml"))


def description(path: Path) -> str:
    """The first line's ``# ...`` comment of a config file, without the ``#``."""
    with path.open() as f:
        first = f.readline().strip()
    return first.lstrip("#").strip() if first.startswith("#") else ""


@contextmanager
def _hydra(config_dir: str | None = None) -> Iterator[None]:
    """A Hydra compose context with hydra_init's groups on the search path."""
    from hydra import initialize, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from . import register

    register()
    if GlobalHydra.instance().is_initialized():
        if config_dir is not None:
            raise RuntimeError("compose(config=...) cannot run inside another Hydra context")
        yield  # inside an app or another compose context: reuse its search path
        return
    context = (
        initialize_config_dir(config_dir=config_dir, version_base=None)
        if config_dir else initialize(version_base=None)
    )
    with context:
        yield


def compose(overrides: Sequence[str] = (), config: str | Path | None = None) -> DictConfig:
    """Compose a config with hydra_init's ``init`` group available.

    Without ``config`` the primary config is empty, so groups are added with
    ``+``: ``compose(["+init=gpt2", "init.n_layer=24"])``. With ``config`` (a
    Hydra app's primary YAML file) the app's own defaults apply and overrides
    are written as on the app's command line (``init=gpt2``).
    """
    from hydra import compose as hydra_compose

    if config is None:
        with _hydra():
            return hydra_compose(overrides=list(overrides))
    path = Path(config).resolve()
    with _hydra(str(path.parent)):
        return hydra_compose(config_name=path.stem, overrides=list(overrides))


_REFERENCE = re.compile(r"\$\{[^}]*?(\w+)\s*\}")


def knobs_of(init: DictConfig) -> dict[str, Any]:
    """The knobs of a composed ``init`` node: ``seed``, then every knob its rules interpolate.

    Values are the preset's defaults (enums as their values); ``None`` marks a knob
    the preset leaves for the user to set (``init=pretrained`` needs ``init.checkpoint``).
    """
    rules = repr(OmegaConf.to_container(init.rules, resolve=False)) if "rules" in init else ""
    used = (set(_REFERENCE.findall(rules)) | set(init.get("sizes") or ())) & KNOBS
    out: dict[str, Any] = {}
    for name in ["seed", *sorted(used)]:
        value = OmegaConf.select(init, name, throw_on_missing=False)
        if value is not None or name in used:
            out[name] = value.value if isinstance(value, enum.Enum) else value
    return out


def describe_preset(name: str) -> PresetInfo:
    """A preset's description and its knobs (composed through Hydra)."""
    path = preset_dir() / f"{name}.yaml"
    if not path.is_file():
        from ..errors import InitConfigError, did_you_mean

        names = preset_names()
        raise InitConfigError(
            "init", f"no preset named {name!r}", valid=", ".join(names), hint=did_you_mean(name, names)
        )
    try:
        init = compose([f"+init={name}"]).init
        knobs, error, sized = knobs_of(init), "", _sized(init)
    except Exception as exc:  # a broken preset is listed with its error, not fatal for the listing
        knobs, error, sized = {}, f"{type(exc).__name__}: {exc}".splitlines()[0], ()
    return PresetInfo(name, description(path), path, knobs, error, sized)


def _sized(init: DictConfig) -> tuple[str, ...]:
    return tuple(sorted(init.get("sizes") or ()))


def list_presets() -> list[PresetInfo]:
    """Every preset of the ``init`` group with its knobs.

    All presets are composed in one go, each under its own package (five times
    faster than one composition each); if that fails, each preset is composed
    alone, so a broken preset is listed with its error instead of hiding the rest.
    """
    names = preset_names()
    with _hydra():
        try:
            together = compose([f"+init@_presets.{name}={name}" for name in names])._presets
        except Exception:
            return [describe_preset(name) for name in names]
    directory = preset_dir()
    return [
        PresetInfo(name, description(directory / f"{name}.yaml"), directory / f"{name}.yaml",
                   knobs_of(together[name]), sized=_sized(together[name]))
        for name in names
    ]


def _knob_text(knobs: dict[str, Any], sized: Sequence[str] = ()) -> str:
    def text(k: str, v: Any) -> str:
        if v is None:
            return "null (from the model)" if k in sized else "null (set it)"
        return str(v).lower() if isinstance(v, bool) else str(v)

    return " ".join(f"{k}={text(k, v)}" for k, v in knobs.items()) or "-"


def format_presets(presets: Sequence[PresetInfo], rules: Sequence[str] = ()) -> str:
    """The listing printed by ``hydra-init presets``."""
    width = max([len(p.name) for p in presets] + [len(r) for r in rules] + [8]) + 2
    lines = ["init presets (select with init=<name>, set a knob with init.<knob>=<value>):"]
    for p in presets:
        lines.append(f"  {p.name.ljust(width)}{p.description}")
        if p.error:
            lines.append(f"  {''.ljust(width)}cannot be composed: {p.error}")
        else:
            lines.append(f"  {''.ljust(width)}knobs: {_knob_text(p.knobs, p.sized)}")
    if rules:
        lines.append("")
        lines.append("single rules (add to any preset with +init/rules=[<name>,...]):")
        rules_dir = preset_dir() / "rules"
        for name in rules:
            lines.append(f"  {name.ljust(width)}{description(rules_dir / f'{name}.yaml')}")
    return "\n".join(lines)
