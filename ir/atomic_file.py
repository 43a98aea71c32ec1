"""Write a file so that readers see its old bytes or its new ones, never a mix.

Every file Ember writes (module text, weights, engines, `ember run -o` arrays)
goes through here, so there is one mechanism:

- the bytes go to a temporary file in the target's folder (a rename across
  file systems would not be atomic), which is flushed and fsynced, then renamed
  over the target with `os.replace`, and the folder is fsynced so the rename
  itself survives a power cut;
- the temporary is created with `os.open(..., 0o666)`, so the file ends up with
  the mode `open()` would give it (0666 minus the umask), not mkstemp's 0600;
- the temporary's name says who wrote it:
  `<target name>.ember-<pid>-<host>-<random>.tmp`, `<host>` being 8 hex digits
  of a hash of the host name. A writer that is killed leaves its temporary
  behind (up to the size of the file: hundreds of MB for weights); the next
  write to the same target removes those whose writer process is gone
  (`os.kill(pid, 0)` says so), and never one whose writer is alive or runs on
  another host (a folder shared over the network), so two saves at once do not
  delete each other's files.

A replaced file keeps nothing of the old one: not its mode, not hard links to
it (they keep the old bytes). `folder_lock` serializes writers that must
change several files of one folder together, and lets readers see those files
from one moment (`ir/files.py` saves a module's text and weights as one pair
under it, and loads them under a shared lock).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from ember.errors import EmberError

TEMP = "tmp"  # a file being written
BACKUP = "old"  # an old file kept while a save that replaces it is under way (ir/files.py)

_HOST = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_SIBLING = re.compile(r"\.ember-([1-9][0-9]*)-([0-9a-f]{8})-([0-9a-f]{8})\.([a-z]+)")


class FileWriteError(EmberError, OSError):
    """A file Ember was asked to write could not be written (a missing folder, no permission, a full disk)."""


@dataclass(frozen=True)
class Sibling:
    """A file Ember wrote beside `target` while writing it: a temporary or a kept old version."""
    path: Path
    target: Path
    pid: int
    host: str
    kind: str

    @property
    def writer_gone(self) -> bool:
        """True only when the process that made it ran on this host and no longer exists."""
        return self.host == _HOST and not process_alive(self.pid)


def sibling_path(target: str | os.PathLike, kind: str = TEMP) -> Path:
    """A fresh name beside `target` that names this process as its writer."""
    target = Path(target)
    return target.with_name(f"{target.name}.ember-{os.getpid()}-{_HOST}-{secrets.token_hex(4)}.{kind}")


def siblings(target: str | os.PathLike, kind: str = TEMP) -> list[Sibling]:
    """The files of `kind` that Ember wrote beside `target`, by any process."""
    target = Path(target)
    folder = target.parent
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    out = []
    for name in sorted(names):
        if not name.startswith(target.name):
            continue
        m = _SIBLING.fullmatch(name[len(target.name):])
        if m and m.group(4) == kind:
            out.append(Sibling(folder / name, target, int(m.group(1)), m.group(2), kind))
    return out


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host; True when that cannot be told (never delete in doubt)."""
    if pid <= 0 or os.name != "posix":  # os.kill on Windows would terminate the process
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists and belongs to someone else
        return True
    return True


def remove_stale(target: str | os.PathLike, kind: str = TEMP) -> list[Path]:
    """Remove the files of `kind` beside `target` whose writer is gone; returns what was removed."""
    removed = []
    for s in siblings(target, kind):
        if not s.writer_gone:
            continue
        try:
            os.unlink(s.path)
        except FileNotFoundError:  # another writer cleaned it up first
            continue
        removed.append(s.path)
    return removed


def sync_folder(folder: str | os.PathLike) -> None:
    """Make the renames and removals in `folder` durable (best effort: not every system can)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class TempFile:
    """A new file beside `target`, written through `file`, then renamed over the target or discarded.

    Creating one first removes the stale temporaries of `target` (see the module docstring)."""

    def __init__(self, target: str | os.PathLike) -> None:
        self.target = Path(target)
        if self.target.is_dir():
            raise FileWriteError(f"cannot write {self.target}: it is a folder")
        remove_stale(self.target, TEMP)
        self.path = sibling_path(self.target, TEMP)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.path, flags, 0o666)  # the umask applies, as for open()
        except OSError as err:
            raise FileWriteError(f"cannot write {self.target}: {err.strerror or err}") from None
        self.file: BinaryIO = os.fdopen(fd, "wb")

    def finish(self) -> None:
        """Flush the bytes to the disk and close the file; the target is not touched yet."""
        if self.file.closed:
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
        finally:
            self.file.close()

    def rename(self) -> None:
        """Put the finished file in place of the target (atomic); the folder is not synced yet."""
        self.finish()
        try:
            os.replace(self.path, self.target)
        except OSError as err:
            raise FileWriteError(f"cannot write {self.target}: {err.strerror or err}") from None

    def commit(self) -> None:
        """Finish, rename over the target, and make the rename durable."""
        self.rename()
        sync_folder(self.target.parent)

    def discard(self) -> None:
        """Close and remove the temporary (when it is still there); never raises."""
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.path)
        except OSError:
            pass


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Write `path` atomically: `with atomic_write(p) as f: f.write(data)`.

    `f` is a binary file in `p`'s folder; when the block ends normally it is fsynced
    and renamed over `p` (replacing an existing file), and the folder is fsynced. When
    the block raises, the temporary is removed and `p` is left as it was. The new file's
    mode follows the umask. Raises FileWriteError naming `p` for a folder that does
    not exist, a missing permission, `p` being a folder, or a failed write."""
    temp = TempFile(path)
    try:
        yield temp.file
        temp.commit()
    except OSError as err:
        temp.discard()
        if isinstance(err, EmberError):
            raise
        raise FileWriteError(f"cannot write {temp.target}: {err.strerror or err}") from err
    except BaseException:
        temp.discard()
        raise


@contextmanager
def folder_lock(folder: str | os.PathLike, *, shared: bool = False) -> Iterator[None]:
    """Hold a lock on `folder`: exclusive for a writer that changes several of its files together,
    `shared` for a reader that must see them all from one moment. It is a flock on the folder
    itself, so no lock file is left behind, and the system drops it when its process dies (a
    killed writer blocks no one). Where locks are not available (no fcntl, a folder that cannot
    be opened, a file system that refuses them) this does nothing."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


__all__ = ["BACKUP", "FileWriteError", "Sibling", "TEMP", "TempFile", "atomic_write", "folder_lock",
           "process_alive", "remove_stale", "sibling_path", "siblings", "sync_folder"]
