"""Reading device arrays: the DLPack capsule parser and the CUDA array interface, checked on
the CPU with numpy arrays dressed up as device arrays (the layouts are the same)."""

from __future__ import annotations

import numpy as np
import pytest

from ember.runtime import dlpack
from ember.runtime.cuda import stream_handle


class FakeDevice:
    """A numpy array that claims to live on cuda:1, speaking DLPack."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.streams: list[object] = []

    def __dlpack__(self, stream=None):
        self.streams.append(stream)
        return self.a.__dlpack__()

    def __dlpack_device__(self):
        return (dlpack.KDL_CUDA, 1)


class FakeCai:
    def __init__(self, a: np.ndarray, stream=None) -> None:
        self.a = a
        self.__cuda_array_interface__ = {"shape": a.shape, "typestr": a.dtype.str, "data": (a.ctypes.data, False),
                                         "strides": None if a.flags.c_contiguous else a.strides, "version": 3,
                                         "stream": stream}


@pytest.mark.parametrize("dtype,name", [(np.float32, "f32"), (np.float16, "f16"), (np.int64, "i64"),
                                        (np.uint8, "u8"), (np.bool_, "bool"), (np.float64, "f64")])
def test_dlpack_capsules_are_read(dtype, name):
    a = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    x = FakeDevice(a)
    assert dlpack.is_device_array(x)
    view = dlpack.device_view(x, stream=1234)
    assert x.streams == [1234]  # the producer is asked to order its work before our stream
    assert view.ptr == a.ctypes.data and view.shape == (2, 3, 4) and view.dtype == name
    assert view.contiguous and view.device_id == 0 and view.stream is None  # the capsule's own device field


def test_dlpack_strides_and_offsets():
    a = np.arange(48, dtype=np.float32).reshape(4, 12)
    view = dlpack.device_view(FakeDevice(a[:, ::2]), stream=7)
    assert not view.contiguous and view.shape == (4, 6)
    view = dlpack.device_view(FakeDevice(a[1:]), stream=7)
    assert view.contiguous and view.ptr == a.ctypes.data + 48
    one = dlpack.device_view(FakeDevice(a[:, :1]), stream=7)  # size-1 dims do not count
    assert not one.contiguous
    assert dlpack.device_view(FakeDevice(a[:1, :]), stream=7).contiguous


def test_cuda_array_interface_objects():
    a = np.ones((3, 5), np.int32)
    view = dlpack.device_view(FakeCai(a, stream=99), stream=5)
    assert (view.ptr, view.shape, view.dtype, view.contiguous, view.stream) == (a.ctypes.data, (3, 5), "i32", True, 99)
    strided = dlpack.device_view(FakeCai(np.ones((4, 6), np.float32)[:, ::3]), stream=5)
    assert not strided.contiguous
    assert dlpack.device_view(np.ones(3), stream=5) is None and not dlpack.is_device_array(np.ones(3))


def test_stream_handles():
    class TorchLike:
        cuda_stream = 0x1234

    class CupyLike:
        ptr = 0x99

    class Protocol:
        def __cuda_stream__(self):
            return (0, 0x55)

    assert stream_handle(None) == 0 and stream_handle(17) == 17
    assert stream_handle(TorchLike()) == 0x1234 and stream_handle(CupyLike()) == 0x99
    assert stream_handle(Protocol()) == 0x55
    with pytest.raises(ValueError, match="expected a CUDA stream"):
        stream_handle("fast")
