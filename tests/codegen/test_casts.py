"""ember.cast to and from the narrow types (fp8 with its fnuz variants, e8m0, fp6, fp4, and
the sub-byte integers), bit for bit against the interpreter (`cast_array`).

One fused elementwise kernel per source type casts it to every type it converts to
(include/ember_cast.cuh does the work). On the CPU: every kernel lowers with no host step,
NVRTC compiles them all for sm_80 and sm_90 (one program, so one compile), and the generated
kernels, built by the host's C++ compiler against the CUDA headers (one thread walks the
grid-stride loop), match `ember.interpret` on every code of the 8- and 16-bit sources and on
f32/f64/integer inputs placed at every rounding boundary of every target; the ONNX backend
cases of Cast and CastLike lower with no host step. With `-m gpu` the same modules run on
the GPU on these inputs and on fresh random ones (NaN, inf, subnormals, values past each
format's range), compared the same way.

Compared bit for bit, except: a float cast to a standard integer is compared only where it
truncates into the integer's range (undefined otherwise, in ONNX too); where a wide float
result (f16, bf16, f32, f64) is NaN, only that it is NaN (its payload is CUDA's conversion's).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx.backend.test.loader import load_model_tests

import ember
from ember.build import profiles_for
from ember.codegen.kernel import Kernel
from ember.codegen.lower import Program, lower
from ember.codegen.nvrtc import INCLUDE, cuda_include_dirs
from ember.frontends.onnx.importer import import_model
from ember.ir.builder import Builder
from ember.ir.core import Module
from ember.ir.types import dtype
from ember.passes.manager import PassManager
from kernel_checks import gpu_available, launches, nvrtc_compiler

NARROW_FLOATS = ["f8e4m3fn", "f8e5m2", "f8e4m3fnuz", "f8e5m2fnuz", "f6e2m3", "f6e3m2", "f4e2m1", "f8e8m0"]
NARROW_INTS = ["i4", "u4", "i2", "u2"]
WIDE_FLOATS = ["f64", "f32", "f16", "bf16"]
STANDARD_INTS = ["i64", "i32", "i8", "u8", "u64"]
SOURCES = ["f32", "f64", "f16", "bf16", "i64", "i32", "u8", "bool", *NARROW_FLOATS, *NARROW_INTS]


@dataclass(frozen=True)
class Form:
    """One cast: to `to`, with its attributes."""

    to: str
    saturate: bool = True
    round_mode: str = "up"

    @property
    def name(self) -> str:
        extra = ("" if self.saturate else "_nosat") + (f"_{self.round_mode}" if self.to == "f8e8m0" else "")
        return f"{self.to}{extra}"


def forms(source: str) -> list[Form]:
    """Every cast from `source` that goes through ember_cast.cuh (and f16/bf16 from f64 and integers,
    which round from f64 as numpy and ml_dtypes do)."""
    out = []
    for to in NARROW_FLOATS:
        if to.startswith("f8e8m0"):
            out += [Form(to, sat, mode) for sat in (True, False) for mode in ("up", "down", "nearest")]
        elif to.startswith("f8"):
            out += [Form(to, True), Form(to, False)]
        else:
            out.append(Form(to))
    out += [Form(to) for to in NARROW_INTS]
    if source in NARROW_FLOATS or source in NARROW_INTS:
        out += [Form(to) for to in [*WIDE_FLOATS, *STANDARD_INTS, "bool"]]
    elif source in ("f64", "i64", "i32"):
        out += [Form("f16"), Form("bf16")]
    return out


def module_for(source: str) -> Module:
    """x: source[n] cast to every form, in one fused elementwise region (one kernel)."""
    fs = forms(source)
    b = Builder(f"casts_from_{source}")
    x = b.input("x", dtype(source)["n"])
    outs = b.fused(x, kind="elementwise", body=lambda r, v: tuple(
        r.cast(v, to=dtype(f.to), saturate=f.saturate, round_mode=f.round_mode) for f in fs))
    for f, y in zip(fs, outs):
        b.output(f.name, y)
    return b.build()


# -- inputs -----------------------------------------------------------------------------------------------
def _all_codes(name: str) -> np.ndarray:
    dt = dtype(name)
    if name == "bool":
        return np.array([False, True])
    count = 1 << min(dt.bits, 16)
    return np.arange(count, dtype=np.uint16 if dt.bits == 16 else np.uint8).view(dt.np_dtype)


def _boundaries(wide: type) -> np.ndarray:
    """Floats at every rounding decision of every narrow target: each value, the midpoints between
    neighbours and one ulp either side of them, past the largest value, the subnormal range;
    e8m0's powers of two and their ties; the integer types' truncation edges; the specials."""
    points: list[np.ndarray] = []
    for name in NARROW_FLOATS:
        t = dtype(name).np_dtype
        values = np.unique(_all_codes(name).astype(np.float64))
        values = values[np.isfinite(values)]
        mids = (values[:-1] + values[1:]) / 2
        top = float(ml_dtypes.finfo(t).max)
        with np.errstate(over="ignore"):
            edges = np.concatenate([values, mids, [top * 1.0625, top * 1.125, top * 2, top * 1e3]]).astype(wide)
        points += [edges, np.nextafter(edges, wide(np.inf)), np.nextafter(edges, wide(-np.inf))]
    with np.errstate(over="ignore"):
        powers = np.ldexp(1.0, np.arange(-150, 131)).astype(wide)
    points += [powers, powers * wide(1.5), np.nextafter(powers * wide(1.5), wide(np.inf)),
               np.nextafter(powers * wide(1.5), wide(-np.inf)), np.nextafter(powers, wide(np.inf))]
    ints = np.arange(-20, 21).astype(wide)
    points += [ints, ints + wide(0.5), np.nextafter(ints, wide(np.inf)), np.nextafter(ints, wide(-np.inf))]
    if wide == np.float64:  # just past an f32 tie: rounding through f32 first would see the tie
        mids32 = np.concatenate([p for p in points[::3]]).astype(np.float64)
        points.append(mids32 * (1 + 2.0 ** -40))
    info = np.finfo(wide)
    points.append(np.array([0, info.tiny, info.smallest_subnormal, info.max, np.inf, 1e300 if wide == np.float64
                            else 3e38, np.nan], dtype=wide))
    x = np.concatenate(points)
    x = np.concatenate([x, -x])
    bits = np.uint64 if wide == np.float64 else np.uint32
    odd_nans = np.array([0x7FF0000000000001, 0xFFF8000000000001] if wide == np.float64 else
                        [0x7F800001, 0xFFC00001, 0x7FFFFFFF], dtype=bits).view(wide)
    return np.concatenate([x, odd_nans])


def _integers(name: str) -> np.ndarray:
    info = np.iinfo(dtype(name).np_dtype)
    around = [0, 1, 2, 3, 7, 8, 15, 16, 240, 241, 448, 449, 464, 465, 57344, 61440, 2**24 + 1, 2**25 + 2**17 + 1,
              2**53 + 1, 2**62 + 2**38 + 1]
    x = np.array([v for a in around for v in (a - 1, a, a + 1, -a - 1, -a, -a + 1) if info.min <= v <= info.max]
                 + [info.min, info.max], dtype=np.int64 if info.min < 0 else np.uint64)
    return x.astype(info.dtype)


def fixed_inputs(source: str) -> np.ndarray:
    """The inputs every run checks: all codes of small types, else the boundaries."""
    dt = dtype(source)
    if source == "bool" or dt.bits <= 16 and source != "u8" or source in NARROW_INTS:
        return _all_codes(source)
    if source == "u8":
        return np.arange(256, dtype=np.uint8)
    if dt.is_float:
        return _boundaries(np.float64 if source == "f64" else np.float32).astype(dt.np_dtype)
    return _integers(source)


def random_inputs(source: str, rng: np.random.Generator, n: int = 1 << 16) -> np.ndarray:
    """Fresh random inputs: random bit patterns (NaN, inf and subnormals among them) and values
    spread over every narrow format's range and past it."""
    dt = dtype(source)
    if dt.bits <= 16 or source == "bool":
        codes = _all_codes(source)
        return codes[rng.integers(0, codes.size, n)]
    if dt.is_int:
        info = np.iinfo(dt.np_dtype)
        big = rng.integers(info.min, info.max, n, dtype=dt.np_dtype, endpoint=True)
        small = rng.integers(max(info.min, -70000), 70000, n).astype(dt.np_dtype)
        return np.concatenate([big, small])
    bits = np.uint64 if source == "f64" else np.uint32
    raw = rng.integers(0, np.iinfo(bits).max, n, dtype=bits, endpoint=True).view(dt.np_dtype)
    spread = (rng.standard_normal(n) * np.exp2(rng.uniform(-40, 20, n))).astype(dt.np_dtype)
    x = np.concatenate([raw, spread])
    x[rng.integers(0, x.size, 64)] = rng.choice([np.nan, np.inf, -np.inf], 64)
    return x


