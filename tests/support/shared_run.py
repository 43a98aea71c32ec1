"""What the processes of one pytest run share: a folder, and locks on files in it.

Under pytest-xdist every worker has a base temporary folder of its own
(`.../pytest-N/popen-gw0`); the folder above them is the run's and no other
run's. Without xdist the run's folder is the base temporary folder itself.
Session fixtures that cost seconds (the NVRTC kernel cache, say) keep their
output there so that the second worker finds what the first one built.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def run_folder(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder shared by every process of this run (and only this run)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(config, "workerinput") else base


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Held by one process at a time; the kernel drops it if the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
