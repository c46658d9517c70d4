"""Append hydra_init's presets (``conf/``) and its schema source to Hydra's search path.

Appending (never prepending) keeps an app's own ``conf/init/<name>.yaml`` ahead
of ours, so an app can shadow any preset. Imports neither torch nor hydra_init.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from .conf_source import HydraInitConfSource
from .schema_source import HydraInitSchemaSource

PROVIDER = "hydra-init"


def conf_dir() -> Path | None:
    """The directory holding hydra_init's config groups (``init/``, ``hydra/callbacks/``).

    From a wheel it is the package's ``hydra_init/conf``. From a source checkout
    (``PYTHONPATH``, a strict editable install whose files are links into the
    checkout, or a PEP 660 editable install) it is the repository's top-level
    ``conf/``. ``None`` if hydra_init is not importable.
    """
    spec = importlib.util.find_spec("hydra_init")
    if spec is None or not spec.origin:
        return None
    package = Path(os.path.realpath(spec.origin)).parent
    if (package / "conf" / "init").is_dir():
        return package / "conf"
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "conf" / "init").is_dir():
        return checkout / "conf"
    return None


class HydraInitSearchPathPlugin(SearchPathPlugin):
    """Appends ``hydra-init-conf://<hydra_init conf dir>`` (the presets, served lean) and
    ``hydra-init://`` (the structured schemas)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if any(element.provider == PROVIDER for element in search_path.get_path()):
            return  # registered twice (discovered and hydra_init.register()): add once
        directory = conf_dir()
        if directory is not None:
            search_path.append(PROVIDER, f"{HydraInitConfSource.scheme()}://{directory}")
        search_path.append(PROVIDER, f"{HydraInitSchemaSource.scheme()}://")
