"""What the codegen tests share: fresh random inputs, the NVRTC compiler they build with,
lowering a one-op module, and whether a GPU is there for the `-m gpu` half of each file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ember.codegen.lower import Program, lower
from ember.codegen.nvrtc import Compiler
from ember.ir.core import Module
from ember.ir.types import Type
from ember.passes.manager import PassManager


def rand(rng: np.random.Generator, t: Type, low: float = 0.05, high: float = 3.0) -> np.ndarray:
    """Fresh random data of a tensor type: floats of magnitude in [low, high) and either sign
    (never 0), small integers, bools."""
    shape, dt = tuple(t.shape), t.dtype.np_dtype
    if dt == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return rng.integers(max(info.min, -60), min(info.max, 60) + 1, size=shape).astype(dt)
    x = rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return x.astype(dt)


def nvrtc_compiler(cache_dir: Path) -> Compiler:
    """A compiler for sm_80 and sm_90 on the run's cache (`kernel_cache`: cold when the run
    starts, so each kernel is compiled once per run, by whichever test needs it first)."""
    return Compiler(("sm_80", "sm_90"), cache_dir=cache_dir, jobs=2)


def lowered(module: Module) -> tuple[Module, Program]:
    """The module canonicalized and lowered to a program of kernels and launches."""
    PassManager("canonicalize").run(module)
    return module, lower(module)


def launches(program: Program) -> list[dict[str, Any]]:
    return [s for s in program.steps if s.kind == "launch"]


def gpu_available() -> bool:
    try:
        from ember.runtime import cuda
        return bool(cuda.available()[0])
    except Exception:  # noqa: BLE001  (no driver, no runtime)
        return False


def check_on_gpu(engine: Any, module: Module, what: str, runs: int = 2, low: float = 0.05, high: float = 1.0) -> None:
    """`engine` on one poisoned CUDA context, `runs` times on fresh random inputs, against the
    interpreter by the tolerance rule."""
    import ember
    from ember.tolerance import assert_close
    ctx = engine.create_context("cuda", poison=True)
    try:
        for _ in range(runs):
            feeds = {v.name: rand(np.random.default_rng(), v.type, low, high) for v in module.main.inputs}
            expected = ember.interpret(module, feeds)
            got = ctx.run(feeds)
            for out, ref in expected.items():
                assert_close(np.asarray(got[out]), np.asarray(ref), what=f"{what}: {out}")
    finally:
        ctx.close()


def misaligned_on_gpu(feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """Torch device copies of f16/bf16 `feeds` that start 2 bytes past a 16-byte boundary (the
    vector forms' pointer checks must send them to the scalar forms)."""
    import torch
    device = {}
    for k, v in feeds.items():
        flat = torch.empty(v.size + 1, dtype=torch.float16 if v.dtype == np.float16 else torch.bfloat16,
                           device="cuda")[1:]
        flat.copy_(torch.from_numpy(v.astype(np.float32).ravel()).to(flat.dtype))
        assert flat.data_ptr() % 16 != 0
        device[k] = flat.view(v.shape)
    return device
