"""Shared fixtures: hydra_init installed the ways a user installs it, in throwaway environments.

Each environment is a venv of the base interpreter whose only view of the
project's dependencies (torch, hydra-core, the launcher plugins) is a ``.pth``
line naming this virtual environment's ``site-packages``; ``.pth`` files found
there (the repository's own editable install) are not processed, so the
repository is invisible and ``hydra_init`` comes only from what was installed.

The environments are built once per test session and shared by pytest-xdist
workers (a file lock in the session's common temp directory).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_FILES = ("pyproject.toml", "README.md", "hydra_init", "hydra_plugins", "conf")


def _shared_dir(factory: pytest.TempPathFactory) -> Path:
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """Build ``<shared>/<name>`` with ``build`` unless another worker already did."""
    target = _shared_dir(factory) / name
    with open(_shared_dir(factory) / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".done").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            build(target)
            (target / ".done").touch()
    return target


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *args],
                   check=True, capture_output=True, text=True)


def _source_copy(target: Path) -> Path:
    """The package's files copied out of the checkout (builds then write nothing into it)."""
    src = target / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PACKAGE_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    return src


def _environment(target: Path) -> Path:
    """A venv of the base interpreter that sees this environment's dependencies; returns its python."""
    env = target / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.fixture(scope="session")
def wheel_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A python with hydra_init ``pip install``-ed from a wheel built from the checkout."""

    def build(target: Path) -> None:
        src = _source_copy(target)
        _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(target / "dist"), str(src))
        python = _environment(target)
        (wheel,) = (target / "dist").glob("hydra_init-*.whl")
        _pip("--python", str(python), "install", "--no-deps", "--no-index", str(wheel))
        shutil.rmtree(src)

    return _once(tmp_path_factory, "wheel_env", build) / "venv" / "bin" / "python"


@pytest.fixture(scope="session")
def editable_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A python with hydra_init installed by ``pip install -e`` in setuptools' default (PEP 660) mode.

    That mode exposes packages through an import hook that Hydra's plugin scan
    cannot walk (Hydra issue 2359), unlike the project's own strict-mode install.
    """

    def build(target: Path) -> None:
        src = _source_copy(target)
        python = _environment(target)
        _pip("--python", str(python), "install", "--no-deps", "--no-build-isolation", "--no-index",
             "-e", str(src))

    return _once(tmp_path_factory, "editable_env", build) / "venv" / "bin" / "python"
