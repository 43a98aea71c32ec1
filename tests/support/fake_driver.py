"""A stand-in for the CUDA driver that runtime/cuda.py calls (no GPU): device memory is host
memory, copies and memsets move bytes, launches only check their arguments (their grids are
positive integers, their parameters numbers) and are recorded; everything else succeeds."""

from __future__ import annotations

import ctypes

import numpy as np


class _Enum:
    def __getattr__(self, name: str) -> int:
        return 0 if name.endswith("NONE") else 1


class FakeTensorMap:
    """A stand-in CUtensorMap: what it was encoded from; passed by getPtr() like the real one."""

    def __init__(self, *encoded) -> None:
        self.encoded = encoded

    def getPtr(self) -> int:
        return id(self)


class FakeDriver:
    """The driver calls runtime/cuda.py makes, over host memory; launches check their arguments."""

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.async_live: set[int] = set()
        self.launches: list[tuple] = []
        self.captures = 0
        self.primary_retains = 0           # the primary context's reference count
        self.after_reset: list[str] = []   # driver calls on handles of a primary context already reset
        self.graphs: set[int] = set()
        self.tensor_maps: list[tuple] = []  # cuTensorMapEncodeTiled's arguments, per call
        for enum in ("CUstream_flags", "CUstreamCaptureStatus", "CUstreamCaptureMode", "CUdevice_attribute",
                     "CUfunction_attribute", "CUevent_flags", "CUtensorMapDataType", "CUtensorMapInterleave",
                     "CUtensorMapSwizzle", "CUtensorMapL2promotion", "CUtensorMapFloatOOBfill"):
            setattr(self, enum, _Enum())
        self.CUtensorMap = FakeTensorMap
        self.cuuint64_t = self.cuuint32_t = int

    def _alloc(self, n: int) -> int:
        buf = np.zeros(max(int(n), 1), np.uint8)
        self.memory[buf.ctypes.data] = buf
        return buf.ctypes.data

    def _check(self, ptr: int, n: int) -> None:
        assert any(p <= int(ptr) and int(ptr) + int(n) <= p + b.size for p, b in self.memory.items()), \
            f"{n} bytes at {ptr} are outside every allocation"

    def cuMemAlloc(self, n):
        return 0, self._alloc(n)

    def cuMemAllocAsync(self, n, stream):
        ptr = self._alloc(n)
        self.async_live.add(ptr)
        return 0, ptr

    def cuMemFree(self, ptr):
        self._live("cuMemFree")
        self.memory.pop(int(ptr), None)
        return (0,)

    # The primary context is reset when its last retain is released: every handle made in it
    # (graphs, streams, modules, memory) is gone, and the real driver may hang on them.
    def _live(self, name: str) -> None:
        if self.primary_retains <= 0:
            self.after_reset.append(name)

    def cuDevicePrimaryCtxRetain(self, dev):
        self.primary_retains += 1
        return 0, 5

    def cuDevicePrimaryCtxRelease(self, dev):
        self.primary_retains -= 1
        if self.primary_retains == 0:
            self.graphs.clear()
            self.memory.clear()
        return (0,)

    def cuGraphInstantiate(self, graph, flags):
        exe = 1000 + len(self.graphs) + self.captures
        self.graphs.add(exe)
        return 0, exe

    def cuGraphExecDestroy(self, exe):
        self._live("cuGraphExecDestroy")
        self.graphs.discard(int(exe))
        return (0,)

    def cuStreamDestroy(self, stream):
        self._live("cuStreamDestroy")
        return (0,)

    def cuModuleUnload(self, module):
        self._live("cuModuleUnload")
        return (0,)

    def cuMemFreeAsync(self, ptr, stream):
        assert int(ptr) in self.async_live, "freeing what was not allocated on the stream"
        self.async_live.discard(int(ptr))
        self.memory.pop(int(ptr))
        return (0,)

    def cuMemcpyHtoD(self, dst, src, n):
        self._check(dst, n)
        ctypes.memmove(int(dst), int(src), int(n))
        return (0,)

    def cuMemcpyHtoDAsync(self, dst, src, n, stream):
        return self.cuMemcpyHtoD(dst, src, n)

    def cuMemcpyDtoHAsync(self, dst, src, n, stream):
        self._check(src, n)
        ctypes.memmove(int(dst), int(src), int(n))
        return (0,)

    def cuMemcpyDtoDAsync(self, dst, src, n, stream):
        self._check(dst, n)
        self._check(src, n)
        ctypes.memmove(int(dst), int(src), int(n))
        return (0,)

    def cuMemsetD8Async(self, dst, value, n, stream):
        self._check(dst, n)
        ctypes.memset(int(dst), int(value), int(n))
        return (0,)

    def cuDeviceGetAttribute(self, attr, dev):
        return 0, 9

    def cuDeviceGetName(self, n, dev):
        return 0, b"stand-in\0"

    def cuDriverGetVersion(self):
        return 0, 13000

    def cuDeviceGetCount(self):
        return 0, 1

    def cuStreamCreate(self, flags):
        return 0, 77

    def cuStreamIsCapturing(self, stream):
        return 0, 0

    def cuStreamEndCapture(self, stream):
        self.captures += 1
        return 0, 1

    def cuLaunchKernel(self, fn, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        for x in (gx, gy, gz, bx, by, bz):
            assert isinstance(x, int) and x > 0, f"grid {gx, gy, gz} x block {bx, by, bz}"
        values, types = params
        assert len(values) == len(types) and all(isinstance(v, (int, float)) or (t is None and hasattr(v, "getPtr"))
                                                 for v, t in zip(values, types)), values
        self.launches.append((gx, values))
        return (0,)

    def cuTensorMapEncodeTiled(self, dtype, rank, address, dims, strides, box, element_strides, interleave,
                               swizzle, l2, oob):
        self._check(address, 1)
        self.tensor_maps.append((dtype, rank, address, list(dims), list(strides), list(box)))
        return 0, FakeTensorMap(address, list(dims), list(strides), list(box))

    def __getattr__(self, name):
        return lambda *args: (0, 1)
