"""Line counts of a composed config: hydra_init's lean preset vs the same preset bound to the padded schema.

Builds two throw-away Hydra apps in a temporary directory, each selecting
``init: kaiming_conv`` next to a small ``model`` node. The *lean* app gets the
preset from hydra_init (served lean: only the fields the file sets). The
*padded* app holds a copy of the very same files (``kaiming_conv.yaml`` and
``rules/norm_ones.yaml``) in its own ``conf/init/``, so Hydra loads them as
plain files bound to the structured schema their defaults list names
(``/hydra_init/schema/init``), which is how every preset composed before the
lean source existed. Prints the lines of the ``init`` node, of ``--cfg job``
and of ``--help`` for both, and of the preset file itself::

    python scripts/config_lines.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRESET = ROOT / "conf" / "init" / "kaiming_conv.yaml"
RULE = ROOT / "conf" / "init" / "rules" / "norm_ones.yaml"

APP = '''
import hydra
from omegaconf import OmegaConf


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg):
    print(OmegaConf.to_yaml(cfg))


if __name__ == "__main__":
    main()
'''

CONFIG = """
defaults:
  - init: kaiming_conv
  - _self_

model:
  _target_: hydra_init.initialized
  module: {_target_: torch.nn.Linear, in_features: 8, out_features: 2}
  init: ${init}
"""


def _app(root: Path, padded: bool) -> Path:
    (root / "conf").mkdir(parents=True)
    (root / "app.py").write_text(APP)
    (root / "conf" / "config.yaml").write_text(CONFIG)
    if padded:
        (root / "conf" / "init" / "rules").mkdir(parents=True)
        shutil.copy(PRESET, root / "conf" / "init" / PRESET.name)
        shutil.copy(RULE, root / "conf" / "init" / "rules" / RULE.name)
    return root


def _lines(app: Path, *args: str) -> list[str]:
    out = subprocess.run([sys.executable, "app.py", *args], cwd=app, capture_output=True, text=True,
                         check=True).stdout
    return out.rstrip("\n").splitlines()


def _init_node(lines: list[str]) -> list[str]:
    start = lines.index("init:")
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return lines[start:end]


def main() -> None:
    print(f"preset file {PRESET.relative_to(ROOT)}: {len(PRESET.read_text().splitlines())} lines "
          f"(+ {len(RULE.read_text().splitlines())} in {RULE.relative_to(ROOT)})")
    with tempfile.TemporaryDirectory() as tmp:
        for name, padded in (("padded schema", True), ("lean", False)):
            app = _app(Path(tmp) / name.replace(" ", "_"), padded)
            job = _lines(app, "--cfg", "job")
            help_lines = _lines(app, "--help")
            node = _init_node(job)
            print(f"{name:>13}: init node {len(node)} lines, --cfg job {len(job)} lines, "
                  f"--help {len(help_lines)} lines, 'null' in init: {sum('null' in x for x in node)}")


if __name__ == "__main__":
    main()
