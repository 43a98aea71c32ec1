"""Device arrays in and out: DLPack and `__cuda_array_interface__`, without a host copy.

`device_view(x, stream)` reads where a CUDA array's bytes are (pointer, shape,
element type, contiguity, device) from a torch tensor, a CuPy array or anything
else that speaks DLPack (`__dlpack__`, asked to order its work before `stream`, as
the protocol provides) or the CUDA array interface (whose v3 `stream` field, when
present, names the stream the caller must wait on). It returns None for host
arrays. `DeviceArray` is what a context returns when the inputs came from no
framework it knows: device memory it owns, with `__cuda_array_interface__` and
`__dlpack__` (so `torch.from_dlpack(a)`, `torch.as_tensor(a, device="cuda")` or
`cupy.asarray(a)` take it without a copy) and `numpy()`.

Why not cuda.core's StridedMemoryView: it reads DLPack and CUDA-array-interface producers
as `device_view` does, but it exports nothing, and a context's outputs must themselves be
DLPack producers; its import path has also moved between cuda-core releases
(`cuda.core.experimental.utils`, now `cuda.core.utils`). One small ctypes reader and writer
serve both directions on whatever cuda-python the device has.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ember.errors import EmberError

KDL_CPU, KDL_CUDA, KDL_CUDA_HOST, KDL_CUDA_MANAGED = 1, 2, 3, 13

# DLPack (code, bits) -> Ember element type
_DL_DTYPES = {
    (0, 8): "i8", (0, 16): "i16", (0, 32): "i32", (0, 64): "i64",
    (1, 8): "u8", (1, 16): "u16", (1, 32): "u32", (1, 64): "u64",
    (2, 16): "f16", (2, 32): "f32", (2, 64): "f64",
    (4, 16): "bf16", (5, 64): "c64", (5, 128): "c128", (6, 8): "bool",
}


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int), ("dtype", _DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    pass


_DLManagedTensor._fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                             ("deleter", ctypes.CFUNCTYPE(None, ctypes.POINTER(_DLManagedTensor)))]

_GetPointer = ctypes.pythonapi.PyCapsule_GetPointer
_GetPointer.restype = ctypes.c_void_p
_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_IsValid = ctypes.pythonapi.PyCapsule_IsValid
_IsValid.restype = ctypes.c_int
_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]


# The destructor gets the dying capsule as a raw pointer (a py_object would revive it mid-deallocation).
_CapsuleDestructor = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_RawIsValid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_IsValid", ctypes.pythonapi))
_RawGetPointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))
_CapsuleNew = ctypes.pythonapi.PyCapsule_New
_CapsuleNew.restype = ctypes.py_object
_CapsuleNew.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
# DLPack exports alive: DLManagedTensor address -> (the tensor struct, shape, the array it shows)
_EXPORTS: dict[int, tuple[Any, ...]] = {}
_CODES = {name: key for key, name in _DL_DTYPES.items()}


@ctypes.CFUNCTYPE(None, ctypes.POINTER(_DLManagedTensor))
def _release(managed: Any) -> None:
    """DLManagedTensor.deleter: the consumer is done; the array may go."""
    _EXPORTS.pop(ctypes.addressof(managed.contents), None)


@_CapsuleDestructor
def _capsule_gone(capsule: int) -> None:
    """A capsule nobody consumed (still named "dltensor"): release its tensor."""
    if _RawIsValid(capsule, b"dltensor"):
        _EXPORTS.pop(int(_RawGetPointer(capsule, b"dltensor")), None)


def export(array: "DeviceArray") -> Any:
    """A DLPack capsule of `array` (contiguous, on its GPU); the array stays alive until the
    consumer calls the deleter, or the capsule goes unconsumed."""
    if array.dtype not in _CODES:
        raise DeviceArrayError(f"a {array.dtype} array has no DLPack type")
    code, bits = _CODES[array.dtype]
    managed = _DLManagedTensor()
    shape = (ctypes.c_int64 * max(len(array.shape), 1))(*array.shape)
    t = managed.dl_tensor
    t.data = array.ptr
    t.device = _DLDevice(KDL_CUDA, array.device_index)
    t.ndim = len(array.shape)
    t.dtype = _DLDataType(code, bits, 1)
    t.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
    t.strides = None
    t.byte_offset = 0
    managed.deleter = _release
    address = ctypes.addressof(managed)
    _EXPORTS[address] = (managed, shape, array)
    return _CapsuleNew(address, b"dltensor", ctypes.cast(_capsule_gone, ctypes.c_void_p))


class DeviceArrayError(EmberError, ValueError):
    """A device array the engine cannot take as it is (strided, on another GPU, an unknown type)."""


@dataclass
class DeviceView:
    """Where a device array's bytes are; `owner` keeps them alive while the view is used."""

    ptr: int
    shape: tuple[int, ...]
    dtype: str
    contiguous: bool
    device_id: int | None
    stream: int | None        # a stream the consumer must wait on (CUDA array interface v3), if any
    framework: str            # "torch", "cupy", or the producer's top-level module name
    owner: Any = field(default=None, repr=False)


def framework_of(x: Any) -> str:
    return type(x).__module__.split(".")[0]


def is_device_array(x: Any) -> bool:
    if isinstance(x, np.ndarray):
        return False
    if _cai(x) is not None:
        return True
    dev = _dlpack_device(x)
    return dev is not None and dev[0] in (KDL_CUDA, KDL_CUDA_MANAGED)


def _cai(x: Any) -> dict[str, Any] | None:
    try:
        iface = x.__cuda_array_interface__
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return None
    return iface if isinstance(iface, dict) else None


