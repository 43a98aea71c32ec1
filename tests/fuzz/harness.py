"""The fuzz harness: run one case under guard and judge what came back.

The property, for every case of every target: the call returns (and then what
it returned passes the target's own check: the module verifies, the engine's
signature is sane), or raises an `EmberError` whose message's first line is
non-empty and stands on its own. Anything else is a failure, recorded with the
case that caused it:

- `crash`: any other exception (a traceback from numpy, protobuf, a KeyError);
- `message`: an EmberError with an empty first line, one that ends in ':' (it
  needs the next line) or a bare type name;
- `hang`: the case ran past its time limit (SIGALRM in the main thread; a case
  stuck in C code that never returns to the interpreter is killed by the
  faulthandler backstop, which dumps every thread's stack);
- `memory`: MemoryError: an allocation past the case's address-space limit
  (the current size plus `MEMORY_HEADROOM`), so a 10^12-element tensor fails
  the case instead of the machine;
- `write`: the case opened a file for writing, renamed, removed, copied,
  linked or made a folder anywhere but its output folder;
- `read`: the case opened a file outside the model's folder and the places a
  Python program legitimately reads (its installation, the Ember sources,
  /proc, /sys, /dev). This is the external-data hole: an ONNX initializer whose
  location is `../../../etc/passwd` reads a file it must not.

File access is watched by one `sys.addaudithook` hook, installed on first use
(hooks cannot be removed, so it does nothing unless a case is running). A
write or read it refuses is also blocked (the hook raises PermissionError), so
a fuzzed model cannot damage the machine even when its case fails.
"""

from __future__ import annotations

import faulthandler
import os
import resource
import signal
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from ember.errors import EmberError

CASE_TIMEOUT = 5.0          # seconds a case may run
BACKSTOP = 60               # seconds after which a case stuck in C code kills the process, with stacks
MEMORY_HEADROOM = 3 << 30   # bytes of address space a case may add
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
WRITE_EVENTS = {"os.rename": (0, 1), "os.remove": (0,), "os.rmdir": (0,), "shutil.copyfile": (1,),
                "shutil.copytree": (1,), "shutil.rmtree": (0,), "shutil.move": (1,), "os.symlink": (1,),
                "os.link": (1,), "os.mkdir": (0,), "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,),
                "os.utime": (0,), "tempfile.mkstemp": (0,), "tempfile.mkdtemp": (0,)}


class CaseTimeout(BaseException):
    """Raised in the case by SIGALRM; a BaseException so `except Exception` in the code under test
    does not swallow it."""


@dataclass
class Watch:
    """What one case may touch, and what it did."""

    reads: tuple[str, ...]             # folders (real paths) it may read under, beyond the system's
    writes: tuple[str, ...]            # folders it may write under
    denied: list[tuple[str, str]] = field(default_factory=list)  # (kind, path)


_WATCH: Watch | None = None
_INSTALLED = False
_SYSTEM_READS: tuple[str, ...] = ()


def _system_reads() -> tuple[str, ...]:
    """Where any Python program reads: its installation and import path, the Ember sources
    (the IR grammar, the CUDA prelude), and the kernel's pseudo-files."""
    import ember
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.abspath(ember.__file__)),
             "/proc", "/sys", "/dev"}
    roots.update(p for p in sys.path if p and os.path.isdir(p))
    # An import path that holds the temporary folder (PYTHONPATH=/tmp, or /) would let a case read
    # its neighbours' files: such entries are not the system's.
    temp = os.path.realpath(tempfile.gettempdir())
    return tuple(sorted(r for r in {os.path.realpath(r) for r in roots} if not _inside(temp, [r])))


def _inside(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _real(p: Any) -> str | None:
    if isinstance(p, int) or p is None:
        return None  # a file descriptor: its open was already seen
    try:
        return os.path.realpath(os.fsdecode(p))
    except (TypeError, ValueError):
        return None


def _hook(event: str, args: tuple[Any, ...]) -> None:
    watch = _WATCH
    if watch is None:
        return
    if event == "open":
        path = _real(args[0])
        if path is None:
            return
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        writing = bool(flags & WRITE_FLAGS) or any(c in mode for c in "wax+")
        _judge(watch, "write" if writing else "read", path)
        return
    for i in WRITE_EVENTS.get(event, ()):
        path = _real(args[i]) if i < len(args) else None
        if path is not None:
            _judge(watch, "write", path)


def _judge(watch: Watch, kind: str, path: str) -> None:
    if kind == "write":
        if _inside(path, watch.writes) or "/__pycache__/" in path:  # the import system's bytecode cache
            return
    elif _inside(path, watch.reads) or _inside(path, watch.writes) or _inside(path, _SYSTEM_READS):
        return
    watch.denied.append((kind, path))
    raise PermissionError(f"fuzz harness: the case may not {kind} {path}")


def install() -> None:
    """Install the audit hook once per process (it stays, idle between cases)."""
    global _INSTALLED, _SYSTEM_READS
    if _INSTALLED:
        return
    _SYSTEM_READS = _system_reads()
    sys.addaudithook(_hook)
    _INSTALLED = True


@dataclass(frozen=True)
class Failure:
    """One case that broke the property."""

    target: str
    case: str
    kind: str      # crash | message | hang | memory | write | read | check | refused
    detail: str    # the exception and where it came from, or the path touched

    def __str__(self) -> str:
        return f"[{self.target}] {self.case}: {self.kind}: {self.detail}"


@dataclass
class Record:
    """Every case a target ran, and the failures among them."""

    target: str
    cases: int = 0
    passed: int = 0
    refused: int = 0
    failures: list[Failure] = field(default_factory=list)

    def summary(self, limit: int = 40) -> str:
        lines = [f"{self.target}: {self.cases} cases, {self.passed} loaded, {self.refused} refused cleanly, "
                 f"{len(self.failures)} failures"]
        seen: set[str] = set()
        for f in self.failures:
            key = f"{f.kind}: {_signature(f.detail)}"
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"  {f}")
            if len(seen) >= limit:
                lines.append("  ...")
                break
        return "\n".join(lines)


