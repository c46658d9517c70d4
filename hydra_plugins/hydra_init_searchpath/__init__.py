"""Hydra plugins that make hydra_init's ``init`` config group visible to any Hydra app.

Hydra imports every module under the ``hydra_plugins`` namespace at start-up, so
nothing here imports torch or ``hydra_init``: the preset directory is located
with :func:`importlib.util.find_spec` (no execution) and the structured schemas
are imported only when a preset that binds to them is composed.

* :class:`~hydra_plugins.hydra_init_searchpath.searchpath.HydraInitSearchPathPlugin`
  appends the preset directory and the schema source to the config search path.
* :class:`~hydra_plugins.hydra_init_searchpath.schema_source.HydraInitSchemaSource`
  serves ``hydra_init/schema/{init,rule}`` lazily.
"""