def _dlpack_device(x: Any) -> tuple[int, int] | None:
    fn = getattr(x, "__dlpack_device__", None)
    if fn is None or not hasattr(x, "__dlpack__"):
        return None
    try:
        kind, index = fn()
        return int(kind), int(index)
    except Exception:
        return None


def _contiguous(shape: tuple[int, ...], strides: tuple[int, ...] | None, unit: int) -> bool:
    """Whether `strides` (in `unit`s) describe a C-contiguous layout (size-1 dims are free)."""
    if strides is None:
        return True
    step = 1
    for d, s in zip(reversed(shape), reversed(strides)):
        if d != 1 and s != step * unit:
            return False
        step *= d
    return True


def device_view(x: Any, stream: int) -> DeviceView | None:
    """The device bytes of `x`, or None for a host array. `stream` is the stream that will read
    them: a DLPack producer orders its pending work before it."""
    if isinstance(x, np.ndarray):
        return None
    dev = _dlpack_device(x)
    if dev is not None and dev[0] in (KDL_CUDA, KDL_CUDA_MANAGED):
        return _from_dlpack(x, stream)
    iface = _cai(x)
    if iface is not None:
        return _from_cai(x, iface)
    return None


def _from_cai(x: Any, iface: dict[str, Any]) -> DeviceView:
    from ember.ir.types import dtype_of
    shape = tuple(int(d) for d in iface["shape"])
    try:
        dt = dtype_of(np.dtype(iface["typestr"])).name
    except (TypeError, ValueError):
        raise DeviceArrayError(f"a device array of element type {iface['typestr']!r}, which Ember does not know") \
            from None
    itemsize = np.dtype(iface["typestr"]).itemsize
    strides = iface.get("strides")
    strides = tuple(int(s) for s in strides) if strides is not None else None
    ptr = int(iface["data"][0] or 0)
    stream = iface.get("stream")
    return DeviceView(ptr, shape, dt, _contiguous(shape, strides, itemsize), None,
                      int(stream) if stream not in (None, 0) else None, framework_of(x), owner=x)


def _from_dlpack(x: Any, stream: int) -> DeviceView:
    try:
        capsule = x.__dlpack__(stream=stream if stream != 0 else 1)
    except TypeError:
        capsule = x.__dlpack__()
    if not _IsValid(capsule, b"dltensor"):
        raise DeviceArrayError(f"{type(x).__name__}.__dlpack__ gave no DLPack tensor capsule")
    managed = _DLManagedTensor.from_address(_GetPointer(capsule, b"dltensor"))
    t = managed.dl_tensor
    key = (int(t.dtype.code), int(t.dtype.bits))
    if t.dtype.lanes != 1 or key not in _DL_DTYPES:
        raise DeviceArrayError(f"a DLPack tensor of type code {key[0]}, {key[1]} bits, {t.dtype.lanes} lanes, "
                               "which Ember does not take")
    shape = tuple(int(t.shape[i]) for i in range(t.ndim))
    strides = tuple(int(t.strides[i]) for i in range(t.ndim)) if t.strides else None
    ptr = int(t.data or 0) + int(t.byte_offset)
    # The capsule keeps the producer's memory alive: its destructor releases it once the view is dropped.
    return DeviceView(ptr, shape, _DL_DTYPES[key], _contiguous(shape, strides, 1), int(t.device.device_id), None,
                      framework_of(x), owner=(x, capsule))


class DeviceArray:
    """Device memory a context allocated for an output: shape, element type, and the CUDA array
    interface (v3, naming the stream that wrote it) for other libraries to take it without a copy."""

    def __init__(self, shape: tuple[int, ...], dtype: str, ptr: int, nbytes: int, stream: int | None,
                 free: Any = None, device_index: int = 0) -> None:
        from ember.ir.types import DTYPES
        self.shape, self.dtype, self.ptr, self.nbytes = tuple(shape), dtype, int(ptr), int(nbytes)
        self.np_dtype = DTYPES[dtype].np_dtype
        self.stream, self.device_index = stream, device_index
        self._free = free

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": self.shape, "typestr": self.np_dtype.str, "data": (self.ptr, False), "version": 3,
                "strides": None, "stream": self.stream if self.stream not in (None, 0) else None}

    def __dlpack__(self, stream: Any = None, **_: Any) -> Any:
        """A DLPack capsule (torch.from_dlpack, cupy.from_dlpack, jax.dlpack take it without a copy).
        The consumer's `stream` is ordered after the one that wrote the array."""
        waiter = 1 if stream is None else int(stream)   # None: the legacy default stream; -1: no ordering
        if waiter != -1 and self.stream not in (None, 0) and waiter != self.stream:
            from ember.runtime import cuda
            cuda.order_streams(after=self.stream, waiter=waiter)
        return export(self)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (KDL_CUDA, self.device_index)

    def numpy(self) -> np.ndarray:
        """Copy to the host (waits for the stream that wrote it)."""
        from ember.runtime import cuda
        return cuda.copy_to_host(self.ptr, self.shape, self.np_dtype, self.stream, self.device_index)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.numpy()
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"DeviceArray({self.dtype}{list(self.shape)} at 0x{self.ptr:x} on cuda:{self.device_index})"

    def __del__(self) -> None:
        free, self._free = self._free, None
        if free is not None:
            try:
                free(self.ptr)
            except Exception:
                pass


__all__ = ["DeviceView", "DeviceArray", "DeviceArrayError", "device_view", "is_device_array", "framework_of"]
