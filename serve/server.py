"""Triton Inference Server, as PyTriton ships it, run as a child process over a model repository.

Ember does not serve requests itself: `nvidia-pytriton` carries a built tritonserver (2.51), its
Python backend and backend stubs for Python 3.8 to 3.13, and this module runs that server over
the repository serve/repository.py writes, as PyTriton's own launcher does. PyTriton's Python
API is not used: the package pins numpy<2, which Ember's dependencies (ml_dtypes 0.7) cannot
meet, so it is installed without its dependencies (`pip install --no-deps nvidia-pytriton==0.7.0`)
and only its server files are read.

What the stub needs from the Python that serves (each a failure seen on these machines):
- the stub links libpython dynamically and the loader takes the first libpython3.X it finds;
  on a machine with two Pythons of one minor version (Debian's 3.11.2 and pyenv's 3.11.7) it
  loaded Debian's library with pyenv's standard library and failed in `multiprocessing`
  ("'_thread.RLock' object has no attribute '_recursion_count'"). LD_LIBRARY_PATH puts the
  serving Python's own LIBDIR first.
- the stub's interpreter finds its prefix from the `python3` on PATH, so the serving
  environment's bin folder goes first on PATH (its site-packages hold Ember and numpy).
- a Python built without a shared libpython, or a version with no stub, is refused up front.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ember.serve.model_config import ServeError

INSTALL_HINT = "pip install --no-deps nvidia-pytriton==0.7.0"


@dataclass(frozen=True)
class TritonDist:
    """Where PyTriton's copy of Triton lies: the server folder and its bundled shared libraries."""

    root: Path
    libs: Path

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    def stub(self, version: str) -> Path:
        return self.root / "python_backend_stubs" / version / "triton_python_backend_stub"


def find_triton() -> TritonDist:
    """PyTriton's Triton, without importing PyTriton (see the module docstring)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServeError(f"Triton Inference Server is not installed: `{INSTALL_HINT}` "
                         "(PyTriton ships the server; --no-deps because it pins numpy<2)")
    package = Path(next(iter(spec.submodule_search_locations)))
    dist = TritonDist(package / "tritonserver", package.parent / "nvidia_pytriton.libs")
    if not dist.binary.is_file():
        raise ServeError(f"{dist.binary} is missing: reinstall with `{INSTALL_HINT}`")
    return dist


def check_python(dist: TritonDist) -> Path:
    """The serving Python's shared libpython folder, or a clear refusal (see the module docstring)."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if not dist.stub(version).is_file():
        known = sorted(p.name for p in (dist.root / "python_backend_stubs").iterdir()) if (
            dist.root / "python_backend_stubs").is_dir() else []
        raise ServeError(f"Triton's Python backend has no stub for Python {version} (it has {', '.join(known)}): "
                         "run ember serve from one of those")
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    library = sysconfig.get_config_var("LDLIBRARY") or ""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not (Path(libdir) / library).is_file():
        raise ServeError(f"{sys.executable} (Python {version}) has no shared libpython, which Triton's Python "
                         "backend loads: use a Python built with --enable-shared (Debian's python3, pyenv with "
                         "PYTHON_CONFIGURE_OPTS=--enable-shared, conda)")
    return Path(libdir)


