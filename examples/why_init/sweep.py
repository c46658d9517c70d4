"""The why-init experiment: every init setting x several seeds, then the sweep summary.

Settings (Hydra can only sweep a knob over presets that all have it, so the
settings run as three multiruns, summarized together):

* ``init=normal init.std=1.0`` and ``init=normal init.std=0.01`` (fixed std),
* ``init=xavier``, ``init=kaiming_uniform``, ``init=orthogonal`` (scaled by fan / unit gain),
* ``init=orthogonal init.gain=1.4142`` (orthogonal with the ReLU gain sqrt(2)).

Writes ``<out>/{fixed_std,fan_scaled,orthogonal_relu}/<job>/`` (each job's
``init_report.json``, ``curves.json``, log) and, in ``<out>``,
``init_summary.{csv,json,md}``, ``init_summary.png`` and one ``curve_<name>.png`` per
curve (``train_loss``, ``activation_std``, ``grad_std``)::

    python sweep.py                                # full budget (make sweep)
    python sweep.py --seeds 0 --steps 20 --out /tmp/why_init   # a quick look
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent

SETTINGS: dict[str, list[str]] = {
    "fixed_std": ["init=normal", "init.std=1.0,0.01"],
    "fan_scaled": ["init=xavier,kaiming_uniform,orthogonal"],
    "orthogonal_relu": ["init=orthogonal", "init.gain=1.4142135623730951"],
}
"""Multirun name -> its sweep overrides."""


def multirun_command(
    name: str, out: Path, seeds: str, launcher: str, extra: Sequence[str]
) -> list[str]:
    """The command line of one multirun of the experiment."""
    command = [sys.executable, str(HERE / "train.py"), "-m", *SETTINGS[name], f"seed={seeds}",
               f"hydra.sweep.dir={out / name}"]
    if launcher == "joblib":
        command += ["hydra/launcher=joblib", "hydra/callbacks=[init_summary,torch_threads]"]
    else:
        command += ["hydra/callbacks=init_summary"]
    return command + list(extra)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="multirun/why_init", help="output directory")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--steps", type=int, help="training steps per job (default: the config's)")
    parser.add_argument("--launcher", choices=("basic", "joblib"), default="basic",
                        help="basic: jobs one after another in one process; joblib: parallel processes")
    parser.add_argument("--only", action="append", choices=list(SETTINGS),
                        help="run only this multirun (repeatable; default: all)")
    parser.add_argument("overrides", nargs="*", help="more overrides for every job (e.g. model.depth=30)")
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    extra = list(args.overrides) + ([f"train.steps={args.steps}"] if args.steps else [])
    names = args.only or list(SETTINGS)
    for name in names:
        command = multirun_command(name, out, args.seeds, args.launcher, extra)
        print("+", " ".join(command[1:]), flush=True)
        subprocess.run(command, cwd=HERE, check=True)

    from omegaconf import OmegaConf

    from hydra_init.tools.cli import main as hydra_init_cli

    model = OmegaConf.load(out / names[0] / "0" / ".hydra" / "config.yaml").model
    title = f"{model.depth}-layer plain {model.activation} net (width {model.width}) on digits"
    return hydra_init_cli(["summary", *(str(out / name) for name in names), "--out", str(out),
                           "--title", title])


if __name__ == "__main__":
    sys.exit(main())
