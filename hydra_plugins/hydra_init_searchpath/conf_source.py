"""A file config source for hydra_init's ``conf/`` directory that serves the ``init`` group lean.

It reads the YAML files like Hydra's own ``file://`` source. Files of the ``init``
group (presets and ``init/rules``) are then passed through
:func:`hydra_init.integration.lean.lean_config`: every key a file sets becomes a
typed node and nothing else is added, so a composed preset is as short as its
file while type, Enum and unknown-key errors still come at composition time.
hydra_init (and torch) is imported only when such a file is loaded, that is,
when an app actually composes a preset.
"""

from __future__ import annotations

import importlib

from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra.plugins.config_source import ConfigResult

SCHEME = "hydra-init-conf"


class HydraInitConfSource(FileConfigSource):
    """``hydra-init-conf://<dir>``: a ``file://`` source whose ``init`` group is served lean."""

    @staticmethod
    def scheme() -> str:
        return SCHEME

    def load_config(self, config_path: str) -> ConfigResult:
        result = super().load_config(config_path)
        path = self._normalize_file_name(config_path).strip("/")
        if path.startswith("init/"):
            lean = importlib.import_module("hydra_init.integration.lean")
            result.config = lean.lean_config(result.config, path)
        return result
