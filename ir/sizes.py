"""Checked size arithmetic: element counts, byte sizes, offsets.

Python integers never overflow, so a dim of 10^12 multiplies into a number no
GPU holds and nothing complains until numpy, the driver or a C kernel's 64-bit
index wraps it (an engine once reported a 16-exabyte arena). Every product of
dims, every buffer size and every offset that Ember computes from a model goes
through here instead, against one limit, and a value over it is refused with
what it is and how big it became.

Sizes are checked where they become concrete: at build time today (symbols
bound by `shapes=`), and at run time when an engine binds its symbols per call
(optimization profiles), so the same helpers serve both.
"""

from __future__ import annotations

from typing import Iterable

from ember.errors import EmberError

MAX_BYTES = 1 << 40
"""The largest tensor, arena or weights file Ember builds or reads: 1 TiB, past any
GPU's memory and far below where a signed 64-bit byte offset wraps."""

MAX_ELEMENTS = MAX_BYTES
"""The most elements a tensor may have (1-byte elements at the byte limit; sub-byte
types pack several a byte but are indexed per element)."""


class SizeError(EmberError, ValueError):
    """A size, count or offset that is negative or past Ember's limits."""


def _human(n: int) -> str:
    for unit, scale in (("EiB", 1 << 60), ("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def check_dim(d: int, what: str) -> int:
    """One concrete dim: a non-negative integer no larger than the element limit."""
    if isinstance(d, bool) or not isinstance(d, int):
        raise SizeError(f"{what}: dim {d!r} is not an integer")
    if d < 0:
        raise SizeError(f"{what}: dim {d} is negative")
    if d > MAX_ELEMENTS:
        raise SizeError(f"{what}: dim {d} is larger than the limit of {MAX_ELEMENTS} elements")
    return d


def numel(shape: Iterable[int], what: str) -> int:
    """The element count of a concrete shape, checked against the limit dim by dim, so a
    product that would wrap a 64-bit integer is refused before it is formed."""
    dims = [check_dim(d, what) for d in shape]
    if 0 in dims:
        return 0
    n = 1
    for d in dims:
        n *= d
        if n > MAX_ELEMENTS:
            raise SizeError(f"{what}: shape {dims} has {_product(dims)} elements, more than the limit of "
                            f"{MAX_ELEMENTS}")
    return n


def nbytes(shape: Iterable[int], itemsize: float, what: str) -> int:
    """The byte size of a dense tensor (itemsize may be fractional for packed sub-byte types)."""
    dims = list(shape)
    count = numel(dims, what)
    size = -(-int(count * itemsize * 8) // 8) if itemsize < 1 else count * int(itemsize)
    return check_bytes(size, f"{what} ({dims})")


def check_bytes(n: int, what: str) -> int:
    """A byte size or the end of a byte range: non-negative, at most `MAX_BYTES`."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise SizeError(f"{what}: size {n!r} is not an integer")
    if n < 0:
        raise SizeError(f"{what}: size {n} is negative")
    if n > MAX_BYTES:
        raise SizeError(f"{what}: {n} bytes ({_human(n)}) is more than the limit of {MAX_BYTES} bytes "
                        f"({_human(MAX_BYTES)})")
    return n


def check_range(offset: int, size: int, limit: int, what: str) -> int:
    """A byte range [offset, offset + size) that must lie inside [0, limit); returns its end."""
    check_bytes(size, what)
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise SizeError(f"{what}: offset {offset!r} is not an integer")
    if offset < 0:
        raise SizeError(f"{what}: offset {offset} is negative")
    end = offset + size
    if end > limit:
        raise SizeError(f"{what}: bytes {offset}..{end} lie past the end ({limit} bytes)")
    return end


def _product(dims: list[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


__all__ = ["MAX_BYTES", "MAX_ELEMENTS", "SizeError", "check_dim", "numel", "nbytes", "check_bytes", "check_range"]
