"""The one tolerance rule every comparison in Ember uses: passes against the
interpreter, kernels against the interpreter, `ember compare`, the tests.

Per output: max |actual - expected| <= rtol * max |expected| + atol, with rtol
and atol set by the element type (1e-4 for f32, 1e-2 for f16; table below). NaN must sit
where the reference has NaN, infinities must match exactly, and integer, bool
and string outputs must be equal.

FP8 has two entries beside its element types' (`fp8_tolerance`):
- an fp8 op's kernel against its reference (ember.fp8_matmul / ember.fp8_conv, the same
  fp8 operands; ir/ops/fp8.py): the reference rounds the exact sum once, tensor cores add
  the exact products in f32 with partial sums rounded (or, on Hopper, truncated to about
  14 bits) per 32-term step. `FP8_ACCUMULATION` bounds that by result type: rtol 2^-7 of
  max |ref| (f32 results; f16's and bf16's own tolerance where it is wider);
- an fp8 engine (precision="fp8") against the fp32 model: e4m3's own tolerance applied to
  the float outputs, as an fp16 engine's are judged by f16's (one e4m3 step is 2^-3 of a
  value; the quantization of each operand is at most half of one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# rtol, atol by numpy dtype name (ml_dtypes names for bf16 and the fp8/fp6/fp4
# families); types not listed (integers, bool, str) compare exactly.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-9, 1e-12),
    "float32": (1e-4, 1e-5),
    "complex64": (1e-4, 1e-5),
    "complex128": (1e-9, 1e-12),
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
    "float8_e4m3fn": (1.25e-1, 1e-1),
    "float8_e4m3fnuz": (1.25e-1, 1e-1),
    "float8_e5m2": (2.5e-1, 1e-1),
    "float8_e5m2fnuz": (2.5e-1, 1e-1),
    "float8_e8m0fnu": (1.0, 0.0),
    "float6_e2m3fn": (2.5e-1, 1e-1),
    "float6_e3m2fn": (2.5e-1, 1e-1),
    "float4_e2m1fn": (5e-1, 2.5e-1),
}


# An fp8 op's result against its reference (kernel vs interpreter), by the result's dtype.
FP8_ACCUMULATION: dict[str, tuple[float, float]] = {
    "float32": (2.0 ** -7, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
}


@dataclass(frozen=True)
class Comparison:
    ok: bool
    max_abs_diff: float
    bound: float
    message: str

    def __bool__(self) -> bool:
        return self.ok


def tolerance_for(dtype: np.dtype | str) -> tuple[float, float] | None:
    """(rtol, atol) for a numpy dtype (or its name), or None when it must match exactly."""
    return TOLERANCES.get(dtype if isinstance(dtype, str) else np.dtype(dtype).name)


def fp8_tolerance(dtype: np.dtype | str, *, against: str = "reference") -> tuple[float, float]:
    """(rtol, atol) for a float output computed from fp8 operands: `against="reference"`, an fp8
    op's kernel against the op's reference (`FP8_ACCUMULATION` by the result type);
    `against="fp32"`, an fp8 engine's output against the fp32 model's (e4m3's tolerance)."""
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if against == "fp32":
        return TOLERANCES["float8_e4m3fn"]
    if against != "reference":
        raise ValueError(f"against={against!r}: 'reference' or 'fp32'")
    if name not in FP8_ACCUMULATION:
        raise ValueError(f"an fp8 op's result is float32, float16 or bfloat16, not {name}")
    return FP8_ACCUMULATION[name]


def compare(actual: np.ndarray, expected: np.ndarray, *, rtol: float | None = None,
            atol: float | None = None) -> Comparison:
    """Check `actual` against the reference `expected` by the rule above."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return Comparison(False, float("inf"), 0.0, f"shape {actual.shape} != expected {expected.shape}")
    name = expected.dtype.name
    if actual.dtype != expected.dtype:
        return Comparison(False, float("inf"), 0.0, f"dtype {actual.dtype} != expected {expected.dtype}")
    tol = tolerance_for(name)
    if tol is None or expected.dtype == object:
        equal = bool(np.array_equal(actual, expected))
        return Comparison(equal, 0.0 if equal else float("inf"), 0.0,
                          "" if equal else f"{name} values differ at {int(np.sum(actual != expected))} places")
    r, a = tol
    r = r if rtol is None else rtol
    a = a if atol is None else atol
    wide = np.complex128 if np.iscomplexobj(expected) else np.float64
    x, y = actual.astype(wide), expected.astype(wide)
    nan_x, nan_y = np.isnan(x), np.isnan(y)
    if not np.array_equal(nan_x, nan_y):
        return Comparison(False, float("inf"), 0.0,
                          f"NaN at {int(np.sum(nan_x != nan_y))} places where the reference differs")
    inf_y = np.isinf(y)
    if not np.array_equal(x[inf_y], y[inf_y]) or np.isinf(x[~inf_y & ~nan_y]).any():
        return Comparison(False, float("inf"), 0.0, "infinities differ from the reference")
    finite = ~nan_y & ~inf_y
    if not finite.any():
        return Comparison(True, 0.0, 0.0, "")
    diff = float(np.max(np.abs(x[finite] - y[finite])))
    bound = r * float(np.max(np.abs(y[finite]))) + a
    ok = diff <= bound
    return Comparison(ok, diff, bound, "" if ok else f"max |diff| {diff:.6g} > bound {bound:.6g} "
                                                     f"(rtol {r:g} * max|ref| + atol {a:g}) for {name}")


def assert_close(actual: np.ndarray, expected: np.ndarray, *, what: str = "output", **kw: float) -> None:
    result = compare(actual, expected, **kw)
    if not result:
        raise AssertionError(f"{what}: {result.message}")
