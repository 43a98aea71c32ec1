"""The tensor-bundle reader against TensorFlow's own, and CRC-32C against known values."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.frontends.savedmodel import crc32c
from ember.frontends.savedmodel.checkpoint import Checkpoint


def test_every_checkpoint_entry_matches_tensorflow(saved_models: Any) -> None:
    import tensorflow as tf
    checked = 0
    for name, (path, _) in saved_models.items():
        prefix = path / "variables" / "variables"
        ours = Checkpoint(prefix)
        theirs = tf.train.load_checkpoint(str(prefix))
        assert set(ours.entries) == set(theirs.get_variable_to_shape_map()), name
        for key in ours.entries:
            got, want = ours.read(key), theirs.get_tensor(key)
            if isinstance(want, bytes):  # a scalar string (the object graph)
                assert got.reshape(()).item() == want, (name, key)
            else:
                assert got.dtype == want.dtype and got.shape == want.shape, (name, key)
                assert got.tobytes() == np.ascontiguousarray(want).tobytes(), (name, key)
            checked += 1
        ours.close()
    assert checked > 300


def test_crc32c_known_values() -> None:
    assert crc32c.crc32c(b"") == 0
    assert crc32c.crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert crc32c.crc32c(bytes(32)) == 0x8A9136AA      # RFC 3720, 32 zero bytes
    assert crc32c.crc32c(b"\xff" * 32) == 0x62A8AB43   # RFC 3720, 32 0xFF bytes
    assert crc32c.unmask(crc32c.mask(0x12345678)) == 0x12345678


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 5 * crc32c.CHUNK + 7), st.integers(0, 2**32 - 1))
def test_chunked_crc_equals_the_bytewise_one(n: int, seed: int) -> None:
    data = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    expected = crc32c._raw_bytes(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    assert crc32c.crc32c(data) == expected
