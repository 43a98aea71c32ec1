"""CWriter: lines of C with indentation and comments; the only way codegen writes C text."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class CWriter:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def line(self, text: str = "") -> None:
        self.lines.append(("  " * self.depth + text) if text else "")

    def comment(self, text: str) -> None:
        for part in text.splitlines() or [""]:
            self.line(f"// {part.replace('*/', '* /')}")

    @contextmanager
    def block(self, head: str, tail: str = "}") -> Iterator[None]:
        self.line(head + " {")
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            self.line(tail)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