# -- comparison ------------------------------------------------------------------------------------------
def check(source: str, form: Form, x: np.ndarray, got: np.ndarray, want: np.ndarray) -> None:
    what = f"cast {source} -> {form.name}"
    assert got.dtype == want.dtype and got.shape == want.shape, what
    keep = np.ones(x.shape, bool)
    to = dtype(form.to)
    if form.to in STANDARD_INTS and (dtype(source).is_float):
        t = np.trunc(x.astype(np.float64))
        info = np.iinfo(to.np_dtype)
        # in range: [min, max + 1) in exact powers of two (float(int64 max) rounds up to 2^63, outside)
        low, high = float(info.min), np.ldexp(1.0, info.bits - (1 if info.min < 0 else 0))
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(t) & (t >= low) & (t < high)
    if form.to in WIDE_FLOATS:
        g, w = got.astype(np.float64), want.astype(np.float64)
        bad = np.isnan(g) != np.isnan(w)
        keep &= ~np.isnan(w)
    else:
        bad = np.zeros(x.shape, bool)
    width = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[want.dtype.itemsize]
    bad |= keep & (got.view(width) != want.view(width))
    if bad.any():
        at = np.flatnonzero(bad)[:8]
        xs = x[at]
        shown = xs.view(np.uint8) if x.dtype.itemsize == 1 else xs
        raise AssertionError(f"{what}: {int(bad.sum())} of {x.size} differ; at inputs {shown.tolist()} "
                             f"(bits {x.view(np.uint8 if x.dtype.itemsize == 1 else width_of(x))[at].tolist()}): "
                             f"got {got.view(width)[at].tolist()}, want {want.view(width)[at].tolist()}")


