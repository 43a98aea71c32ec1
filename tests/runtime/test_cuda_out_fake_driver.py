"""runtime/cuda.py's `out=` arrays and per-launch timing on the stand-in driver of
test_cuda_run_time_sizes_fake_driver.py (device memory is host memory; kernels compute nothing,
copies do): the bookkeeping, with no GPU."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.ir.parser import parse
from ember.runtime.profiling import LayerTimes
from ember.runtime.specs import EngineInputError
from fake_driver import FakeDriver

TWO = """func @main(%x: f32[3,5]) -> (y: f32[3,5], z: f32[3,5]) {
  %y = ember.relu %x : f32[3,5]
  %z = ember.mul %x, %x : f32[3,5]
  return %y, %z
}
"""


class FakeDeviceArray:
    """A device array by the CUDA array interface, in the stand-in driver's memory."""

    def __init__(self, fake: FakeDriver, shape, typestr="<f4") -> None:
        self.nbytes = int(np.prod(shape)) * np.dtype(typestr).itemsize
        self.ptr = fake._alloc(self.nbytes)
        self.fake = fake
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr, "data": (self.ptr, False),
                                         "version": 3, "strides": None}

    def bytes(self) -> bytes:
        return self.fake.memory[self.ptr][:self.nbytes].tobytes()


@pytest.fixture
def engine(built):
    e = ember.compile(parse(TWO), cache_dir=built.cache_dir)
    e.check_arch = lambda *args, **kwargs: None
    return e


def test_outputs_are_copied_into_the_given_host_arrays(fake, engine):
    ctx = engine.create_context("cuda", poison=True)   # the arena reads as NaN: what the copies carry here
    y = np.zeros((3, 5), np.float32)
    got = ctx.run({"x": np.ones((3, 5), np.float32)}, out={"y": y})
    assert got["y"] is y and np.isnan(y).all()         # the arena's bytes, in the caller's array
    assert got["z"] is not y and got["z"].shape == (3, 5)
    ctx.close()


def test_outputs_are_copied_into_the_given_device_arrays(fake, engine):
    ctx = engine.create_context("cuda", poison=True)
    x = FakeDeviceArray(fake, (3, 5))
    z = FakeDeviceArray(fake, (3, 5))
    got = ctx.run({"x": x}, out={"z": z})
    assert got["z"] is z and z.bytes() == b"\xff" * z.nbytes
    with pytest.raises(EngineInputError, match="out= 'z': f32\\[5, 3\\], the output is f32\\[3, 5\\]"):
        ctx.run({"x": x}, out={"z": FakeDeviceArray(fake, (5, 3))})
    with pytest.raises(EngineInputError, match="out= 'y': float64\\[3, 5\\], the output is f32\\[3, 5\\]"):
        ctx.run({"x": x}, out={"y": np.zeros((3, 5))})
    ctx.close()


def test_each_launch_is_timed_on_its_own_when_asked(fake, engine):
    ctx = engine.create_context("cuda")
    ctx.layer_times = times = LayerTimes()
    for _ in range(3):
        ctx.run({"x": np.ones((3, 5), np.float32)})
    assert times.runs == 3 and fake.captures == 0          # no CUDA graphs while timing launches
    per_kernel = times.per_kernel()
    assert set(per_kernel) == set(engine.kernels) and all(ms > 0 for ms in per_kernel.values())
    ctx.layer_times = None
    ctx.run({"x": np.ones((3, 5), np.float32)})
    assert fake.captures >= 1                               # graphs again
    ctx.close()


def test_bench_on_the_cuda_path(fake, engine):
    """ember bench's loop on a CUDA context: inputs uploaded once, events around each run, layer
    times without graphs (the stand-in's events read 1 ms)."""
    from ember.bench import bench
    report = bench(engine, {"x": np.ones((3, 5), np.float32)}, device="cuda", iterations=4, warmup=1, layer_runs=2)
    assert report.device.startswith("cuda:0 (stand-in") and report.gpu.median == 1.0
    assert report.layer_runs == 2 and len(report.layers) == report.launches == len(engine.steps)
    assert report.kernel_ms and all(ms == pytest.approx(1.0) for ms in report.kernel_ms.values())


def test_no_event_is_made_per_run_to_order_streams(fake, engine, monkeypatch):
    """Inputs written on another stream (CUDA array interface v3): each run waits on it through the
    context's one event, not a new one per run."""
    made = []
    real = fake.__getattr__("cuEventCreate")
    monkeypatch.setattr(fake, "cuEventCreate", lambda *a: (made.append(a), real(*a))[1], raising=False)
    ctx = engine.create_context("cuda")
    x = FakeDeviceArray(fake, (3, 5))
    x.__cuda_array_interface__["stream"] = 5
    for _ in range(4):
        ctx.run({"x": x})
    assert len(made) == 1
    ctx.close()