def prepare_backends(dist: TritonDist, workspace: Path) -> Path:
    """A backend folder whose python backend uses the stub for this Python (links, no copies)."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    python = workspace / "backends" / "python"
    python.mkdir(parents=True)
    for item in (dist.root / "backends" / "python").iterdir():
        if item.name != "__pycache__":
            (python / item.name).symlink_to(item)
    (python / "triton_python_backend_stub").symlink_to(dist.stub(version))
    return workspace / "backends"


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002
    address: str = "0.0.0.0"


class TritonServer:
    """A running tritonserver over `repository` (a context manager: stopped on exit).

    Its output goes to `log` (a path) or, by default, to a file in its workspace that
    `log_tail()` reads for errors."""

    def __init__(self, repository: str | Path, ports: Ports = Ports(), *, log: str | Path | None = None,
                 verbose: bool = False, exit_timeout_s: int = 5, owns: Path | None = None) -> None:
        self.repository = Path(repository)
        self.owns = owns  # a temporary folder (the repository ember serve wrote) removed on stop
        self.ports = ports
        self.verbose = verbose
        self.exit_timeout_s = exit_timeout_s
        self.dist = find_triton()
        self.libdir = check_python(self.dist)
        self.workspace = Path(tempfile.mkdtemp(prefix="ember-triton-"))
        self.log_path = Path(log) if log else self.workspace / "tritonserver.log"
        self.process: subprocess.Popen | None = None
        self._regions: set[Path] = set()

    def command(self, backends: Path) -> list[str]:
        p = self.ports
        return [str(self.dist.binary), f"--model-repository={self.repository}", f"--backend-directory={backends}",
                f"--cache-directory={self.dist.root / 'caches'}", f"--http-port={p.http}", f"--grpc-port={p.grpc}",
                f"--metrics-port={p.metrics}", f"--http-address={p.address}", f"--grpc-address={p.address}",
                f"--metrics-address={p.address}", "--allow-metrics=true", "--allow-gpu-metrics=false",
                "--strict-readiness=true", f"--exit-timeout-secs={self.exit_timeout_s}",
                f"--log-verbose={1 if self.verbose else 0}"]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(self.libdir), str(self.dist.libs), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = ":".join(p for p in paths if p)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def start(self, timeout_s: float = 120.0) -> "TritonServer":
        backends = prepare_backends(self.dist, self.workspace)
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(self.command(backends), env=self.environment(), stdout=log,
                                            stderr=subprocess.STDOUT, cwd=self.workspace, start_new_session=True)
        finally:
            log.close()
        self.wait_ready(timeout_s)
        return self

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.ports.address in ("0.0.0.0", "") else self.ports.address
        return f"{host}:{self.ports.http}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                message = f"tritonserver exited with status {self.process.returncode} while starting:\n{self.log_tail()}"
                self.stop()
                raise ServeError(message)
            if self.ready():
                self._regions = self._stub_regions()
                return
            time.sleep(0.2)
        message = f"tritonserver was not ready within {timeout_s:.0f} s:\n{self.log_tail()}"
        self.stop()
        raise ServeError(message)

    def _stub_regions(self) -> set[Path]:
        """The shared-memory files the server's Python-backend stubs map (/dev/shm/triton_python_backend_*).

        Triton removes them when its models unload, but a client that keeps a connection open
        holds the server for its whole exit timeout and the stubs are then killed, leaving a
        region per stub behind (1 MiB or more each). They are named at random, and another
        server may be running beside this one, so only the regions this server's own
        processes map are removed on stop."""
        if self.process is None:
            return set()
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        found: set[Path] = set()
        todo = [self.process.pid]
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            try:
                maps = Path(f"/proc/{pid}/maps").read_text()
            except OSError:
                continue
            for line in maps.splitlines():
                path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
                if path.startswith("/dev/shm/triton_python_backend_"):
                    found.add(Path(path.split(" (deleted)")[0]))
        return found

    def log_tail(self, lines: int = 30) -> str:
        """The server's last log lines, the model load errors first (they name what went wrong)."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        errors = [line for line in text if line.startswith("E") and "NVML" not in line and "CudaDriver" not in line]
        return "\n".join([*errors[-10:], *(text[-lines:] if not errors else [])])

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def interrupt(self) -> None:
        """Ask the server to stop (SIGINT: it finishes requests in flight, up to the exit timeout)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self._regions |= self._stub_regions()  # and any the stubs added since start
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=self.exit_timeout_s + 10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.workspace, ignore_errors=True)  # its backend links, and the log unless --log named one
        for region in self._regions:
            region.unlink(missing_ok=True)
        self._regions = set()
        if self.owns is not None:
            shutil.rmtree(self.owns, ignore_errors=True)

    def __enter__(self) -> "TritonServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
