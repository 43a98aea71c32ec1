"""Engines of the real-model fixtures, built once per session (kernels compiled into the
run's NVRTC cache, `kernel_cache` in tests/conftest.py), and the helpers the runtime tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ember
from shared_run import file_lock
from ember.ir.program import Program

FIXTURES = Path(__file__).parent.parent / "fixtures" / "onnx"
MODELS = sorted(p.stem for p in FIXTURES.glob("*.onnx"))


def feeds_of(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.inputs.npz") as data:
        return {k: data[k] for k in data.files}


def build(name: str, cache_dir: Path, **options):
    from ember.build import compile as ember_compile
    module = ember.load(FIXTURES / f"{name}.onnx")
    feeds = feeds_of(name)
    return ember_compile(module, shapes={k: v.shape for k, v in feeds.items()}, cache_dir=cache_dir, **options)


class Built:
    """Per fixture, lazily: the engine, its inputs, and the interpreter's outputs on the imported model."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._engines: dict[str, object] = {}
        self._expected: dict[str, dict[str, np.ndarray]] = {}

    def engine(self, name: str):
        if name not in self._engines:
            # A worker that wants an engine another one is building waits, then finds its kernels cached.
            with file_lock(self.cache_dir.parent / "locks" / f"engine-{name}"):
                self._engines[name] = build(name, self.cache_dir)
        return self._engines[name]

    def feeds(self, name: str) -> dict[str, np.ndarray]:
        return feeds_of(name)

    def expected(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._expected:
            module = ember.load(FIXTURES / f"{name}.onnx")
            self._expected[name] = {k: np.asarray(v) for k, v in ember.interpret(module, feeds_of(name)).items()}
        return self._expected[name]


@pytest.fixture(scope="session")
def built(kernel_cache: Path) -> Built:
    return Built(kernel_cache)


# A hand-written engine whose kernels use every kind of launch argument: an op computed by two
# launches that share two scratch buffers (one of them an atomic counter, which needs the
# zeroing before the op's first launch), f32, i32 and i64 scalars, and a metadata array.
# y = x * 2, as the IR's ember.mul says (the host arena runs that op instead).
SYNTHETIC_IR = """func @main(%x: f32[1000]) -> (y: f32[1000]) {
  %c = ember.constant {value = dense<f32[]: 2.0>} : f32[]
  %y = ember.mul %x, %c : f32[1000]
  return %y
}
"""
SCALE_AND_COUNT = r"""
extern "C" __global__ void ENTRY(const float* x, float* tmp, unsigned int* counter, float scale, int bias, long long n) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) {
    tmp[i] = x[i] * scale + (float)bias;
    atomicAdd(counter, 1u);
  }
}
"""
UNBIAS = r"""
extern "C" __global__ void ENTRY(float* y, const float* tmp, const unsigned int* counter, const long long* meta) {
  long long n = meta[0];
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) {
    y[i] = (*counter == (unsigned int)n) ? tmp[i] - (float)meta[1] : __int_as_float(0x7fc00000);
  }
}
"""


def synthetic_engine(cache_dir: Path):
    from ember.codegen.kernel import Kernel, Param
    from ember.codegen.nvrtc import Compiler
    from ember.runtime import Engine
    k1 = Kernel(SCALE_AND_COUNT, "scale_count", (
        Param("x", "ptr", "float", "in"), Param("tmp", "ptr", "float", "scratch"),
        Param("counter", "ptr", "unsigned int", "scratch"), Param("scale", "f32", "float", "scalar"),
        Param("bias", "i32", "int", "scalar"), Param("n", "i64", "long long", "scalar")), ("ember.mul @ test",))
    k2 = Kernel(UNBIAS, "unbias", (
        Param("y", "ptr", "float", "out"), Param("tmp", "ptr", "float", "scratch"),
        Param("counter", "ptr", "unsigned int", "scratch"), Param("meta", "ptr", "long long", "meta")),
        ("ember.mul @ test",))
    compiler = Compiler(("sm_80", "sm_90"), cache_dir=cache_dir)
    binaries = compiler.compile_all([k1, k2])
    n = 1000
    program = {
        "values": [
            {"id": 0, "name": "x", "dtype": "f32", "shape": [n], "kind": "input", "nbytes": 4 * n},
            {"id": 1, "name": "c", "dtype": "f32", "shape": [], "kind": "const", "nbytes": 4, "weight": "const:1"},
            {"id": 2, "name": "y", "dtype": "f32", "shape": [n], "kind": "activation", "nbytes": 4 * n},
        ],
        "inputs": [{"name": "x", "value": 0}], "outputs": [{"name": "y", "value": 2}],
        "kernels": [{"name": k.name, "params": [p.to_json() for p in k.params], "ops": list(k.ops)} for k in (k1, k2)],
        "steps": [
            {"kind": "launch", "kernel": k1.name, "grid": [4, 1, 1], "block": [256, 1, 1], "shared": 0,
             "args": [{"value": 0}, {"scratch": 4 * n}, {"scratch": 4}, {"f32": 2.0}, {"i32": 7}, {"i64": n}],
             "ops": [1], "reads": [0], "writes": []},
            {"kind": "launch", "kernel": k2.name, "grid": [4, 1, 1], "block": [256, 1, 1], "shared": 0,
             "args": [{"value": 2}, {"scratch": 4 * n}, {"scratch": 4}, {"meta": [n, 7]}],
             "ops": [1], "reads": [], "writes": [2]},
        ],
    }
    return Engine.build(
        ir_text=SYNTHETIC_IR, program=Program.from_json(program), weights={"const:1": np.array(2.0, np.float32)},
        binaries={name: {"cubins": b.cubins, "ptx": b.ptx, "ptx_arch": b.ptx_arch} for name, b in binaries.items()},
        sources={k.name: k.rendered for k in (k1, k2)},
        info={"targets": list(compiler.targets), "nvrtc": compiler.version, "precision": "fp32",
              "pipeline": "none", "symbols": {}})


@pytest.fixture(scope="session")
def synthetic(built):
    return synthetic_engine(built.cache_dir)


def host_only_engine():
    """The synthetic model with no kernels at all: its one op is a host step."""
    from ember.runtime import Engine
    n = 1000
    program = {
        "values": [
            {"id": 0, "name": "x", "dtype": "f32", "shape": [n], "kind": "input", "nbytes": 4 * n},
            {"id": 1, "name": "c", "dtype": "f32", "shape": [], "kind": "const", "nbytes": 4, "weight": "const:1"},
            {"id": 2, "name": "y", "dtype": "f32", "shape": [n], "kind": "activation", "nbytes": 4 * n},
        ],
        "inputs": [{"name": "x", "value": 0}], "outputs": [{"name": "y", "value": 2}], "kernels": [],
        "steps": [{"kind": "host", "ops": [1], "reads": [0, 1], "writes": [2], "reason": "no kernel for this op yet"}],
    }
    return Engine.build(ir_text=SYNTHETIC_IR, program=Program.from_json(program),
                        weights={"const:1": np.array(2.0, np.float32)}, binaries={}, sources={}, info={"targets": ["sm_80"], "nvrtc": "13.0", "symbols": {}})


@pytest.fixture
def host_only():
    return host_only_engine()


@pytest.fixture
def no_compiler(monkeypatch):
    """Call it after the build: any NVRTC compile from then on fails the test (running an engine
    at any shape of its profiles never compiles)."""
    from ember.codegen import nvrtc

    def forbid() -> None:
        def refuse(*args, **kwargs):
            raise AssertionError("NVRTC was called after the build")
        monkeypatch.setattr(nvrtc.Compiler, "compile_all", refuse)
    return forbid


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    """The CUDA runtime on the stand-in driver (tests/support/fake_driver.py): no GPU needed.

    Contexts and device state that a test leaves to the garbage collector are finalized before
    its stand-in goes: one finalized later, under another test's stand-in, would release a
    primary context that stand-in never retained (which resets it, freeing its memory)."""
    import gc

    from fake_driver import FakeDriver

    from ember.runtime import cuda
    gc.collect()
    driver = FakeDriver()
    monkeypatch.setattr(cuda, "_driver", driver)
    monkeypatch.setattr(cuda, "_available", (True, ""))
    yield driver
    gc.collect()
