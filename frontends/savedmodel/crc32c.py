"""CRC-32C (Castagnoli), as TensorFlow's checkpoints store it.

`google-crc32c`'s C extension computes it where it is installed (100 MB in about
0.01 s; the test extras install it); without it (or with only its pure-Python
build) the numpy path below does (100 MB in about 1.5 s), with the same results.

The checkpoint's table blocks and every tensor's bytes carry a masked CRC-32C.
Small inputs go byte by byte through a table. Large ones (weights of hundreds of
MB) are cut into equal chunks whose CRCs numpy computes side by side, one byte
column at a time; the chunk CRCs are then chained with a precomputed linear map
that advances a CRC state over one chunk of zero bytes (CRC is linear over
GF(2)): crc(A || B) = advance(crc_state(A), len(B)) ^ crc_raw(B).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

POLY = 0x82F63B78  # reflected Castagnoli polynomial
CHUNK = 4096
MASK_DELTA = 0xA282EAD8


def _table() -> np.ndarray:
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(POLY), t >> 1).astype(np.uint32)
    return t


TABLE = _table()
_TABLE_LIST = [int(x) for x in TABLE]


def _raw_bytes(state: int, data: bytes | memoryview) -> int:
    t = _TABLE_LIST
    for b in bytes(data):
        state = t[(state ^ b) & 0xFF] ^ (state >> 8)
    return state


@lru_cache(maxsize=4)
def _advance_tables(n: int) -> np.ndarray:
    """Four 256-entry tables whose XOR maps a CRC state to the state after `n` zero bytes."""
    basis = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
    for _ in range(n):
        basis = TABLE[basis & 0xFF] ^ (basis >> 8)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for k in range(4):
        for bit in range(8):
            has = (np.arange(256) >> bit) & 1
            tables[k] ^= np.where(has == 1, basis[8 * k + bit], np.uint32(0)).astype(np.uint32)
    return tables


def _fast() -> object | None:
    """google_crc32c's C implementation, or None."""
    try:
        import google_crc32c
    except ImportError:
        return None
    return google_crc32c if getattr(google_crc32c, "implementation", "") == "c" else None


FAST = _fast()


def crc32c(data: bytes | memoryview | np.ndarray) -> int:
    buf = _as_bytes(data)
    if FAST is not None:
        view = buf.view()
        view.flags.writeable = False  # google_crc32c takes read-only buffers only (no copy)
        return int(FAST.value(view))  # type: ignore[attr-defined]
    return crc32c_numpy(buf)


def _as_bytes(data: bytes | memoryview | np.ndarray) -> np.ndarray:
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8) if not isinstance(data, np.ndarray) \
        else np.ascontiguousarray(data).reshape(-1).view(np.uint8)


def crc32c_numpy(data: bytes | memoryview | np.ndarray) -> int:
    """The numpy path (what crc32c uses without google-crc32c's C extension)."""
    buf = _as_bytes(data)
    n = buf.size
    if n < 4 * CHUNK:
        return _raw_bytes(0xFFFFFFFF, buf.tobytes()) ^ 0xFFFFFFFF
    k = n // CHUNK
    chunks = buf[: k * CHUNK].reshape(k, CHUNK)
    states = np.zeros(k, dtype=np.uint32)
    for j in range(CHUNK):
        states = TABLE[(states ^ chunks[:, j]) & 0xFF] ^ (states >> 8)
    t0, t1, t2, t3 = (list(map(int, t)) for t in _advance_tables(CHUNK))
    state = 0xFFFFFFFF
    for r in states.tolist():
        state = t0[state & 0xFF] ^ t1[(state >> 8) & 0xFF] ^ t2[(state >> 16) & 0xFF] ^ t3[state >> 24] ^ r
    state = _raw_bytes(state, buf[k * CHUNK:].tobytes())
    return state ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    """LevelDB's and TensorFlow's masking of a stored CRC."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
