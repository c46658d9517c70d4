"""Hydra integration: the callable ``Init``, the instantiate hook, ``register()`` and callbacks.

The ``init`` config group itself (the presets) is served from ``conf/`` by the
search-path plugin in ``hydra_plugins/hydra_init_searchpath``; the structured
schemas the presets bind to are in :mod:`.schema`. Names are imported lazily,
so importing :mod:`.schema` (as the schema source does) loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Init": ".init_object",
    "initialized": ".instantiate",
    "instantiate": ".instantiate",
    "job_output_dir": ".job",
    "write_report": ".job",
    "conf_dir": ".search_path",
    "register": ".search_path",
    "register_hydra_plugins": ".search_path",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    loaded = importlib.import_module(module, __name__)
    for export, where in _EXPORTS.items():  # also shadows the submodule named like its function
        if where == module:
            globals()[export] = getattr(loaded, export)
    return globals()[name]