def width_of(x: np.ndarray) -> type:
    return {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[x.dtype.itemsize]


# -- CPU: lowering, NVRTC, and the kernels built for the host --------------------------------------------
@cache
def lowered(source: str) -> tuple[Module, Program]:
    m = module_for(source)
    return m, lower(m, {"n": 4096})


@pytest.mark.parametrize("source", SOURCES)
def test_every_cast_is_one_kernel(source: str) -> None:
    _, program = lowered(source)
    assert not program.host_ops, program.host_ops
    assert len(launches(program)) == 1


def test_narrow_types_only_convert() -> None:
    """Other ops on a narrow type stay on the host: only ember.cast knows their encodings."""
    b = Builder("narrow_add")
    x, y = b.input("x", dtype("i4")[8]), b.input("y", dtype("f8e4m3fnuz")[8])
    b.output("s", b.add(x, x))
    b.output("t", b.fused(y, kind="elementwise", body=lambda r, v: (r.cast(r.neg(v), to=dtype("f32")),))[0])
    program = lower(b.build())
    assert [h.split(" @ ")[0] for h in program.host_ops] == ["ember.add", "ember.fused"], program.host_ops
    assert all("narrow types are only converted" in h for h in program.host_ops)


def reads_module() -> Module:
    """Every narrow type read and cast to the wide types, in one kernel."""
    sources = [*NARROW_FLOATS, *NARROW_INTS]
    b = Builder("narrow_reads")
    xs = [b.input(f"x_{s}", dtype(s)["n"]) for s in sources]
    outs = b.fused(*xs, kind="elementwise", body=lambda r, *vs: tuple(
        r.cast(v, to=dtype(t)) for v in vs for t in ("f32", "f64", "bf16", "i32", "bool")))
    for k, y in enumerate(outs):
        b.output(f"y{k}", y)
    return b.build()


def test_kernels_compile(kernel_cache: Path) -> None:
    """NVRTC builds every conversion function of ember_cast.cuh for sm_80 and sm_90, cleanly: the
    casts from f32, f64 and i64 to every narrow form and every narrow type's read, in one program
    (one compile per architecture; the host build below runs every source's kernel)."""
    program = lower(reads_module(), {"n": 64})
    assert not program.host_ops, program.host_ops
    kernels = [*program.kernels.values(), *(k for s in ("f32", "f64", "i64") for k in lowered(s)[1].kernels.values())]
    nvrtc_compiler(kernel_cache).compile_all([Kernel("\n".join(k.rendered for k in kernels), "casts", ())])


def host_headers() -> Path | None:
    """CUDA headers a host compiler can read (a toolkit's, with crt/host_defines.h), if any."""
    return next((p for p in cuda_include_dirs() if (p / "crt" / "host_defines.h").exists()), None)


HOST_SHIM = r"""
// The generated kernels built for the host: one block of one thread walks the grid-stride loop.
#include <cstring>
#include <math.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#define __launch_bounds__(...)
struct HostDim3 { unsigned x, y, z; };
static const HostDim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
inline unsigned __float_as_uint(float x) { unsigned u; std::memcpy(&u, &x, 4); return u; }
inline float __uint_as_float(unsigned u) { float x; std::memcpy(&x, &u, 4); return x; }
inline int __float_as_int(float x) { int u; std::memcpy(&u, &x, 4); return u; }
inline float __int_as_float(int u) { float x; std::memcpy(&x, &u, 4); return x; }
inline long long __double_as_longlong(double x) { long long u; std::memcpy(&u, &x, 8); return u; }
inline double __longlong_as_double(long long u) { double x; std::memcpy(&x, &u, 8); return x; }
// the prelude's int8 helpers round each f32 operation once (ISO C++ contracts nothing: -std=c++17)
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
#include "ember_prelude.cuh"
"""


@pytest.fixture(scope="module")
def host_library(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    compiler = shutil.which("c++") or shutil.which("g++")
    headers = host_headers()
    if compiler is None or headers is None:
        pytest.skip("needs a host C++ compiler and a CUDA toolkit's headers (crt/host_defines.h)")
    folder = tmp_path_factory.mktemp("host_casts")
    kernels = [k for s in SOURCES for k in lowered(s)[1].kernels.values()]
    (folder / "casts.cpp").write_text(HOST_SHIM + "\n".join(
        k.rendered.replace('#include "ember_prelude.cuh"', "") for k in kernels))
    out = folder / "casts.so"
    proc = subprocess.run([compiler, "-std=c++17", "-O0", "-w", "-shared", "-fPIC", f"-I{INCLUDE}", f"-I{headers}",
                           str(folder / "casts.cpp"), "-o", str(out)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return ctypes.CDLL(str(out))


def run_on_host(library: ctypes.CDLL, source: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """The source's kernel, built for the host, on `x`: its outputs by name."""
    _, program = lowered(source)
    (step,) = launches(program)
    kernel = program.kernels[step.kernel]
    values = {v.id: v for v in program.values}
    names = {o.value: o.name for o in program.outputs}
    keep: list[np.ndarray] = []
    args: list[Any] = []
    results: dict[str, np.ndarray] = {}
    for param, arg in zip(kernel.params, step.args):
        if arg.kind == "value":
            info = values[arg.value]
            if param.role == "out":
                a = np.zeros(x.shape, dtype(info.dtype).np_dtype)
                results[names[arg.value]] = a
            else:
                a = np.ascontiguousarray(x)
            keep.append(a)
            args.append(ctypes.c_void_p(a.ctypes.data))
        elif arg.kind == "meta":
            meta = np.array([1, x.size], np.int64)
            keep.append(meta)
            args.append(ctypes.c_void_p(meta.ctypes.data))
        else:
            args.append(ctypes.c_longlong(x.size))
    getattr(library, kernel.name)(*args)
    return results


@pytest.mark.parametrize("source", SOURCES)
def test_kernels_on_the_host_match_the_interpreter(source: str, host_library: ctypes.CDLL) -> None:
    m, _ = lowered(source)
    x = np.concatenate([fixed_inputs(source), random_inputs(source, np.random.default_rng(), 4096)])
    want = ember.interpret(m, {"x": x})
    got = run_on_host(host_library, source, x)
    for form in forms(source):
        check(source, form, x, got[form.name], want[form.name])


# -- the ONNX backend cases -------------------------------------------------------------------------------
def test_backend_cast_cases_lower_with_no_host_step() -> None:
    """Cast and CastLike node cases of onnx's backend suite: every one to or from a type with a
    numeric storage lowers to kernels only (strings stay on the host). onnx makes the cases
    once per process (the backend suite's collection has, in a full run)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tests = [t for t in load_model_tests(kind="node")
                 if t.name.startswith(("test_cast_", "test_castlike_")) and "STRING" not in t.name]
    assert len(tests) > 100
    host = {}
    for t in tests:
        m = import_model(t.model, source=t.name)
        shapes = {n: tuple(a.dims) if isinstance(a, onnx.TensorProto) else np.shape(a)
                  for n, a in zip(m.main.input_names, t.data_sets[0][0])}
        PassManager("default").run(m)
        program = lower(m, profiles_for(m, shapes, None)[0].env("opt"))
        if program.host_ops:
            host[t.name] = program.host_ops
    assert not host, host


# -- GPU ---------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("source", SOURCES)
def test_on_gpu_bit_for_bit(source: str, kernel_cache: Path) -> None:
    m = module_for(source)
    x = np.concatenate([fixed_inputs(source), random_inputs(source, np.random.default_rng())])
    # No passes: canonicalize drops a cast to the operand's own type (identity-cast), which for
    # fp8 is not the identity in the interpreter (saturate=true turns inf to max; e5m2 NaNs become
    # 0x7E/0xFE), and the kernel is checked against the interpreter on the module as built.
    engine = ember.compile(m, pipeline="", shapes={"x": x.shape}, cache_dir=kernel_cache)
    assert not engine.report.host_ops, engine.report.host_ops
    got = engine.run({"x": x}, device="cuda")
    want = ember.interpret(m, {"x": x})
    for form in forms(source):
        check(source, form, x, np.asarray(got[form.name]), want[form.name])

