"""Compile kernels with NVRTC (through cuda-python) to cubin per target and PTX, cached.

No GPU is needed: NVRTC is a library. Every kernel compiles for every target
architecture (sm_80, sm_90, ...) to a cubin, and for the highest one to PTX too,
so an engine can be JIT-compiled by a newer GPU's driver. A compile that prints
anything (a warning) fails: kernels must compile cleanly.

Results are cached on disk under a key made of the source, the options, the
target, the NVRTC version and the shared headers, so rebuilding an unchanged
model compiles nothing; `CompileStats` counts hits and compiles. Independent
kernels compile in parallel threads (NVRTC releases the GIL).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ember.codegen.kernel import Kernel
from ember.errors import EmberError

INCLUDE = Path(__file__).with_name("include")


class NvrtcError(EmberError, RuntimeError):
    """A kernel that did not compile; carries the log and the source."""

    def __init__(self, message: str, log: str = "", source: str = "") -> None:
        self.log, self.source = log, source
        numbered = "\n".join(f"{i + 1:4d}  {line}" for i, line in enumerate(source.splitlines()))
        super().__init__(f"{message}\n{log.strip()}\n--- source ---\n{numbered}" if source else message)


@dataclass
class Binary:
    """A kernel's compiled forms: cubin per architecture, PTX for the highest."""

    name: str
    cubins: dict[str, bytes]
    ptx: bytes
    ptx_arch: str


@dataclass
class CompileStats:
    compiled: int = 0
    cache_hits: int = 0
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, hit: bool) -> None:
        with self.lock:
            if hit:
                self.cache_hits += 1
            else:
                self.compiled += 1


def _nvrtc():  # type: ignore[no-untyped-def]
    try:
        from cuda.bindings import nvrtc
    except ImportError as err:
        raise NvrtcError("NVRTC is not available: install cuda-python and nvidia-cuda-nvrtc==13.0.* "
                         f"(pip install 'ember[cuda]'): {err}") from None
    return nvrtc


def nvrtc_version() -> str:
    nvrtc = _nvrtc()
    err, major, minor = nvrtc.nvrtcVersion()
    _check(err, "nvrtcVersion")
    return f"{major}.{minor}"


def _check(err: object, what: str) -> None:
    if int(err) != 0:  # type: ignore[call-overload]
        raise NvrtcError(f"{what} failed: {err}")


def cuda_include_dirs() -> list[Path]:
    """Where cuda_fp16.h and friends are: the nvidia-cuda-runtime wheel, or a CUDA install."""
    found: list[Path] = []
    try:
        import nvidia  # the namespace package of NVIDIA's wheels
        for base in getattr(nvidia, "__path__", []):
            for sub in ("cu13/include", "cuda_runtime/include", "cu12/include"):
                p = Path(base) / sub
                if (p / "cuda_fp16.h").exists():
                    found.append(p)
    except ImportError:
        pass
    for p in (Path("/usr/local/cuda/include"),):
        if (p / "cuda_fp16.h").exists():
            found.append(p)
    return found


def _headers_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(INCLUDE.glob("*.cuh")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class Compiler:
    """Compiles kernels for targets, with a disk cache."""

    def __init__(self, targets: Sequence[str] = ("sm_80", "sm_90"), cache_dir: str | os.PathLike | None = None,
                 jobs: int | None = None) -> None:
        for t in targets:
            if not t.startswith("sm_") or not t[3:].rstrip("a").isdigit():
                raise NvrtcError(f"target {t!r} is not a CUDA architecture like sm_80 or sm_90")
        self.targets = sorted(set(targets), key=lambda t: int(t[3:].rstrip("a")))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "ember" / "kernels"
        self.jobs = jobs or min(8, (os.cpu_count() or 2))
        self.version = nvrtc_version()
        includes = cuda_include_dirs()
        if not includes:
            raise NvrtcError("CUDA headers (cuda_fp16.h) not found: install nvidia-cuda-runtime==13.0.*")
        self.base_options = ["-std=c++17", "--device-as-default-execution-space", f"--include-path={INCLUDE}"] + \
            [f"--include-path={p}" for p in includes]
        self.salt = hashlib.sha256((self.version + _headers_digest()).encode()).hexdigest()
        self.stats = CompileStats()

    def _key(self, kernel: Kernel, arch: str, kind: str) -> str:
        options = " ".join(o for o in self.base_options if not o.startswith("--include-path"))
        text = "\0".join([kernel.rendered, options, arch, kind, self.salt])
        return hashlib.sha256(text.encode()).hexdigest()

    def _cached(self, key: str, build: Callable[[], bytes]) -> bytes:
        path = self.cache_dir / key[:2] / key
        if path.exists():
            self.stats.add(True)
            return path.read_bytes()
        data = build()
        self.stats.add(False)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return data

    def _compile(self, kernel: Kernel, arch: str, ptx: bool) -> bytes:
        nvrtc = _nvrtc()
        source = kernel.rendered
        err, prog = nvrtc.nvrtcCreateProgram(source.encode(), f"{kernel.name}.cu".encode(), 0, [], [])
        _check(err, "nvrtcCreateProgram")
        try:
            gpu = ("compute_" + arch[3:]) if ptx else arch
            options = [o.encode() for o in self.base_options + [f"--gpu-architecture={gpu}"]]
            (err,) = nvrtc.nvrtcCompileProgram(prog, len(options), options)
            _, size = nvrtc.nvrtcGetProgramLogSize(prog)
            log = b" " * size
            nvrtc.nvrtcGetProgramLog(prog, log)
            text = log.rstrip(b"\0 ").decode(errors="replace")
            if int(err) != 0:
                raise NvrtcError(f"kernel {kernel.name} ({', '.join(kernel.ops)}) failed to compile for {arch}",
                                 text, source)
            if text.strip():
                raise NvrtcError(f"kernel {kernel.name} ({', '.join(kernel.ops)}) compiled with warnings for "
                                 f"{arch}", text, source)
            if ptx:
                _, size = nvrtc.nvrtcGetPTXSize(prog)
                out = b" " * size
                _check(nvrtc.nvrtcGetPTX(prog, out)[0], "nvrtcGetPTX")
            else:
                _, size = nvrtc.nvrtcGetCUBINSize(prog)
                out = b" " * size
                _check(nvrtc.nvrtcGetCUBIN(prog, out)[0], "nvrtcGetCUBIN")
            return bytes(out)
        finally:
            nvrtc.nvrtcDestroyProgram(prog)

    def compile(self, kernel: Kernel) -> Binary:
        cubins = {arch: self._cached(self._key(kernel, arch, "cubin"), lambda a=arch: self._compile(kernel, a, False))
                  for arch in self.targets}
        top = self.targets[-1]
        ptx = self._cached(self._key(kernel, top, "ptx"), lambda: self._compile(kernel, top, True))
        return Binary(kernel.name, cubins, ptx, "compute_" + top[3:])

    def compile_all(self, kernels: Iterable[Kernel], progress: Callable[[Binary], None] | None = None
                    ) -> dict[str, Binary]:
        """Compile every kernel, in parallel; returns them by name (in the order given)."""
        import time
        start = time.perf_counter()
        kernels = list(kernels)
        out: dict[str, Binary] = {}
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            for binary in pool.map(self.compile, kernels):
                out[binary.name] = binary
                if progress is not None:
                    progress(binary)
        self.stats.seconds += time.perf_counter() - start
        return out
