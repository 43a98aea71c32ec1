"""What an engine's runtime parts share, below the engine facade: input and output specs, the
input error, and which GPU architectures a cubin or PTX runs on. engine.py (the facade),
cuda.py and host.py import these from here, never from each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ember.errors import EmberError
from ember.ir.types import DTYPES
from ember.runtime.engine_format import EngineFormatError


class EngineInputError(EmberError, ValueError):
    """Inputs that do not fit the engine: names, element types or shapes."""


@dataclass(frozen=True)
class TensorSpec:
    """An engine input or output: its name, Ember element type and shape.

    `shape` holds the concrete dims the engine was built for (None where a dim is
    data-dependent); `dims` holds them as the model declared them, symbols kept
    (`("1", "3", "height", "width")`)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    dims: tuple[str, ...]
    value: int
    ranges: tuple[tuple[int, int] | None, ...] = ()  # per dim, (MIN, MAX) over the profiles where it varies

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype].np_dtype if self.dtype in DTYPES else np.dtype(object)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "dims": list(self.dims),
                "value": self.value}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TensorSpec":
        return cls(str(d["name"]), str(d["dtype"]), tuple(None if x is None else int(x) for x in d["shape"]),
                   tuple(str(x) for x in d["dims"]), int(d["value"]))

    def __str__(self) -> str:
        if self.ranges:
            shape = ",".join(f"{dim}={r[0]}..{r[1]}" if r is not None and r[0] != r[1] else
                             ("?" if d is None else str(d)) for d, dim, r in zip(self.shape, self.dims, self.ranges))
        else:
            shape = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{shape}]"


@dataclass
class KernelImage:
    """One kernel's compiled forms and where it came from."""

    name: str
    ops: tuple[str, ...]
    source: str
    cubins: dict[str, bytes]
    ptx: bytes
    ptx_arch: str


def view_of(base: Any, shape: Any, dtype: str, offset: int | None = None) -> np.ndarray:
    """A view value read from its source's array: reshaped, and, for a bitcast, its bytes read as
    the view's element type (both whole-byte types: codegen/lower.py `_aliases`); a window
    (`offset` given) is its own bytes from `offset` on."""
    arr = np.asarray(base)
    want = DTYPES[dtype].np_dtype if dtype in DTYPES else arr.dtype
    if offset is not None:
        raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        size = int(np.prod(shape, dtype=np.int64)) * want.itemsize
        return raw[int(offset):int(offset) + size].view(want).reshape(shape)
    if arr.dtype != want:
        arr = np.ascontiguousarray(arr).view(want)
    return arr.reshape(shape)


def arch_number(arch: str) -> tuple[int, int, bool]:
    """`sm_90a` -> (9, 0, True); `compute_90` -> (9, 0, False)."""
    digits = arch.split("_", 1)[1] if "_" in arch else arch
    specific = digits.endswith("a") or digits.endswith("f")
    digits = digits.rstrip("af")
    if not digits.isdigit() or len(digits) < 2:
        raise EngineFormatError(f"{arch!r} is not a CUDA architecture like sm_80 or sm_90")
    return int(digits[:-1]), int(digits[-1]), specific


def cubin_runs_on(cubin_arch: str, device_arch: str) -> bool:
    """A cubin runs on GPUs of its major version and an equal or higher minor (sm_80 on sm_86);
    an arch-specific cubin (sm_90a) only on its own architecture."""
    cm, cn, c_specific = arch_number(cubin_arch)
    dm, dn, _ = arch_number(device_arch)
    if c_specific:
        return (cm, cn) == (dm, dn)
    return cm == dm and cn <= dn


def ptx_runs_on(ptx_arch: str, device_arch: str) -> bool:
    """PTX for compute_XY is JIT-compiled by the driver for any GPU of XY or newer."""
    pm, pn, p_specific = arch_number(ptx_arch)
    dm, dn, _ = arch_number(device_arch)
    if p_specific:
        return (pm, pn) == (dm, dn)
    return (dm, dn) >= (pm, pn)


def version_number(version: str) -> int:
    """"13.0" -> 13000, as cuDriverGetVersion reports."""
    try:
        major, minor = (version.split(".") + ["0"])[:2]
        return int(major) * 1000 + int(minor) * 10
    except ValueError:
        return 0




__all__ = ["EngineInputError", "TensorSpec", "KernelImage", "view_of", "cubin_runs_on", "ptx_runs_on", "arch_number",
           "version_number"]
