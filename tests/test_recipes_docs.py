"""Every ```python block of docs/recipes.md runs, and prints exactly the ```text block that follows it."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
from helpers import DOCS_ROOT, python_blocks, run_block

DOC = "docs/recipes.md"
BLOCKS = python_blocks(DOC)
TEXT = (DOCS_ROOT / DOC).read_text()
PRINTED = re.findall(r"^```python\n.*?^```\n+```text\n(.*?)^```", TEXT, flags=re.S | re.M)


def test_doc_has_examples_with_their_output() -> None:
    assert len(BLOCKS) >= 2 and len(PRINTED) == len(BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_prints_what_the_doc_shows(index: int, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_block(DOC, BLOCKS, index)
    assert out.getvalue() == PRINTED[index]
