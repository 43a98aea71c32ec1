"""The fusion passes' options and their fixed point: max-ops bounds every region, and a
second run finds nothing more to do."""

import numpy as np

from ember import ir
from ember.ir import Builder, f32
from ember.passes import run_pipeline
from ember.tolerance import assert_close

UNARY = ("exp", "tanh", "neg", "sigmoid", "abs")


def long_chain(n: int, heavy: bool = False) -> ir.Module:
    b = Builder("chain")
    x = b.input("x", f32[4, 8])
    y = b.matmul(x, b.weight("w", np.eye(8, dtype=np.float32))) if heavy else x
    for i in range(n):
        y = getattr(b, UNARY[i % len(UNARY)])(y)
    b.output("y", y)
    return b.build()


def regions(module: ir.Module) -> list[list[str]]:
    return [[o.name for o in op.regions[0].ops] for op in module.walk() if op.name == "ember.fused"]


def check_same(module: ir.Module, pipeline: str) -> list:
    feeds = {"x": np.random.default_rng(0).uniform(-2, 2, (4, 8)).astype(np.float32)}
    want = ir.interpret(module, feeds)
    records = run_pipeline(module, pipeline)
    assert_close(ir.interpret(module, feeds)["y"], want["y"])
    return records


def test_max_ops_bounds_elementwise_regions():
    module = long_chain(40)
    check_same(module, "fuse-elementwise{max-ops=8}")
    sizes = [len(r) for r in regions(module)]
    assert sizes == [8] * 5
    module = long_chain(40)
    check_same(module, "fuse-elementwise")
    assert sorted(len(r) for r in regions(module)) == [8, 32]


def test_max_ops_bounds_epilogues():
    module = long_chain(10, heavy=True)
    check_same(module, "fuse-epilogue{max-ops=4},fuse-elementwise")
    bodies = regions(module)
    assert bodies[0] == ["ember.matmul", "ember.exp", "ember.tanh", "ember.neg"]
    assert sum(len(r) for r in bodies) == 11 and all("ember.matmul" not in r for r in bodies[1:])


def test_a_second_run_changes_nothing():
    module = long_chain(12, heavy=True)
    check_same(module, "fuse-epilogue,fuse-elementwise")
    text = str(module)
    records = run_pipeline(module, "fuse-epilogue,fuse-elementwise")
    assert not any(r.changed for r in records) and str(module) == text
