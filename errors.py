"""The root of every error Ember raises on purpose.

A user catches `EmberError` to tell Ember's diagnostics apart from bugs. Each
subclass also derives from the builtin a caller would naturally expect
(`ValueError`, `NotImplementedError`), so `except ValueError` keeps working.
The first line of every message stands on its own: location, op, what was
expected.
"""

from __future__ import annotations


class EmberError(Exception):
    """Base of all deliberate Ember errors."""


class ParseError(EmberError, ValueError):
    """Textual IR that does not parse; carries file:line:col and what was expected."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None,
                 source: str = "<text>", expected: tuple[str, ...] = ()) -> None:
        self.line, self.column, self.source, self.expected = line, column, source, expected
        where = source if line is None else f"{source}:{line}:{column}"
        super().__init__(f"{where}: {message}")


class VerifyError(EmberError, ValueError):
    """One or more IR invariants broken; `diagnostics` lists every one found."""

    def __init__(self, message: str, diagnostics: tuple[str, ...] = ()) -> None:
        self.diagnostics = diagnostics or (message,)
        super().__init__(message)


class ShapeError(VerifyError):
    """An op's operands do not fit its type rule (raised by `infer`)."""


class UsageError(EmberError, TypeError):
    """An API called with something of the wrong kind (a Value expected, an unknown option)."""


class InterpretError(EmberError, RuntimeError):
    """The reference interpreter was given inputs that do not fit, or an op failed."""


class UnsupportedOpError(EmberError, NotImplementedError):
    """An op, attribute value or dtype that a stage cannot handle."""


class PassError(EmberError, RuntimeError):
    """A pass failed or left invalid IR."""


class OutOfMemoryError(EmberError, MemoryError):
    """The host has not the memory a step asks for (an engine's arena, a tensor)."""


class ModelFormatError(EmberError, ValueError):
    """A path that is not a model Ember reads (unknown suffix, a folder without saved_model.pb)."""


class ModelNotFoundError(ModelFormatError, FileNotFoundError):
    """A model path that does not exist."""


class WeightsFileError(EmberError, ValueError):
    """A weights file that is missing, truncated, corrupted or of another format."""
