"""A module on disk: its text (`model.ir`) and its weights beside it (`model.weights`).

The text declares every weight (name and type); the weights file holds the
bytes. A module read from text alone keeps its declarations with no data, so
`ember opt` can rewrite a graph whose weights it never touches; reading the
pair back gives every weight bit for bit. Both files are written atomically:
a failed save leaves the old files as they were.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ember.errors import ParseError, WeightsFileError
from ember.ir.core import Module
from ember.ir.parser import parse
from ember.ir.types import dtype_of
from ember.ir.weights_file import read_weights, write_weights


def weights_path(path: str | os.PathLike) -> Path:
    """Where the weights of the module text at `path` live."""
    return Path(path).with_suffix(".weights")


def save_module(module: Module, path: str | os.PathLike) -> None:
    """Write `path` (text) and, if the module has weights with data, its weights file."""
    path = Path(path)
    if path.suffix == ".weights":
        raise ValueError(f"{path}: the module text needs another suffix than .weights (use .ir)")
    text = str(module)
    with_data = {n: w.data for n, w in module.weights.items() if w.data is not None}
    if with_data:
        write_weights(weights_path(path), with_data)
    _write_text_atomically(path, text)


def _write_text_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load_module(path: str | os.PathLike, *, verify: bool = True, weights: bool = True) -> Module:
    """Read a `.ir` file and, when present, the weights file beside it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no such IR file: {path}") from None
    except UnicodeDecodeError as err:
        raise ParseError(f"not UTF-8 text ({err.reason} at byte {err.start})", source=str(path)) from None
    module = parse(text, source=str(path), verify=False)
    wpath = weights_path(path)
    if weights and module.weights and wpath.exists():
        arrays = read_weights(wpath, names=module.weights)
        for name, w in module.weights.items():
            if name not in arrays:
                continue  # declared without data, as a text-only module may be
            arr = arrays[name]
            try:
                w.check(arr)
            except ValueError as err:
                raise WeightsFileError(f"{wpath}: {err}") from None
            dtype_of(arr)
            w.data = arr
    if verify:
        from ember.ir.verify import verify as run_verify
        run_verify(module)
    return module
