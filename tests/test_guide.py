"""docs/guide.md's Python blocks run as written (from the repository root, on the host arena here)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "guide.md").read_text(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_the_guide_block_runs(index, monkeypatch, kernel_cache, capsys):
    monkeypatch.chdir(ROOT)
    code = BLOCKS[index].replace("/tmp/ember-guide", str(kernel_cache))   # the run's kernel cache
    os.makedirs(kernel_cache, exist_ok=True)
    exec(compile(code, f"docs/guide.md block {index + 1}", "exec"), {"__name__": f"guide_{index}"})


def test_there_are_blocks():
    assert len(BLOCKS) >= 5
