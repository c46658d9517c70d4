"""``hydra_init.register_hydra_plugins()`` (alias ``register``): the ``init`` group, by hand.

For when Hydra did not discover our plugin.

Hydra finds plugins by scanning the ``hydra_plugins`` namespace package. Wheels
and setuptools' *strict* editable installs put ``hydra_plugins/hydra_init_searchpath``
on ``sys.path`` where the scan sees it. setuptools' default (PEP 660) editable
install maps packages through an import hook the scan cannot walk, so the
plugin, and with it the ``init`` group, stays invisible (Hydra issue 2359). In
that case call :func:`register_hydra_plugins` before ``@hydra.main`` runs::

    import hydra
    import hydra_init

    hydra_init.register_hydra_plugins()

    @hydra.main(version_base=None, config_path="conf", config_name="config")
    def main(cfg): ...
"""

from __future__ import annotations

import importlib
from pathlib import Path

__all__ = ["conf_dir", "register", "register_hydra_plugins"]


def register_hydra_plugins() -> None:
    """Register hydra_init's Hydra plugins (presets search path, config sources) by hand.

    Idempotent, and harmless when Hydra has discovered the plugins already.
    Call it at import time of the app, before ``@hydra.main`` or
    ``hydra.initialize`` composes a config.

    >>> register_hydra_plugins()
    >>> from hydra.core.plugins import Plugins
    >>> from hydra.plugins.search_path_plugin import SearchPathPlugin
    >>> any(p.__name__ == "HydraInitSearchPathPlugin" for p in Plugins.instance().discover(SearchPathPlugin))
    True
    """
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # scans hydra_plugins first, so a discovered class is reused
    searchpath = importlib.import_module("hydra_plugins.hydra_init_searchpath.searchpath")
    schema_source = importlib.import_module("hydra_plugins.hydra_init_searchpath.schema_source")
    conf_source = importlib.import_module("hydra_plugins.hydra_init_searchpath.conf_source")
    plugins.register(searchpath.HydraInitSearchPathPlugin)
    plugins.register(schema_source.HydraInitSchemaSource)
    plugins.register(conf_source.HydraInitConfSource)


register = register_hydra_plugins
"""The 0.1 name of :func:`register_hydra_plugins`."""


def conf_dir() -> Path | None:
    """The directory hydra_init's config groups are served from (``.../conf``)."""
    return importlib.import_module("hydra_plugins.hydra_init_searchpath.searchpath").conf_dir()
