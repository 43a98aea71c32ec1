"""The files of a SavedModel folder, opened only when they are regular files.

`open()` on a folder raises IsADirectoryError, and on a FIFO waits for a writer
that may never come; a SavedModel's files are found by fixed names
(saved_model.pb, variables/variables.index, its data shards), so whatever sits
under such a name is checked first. Links are followed: caches lay models out as
links into a blob store, and every byte read is checked (protobuf parsing, the
checkpoint's CRC-32C), so a link cannot smuggle a foreign file's bytes into a
model.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ember.errors import EmberError


def check_regular(path: Path, what: str, error: type[EmberError]) -> int:
    """The size of `path`, a regular file; `error` (with `path` and `what`) for anything else."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} is missing") from None
    except OSError as err:
        raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise error(f"{path}: {what} is {kind}")
    return st.st_size


def read_regular(path: Path, what: str, error: type[EmberError]) -> bytes:
    """The bytes of `path` (see `check_regular`)."""
    check_regular(path, what, error)
    try:
        return path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None


__all__ = ["check_regular", "read_regular"]
