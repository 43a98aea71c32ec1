"""The weights file: every tensor of a module's weight store, mmap-able.

Layout (docs/weights-format.md has the full description):

    0   8 bytes  magic b"EMBERWTS"
    8   u32 LE   format version (1)
    12  u32 LE   reserved (0)
    16  u64 LE   header length H
    24  H bytes  JSON header, UTF-8:
                 {"sha256": content digest,
                  "tensors": [{"name", "dtype", "shape", "offset", "nbytes", "crc32"}, ...]}
    ... zero padding; each tensor's bytes start at `offset`, a multiple of 64

Data is little-endian, C order, one byte per element for sub-byte types (as
ml_dtypes holds them); `str` tensors are a UTF-8 JSON list.

The content digest names what the file holds (every tensor's name, type, shape
and bytes, in order) so that the module text saved with it can record which
weights it goes with (`ir/files.py`); it is computed once, when writing, and
read back with the header alone, so telling whether a text and a weights file
belong together costs no pass over the data. The per-tensor CRC-32s are what
checks the bytes. Writing goes through `ir/atomic_file.py`: a failed or killed
write leaves whatever was there before.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping

import numpy as np

from ember.errors import WeightsFileError
from ember.ir.atomic_file import atomic_write
from ember.ir.regular_files import open_regular
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


@dataclass(frozen=True)
class WeightsDigest:
    """What identifies a weights file: its size and the SHA-256 of its content (see the module
    docstring). A module's text records it (ir/files.py)."""
    size: int
    sha256: str


@dataclass(frozen=True)
class WeightsHeader:
    """A weights file's header, read without touching the data."""
    path: Path
    size: int
    sha256: str | None  # None in files written before the digest existed
    entries: tuple[Any, ...]

    @property
    def digest(self) -> WeightsDigest | None:
        return WeightsDigest(self.size, self.sha256) if self.sha256 is not None else None


def write_weights(path: str | os.PathLike, tensors: Mapping[str, np.ndarray]) -> WeightsDigest:
    """Write `tensors` to `path` atomically (replacing an existing file); returns its digest."""
    with atomic_write(path) as f:
        return write_weights_to(f, tensors)


def write_weights_to(f: BinaryIO, tensors: Mapping[str, np.ndarray]) -> WeightsDigest:
    """Write the weights file's bytes to the open binary file `f` (at its start); returns the digest."""
    entries = []
    blobs = []
    offset = 0
    for name, array in tensors.items():
        data = _tensor_bytes(np.asarray(array))
        entries.append({"name": name, "dtype": dtype_of(array).name, "shape": [int(d) for d in array.shape],
                        "offset": offset, "nbytes": len(data), "crc32": zlib.crc32(data)})
        blobs.append(data)
        offset = _align(offset + len(data))
    sha256 = _content_digest(entries, blobs)
    # Offsets above are relative to the data start, which depends on the header's
    # length, which depends on the offsets: iterate to the fixed point (it only grows).
    data_start = _align(_PREFIX.size)
    while True:
        fixed = [dict(e, offset=e["offset"] + data_start) for e in entries]
        header = json.dumps({"sha256": sha256, "tensors": fixed}, ensure_ascii=False, sort_keys=True).encode("utf-8")
        needed = _align(_PREFIX.size + len(header))
        if needed <= data_start:
            break
        data_start = needed
    f.write(_PREFIX.pack(MAGIC, VERSION, 0, len(header)))
    f.write(header)
    pos = _PREFIX.size + len(header)
    for e, blob in zip(fixed, blobs):
        f.write(b"\0" * (e["offset"] - pos))
        f.write(blob)
        pos = e["offset"] + len(blob)
    return WeightsDigest(pos, sha256)


