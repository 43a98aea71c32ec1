"""Recurrent kernels (ember.lstm, ember.gru, ember.rnn): the time loop on the GPU.

CPU: each case lowers to one launch and NVRTC compiles it for sm_80 and sm_90 without
a warning. GPU (`-m gpu`): each case matches `ember.interpret` on fresh random inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import ember
import ember.codegen.ops.sequence_models  # noqa: F401  (until codegen/ops/__init__.py imports it)
import ember.passes
from ember.codegen.lower import lower
from ember.codegen.nvrtc import Compiler
from ember.ir.builder import Builder
from ember.ir.types import DType, bf16, f16, f32, f64, i32, i64
from ember.tolerance import assert_close
from kernel_checks import gpu_available, nvrtc_compiler

Feeds = dict[str, np.ndarray]
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[np.random.Generator], tuple[Any, Feeds]]
    pipeline: str = "canonicalize"
    host: bool = False

    def module(self, rng: np.random.Generator) -> tuple[Any, Feeds]:
        return self.build(rng)


def recurrent_case(kind: str, seq: int, batch: int, inp: int, hidden: int, *, direction: str = "forward",
                   bias: bool = True, lens: DType | None = None, zero_len: bool = False, initial: bool = False,
                   peepholes: bool = False, batch_first: bool = False, dt: DType = f32, **attrs: Any) -> Case:
    def build(rng: np.random.Generator) -> tuple[Any, Feeds]:
        ndir = 2 if direction == "bidirectional" else 1
        g = GATES[kind]
        b = Builder(kind)
        feeds: Feeds = {}

        def inp_(name: str, shape: tuple[int, ...], t: DType = dt, low: float = -1.0, high: float = 1.0) -> Any:
            feeds[name] = rng.uniform(low, high, size=shape).astype(t.np_dtype)
            return b.input(name, t[shape])

        xs = (batch, seq, inp) if batch_first else (seq, batch, inp)
        x = inp_("x", xs)
        w = inp_("w", (ndir, g * hidden, inp), low=-0.5, high=0.5)
        r = inp_("r", (ndir, g * hidden, hidden), low=-0.5, high=0.5)
        bv = inp_("b", (ndir, 2 * g * hidden)) if bias else None
        lv = None
        if lens is not None:
            values = rng.integers(1, seq + 1, size=(batch,))
            if zero_len:
                values[0] = 0
            feeds["lens"] = values.astype(lens.np_dtype)
            lv = b.input("lens", lens[(batch,)])
        st = (batch, ndir, hidden) if batch_first else (ndir, batch, hidden)
        h0 = inp_("h0", st) if initial else None
        operands = [x, w, r, bv, lv, h0]
        if kind == "lstm":
            operands.append(inp_("c0", st) if initial else None)
            operands.append(inp_("p", (ndir, 3 * hidden)) if peepholes else None)
        results = b.op(f"ember.{kind}", *operands, direction=direction, batch_first=batch_first, **attrs)
        for name, v in zip(("y", "y_h", "y_c"), results):
            b.output(name, v)
        return b.build(), feeds
    tag = ",".join(f"{k}={v}" for k, v in attrs.items())
    return Case(f"{kind}-{direction}-{dt}-S{seq}B{batch}I{inp}H{hidden}-lens{lens}-bf{int(batch_first)}-{tag}", build)


CASES = [
    recurrent_case("lstm", 7, 3, 10, 16),
    recurrent_case("lstm", 6, 4, 9, 33, direction="bidirectional", lens=i32, zero_len=True, initial=True,
                   peepholes=True, batch_first=True),
    recurrent_case("lstm", 5, 2, 8, 12, input_forget=True, clip=0.7, initial=True),
    recurrent_case("lstm", 5, 2, 300, 300, direction="reverse", lens=i64),
    recurrent_case("lstm", 6, 3, 16, 32, dt=f16),
    recurrent_case("lstm", 4, 2, 8, 16, dt=bf16, direction="bidirectional"),
    recurrent_case("lstm", 4, 2, 8, 16, dt=f64, initial=True),
    recurrent_case("gru", 7, 3, 10, 16, initial=True),
    recurrent_case("gru", 7, 3, 10, 20, linear_before_reset=True, direction="reverse", lens=i32),
    recurrent_case("gru", 5, 2, 6, 24, direction="bidirectional", batch_first=True, bias=False,
                   activations=("hard_sigmoid", "softsign", "sigmoid", "elu"), activation_alpha=(0.3, 0.0, 0.0, 0.8),
                   activation_beta=(0.4, 0.0, 0.0, 0.0)),
    recurrent_case("rnn", 8, 3, 5, 16),
    recurrent_case("rnn", 8, 3, 5, 16, direction="bidirectional", activations=("relu", "scaled_tanh"),
                   activation_alpha=(0.0, 1.5), activation_beta=(0.0, 0.7), clip=1.5, lens=i32, zero_len=True),
    recurrent_case("rnn", 6, 2, 4, 9, activations=("affine",), activation_alpha=(0.5,), activation_beta=(0.1,),
                   initial=True),
    recurrent_case("rnn", 6, 2, 4, 9, activations=("leaky_relu",), initial=True),
    recurrent_case("rnn", 6, 2, 4, 9, activations=("thresholded_relu",), activation_alpha=(0.1,)),
    recurrent_case("rnn", 6, 2, 4, 9, activations=("softplus",)),
]


@pytest.fixture(scope="module")
def compiler(kernel_cache: Path) -> Compiler:
    return nvrtc_compiler(kernel_cache)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_lowers_to_one_kernel_that_compiles(case: Case, compiler: Compiler) -> None:
    module, _ = case.module(np.random.default_rng(0))
    program = lower(module)
    assert not program.host_ops, program.host_ops
    launches = [s for s in program.steps if s.kind == "launch"]
    assert len(launches) == 1
    compiler.compile_all(program.kernels.values())


def test_too_large_a_state_goes_to_the_host() -> None:
    module, _ = recurrent_case("lstm", 2, 1, 8, 2048).module(np.random.default_rng(0))
    program = lower(module)
    assert program.host_ops and "shared memory" in program.host_ops[0]


def test_fixture_lstm_lowers() -> None:
    """The LSTM fixture's recurrent ops get kernels after the default pipeline."""
    from ember.build import bind_shapes

    path = "tests/fixtures/onnx/lstm_small.onnx"
    module = ember.load(path)
    ember.passes.run_pipeline(module, "default")
    with np.load(path.replace(".onnx", ".inputs.npz")) as data:
        shapes = {name: data[name].shape for name in data.files if name in module.main.input_names}
    program = lower(module, bind_shapes(module, shapes))
    ops = module.main.body.ops
    lstm = [i for i, op in enumerate(ops) if op.name == "ember.lstm"]
    assert lstm
    host = {i for s in program.steps if s.kind == "host" for i in s.ops}
    assert not host & set(lstm), program.host_ops


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_gpu_matches_interpreter(case: Case) -> None:
    module, feeds = case.module(np.random.default_rng())
    expected = ember.interpret(module, feeds)
    got = ember.compile(module, pipeline=case.pipeline).run(feeds, device="cuda")
    for name, ref in expected.items():
        assert_close(np.asarray(got[name]), np.asarray(ref), what=f"{case.name}: {name}")
