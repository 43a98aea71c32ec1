"""ember.bitcast between whole-byte types is a view: it reads its source's buffer, with no
kernel and no host step, and whatever reads it (a kernel, an output copy, the host arena)
reads the bytes as the view's type. To or from bool, and between sub-byte types, it is not a
view: bool reads byte != 0, and signed sub-byte types sign-extend in their byte."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import ir

TEXT = """module {{
  func @main(%x: f32[N,6]) -> (y: {out}[N,6]) {{
    %e = ember.neg %x : f32[N,6]
    %b = ember.bitcast %e {{to = {mid}}} : {mid}[N,6]
    %y = {tail}
    return %y
  }}
}}"""


@pytest.mark.parametrize("mid, out, tail", [
    ("i32", "i32", "ember.add %b, %b : i32[N,6]"),               # a kernel reads the view
    ("u32", "f32", "ember.bitcast %b {to = f32} : f32[N,6]"),    # the output is a view of a view
    ("i32", "i32", "ember.identity %b : i32[N,6]"),              # the output is the view itself
])
def test_a_whole_byte_bitcast_is_a_view_and_computes_as_the_interpreter(mid, out, tail, kernel_cache):
    module = ir.parse(TEXT.format(mid=mid, out=out, tail=tail))
    engine = ember.compile(module, shapes={"x": (3, 6)}, targets=("sm_80",), cache_dir=kernel_cache)
    assert engine.report.host_ops == []
    assert any(v.kind == "view" and v.dtype == mid for v in engine.values)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    got = np.asarray(engine.run({"x": x}, device="cpu")["y"])
    want = np.asarray(ir.interpret(module, {"x": x})["y"])
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_bitcasts_to_bool_or_between_sub_byte_types_are_not_views():
    from ember.codegen.lower import _aliases
    module = ir.parse("""module {
  func @main(%x: u8[4], %s: i4[4]) -> (y: bool[4], z: u4[4], w: f16[4]) {
    %y = ember.bitcast %x {to = bool} : bool[4]
    %z = ember.bitcast %s {to = u4} : u4[4]
    %h = ember.cast %x {to = u16} : u16[4]
    %w = ember.bitcast %h {to = f16} : f16[4]
    return %y, %z, %w
  }
}""")
    verdicts = {op.results[0].type.dtype.name: _aliases(op) for op in module.main.body.ops if op.name == "ember.bitcast"}
    assert verdicts == {"bool": False, "u4": False, "f16": True}


@pytest.mark.gpu
def test_bitcast_views_on_the_gpu(kernel_cache):
    for mid, out, tail in [("i32", "i32", "ember.add %b, %b : i32[N,6]"),
                           ("u32", "f32", "ember.bitcast %b {to = f32} : f32[N,6]")]:
        module = ir.parse(TEXT.format(mid=mid, out=out, tail=tail))
        engine = ember.compile(module, shapes={"x": (3, 6)}, cache_dir=kernel_cache)
        x = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
        got = np.asarray(engine.run({"x": x}, device="cuda")["y"])
        want = np.asarray(ir.interpret(module, {"x": x})["y"])
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
