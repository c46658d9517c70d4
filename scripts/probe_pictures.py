"""Draw the pictures of docs/probe.md (``make probe-pictures``): no training, about a minute.

1. ``hydra-init probe`` on the why-init config for three inits -> ``probe_<name>.png``;
2. the why-init settings x two seeds, probed by the ``init_probe`` callback with
   ``train.steps=0`` -> the summary's overlay of every job's curve, ``probe_sweep_act_std.png``;
3. a width sweep (64 ... 1024) of an 8-layer ReLU net under a fixed std tuned at
   width 128 (``init=normal init.std=0.125``) and under Kaiming -> the
   coordinate check, ``probe_coord_check.png``.

Everything is written to ``--work`` (default a temporary directory) and the
pictures are copied to ``docs/images``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "why_init"
IMAGES = ROOT / "docs" / "images"

PROBES = {
    "normal_std1": ["init=normal", "init.std=1.0"],
    "xavier": ["init=xavier"],
    "kaiming_uniform": ["init=kaiming_uniform"],
}
DEPTH_SWEEPS = {
    "fixed_std": ["init=normal", "init.std=1.0,0.01"],
    "fan_scaled": ["init=xavier,kaiming_uniform"],
}
WIDTH_SWEEPS = {
    "sp_std_0.125": ["init=normal", "init.std=0.125"],
    "kaiming": ["init=kaiming_uniform"],
}
WIDTHS = "64,128,256,512,1024"


def _run(command: list[str], **kwargs) -> None:
    print("+", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, **kwargs)


def _multirun(overrides: list[str], directory: Path) -> None:
    _run([sys.executable, str(APP / "train.py"), "-m", *overrides, "train.steps=0",
          "hydra/callbacks=[init_summary,init_probe]", f"hydra.sweep.dir={directory}"], cwd=APP,
         stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="working directory (default: a temporary one)")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="probe_pictures_")).resolve()
    cli = [sys.executable, "-m", "hydra_init.tools.cli"]
    IMAGES.mkdir(parents=True, exist_ok=True)

    for name, overrides in PROBES.items():
        out = work / "probe" / name
        _run([*cli, "probe", str((APP / "conf" / "config.yaml").relative_to(ROOT)), *overrides, "--out",
              str(out), "--plot", "yes"], stdout=subprocess.DEVNULL, cwd=ROOT)
        shutil.copy(out / "probe.png", IMAGES / f"probe_{name}.png")

    for name, overrides in DEPTH_SWEEPS.items():
        _multirun([*overrides, "seed=0,1"], work / "depth" / name)
    _run([*cli, "summary", *(str(work / "depth" / n) for n in DEPTH_SWEEPS), "--out", str(work / "depth"),
          "--title", "20-layer ReLU net at init: every job's probe (two seeds each)"],
         stdout=subprocess.DEVNULL)
    shutil.copy(work / "depth" / "curve_probe_act_std.png", IMAGES / "probe_sweep_act_std.png")

    for name, overrides in WIDTH_SWEEPS.items():
        _multirun([*overrides, f"model.width={WIDTHS}", "model.depth=8"], work / "width" / name)
    _run([*cli, "summary", *(str(work / "width" / n) for n in WIDTH_SWEEPS), "--out", str(work / "width"),
          "--title", "coordinate check at init: 8-layer ReLU net, width 64 to 1024"],
         stdout=subprocess.DEVNULL)
    shutil.copy(work / "width" / "probe_coord_check.png", IMAGES / "probe_coord_check.png")
    print(f"pictures in {IMAGES}; runs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
