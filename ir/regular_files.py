"""Files read from a model, opened only when they are regular files.

Ember finds many files by name (an `.onnx` file, `x.weights` beside `x.ir`, a
SavedModel's `saved_model.pb` and checkpoint, an engine). `open()` on a folder
raises IsADirectoryError, and on a FIFO waits for a writer that may never come,
so whatever sits under such a name is checked first, and reported with the
caller's error class, naming the file and what it was expected to be. Links are
followed: caches lay models out as links into a blob store, and every byte read
is checked by its reader (protobuf parsing, checksums). ONNX external data,
which a model names itself, is held to a stricter rule (frontends/onnx/tensors.py).
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from ember.errors import EmberError


def _kind(mode: int) -> str:
    return "a folder" if stat.S_ISDIR(mode) else "not a regular file"


def check_regular(path: str | os.PathLike, what: str, error: type[EmberError]) -> int:
    """The size of `path`, a regular file; `error` (naming `path` and `what`) for anything else."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} is missing") from None
    except OSError as err:
        raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: {what} is {_kind(st.st_mode)}")
    return st.st_size


def open_regular(path: str | os.PathLike, what: str, error: type[EmberError]) -> BinaryIO:
    """`path` opened for reading, refusing anything but a regular file without waiting on
    it (the open does not block on a FIFO, and the file opened is the one checked)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{path}: {what} is missing") from None
    except IsADirectoryError:
        raise error(f"{path}: {what} is a folder") from None
    except OSError as err:
        raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{path}: {what} is {_kind(mode)}")
    return os.fdopen(fd, "rb")


def read_regular(path: str | os.PathLike, what: str, error: type[EmberError]) -> bytes:
    """The bytes of `path` (see `open_regular`)."""
    with open_regular(path, what, error) as f:
        try:
            return f.read()
        except OSError as err:
            raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None


__all__ = ["check_regular", "open_regular", "read_regular"]
