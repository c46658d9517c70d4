"""Hydra integration: the callable ``Init``, the instantiate hook, ``register()`` and callbacks.

The ``init`` config group itself (the presets) is served from ``conf/`` by the
search-path plugin in ``hydra_plugins/hydra_init_searchpath``.
"""

from .init_object import Init
from .instantiate import initialized, instantiate
from .job import job_output_dir, write_report
from .search_path import conf_dir, register

__all__ = ["Init", "conf_dir", "initialized", "instantiate", "job_output_dir", "register", "write_report"]
