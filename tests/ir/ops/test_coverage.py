"""Every registered op has tests of its own in this folder (a new op without any fails here)."""

import re
from pathlib import Path

from ember.ir.opdef import REGISTRY

HERE = Path(__file__).parent


def sources() -> str:
    return "\n".join(p.read_text() for p in sorted(HERE.glob("test_*.py")) if p.name != Path(__file__).name)


def mentions(text: str, op: str) -> bool:
    short = op.split(".", 1)[1]
    return (f'"{op}"' in text or f'"{short}"' in text
            or re.search(rf"\.{re.escape(short)}_?\(", text) is not None)


def test_every_op_has_tests():
    text = sources()
    missing = sorted(op for op in REGISTRY if op.startswith("ember.") and not mentions(text, op))
    assert not missing, f"ops without tests in {HERE}: {missing}"
