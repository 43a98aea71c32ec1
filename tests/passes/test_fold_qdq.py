"""fold-qdq on random Q/DQ graphs (conv, matmul, gemm; i8 or u8 activations, any zero point;
per-channel or per-tensor weights; bias, relu, requantize or not): the int8 ops it makes give the
interpreter's result of the float graph within one quantization step of each requantized output,
and within f32 rounding of the float sums where the result stays float."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ember import ir
from ember.passes.manager import PassManager


def qdq_graph(draw: st.DrawFn) -> tuple[ir.Module, dict[str, np.ndarray], float | None]:
    """A random quantized heavy op; returns the module, feeds and the output's step (None: float)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["conv", "matmul", "gemm"]))
    u8 = draw(st.booleans())
    qtype = "u8" if u8 else "i8"
    qnp = np.uint8 if u8 else np.int8
    lo, hi = (0, 255) if u8 else (-128, 127)
    b = ir.Builder("qdq")
    channels = draw(st.integers(1, 6))
    if kind == "conv":
        cin = draw(st.integers(1, 4))
        shape = (draw(st.integers(1, 2)), cin, draw(st.integers(3, 6)), draw(st.integers(3, 6)))
        wshape, axis = (channels, cin, 3, 3), 0
    else:
        k = draw(st.integers(1, 20))
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), k) if kind == "matmul" else (draw(st.integers(1, 4)), k)
        trans = kind == "gemm" and draw(st.booleans())
        wshape, axis = ((channels, k), 0) if trans else ((k, channels), 1)
    x = b.input("x", ir.f32[shape])
    sx = b.constant(np.float32(rng.uniform(0.005, 0.05)))
    zx = b.constant(qnp(rng.integers(lo, hi + 1)))
    xd = b.dequantize(b.quantize(x, sx, zx), sx, zx)
    per_channel = draw(st.booleans())
    n_scales = wshape[axis] if per_channel else 1
    sw = b.constant(rng.uniform(0.001, 0.02, n_scales).astype(np.float32).reshape((n_scales,) if per_channel else ()))
    wq = b.weight("w", rng.integers(-127, 128, wshape).astype(np.int8))
    wd = b.dequantize(wq, sw, b.constant(np.zeros(np.shape(sw.defining_op.attributes["value"].array), np.int8)),
                      axis=axis)
    bias = b.constant(rng.standard_normal(channels).astype(np.float32)) if draw(st.booleans()) else None
    if kind == "conv":
        y = b.conv(xd, wd, bias, pads=(1, 1, 1, 1))
    elif kind == "matmul":
        y = b.matmul(xd, wd)
        if bias is not None:
            y = b.add(y, bias)
    else:
        y = b.gemm(xd, wd, bias, trans_b=trans)
    if draw(st.booleans()):
        y = b.relu(y)
    step = None
    if draw(st.booleans()):
        step = float(rng.uniform(0.01, 0.2))
        sy = b.constant(np.float32(step))
        zy = b.constant(qnp(rng.integers(lo, hi + 1)))
        y = b.dequantize(b.quantize(y, sy, zy), sy, zy)
    b.output("y", y)
    feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
    return b.build(), feeds, step


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_folded_graphs_stay_within_one_quantization_step(data):
    module, feeds, step = qdq_graph(data.draw)
    want = ir.interpret(module, feeds)["y"]
    folded = ir.parse(str(module))
    for name, w in module.weights.items():
        folded.weights[name].data = w.data
    records = PassManager("fold-qdq").run(folded)
    fired = sum(sum(r.stats.values()) for r in records)
    heavy = {"ember.conv", "ember.matmul", "ember.gemm"}
    assert fired and not any(op.name in heavy for op in folded.walk()), str(folded)
    assert any(op.name.startswith("ember.int8_") for op in folded.walk())
    got = ir.interpret(folded, feeds)["y"]
    if step is None:
        assert np.allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max()))), \
            np.abs(got - want).max()
    else:
        assert np.abs(got - want).max() <= step * (1 + 1e-6), (np.abs(got - want).max(), step)


def between_graph(draw: st.DrawFn) -> tuple[ir.Module, dict[str, np.ndarray], float, bool, str]:
    """A random quantized max pool, average pool, global average pool, add [+ relu] or concat
    between Q/DQ pairs (i8 or u8, random scales and zero points, the output pair the input's or
    not); returns the module, feeds, the output's step, whether the fold is exact, and the op."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["max_pool", "avg_pool", "global_avg_pool", "add", "concat"]))
    u8 = draw(st.booleans())
    qnp, lo, hi = (np.uint8, 0, 255) if u8 else (np.int8, -128, 127)
    b = ir.Builder("between")
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(3, 7)), draw(st.integers(3, 7)))

    def pair() -> tuple[ir.Value, ir.Value]:
        return b.constant(np.float32(rng.uniform(0.005, 0.05))), b.constant(qnp(rng.integers(lo, hi + 1)))

    def qdq(v: ir.Value, s: ir.Value, z: ir.Value) -> ir.Value:
        return b.dequantize(b.quantize(v, s, z), s, z)

    x = b.input("x", ir.f32[shape])
    sx, zx = pair()
    xd = qdq(x, sx, zx)
    sy, zy = (sx, zx) if kind == "max_pool" and draw(st.booleans()) else pair()
    feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
    exact = kind != "avg_pool" and kind != "global_avg_pool"
    if kind == "max_pool":
        y = b.max_pool(xd, kernel_shape=(2, 3), strides=(draw(st.integers(1, 2)),) * 2, pads=(1, 1, 1, 1))
    elif kind == "avg_pool":
        y = b.avg_pool(xd, kernel_shape=(3, 2), pads=(1, 0, 1, 1), count_include_pad=draw(st.booleans()),
                       ceil_mode=draw(st.booleans()), strides=(2, 1))
    elif kind == "global_avg_pool":
        y = b.global_avg_pool(xd)
    else:
        other = b.input("r", ir.f32[(1, shape[1], 1, shape[3]) if kind == "add" else shape])
        feeds["r"] = rng.standard_normal(tuple(other.type.shape)).astype(np.float32)
        rd = qdq(other, *pair())
        if kind == "add":
            y = b.add(xd, rd)
            if draw(st.booleans()):
                y = b.relu(y)
        else:
            y = b.concat(xd, rd, xd, axis=1)
    b.output("y", b.dequantize(b.quantize(y, sy, zy), sy, zy))
    return b.build(), feeds, float(np.asarray(sy.defining_op.attributes["value"].array)), exact, kind


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_pools_adds_and_concats_fold_within_one_quantization_step(data):
    """Max pool, add and concat fold exactly (the float graph's very values); the average pools
    within one output step (their float sums round in another order)."""
    module, feeds, step, exact, kind = between_graph(data.draw)
    want = ir.interpret(module, feeds)["y"]
    folded = ir.parse(str(module))
    PassManager("fold-qdq").run(folded)
    names = {op.name for op in folded.walk()}
    assert f"ember.{kind}" not in names or kind in ("max_pool", "concat"), str(folded)
    assert not any(op.name in ("ember.max_pool", "ember.concat") and op.results[0].type.dtype.name != "i8"
                   for op in folded.walk()), str(folded)
    assert "ember.quantize" in names and sum(op.name == "ember.quantize" for op in folded.walk()) <= 2
    got = ir.interpret(folded, feeds)["y"]
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        assert np.abs(got - want).max() <= step * (1 + 1e-6), (np.abs(got - want).max(), step)
