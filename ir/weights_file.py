"""The weights file: every tensor of a module's weight store, mmap-able.

Layout (docs/weights-format.md has the full description):

    0   8 bytes  magic b"EMBERWTS"
    8   u32 LE   format version (1)
    12  u32 LE   reserved (0)
    16  u64 LE   header length H
    24  H bytes  JSON header, UTF-8:
                 {"tensors": [{"name", "dtype", "shape", "offset", "nbytes", "crc32"}, ...]}
    ... zero padding; each tensor's bytes start at `offset`, a multiple of 64

Data is little-endian, C order, one byte per element for sub-byte types (as
ml_dtypes holds them); `str` tensors are a UTF-8 JSON list. Writing is atomic
(a temporary file renamed over the target), so a failed save leaves whatever
was there before.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ember.errors import WeightsFileError
from ember.ir.types import DTYPES, dtype_of, string

MAGIC = b"EMBERWTS"
VERSION = 1
ALIGN = 64
_PREFIX = struct.Struct("<8sIIQ")


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _tensor_bytes(array: np.ndarray) -> bytes:
    if dtype_of(array) is string:
        return json.dumps([str(x) for x in array.ravel().tolist()], ensure_ascii=False).encode("utf-8")
    arr = np.ascontiguousarray(array)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr.tobytes()


def write_weights(path: str | os.PathLike, tensors: Mapping[str, np.ndarray]) -> None:
    """Write `tensors` to `path` atomically."""
    path = Path(path)
    entries = []
    blobs = []
    offset = 0
    for name, array in tensors.items():
        data = _tensor_bytes(np.asarray(array))
        entries.append({"name": name, "dtype": dtype_of(array).name, "shape": [int(d) for d in array.shape],
                        "offset": offset, "nbytes": len(data), "crc32": zlib.crc32(data)})
        blobs.append(data)
        offset = _align(offset + len(data))
    # Offsets above are relative to the data start, which depends on the header's
    # length, which depends on the offsets: iterate to the fixed point (it only grows).
    data_start = _align(_PREFIX.size)
    while True:
        fixed = [dict(e, offset=e["offset"] + data_start) for e in entries]
        header = json.dumps({"tensors": fixed}, ensure_ascii=False, sort_keys=True).encode("utf-8")
        needed = _align(_PREFIX.size + len(header))
        if needed <= data_start:
            break
        data_start = needed
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_PREFIX.pack(MAGIC, VERSION, 0, len(header)))
            f.write(header)
            pos = _PREFIX.size + len(header)
            for e, blob in zip(fixed, blobs):
                f.write(b"\0" * (e["offset"] - pos))
                f.write(blob)
                pos = e["offset"] + len(blob)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_weights(path: str | os.PathLike, *, names: Iterable[str] | None = None,
                 check: bool = True) -> dict[str, np.ndarray]:
    """Map the tensors of a weights file (read-only arrays backed by the file).
    Raises WeightsFileError naming the file and the problem: not this format,
    a newer version, truncated, or a checksum that does not match."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size:
                raise WeightsFileError(f"{path}: truncated ({size} bytes): not an Ember weights file")
            magic, version, _, header_len = _PREFIX.unpack(prefix)
            if magic != MAGIC:
                raise WeightsFileError(f"{path}: not an Ember weights file (magic {magic!r})")
            if version > VERSION:
                raise WeightsFileError(f"{path}: format version {version} is newer than this Ember reads ({VERSION})")
            if _PREFIX.size + header_len > size:
                raise WeightsFileError(f"{path}: truncated: header runs past the end of the file")
            try:
                header = json.loads(f.read(header_len).decode("utf-8"))
                entries = header["tensors"]
            except (ValueError, KeyError, TypeError) as err:
                raise WeightsFileError(f"{path}: corrupted header: {err}") from None
    except OSError as err:
        raise WeightsFileError(f"cannot read weights file {path}: {err.strerror or err}") from None
    wanted = set(names) if names is not None else None
    out: dict[str, np.ndarray] = {}
    mm = None
    if size:
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    for e in entries:
        try:
            name, dt_name, shape = e["name"], e["dtype"], tuple(int(d) for d in e["shape"])
            offset, nbytes = int(e["offset"]), int(e["nbytes"])
        except (KeyError, TypeError, ValueError) as err:
            raise WeightsFileError(f"{path}: corrupted tensor entry {e!r}: {err}") from None
        if wanted is not None and name not in wanted:
            continue
        if dt_name not in DTYPES:
            raise WeightsFileError(f"{path}: tensor {name!r} has unknown element type {dt_name!r}")
        if offset + nbytes > size:
            raise WeightsFileError(f"{path}: truncated: tensor {name!r} needs bytes up to {offset + nbytes}, "
                                   f"the file has {size}")
        dt = DTYPES[dt_name]
        raw = memoryview(mm)[offset:offset + nbytes] if mm is not None else memoryview(b"")
        if check and "crc32" in e and zlib.crc32(raw) != e["crc32"]:
            raise WeightsFileError(f"{path}: tensor {name!r} is corrupted (checksum mismatch)")
        if dt is string:
            arr = np.empty(len(json.loads(bytes(raw).decode("utf-8"))), dtype=object)
            arr[:] = json.loads(bytes(raw).decode("utf-8"))
            out[name] = arr.reshape(shape)
            continue
        count = int(np.prod(shape, dtype=np.int64))
        if count * dt.itemsize != nbytes:
            raise WeightsFileError(f"{path}: tensor {name!r}: {nbytes} bytes do not hold {dt_name}{list(shape)}")
        arr = np.frombuffer(raw, dtype=dt.np_dtype, count=count).reshape(shape)
        out[name] = arr
    return out
