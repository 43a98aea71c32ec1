"""Ember's version, in a module of its own: the runtime stamps it into engine files without
importing the package's front door (`ember/__init__.py` wires the compiler in lazily)."""

__version__ = "0.1.0"
