"""The elementwise kernels' 16-byte form (codegen/ops/elementwise.py `elementwise_kernel`, vec >
1): consecutive elements a thread, direct and suffix-broadcast inputs and the outputs moved as
aligned packs, the scalar loop where n, an inner count or a pointer does not allow it.

On the CPU: how each input is read (direct, suffix, general), the width (16 bytes of the widest
operand), and that every form builds for sm_80 and sm_90. On the GPU: against the interpreter at
sizes that take the packed form and sizes that do not (odd n, odd bias length), with general
broadcasts beside packed inputs, two outputs of different widths, and inputs that start at an
odd element (a slice: the kernel checks the pointers and takes the scalar loop)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import ember
import ember.codegen.ops.elementwise as elementwise
from ember.codegen.lower import lower
from ember.codegen.nvrtc import Compiler
from ember.codegen.ops.elementwise import DIRECT, GENERAL, SUFFIX, read_kind, vector_width
from ember.ir.builder import Builder
from ember.ir.types import DType, bf16, f16, f32, f64, i32, i64, u8
from ember.tolerance import assert_close
from kernel_checks import check_on_gpu, gpu_available, misaligned_on_gpu, rand


def chain(shape: tuple[int, ...], bias: tuple[int, ...], dt: DType = f16, second: DType | None = None) -> Builder:
    """gelu(x + bias) (+ a cast of it to `second` as a second output)."""
    b = Builder("ew")
    x, c = b.input("x", dt[shape]), b.input("c", dt[bias])
    y = b.gelu(b.add(x, c)) if dt.kind == "float" else b.add(x, c)
    b.output("y", y)
    if second is not None:
        b.output("z", b.cast(y, to=second))
    return b


def sliced(n: int) -> Builder:
    """x[1:] + x[:-1]: inputs that start one element past the buffer's (aligned) start."""
    b = Builder("ew")
    x = b.input("x", f16[(n + 1,)])
    b.output("y", b.add(b.slice(x, starts=(1,), ends=(n + 1,), axes=(0,)), b.slice(x, starts=(0,), ends=(n,), axes=(0,))))
    return b


CASES: dict[str, Callable[[], Builder]] = {
    "f16-bias-packed": lambda: chain((64, 768), (768,)),
    "f16-bias-odd-columns": lambda: chain((33, 37), (37,)),
    "f16-odd-n": lambda: chain((3, 5, 7), (3, 5, 7)),
    "f16-row-broadcast": lambda: chain((64, 256), (64, 1)),
    "f16-scalar-broadcast": lambda: chain((40, 64), (1,)),
    "f16-two-outputs-f32": lambda: chain((32, 512), (512,), f16, f32),
    "bf16-3d-bias": lambda: chain((4, 16, 128), (16, 128), bf16),
    "f32-packed": lambda: chain((128, 96), (96,), f32),
    "f64-packed": lambda: chain((64, 18), (18,), f64),
    "i32-add": lambda: chain((16, 40), (40,), i32),
    "i64-add": lambda: chain((7, 9), (9,), i64),
    "u8-add": lambda: chain((64, 64), (64,), u8),
    "sliced-inputs": lambda: sliced(4096),
}


@pytest.fixture(autouse=True)
def packs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(elementwise, "PACKED", True)


# -- CPU ------------------------------------------------------------------------------------
def test_read_kinds() -> None:
    assert read_kind((4, 8), (4, 8)) == DIRECT
    assert read_kind((8,), (4, 8)) == SUFFIX
    assert read_kind((1, 1, 8), (4, 8)) == SUFFIX
    assert read_kind((3, 4, 8), (2, 3, 4, 8)) == SUFFIX
    assert read_kind((4, 1), (4, 8)) == GENERAL
    assert read_kind((1,), (4, 8)) == GENERAL


def test_widths(monkeypatch: pytest.MonkeyPatch) -> None:
    assert vector_width([2, 2]) == 8 and vector_width([2, 4]) == 4 and vector_width([1]) == 16
    assert vector_width([8]) == 2 and vector_width([3]) == 1 and vector_width([]) == 1
    monkeypatch.setattr(elementwise, "PACKED", False)
    assert vector_width([2, 2]) == 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_form_builds(name: str, kernel_cache: Path) -> None:
    program = lower(CASES[name]().build())
    kernels = [k for k in program.kernels.values() if k.source.count("ember::Pack<")]
    assert kernels, "no packed form"
    Compiler(("sm_80", "sm_90"), cache_dir=kernel_cache, jobs=2).compile_all(list(program.kernels.values()))


def test_the_pack_is_16_bytes_of_the_widest_operand() -> None:
    program = lower(CASES["f16-two-outputs-f32"]().build(), )
    sources = "\n".join(k.source for k in program.kernels.values())
    assert "ember::Pack<__half, 4>" in sources and "ember::Pack<float, 4>" in sources


# -- GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name", sorted(CASES))
def test_packed_and_scalar_forms_match_the_interpreter_on_the_gpu(name: str, tmp_path: Path) -> None:
    module = CASES[name]().build()
    engine = ember.compile(module, cache_dir=tmp_path / "cache")
    assert any("ember::Pack<" in k.source for k in engine.kernels.values())
    check_on_gpu(engine, module, name, high=2.0)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_device_inputs_off_a_16_byte_boundary_take_the_scalar_loop() -> None:
    """Torch tensors that start 2 bytes past a 16-byte boundary: the packed form's pointer check
    fails and the scalar loop computes the same values."""
    module = CASES["f16-bias-packed"]().build()
    engine = ember.compile(module)
    feeds = {v.name: rand(np.random.default_rng(), v.type, 0.05, 2.0) for v in module.main.inputs}
    expected = ember.interpret(module, feeds)
    got = engine.run(misaligned_on_gpu(feeds))
    for out, ref in expected.items():
        assert_close(got[out].float().cpu().numpy().astype(np.asarray(ref).dtype), np.asarray(ref), what=out)
