"""The docstring examples of the Hydra integration run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "hydra_init.integration.init_object",
    "hydra_init.integration.instantiate",
    "hydra_init.knobs",
    "hydra_init.integration.job",
    "hydra_init.integration.callbacks",
    "hydra_init.integration.threads",
    "hydra_init.integration.search_path",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
