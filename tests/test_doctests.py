"""Every docstring example in the package runs as written (the public API's examples stay true)."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import hydra_init


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(hydra_init.__path__, "hydra_init."):
        spec = importlib.util.find_spec(info.name)
        origin = Path(spec.origin) if spec and spec.origin else None
        if origin and origin.suffix == ".py" and ">>> " in origin.read_text():
            names.append(info.name)
    return sorted(names)


MODULES = _modules_with_examples()


def test_the_package_has_examples() -> None:
    assert {"hydra_init.api", "hydra_init.initializers", "hydra_init.engine.knobs"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
