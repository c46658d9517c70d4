"""Create the project's virtual environment and install it (used by the Makefile).

Idempotent and safe to run from several shells at once (an exclusive file lock
serialises installs). The install is editable in *strict* mode: with setuptools'
default (PEP 660) editable mode, Hydra cannot discover plugins and config
directories shipped by a package (Hydra issue 2359).
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(venv_dir: str = ".venv") -> None:
    env = ROOT / venv_dir
    python = env / "bin" / "python"
    env.mkdir(exist_ok=True)
    with open(env / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not python.exists():
            venv.EnvBuilder(with_pip=True).create(env)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run(
            [*pip, "-c", "constraints.txt", "-e", ".[dev]", "--config-settings", "editable_mode=strict"],
            cwd=ROOT,
            check=True,
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
