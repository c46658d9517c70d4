"""A Hydra config source serving hydra_init's structured schemas, imported lazily.

Presets bind to ``/hydra_init/schema/init`` in their defaults list. A schema in
Hydra's ConfigStore would have to be registered by importing ``hydra_init``
(and so torch) before composition, which an app that never imports hydra_init
does not do; a ConfigStore module named in the search path is imported by every
Hydra app at start-up. This source answers ``is_group``/``is_config`` from a
fixed list and imports the schema only in :meth:`load_config`, that is, only
when a preset is actually composed.
"""

from __future__ import annotations

import importlib
import importlib.util

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigResult, ConfigSource

GROUP = "hydra_init/schema"
SCHEMAS = {"init": "InitConfig", "rule": "RuleConfig"}
"""Config name in :data:`GROUP` -> class name in ``hydra_init.integration.schema``."""
HEAD = "head"
"""``hydra_init/schema/head``: the keys a lean preset needs first (``_target_``, ``_knobs_used_``),
so that ``_knobs_used_`` resolves before the rules (``hydra_init.engine.knobs``)."""
RECIPES = ("gpt2", "hf", "llama", "resnet", "retinanet_head", "rl_orthogonal", "vit")
"""Recipe schemas (``hydra_init.integration.recipe_schemas.RECIPE_SCHEMAS``), listed without importing it."""


class HydraInitSchemaSource(ConfigSource):
    """``hydra-init://``: the configs ``hydra_init/schema/init`` and ``hydra_init/schema/rule``."""

    @staticmethod
    def scheme() -> str:
        return "hydra-init"

    @staticmethod
    def _name(config_path: str) -> str:
        return config_path.strip("/").removesuffix(".yaml")

    def load_config(self, config_path: str) -> ConfigResult:
        from omegaconf import OmegaConf

        group, _, name = self._name(config_path).rpartition("/")
        if group != GROUP or name not in (*SCHEMAS, *RECIPES, HEAD):
            raise ValueError(f"hydra-init:// has no config {config_path!r}")
        if name == HEAD:
            node = OmegaConf.create(
                {"_target_": "hydra_init.Init", "_knobs_used_": "${hydra_init.knobs_used:}"}
            )
            return ConfigResult(config=node, path=self.full_path(), provider=self.provider,
                                header={"package": None})
        schema = importlib.import_module("hydra_init.integration.schema")
        cls = schema.RECIPE_SCHEMAS[name] if name in RECIPES else getattr(schema, SCHEMAS[name])
        node = OmegaConf.structured(cls)
        return ConfigResult(
            config=node, path=self.full_path(), provider=self.provider, header={"package": None}
        )

    def available(self) -> bool:
        return importlib.util.find_spec("hydra_init") is not None

    def is_group(self, config_path: str) -> bool:
        path = self._name(config_path)
        return path in ("hydra_init", GROUP)

    def is_config(self, config_path: str) -> bool:
        group, _, name = self._name(config_path).rpartition("/")
        return group == GROUP and name in (*SCHEMAS, *RECIPES, HEAD)

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        path = self._name(config_path)
        groups = {"hydra_init": ["schema"]}.get(path, [])
        configs = sorted((*SCHEMAS, *RECIPES)) if path == GROUP else []  # head: internal, not listed
        out = []
        if results_filter in (None, ObjectType.GROUP):
            out += groups
        if results_filter in (None, ObjectType.CONFIG):
            out += configs
        return sorted(out)
