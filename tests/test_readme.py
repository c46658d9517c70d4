"""Every ```python block of the README runs as written (each in a fresh namespace).

Blocks fenced as ```py are illustrations that need something a unit test cannot
start (several processes, a cluster); they are covered by their own tests.
"""

from __future__ import annotations

import re

import pytest
from helpers import python_blocks, run_block

BLOCKS = python_blocks("README.md")


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_block("README.md", BLOCKS, index)


def _shown_outputs(relative: str) -> list[tuple[int, str]]:
    """(python block index, the ```text block right after it) pairs of a Markdown file."""
    from helpers import DOCS_ROOT

    text = (DOCS_ROOT / relative).read_text()
    out = []
    for index, match in enumerate(re.finditer(r"^```python\n(.*?)^```\n", text, flags=re.S | re.M)):
        after = re.match(r"\s*```text\n(.*?)^```", text[match.end():], flags=re.S | re.M)
        if after:
            out.append((index, after.group(1)))
    return out


SHOWN = _shown_outputs("README.md")


@pytest.mark.parametrize(("index", "shown"), SHOWN, ids=[str(i) for i, _ in SHOWN])
def test_readme_output_is_what_the_block_prints(index: int, shown: str, tmp_path, monkeypatch,
                                                capsys) -> None:
    """A ```text block right after a ```python block shows its output; `...` stands for left-out text."""
    monkeypatch.chdir(tmp_path)
    run_block("README.md", BLOCKS, index)
    printed = capsys.readouterr().out.splitlines()
    expected = shown.splitlines()
    assert len(printed) == len(expected), "\n".join(printed)
    for want, got in zip(expected, printed, strict=True):
        pattern = ".*".join(re.escape(part) for part in want.split("..."))
        assert re.fullmatch(pattern, got), f"shown: {want}\nprinted: {got}"