def _signature(detail: str) -> str:
    """The part of a failure's detail that identifies the bug (type and place, not the values)."""
    return detail.split(" @ ")[-1] if " @ " in detail else detail.split(":")[0]


def message_problem(err: BaseException) -> str | None:
    """Why the message of an EmberError does not stand alone on its first line (None: it does)."""
    text = str(err)
    first = text.splitlines()[0] if text else ""
    if not first.strip():
        return "empty first line"
    first = first.rstrip()
    if first != first.lstrip():
        return f"first line starts with blanks: {first!r}"
    if first.endswith(":"):
        return f"first line ends in ':' and needs the next: {first!r}"
    if len(first.split()) < 3:
        return f"first line says too little: {first!r}"
    return None


def where(err: BaseException) -> str:
    """The innermost frame of the traceback in Ember's own code (else the innermost of all)."""
    import ember
    root = os.path.dirname(os.path.abspath(ember.__file__))
    frames = traceback.extract_tb(err.__traceback__)

    def ours(name: str) -> bool:
        rel = os.path.relpath(os.path.abspath(name), root)
        return not rel.startswith("..") and not rel.startswith(("tests", ".venv"))
    mine = [f for f in frames if ours(f.filename)]
    f = (mine or frames or [None])[-1]
    if f is None:
        return "?"
    name = os.path.relpath(f.filename, root) if ours(f.filename) else f.filename
    return f"{name}:{f.lineno} ({f.name})"


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def _on_alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout()


def run(record: Record, case: str, call: Callable[[], Any], check: Callable[[Any], str | None] | None = None, *,
        reads: Sequence[str | os.PathLike] = (), writes: Sequence[str | os.PathLike] = (),
        timeout: float = CASE_TIMEOUT, known: Callable[[Failure], bool] | None = None,
        must_succeed: bool = False) -> Failure | None:
    """Run `call()` under guard and judge it (see the module docstring); `check(result)` returns why
    a successful result is wrong, or None; with `must_succeed`, a clean refusal is a failure too
    (`refused`: a legitimate file that must load). Returns the failure, also kept in `record` unless
    `known(failure)` says it is a known bug with its own regression test."""
    global _WATCH
    install()
    watch = Watch(tuple(os.path.realpath(p) for p in reads), tuple(os.path.realpath(p) for p in writes))
    main = threading.current_thread() is threading.main_thread()
    old_limit = resource.getrlimit(resource.RLIMIT_AS)
    failure: Failure | None = None
    result: Any = None
    raised: BaseException | None = None
    record.cases += 1
    try:
        limit = _address_space() + MEMORY_HEADROOM
        if old_limit[1] == resource.RLIM_INFINITY or limit < old_limit[1]:
            resource.setrlimit(resource.RLIMIT_AS, (limit, old_limit[1]))
        if main:
            old_handler = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)
        faulthandler.dump_traceback_later(BACKSTOP, exit=True)
        _WATCH = watch
        try:
            result = call()
        finally:
            _WATCH = None
            if main:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old_handler)
            faulthandler.cancel_dump_traceback_later()
            resource.setrlimit(resource.RLIMIT_AS, old_limit)
    except CaseTimeout:
        failure = Failure(record.target, case, "hang", f"still running after {timeout:g} s")
    except MemoryError as err:
        raised = err
        failure = Failure(record.target, case, "memory", f"MemoryError: {_short(err)} @ {where(err)}")
    except EmberError as err:
        raised = err
        problem = message_problem(err)
        if problem:
            failure = Failure(record.target, case, "message", f"{type(err).__name__}: {problem} @ {where(err)}")
        elif must_succeed:
            failure = Failure(record.target, case, "refused", f"{type(err).__name__}: {_short(err)} @ {where(err)}")
    except Exception as err:  # the property: nothing but EmberError
        raised = err
        failure = Failure(record.target, case, "crash", f"{type(err).__name__}: {_short(err)} @ {where(err)}")
    if watch.denied:  # whatever else happened, touching a file it must not is the failure
        kind, path = watch.denied[0]
        failure = Failure(record.target, case, kind, f"{'wrote' if kind == 'write' else 'read'} {path}")
    elif failure is None and raised is None and check is not None:
        try:
            problem = check(result)
        except Exception as err:
            problem = f"{type(err).__name__}: {_short(err)} @ {where(err)}"
        if problem:
            failure = Failure(record.target, case, "check", problem)
    if failure is None:
        if raised is None:
            record.passed += 1
        else:
            record.refused += 1
        return None
    if known is None or not known(failure):
        record.failures.append(failure)
    return failure


def _short(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return text if len(text) < 160 else text[:157] + "..."


__all__ = ["run", "Record", "Failure", "CaseTimeout", "install", "message_problem", "CASE_TIMEOUT"]
