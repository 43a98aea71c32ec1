"""crc32c: google-crc32c's C extension where it is installed, the numpy path otherwise,
with the same checksums."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.frontends.savedmodel import crc32c


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 5 * crc32c.CHUNK + 7), st.integers(0, 2**32 - 1))
def test_the_numpy_path_equals_the_fast_one(n: int, seed: int) -> None:
    data = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)
    expected = crc32c._raw_bytes(0xFFFFFFFF, data.tobytes()) ^ 0xFFFFFFFF
    assert crc32c.crc32c_numpy(data.tobytes()) == expected
    assert crc32c.crc32c(data.tobytes()) == expected
    assert crc32c.crc32c(data) == expected                     # a writable array: no copy needed
    assert crc32c.crc32c(memoryview(bytearray(data.tobytes()))) == expected


def test_forced_fallback_gives_the_same_checksums(monkeypatch: pytest.MonkeyPatch) -> None:
    data = np.random.default_rng(0).standard_normal(50_000).astype(np.float32)
    fast = crc32c.crc32c(data)
    monkeypatch.setattr(crc32c, "FAST", None)
    assert crc32c.crc32c(data) == fast
    assert crc32c.crc32c(data[::2]) == crc32c.crc32c(np.ascontiguousarray(data[::2]))
    assert crc32c.crc32c(b"123456789") == 0xE3069283


def test_the_c_extension_is_used_where_installed() -> None:
    google_crc32c = pytest.importorskip("google_crc32c")
    if google_crc32c.implementation != "c":
        pytest.skip("google-crc32c has no C extension here")
    assert crc32c.FAST is google_crc32c