@pytest.mark.parametrize("first", ["device state", "context"])
def test_the_gpu_is_released_after_every_context_whatever_order_the_collector_takes(fake, built, first):
    """An engine, its device state and its contexts form one cycle, which the garbage collector
    finalizes in any order. Releasing the primary context resets it, and the driver may then
    hang destroying a context's graphs (seen on an H100): the release waits for the last
    context, nothing is destroyed after it, and it happens once."""
    import gc
    gc.collect()                    # earlier tests' engines: their releases are not this driver's
    fake.after_reset.clear()
    fake.primary_retains = 0
    e = ember.compile(parse(TWO), cache_dir=built.cache_dir)
    e.check_arch = lambda *args, **kwargs: None
    ctx = e.create_context("cuda")
    for _ in range(3):                                  # graphs are captured after the first runs
        ctx.run({"x": np.ones((3, 5), np.float32)})
    dev = ctx.dev
    assert fake.primary_retains == 1 and fake.graphs
    order = [dev, ctx] if first == "device state" else [ctx, dev]
    order[0].__del__()
    assert fake.primary_retains == 1                    # a context is still open, or the state is reachable
    order[1].__del__()
    assert fake.after_reset == [] and not fake.graphs
    assert fake.primary_retains == 0
    ctx.__del__(), dev.__del__()                        # the collector's own calls later: nothing twice
    assert fake.primary_retains == 0 and fake.after_reset == []



def test_tensor_map_arguments_are_encoded_per_buffer_address_and_passed_by_value(fake, built, monkeypatch):
    """A product on the TMA Hopper tile: each run passes the launch two encoded maps (A's and B's:
    the address of the buffer, the dims innermost first, byte strides, 64 x 64 boxes), encoded once
    per address: runs on the same buffers reuse them; an input read in place at a new address gets
    its own; an address off 16 bytes gets an empty map and no encoding."""
    import ember.codegen.ops.heavy as heavy
    from ember import ir
    from fake_driver import FakeTensorMap
    monkeypatch.setattr(heavy, "WGMMA", True)
    monkeypatch.setattr(heavy, "WGMMA_TMA", True)
    bld = ir.Builder("tma")
    a, b = bld.input("a", ir.f16[136, 72]), bld.input("b", ir.f16[72, 264])
    bld.output("c", bld.matmul(a, b))
    engine = ember.compile(bld.build(), pipeline="canonicalize", targets=("sm_80", "sm_90", "sm_90a"),
                           tactics={0: "wgmma128x256x64/tma"}, cache_dir=built.cache_dir, opt_level=0)
    engine.check_arch = lambda *args, **kwargs: None
    ctx = engine.create_context("cuda", graphs=False)
    feeds = {"a": np.ones((136, 72), np.float16), "b": np.ones((72, 264), np.float16)}
    ctx.run(feeds)
    assert [(m[1], m[3], m[4], m[5]) for m in fake.tensor_maps] == [
        (3, [72, 136, 1], [144, 136 * 144], [64, 64, 1]),     # A: k-major (k, m, batch)
        (3, [264, 72, 1], [528, 72 * 528], [64, 64, 1])]      # B: row-major (n, k, batch)
    maps = [v for v in fake.launches[-1][1] if isinstance(v, FakeTensorMap)]
    assert [m.encoded[0] for m in maps] == [t[2] for t in fake.tensor_maps]
    ctx.run(feeds)
    assert len(fake.tensor_maps) == 2                          # the same buffers: the same maps
    moved = FakeDeviceArray(fake, (136, 72), "<f2")
    ctx.run({"a": moved, "b": feeds["b"]})
    assert len(fake.tensor_maps) == 3 and fake.tensor_maps[-1][2] == moved.ptr
    odd = FakeDeviceArray(fake, (136 * 72 + 8,), "<f2")
    odd.__cuda_array_interface__ = {**odd.__cuda_array_interface__, "shape": (136, 72),
                                    "data": (odd.ptr + 2, False)}
    ctx.run({"a": odd, "b": feeds["b"]})
    assert len(fake.tensor_maps) == 3                          # no encoding: an empty map
    assert any(isinstance(v, FakeTensorMap) and v.encoded == () for v in fake.launches[-1][1])
    ctx.close()
