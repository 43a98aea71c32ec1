"""ember.if on the device: a branch step reads the condition back, the chosen branch's steps
run (kernels, size steps, host steps alike) and a yield step copies what it yields into the
if's results, whose run-time sizes it binds.

CPU: the host arena against the interpreter for both branches, the layout of the steps, the
engine file round trip and forged branch steps; the CUDA context's bookkeeping on the
stand-in driver (which branch's kernels launch, the copies, buffers freed). GPU: the same
engine against the interpreter on fresh random inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from engine_forgery import forge
from kernel_checks import gpu_available

import ember
from ember.ir.parser import parse
from ember.runtime import Engine, EngineFormatError

# y's size is the branch's: 6 rows (then) or 3 (else); in the else branch a NonZero makes a
# size that only the data decides, inside the branch.
IF_IR = """func @main(%x: f32[3,4], %flag: bool[]) -> (y: f32[?,4], z: f32[3,4], n: i64[2,?]) {
  %zero = ember.constant {value = dense<f32[]: 0.0>} : f32[]
  %y, %z, %n = ember.if %flag : f32[?,4], f32[3,4], i64[2,?] ({
    %a = ember.relu %x : f32[3,4]
    %c = ember.concat %a, %x {axis = 0} : f32[6,4]
    %none = ember.constant {value = dense<i64[2,0]: []>} : i64[2,0]
    yield %c, %a, %none
  }, {
    %b = ember.neg %x : f32[3,4]
    %p = ember.greater %x, %zero : bool[3,4]
    %i = ember.nonzero %p : i64[2,?<=12]
    yield %x, %b, %i
  })
  return %y, %z, %n
}
"""


@pytest.fixture(scope="module")
def engine(built) -> Engine:
    return ember.compile(parse(IF_IR), cache_dir=built.cache_dir)


def feeds(flag: bool, seed: int | None = None) -> dict[str, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((3, 4)).astype(np.float32)
    return {"x": x, "flag": np.array(flag)}


def test_the_steps_are_a_branch_two_blocks_and_two_yields(engine):
    kinds = [s.kind for s in engine.steps]
    assert engine.report.host_ops == [] and "host" not in kinds
    t = kinds.index("branch")
    branch = engine.steps[t]
    then_yield = engine.steps[branch.else_at - 1]
    else_yield = engine.steps[then_yield.next - 1]
    assert then_yield.kind == else_yield.kind == "yield" and else_yield.next == then_yield.next == len(kinds)
    assert "size" in kinds[branch.else_at:then_yield.next]  # the NonZero, inside the else branch
    ops = engine.ops
    assert ops[branch.ops[0]].name == "ember.if" and len(ops) > len(engine.module.main.body.ops)
    assert {ops[s.ops[0]].name for s in engine.steps[t + 1:branch.else_at - 1]} == {"ember.relu", "ember.concat"}


@pytest.mark.parametrize("flag", [True, False])
def test_each_branch_on_the_host_arena_matches_the_interpreter(engine, flag, tmp_path):
    engine.save(tmp_path / "if.engine")
    for e in (engine, Engine.load(tmp_path / "if.engine")):
        for seed in range(3):
            f = feeds(flag, seed)
            got, want = e.run(f, device="cpu"), ember.interpret(parse(IF_IR), f)
            for name in want:
                assert got[name].shape == want[name].shape and np.array_equal(got[name], want[name]), name
            assert got["y"].shape == ((6, 4) if flag else (3, 4))


def program(s):
    return s["plan"]["program"]


def branch_index(s) -> int:
    return next(i for i, t in enumerate(program(s)["steps"]) if t["kind"] == "branch")


@pytest.mark.parametrize("edit, expected", [
    (lambda s: program(s)["steps"][branch_index(s)].update(else_at=branch_index(s)), "else_at"),
    (lambda s: program(s)["steps"][branch_index(s)].update(else_at=branch_index(s) + 2),
     "does not end in a yield"),
    (lambda s: program(s)["steps"][-1].update(next=0), "does not end in a yield of op 1 that goes on at step"),
    (lambda s: program(s)["steps"][program(s)["steps"][branch_index(s)]["else_at"] - 1].update(next=0),
     "is outside"),
    (lambda s: program(s)["steps"][-1].update(reads=program(s)["steps"][-1]["reads"][:1]),
     "writes as many values as it reads"),
    (lambda s: program(s)["steps"][branch_index(s)].update(reads=[0]), "its condition is value"),
], ids=["backwards", "no-then-yield", "else-yield-jumps-back", "then-yield-jumps-back", "yield-short",
        "wrong-condition"])
def test_forged_branch_steps_are_refused(engine, tmp_path, edit, expected):
    path = tmp_path / "forged.engine"
    path.write_bytes(forge(engine.to_bytes(), edit))
    with pytest.raises(EngineFormatError, match=expected):
        Engine.load(path)


def test_the_cuda_context_runs_one_branch(fake, engine):
    """On the stand-in driver (kernels do not compute, copies do): the condition is read back,
    the else branch's yield of x is a real device copy, so y is x, and y takes the size of
    the branch that ran; buffers sized at run time are freed."""
    engine.check_arch = lambda *args, **kwargs: None
    ctx = engine.create_context("cuda")
    for flag in (True, False, True):
        f = feeds(flag, 1)
        got = ctx.run(f)
        assert got["y"].shape == ((6, 4) if flag else (3, 4)) and got["z"].shape == (3, 4)
        if not flag:
            assert np.array_equal(got["y"], f["x"])
        assert not fake.async_live
    ctx.close()


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("flag", [True, False])
def test_each_branch_on_the_gpu_matches_the_interpreter(engine, flag):
    for _ in range(3):
        f = feeds(flag)
        got, want = engine.run(f, device="cuda"), ember.interpret(parse(IF_IR), f)
        for name in want:
            assert np.asarray(got[name]).shape == want[name].shape
            assert np.array_equal(np.asarray(got[name]), want[name]), name