def _content_digest(entries: list[dict[str, Any]], blobs: list[bytes]) -> str:
    """SHA-256 of the tensor table (name, dtype, shape, nbytes, in file order), a newline, and
    every tensor's bytes in that order: equal content, equal digest, whatever the offsets."""
    table = [{k: e[k] for k in ("name", "dtype", "shape", "nbytes")} for e in entries]
    h = hashlib.sha256(json.dumps(table, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    h.update(b"\n")
    for blob in blobs:
        h.update(blob)
    return h.hexdigest()


class WeightsMismatchError(WeightsFileError):
    """A weights file whose content is not the one expected (by the module text saved with it)."""

    def __init__(self, message: str, header: WeightsHeader) -> None:
        self.header = header
        super().__init__(message)


def _check_digest(head: WeightsHeader, digest: WeightsDigest) -> None:
    if head.sha256 != digest.sha256:
        holds = f"sha256 {head.sha256[:16]}..." if head.sha256 else "no content digest"
        raise WeightsMismatchError(f"{head.path}: other weights than expected ({head.size} bytes, {holds}; "
                                   f"expected {digest.size} bytes, sha256 {digest.sha256[:16]}...)", head)
    if head.size < digest.size:
        raise WeightsFileError(f"{head.path}: truncated: {head.size} of {digest.size} bytes")
    if head.size > digest.size:
        raise WeightsFileError(f"{head.path}: corrupted: {head.size - digest.size} unexpected bytes after the "
                               f"{digest.size} it was written with")


def read_header(path: str | os.PathLike) -> WeightsHeader:
    """Read and check a weights file's prefix and header (not the data).
    Raises WeightsFileError naming the file and the problem: not this format,
    a newer version, truncated, a corrupted header."""
    path = Path(path)
    try:
        with open_regular(path, "the weights file", WeightsFileError) as f:
            return _read_header(f, path)
    except OSError as err:
        raise WeightsFileError(f"cannot read weights file {path}: {err.strerror or err}") from None


def _read_header(f: BinaryIO, path: Path) -> WeightsHeader:
    size = os.fstat(f.fileno()).st_size
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
        sha256 = header.get("sha256")
        if not isinstance(entries, list) or not (sha256 is None or isinstance(sha256, str)):
            raise TypeError("'tensors' is not a list or 'sha256' is not a string")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise WeightsFileError(f"{path}: corrupted header: {err}") from None
    return WeightsHeader(path, size, sha256, tuple(entries))


def read_weights(path: str | os.PathLike, *, names: Iterable[str] | None = None, check: bool = True,
                 digest: WeightsDigest | None = None) -> dict[str, np.ndarray]:
    """Map the tensors of a weights file (read-only arrays backed by the file).
    Raises WeightsFileError naming the file and the problem: not this format,
    a newer version, truncated, or a checksum that does not match. With `digest`,
    a file with other content raises WeightsMismatchError."""
    return map_weights(path, digest=digest).arrays(names=names, check=check)


def map_weights(path: str | os.PathLike, *, digest: WeightsDigest | None = None) -> "MappedWeights":
    """Open a weights file, check its header (and `digest`, see read_weights) and map it; the
    tensors come later (`arrays`). The map holds the file as it was opened, even if it is
    replaced or removed afterwards, so a caller can pick the file under a lock and read the
    tensors after releasing it."""
    path = Path(path)
    try:
        with open_regular(path, "the weights file", WeightsFileError) as f:  # header and data from one file
            head = _read_header(f, path)
            if digest is not None:
                _check_digest(head, digest)
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if head.size else None
    except OSError as err:
        raise WeightsFileError(f"cannot read weights file {path}: {err.strerror or err}") from None
    return MappedWeights(head, mm)


@dataclass(frozen=True)
class MappedWeights:
    """A weights file whose header was checked, mapped read-only."""
    header: WeightsHeader
    mm: mmap.mmap | None  # None for an empty file

    def arrays(self, *, names: Iterable[str] | None = None, check: bool = True) -> dict[str, np.ndarray]:
        """The tensors (all, or those in `names`), each checked against its CRC-32 unless `check` is off."""
        return _arrays(self.header, self.mm, names, check)


def _arrays(head: WeightsHeader, mm: mmap.mmap | None, names: Iterable[str] | None,
            check: bool) -> dict[str, np.ndarray]:
    path = head.path
    wanted = set(names) if names is not None else None
    out: dict[str, np.ndarray] = {}
    for e in head.entries:
        try:
            name, dt_name, shape = e["name"], e["dtype"], tuple(int(d) for d in e["shape"])
            offset, nbytes = int(e["offset"]), int(e["nbytes"])
            if offset < 0 or nbytes < 0 or any(d < 0 for d in shape):
                raise ValueError("negative offset, size or dimension")
        except (KeyError, TypeError, ValueError) as err:
            raise WeightsFileError(f"{path}: corrupted tensor entry {e!r}: {err}") from None
        if wanted is not None and name not in wanted:
            continue
        if dt_name not in DTYPES:
            raise WeightsFileError(f"{path}: tensor {name!r} has unknown element type {dt_name!r}")
        if offset + nbytes > head.size:
            raise WeightsFileError(f"{path}: truncated: tensor {name!r} needs bytes up to {offset + nbytes}, "
                                   f"the file has {head.size}")
        dt = DTYPES[dt_name]
        raw = memoryview(mm)[offset:offset + nbytes] if mm is not None else memoryview(b"")
        if check and "crc32" in e and zlib.crc32(raw) != e["crc32"]:
            raise WeightsFileError(f"{path}: tensor {name!r} is corrupted (checksum mismatch)")
        if dt is string:
            try:
                items = json.loads(bytes(raw).decode("utf-8"))
                arr = np.empty(len(items), dtype=object)
                arr[:] = items
                out[name] = arr.reshape(shape)
            except (ValueError, TypeError) as err:
                raise WeightsFileError(f"{path}: tensor {name!r}: not a list of strings of shape "
                                       f"{list(shape)} ({err})") from None
            continue
        count = 1
        for d in shape:
            count *= d
        if count * dt.itemsize != nbytes:
            raise WeightsFileError(f"{path}: tensor {name!r}: {nbytes} bytes do not hold {dt_name}{list(shape)}")
        arr = np.frombuffer(raw, dtype=dt.np_dtype, count=count).reshape(shape)
        out[name] = arr
    return out
