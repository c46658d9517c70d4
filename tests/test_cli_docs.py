"""docs/cli.md runs: its python blocks, every `hydra-init plan` line of its bash blocks, and the
output it shows is what the first of them prints."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from helpers import python_blocks, run_block

from hydra_init.tools.cli import main

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "docs" / "cli.md").read_text()
BLOCKS = python_blocks("docs/cli.md")
BASH = "\n".join(re.findall(r"^```bash\n(.*?)^```", TEXT, flags=re.S | re.M))
PLANS = [line for line in BASH.splitlines() if line.startswith("hydra-init plan ")]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_python_block_runs(index: int, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_block("docs/cli.md", BLOCKS, index)


@pytest.mark.parametrize("line", PLANS)
def test_plan_example_exits_0(line: str, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(shlex.split(line)[1:]) == 0, capsys.readouterr().err
    assert "hydra_init plan (dry run)" in capsys.readouterr().out or "--json" in line


def test_shown_output_is_what_the_first_plan_prints(capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    shown = TEXT.split("The first command prints:\n\n```text\n", 1)[1].split("```", 1)[0]
    assert main(shlex.split(PLANS[0])[1:]) == 0
    assert capsys.readouterr().out == shown
