"""docs/cli.md is what the argument parser gives (scripts/cli_reference.py regenerates it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_cli_reference_is_current():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"],
                          capture_output=True, text=True, env={"COLUMNS": "37", "PATH": "/usr/bin:/bin",
                                                              "PYTHONPATH": ":".join(sys.path)})
    assert proc.returncode == 0, proc.stderr


def test_every_command_has_a_section():
    from ember.cli import build_parser
    import argparse
    text = (ROOT / "docs" / "cli.md").read_text()
    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in subs.choices:
        assert f"## ember {name}\n" in text
    for name in ("bench", "refit", "compare", "inspect", "compile", "run"):
        assert name in subs.choices
