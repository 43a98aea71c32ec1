"""Device outputs speak DLPack (issue 14): `DeviceArray.__dlpack__` / `__dlpack_device__`. On the
CPU the capsule is read back by Ember's own DLPack reader (no device memory is touched); `-m gpu`
hands an engine's output to torch.from_dlpack without a copy."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from ember.runtime import dlpack
from ember.runtime.dlpack import DeviceArray


class Producer:
    """Something whose __dlpack__ is a DeviceArray's (what a consumer sees)."""

    def __init__(self, array: DeviceArray) -> None:
        self.array = array

    def __dlpack__(self, stream=None):
        return self.array.__dlpack__(stream=-1)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


@pytest.mark.parametrize("dtype, shape", [("f16", (2, 3, 4)), ("bf16", (7,)), ("i64", ()), ("bool", (5, 1))])
def test_a_capsule_describes_the_array(dtype, shape):
    freed = []
    array = DeviceArray(shape, dtype, 0x7F0000001000, 0, None, freed.append, device_index=1)
    assert array.__dlpack_device__() == (dlpack.KDL_CUDA, 1)
    view = dlpack.device_view(Producer(array), stream=0)
    assert (view.ptr, view.shape, view.dtype, view.contiguous, view.device_id) == \
        (0x7F0000001000, shape, dtype, True, 1)
    # the export keeps the array alive while the capsule lives
    del array
    gc.collect()
    assert not freed and len(dlpack._EXPORTS) >= 1
    del view
    gc.collect()
    assert freed == [0x7F0000001000]


def test_an_element_type_without_a_dlpack_code_is_refused():
    with pytest.raises(dlpack.DeviceArrayError, match="no DLPack type"):
        DeviceArray((2,), "f8e4m3fn", 0x1000, 2, None).__dlpack__(stream=-1)


@pytest.mark.gpu
def test_torch_takes_an_engine_output_without_a_copy(kernel_cache):
    import torch

    import ember
    from ember.ir.builder import Builder
    from ember.ir.types import f32
    from ember.runtime import cuda
    if not cuda.available()[0]:
        pytest.fail(f"no CUDA GPU: {cuda.available()[1]}")
    b = Builder("neg")
    x = b.input("x", f32[(4, 6)])
    b.output("y", b.neg(x))
    engine = ember.compile(b.build(), cache_dir=kernel_cache)
    ctx = engine.create_context("cuda")
    host = np.random.default_rng().standard_normal((4, 6)).astype(np.float32)
    out = ctx.run({"x": ctx.upload(host)})["y"]
    assert isinstance(out, DeviceArray)
    t = torch.from_dlpack(out)
    assert t.data_ptr() == out.ptr and t.device.type == "cuda"
    assert torch.equal(t.cpu(), torch.from_numpy(-host))
