"""The one atomic-write helper: modes from the umask, temporaries named for their writer, stale
ones of dead writers removed (never a live writer's), clear errors."""

import os
import signal

import numpy as np
import pytest

from ember import ir
from ember.errors import EmberError
from ember.ir.atomic_file import BACKUP, TEMP, FileWriteError, atomic_write, sibling_path, siblings
from ember.runtime import engine_format
from ember.runtime.engine_format import Section


@pytest.fixture(autouse=True)
def no_fsync(monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # ~25 ms a call on a disk, and no part of what is tested


def dead_pid():
    """A process id that no process has now (a child that exited and was reaped)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


@pytest.fixture
def live_child():
    """A process that lives until the test ends."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    yield pid
    os.close(w)
    os.waitpid(pid, 0)


def as_written_by(target, pid, kind=TEMP, host=None):
    """A file beside `target` named as process `pid` (of this host, or of `host`) would name it."""
    name = sibling_path(target, kind).name.replace(f".ember-{os.getpid()}-", f".ember-{pid}-")
    if host is not None:
        start, _, rest = name.rsplit("-", 2)
        name = f"{start}-{host}-{rest}"
    path = target.with_name(name)
    path.write_bytes(b"x" * 100)
    return path


def small_module():
    b = ir.Builder("m")
    x = b.input("x", ir.f32[2])
    b.output("y", b.add(x, b.weight("w", np.ones(2, np.float32))))
    return b.build()


def test_a_save_removes_the_stale_temporaries_of_dead_writers_only(tmp_path, live_child):
    target = tmp_path / "m.ir"
    gone = dead_pid()
    stale = [as_written_by(target, gone), as_written_by(tmp_path / "m.weights", gone),
             as_written_by(tmp_path / "m.weights", gone, BACKUP)]
    keep = [as_written_by(target, os.getpid()),  # this process: alive
            as_written_by(tmp_path / "m.weights", live_child),  # another live process
            as_written_by(target, gone, host="0badc0de"),  # another host's: cannot tell, never removed
            as_written_by(tmp_path / "n.ir", gone)]  # another target's
    for name in ("m.ir.tmp", "m.ir.ember-notes.tmp", "m.ir.ember-1-2-3.tmp"):  # not names Ember makes
        (tmp_path / name).write_text("mine")
        keep.append(tmp_path / name)
    small_module().save(target)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)
    assert {s.path for s in siblings(target)} == {keep[0], keep[2]}


def test_a_killed_write_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    pid = os.fork()
    if pid == 0:
        with atomic_write(target) as f:
            f.write(b"partial")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(0)
    os.waitpid(pid, 0)
    assert target.read_bytes() == b"old"
    (left,) = siblings(target)
    assert left.pid == pid and left.writer_gone and left.path.read_bytes() == b"partial"
    with atomic_write(target) as f:
        f.write(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    assert target.read_bytes() == b"new"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        small_module().save(tmp_path / "m.ir")
        engine_format.write(tmp_path / "m.engine", {"x": 1}, [Section("s", b"abc")])
        with atomic_write(tmp_path / "out.npz") as f:
            np.savez(f, y=np.ones(3))
        # replacing keeps following the umask, whatever the old file's mode
        os.chmod(tmp_path / "out.npz", 0o600)
        with atomic_write(tmp_path / "out.npz") as f:
            f.write(b"again")
    finally:
        os.umask(old)
    for name in ("m.ir", "m.weights", "m.engine", "out.npz"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(ZeroDivisionError):
        with atomic_write(target) as f:
            f.write(b"new")
            1 / 0
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize("make,target,message", [
    (lambda d: None, "missing/out.bin", "cannot write .*missing/out.bin: No such file or directory"),
    (lambda d: (d / "sub").mkdir(), "sub", "cannot write .*sub: it is a folder"),
    (lambda d: (d / "m.weights").mkdir(), "m.ir", "cannot write .*m.weights: it is a folder"),
])
def test_unwritable_targets_are_one_line_errors(tmp_path, make, target, message):
    make(tmp_path)
    with pytest.raises(FileWriteError, match=message) as err:
        if target.endswith(".ir"):
            small_module().save(tmp_path / target)
        else:
            with atomic_write(tmp_path / target) as f:
                f.write(b"x")
    assert isinstance(err.value, EmberError) and isinstance(err.value, OSError)
    assert "\n" not in str(err.value)


def test_a_failure_while_writing_is_a_write_error_naming_the_target(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(FileWriteError, match=r"cannot write .*out\.bin: No space left on device"):
        with atomic_write(target) as f:
            f.write(b"x")
            raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []
