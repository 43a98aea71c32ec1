"""Compile kernels with NVRTC (through cuda-python) to cubin per target and PTX, cached.

No GPU is needed: NVRTC is a library. Every kernel compiles for every target
architecture (sm_80, sm_90, ...) to a cubin, and for the highest one to PTX too,
so an engine can be JIT-compiled by a newer GPU's driver. A compile that prints
anything (a warning) fails: kernels must compile cleanly.

Results are cached on disk under a key made of the source, the options, the
target, the NVRTC version and the shared headers, so rebuilding an unchanged
model compiles nothing; `CompileStats` counts hits and compiles. The cache is
checked as the engine file is: each entry carries a header with its length and
SHA-256, and a cubin must be an ELF image, a PTX text a `.version` directive; an
entry that fails (truncated, zero bytes, flipped, of an older format) is
compiled again and replaced, never put in an engine. What is not
cached compiles in a fresh process per kernel (nvrtc_worker.py says why: NVRTC's
PTX is not deterministic within a long-lived process), several at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ember.codegen.kernel import Kernel
from ember.errors import EmberError

INCLUDE = Path(__file__).with_name("include")
WORKER = Path(__file__).with_name("nvrtc_worker.py")


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
    # Kernels compiled where the worker could not fix the address-space layout, so their PTX
    # may differ from one build to the next (see nvrtc_worker.py).
    unpinned_layout: int = 0
    rejected: int = 0  # cache entries that did not check out (compiled again)
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


_QUOTED_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.M)


def _headers_digest(source: str, seen: dict[str, bytes] | None = None) -> str:
    """A digest of Ember's headers that `source` includes, directly or through each other: a
    cached build stays valid when a header it does not read changes or a new one is added."""
    texts: dict[str, bytes] = {} if seen is None else seen
    todo = _QUOTED_INCLUDE.findall(source)
    names: set[str] = set()
    while todo:
        name = todo.pop()
        if name in names:
            continue
        names.add(name)
        if name not in texts:
            path = INCLUDE / name
            texts[name] = path.read_bytes() if path.is_file() else b""
        todo.extend(_QUOTED_INCLUDE.findall(texts[name].decode("utf-8", "replace")))
    h = hashlib.sha256()
    for name in sorted(names):
        h.update(name.encode() + b"\0" + texts[name])
    return h.hexdigest()


_CACHE_MAGIC = b"EMBERNVRTC1\n"


def _looks_like(kind: str, data: bytes) -> bool:
    """Whether `data` is at least the right kind of build: an ELF cubin, or PTX text."""
    if kind == "cubin":
        return len(data) > 64 and data[:4] == b"\x7fELF"
    return b".version" in data[:4096] and b".target" in data[:4096]


class Compiler:
    """Compiles kernels for targets, with a disk cache."""

    def __init__(self, targets: Sequence[str] = ("sm_80", "sm_90"), cache_dir: str | os.PathLike | None = None,
                 jobs: int | None = None) -> None:
        for t in targets:
            if not t.startswith("sm_") or not t[3:].rstrip("a").isdigit():
                raise NvrtcError(f"target {t!r} is not a CUDA architecture like sm_80 or sm_90")
        # By number, the arch-specific form after the portable one (sm_90, sm_90a).
        self.targets = sorted(set(targets), key=lambda t: (int(t[3:].rstrip("a")), t.endswith("a")))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "ember" / "kernels"
        self.jobs = jobs or min(8, (os.cpu_count() or 2))
        self.version = nvrtc_version()
        includes = cuda_include_dirs()
        if not includes:
            raise NvrtcError("CUDA headers (cuda_fp16.h) not found: install nvidia-cuda-runtime==13.0.*")
        self.base_options = ["-std=c++17", "--device-as-default-execution-space", f"--include-path={INCLUDE}"] + \
            [f"--include-path={p}" for p in includes]
        self._headers: dict[str, bytes] = {}  # Ember's headers as read once by this compiler
        self.stats = CompileStats()

    def _key(self, kernel: Kernel, arch: str, kind: str) -> str:
        options = " ".join(o for o in self.base_options if not o.startswith("--include-path"))
        # the code without comments (Kernel.code): a layer that differs only there finds the build
        text = "\0".join([kernel.code.replace("ENTRY", kernel.name), options, arch, kind, self.version,
                          _headers_digest(kernel.rendered, self._headers)])
        return hashlib.sha256(text.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / key

    def _store(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(_CACHE_MAGIC + len(data).to_bytes(8, "little") + hashlib.sha256(data).digest() + data)
        os.replace(tmp, path)

    def _lookup(self, key: str, kind: str) -> bytes | None:
        """A cached build, or None when there is none or the entry does not check out."""
        path = self._path(key)
        try:
            entry = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            entry = b""
        head = len(_CACHE_MAGIC) + 8 + 32
        data = entry[head:]
        if (entry[:len(_CACHE_MAGIC)] == _CACHE_MAGIC
                and int.from_bytes(entry[len(_CACHE_MAGIC):len(_CACHE_MAGIC) + 8], "little") == len(data)
                and hashlib.sha256(data).digest() == entry[head - 32:head] and _looks_like(kind, data)):
            return data
        with self.stats.lock:
            self.stats.rejected += 1
        return None

    def _run_worker(self, kernel: Kernel, builds: list[tuple[str, str]]) -> list[bytes]:
        """Compile `builds` ((kind, arch) pairs, PTX first) in a fresh process: see nvrtc_worker.py."""
        request = {"source": kernel.rendered, "name": f"{kernel.name}.cu", "options": self.base_options,
                   "builds": [list(b) for b in builds]}
        proc = subprocess.run([sys.executable, str(WORKER)], input=json.dumps(request).encode(),
                              capture_output=True, check=False)
        head, _, body = proc.stdout.partition(b"\n")
        try:
            reply = json.loads(head)
        except ValueError:
            raise NvrtcError(f"the NVRTC worker for kernel {kernel.name} died (exit status {proc.returncode})",
                             proc.stderr.decode(errors="replace")[-4000:]) from None
        if not reply["ok"]:
            what = "failed to compile" if reply["failed"] else "compiled with warnings"
            raise NvrtcError(f"kernel {kernel.name} ({', '.join(kernel.ops)}) {what} for {reply['arch']}",
                             reply["log"], kernel.rendered)
        if not reply.get("fixed_layout"):
            with self.stats.lock:
                self.stats.unpinned_layout += 1
        out, at = [], 0
        for size in reply["sizes"]:
            out.append(body[at:at + size])
            at += size
        return out

    def compile(self, kernel: Kernel) -> Binary:
        # PTX for the newest portable target, which the driver JITs for newer GPUs (arch-specific
        # PTX, compute_90a, runs on sm_90 alone); the newest target when every one is specific.
        portable = [t for t in self.targets if not t.endswith("a")]
        top = (portable or self.targets)[-1]
        ptx_arch = "compute_" + top[3:]
        wanted = [("ptx", ptx_arch, self._key(kernel, top, "ptx"))] + \
            [("cubin", arch, self._key(kernel, arch, "cubin")) for arch in self.targets]
        found: dict[str, bytes] = {}
        for kind, arch, key in wanted:
            data = self._lookup(key, kind)
            if data is not None:
                found[key] = data
                self.stats.add(True)
        missing = [(kind, arch, key) for kind, arch, key in wanted if key not in found]
        if missing:
            for (kind, arch, key), data in zip(missing, self._run_worker(kernel, [(k, a) for k, a, _ in missing])):
                if not _looks_like(kind, data):
                    raise NvrtcError(f"kernel {kernel.name}: NVRTC returned no usable {kind} for {arch} "
                                     f"({len(data)} bytes)")
                self._store(key, data)
                found[key] = data
                self.stats.add(False)
        ptx = found[wanted[0][2]]
        cubins = {arch: found[key] for _, arch, key in wanted[1:]}
        return Binary(kernel.name, cubins, ptx, ptx_arch)

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
