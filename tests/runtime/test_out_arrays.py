"""`engine.run(feeds, out={name: array})` (issue 14): outputs written into the caller's arrays,
as onnxruntime's IO binding, on the host arena here and on the GPU (`-m gpu`: numpy and torch
device arrays); anything that does not fit is named before a byte is written."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.ir.builder import Builder
from ember.ir.types import f32
from ember.runtime.specs import EngineInputError


@pytest.fixture(scope="module")
def engine(kernel_cache):
    b = Builder("two_outputs")
    x = b.input("x", f32[(3, 5)])
    b.output("y", b.relu(x))
    b.output("z", b.mul(x, x))
    return ember.compile(b.build(), cache_dir=kernel_cache)


def feeds():
    return {"x": np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)}


def test_outputs_go_into_the_given_arrays(engine):
    y = np.full((3, 5), np.nan, np.float32)
    got = engine.run(feeds(), device="cpu", out={"y": y})
    assert got["y"] is y and np.array_equal(y, np.maximum(feeds()["x"], 0))
    assert got["z"] is not None and np.array_equal(got["z"], feeds()["x"] ** 2)


@pytest.mark.parametrize("out, message", [
    ({"w": np.zeros((3, 5), np.float32)}, "'w' is not an output"),
    ({"y": [1, 2]}, "'y': list is not an array"),
    ({"y": np.zeros((5, 3), np.float32)}, "float32[5, 3], the output is float32[3, 5]"),
    ({"y": np.zeros((3, 5), np.float64)}, "float64[3, 5], the output is float32[3, 5]"),
    ({"y": np.zeros((5, 3), np.float32).T}, "C-contiguous"),
])
def test_what_does_not_fit_is_named(engine, out, message):
    with pytest.raises(EngineInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        engine.run(feeds(), device="cpu", out=out)


@pytest.mark.gpu
def test_out_arrays_on_the_gpu(engine):
    import torch
    from ember.runtime import cuda
    if not cuda.available()[0]:
        pytest.fail(f"no CUDA GPU: {cuda.available()[1]}")
    x = feeds()
    y = np.full((3, 5), np.nan, np.float32)
    got = engine.run(x, device="cuda", out={"y": y})
    assert got["y"] is y and np.array_equal(y, np.maximum(x["x"], 0))
    dx = torch.from_numpy(x["x"]).cuda()
    dz = torch.full((3, 5), float("nan"), device="cuda")
    got = engine.run({"x": dx}, device="cuda", out={"z": dz})
    assert got["z"] is dz and torch.equal(dz.cpu(), torch.from_numpy(x["x"] ** 2))
    with pytest.raises(EngineInputError, match="the output is f32"):
        engine.run({"x": dx}, device="cuda", out={"z": torch.zeros(5, 3, device="cuda")})
