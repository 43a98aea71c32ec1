"""TensorFlow's checkpoint (tensor bundle): `variables/variables.index` and its data shards.

The index is a LevelDB-format table: data blocks of prefix-compressed
key/value entries, an index block pointing at them, and a 48-byte footer
ending in a magic number. The entry under the empty key is a
BundleHeaderProto (shard count, endianness); every other key (a checkpoint key
such as `variables/3/.ATTRIBUTES/VARIABLE_VALUE`) maps to a BundleEntryProto:
dtype, shape, which shard, and the byte range there, with a masked CRC-32C.
Shards are `variables.data-00000-of-00001` and so on; numeric tensors lie in
them as raw little-endian bytes, which are memory-mapped, not copied.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ember.errors import EmberError
from ember.frontends.savedmodel import crc32c
from ember.ir.regular_files import check_regular, read_regular
from ember.frontends.savedmodel.protos import BundleEntryProto, BundleHeaderProto
from ember.frontends.savedmodel.tensors import numpy_dtype, shape_of
from ember.ir.sizes import SizeError, numel

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER = 48
MAX_SHARDS = 1 << 16  # TensorFlow writes one per saving device


class CheckpointError(EmberError, ValueError):
    """A missing, truncated or corrupted checkpoint (variables.index or a data shard)."""


def _varint(buf: bytes | memoryview, pos: int, where: str) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise CheckpointError(f"{where}: a varint runs past the end")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


@dataclass(frozen=True)
class Entry:
    key: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc: int
    sliced: bool


class Checkpoint:
    """The variables of a SavedModel: `prefix` is `.../variables/variables`."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        index = Path(f"{prefix}.index")
        if not index.exists() and not index.is_symlink():
            raise CheckpointError(f"{index}: the checkpoint index is missing (the SavedModel's variables folder "
                                  "must hold variables.index and its data shards)")
        self.index_path = index
        data = read_regular(index, "the checkpoint index", CheckpointError)
        self.entries: dict[str, Entry] = {}
        self.num_shards = 1
        for key, value in self._table(data):
            name = key.decode("utf-8", errors="replace")
            try:
                proto = (BundleHeaderProto if key == b"" else BundleEntryProto).FromString(value)
            except Exception as err:  # protobuf's DecodeError
                raise CheckpointError(f"{index}: the entry {name!r} is not a readable "
                                      f"{'header' if key == b'' else 'tensor entry'} ({err})") from None
            if key == b"":
                if not 0 <= proto.num_shards <= MAX_SHARDS:
                    raise CheckpointError(f"{index}: {proto.num_shards} shards (at most {MAX_SHARDS} are read)")
                self.num_shards = max(1, proto.num_shards)
                if proto.endianness != 0:
                    raise CheckpointError(f"{index}: big-endian checkpoints are not supported")
                continue
            e = proto
            try:
                shape = shape_of(e.shape)
                numel(shape, f"variable {name!r}")
            except SizeError as err:
                raise CheckpointError(f"{index}: {err}") from None
            if e.offset < 0 or e.size < 0:
                raise CheckpointError(f"{index}: variable {name!r} lies at a negative offset or size "
                                      f"({e.offset}, {e.size})")
            self.entries[name] = Entry(name, e.dtype, shape, e.shard_id, e.offset, e.size, e.crc32c,
                                       len(e.slices) > 0)
        self._shards: dict[int, Any] = {}

    # -- the table -------------------------------------------------------------------------------
    def _table(self, data: bytes) -> list[tuple[bytes, bytes]]:
        where = str(self.index_path)
        if len(data) < FOOTER or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
            raise CheckpointError(f"{where}: not a checkpoint index (truncated, or no table magic at the end)")
        footer = memoryview(data)[len(data) - FOOTER:]
        _meta_off, pos = _varint(footer, 0, where)
        _meta_size, pos = _varint(footer, pos, where)
        index_off, pos = _varint(footer, pos, where)
        index_size, pos = _varint(footer, pos, where)
        out = []
        for _key, handle in self._block(data, index_off, index_size):
            off, p = _varint(handle, 0, where)
            size, _ = _varint(handle, p, where)
            out.extend(self._block(data, off, size))
        return out

    def _block(self, data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
        where = f"{self.index_path} (block at byte {offset})"
        if offset + size + 5 > len(data):
            raise CheckpointError(f"{where}: the block runs past the end of the file (truncated)")
        block = data[offset:offset + size]
        kind = data[offset + size]
        stored = struct.unpack_from("<I", data, offset + size + 1)[0]
        if crc32c.mask(crc32c.crc32c(data[offset:offset + size + 1])) != stored:
            raise CheckpointError(f"{where}: checksum mismatch (the index is corrupted)")
        if kind != 0:
            raise CheckpointError(f"{where}: compressed table blocks (type {kind}) are not supported; "
                                  "TensorFlow writes checkpoints uncompressed")
        if size < 4:
            raise CheckpointError(f"{where}: block too short")
        restarts = struct.unpack_from("<I", block, size - 4)[0]
        end = size - 4 * (restarts + 1)
        if end < 0:
            raise CheckpointError(f"{where}: bad restart count")
        entries, pos, key = [], 0, b""
        while pos < end:
            shared, pos = _varint(block, pos, where)
            unshared, pos = _varint(block, pos, where)
            vlen, pos = _varint(block, pos, where)
            if shared > len(key) or pos + unshared + vlen > end:
                raise CheckpointError(f"{where}: malformed entry")
            key = key[:shared] + block[pos:pos + unshared]
            pos += unshared
            entries.append((key, block[pos:pos + vlen]))
            pos += vlen
        return entries

    # -- tensors ---------------------------------------------------------------------------------
    def shard_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")

    def _shard(self, shard: int, for_key: str) -> Any:
        if shard not in self._shards:
            path = self.shard_path(shard)
            if not 0 <= shard < self.num_shards:
                raise CheckpointError(f"{self.index_path}: variable {for_key!r} is in shard {shard}; the "
                                      f"checkpoint has {self.num_shards}")
            if not path.exists() and not path.is_symlink():
                users = sorted(k for k, e in self.entries.items() if e.shard == shard)
                raise CheckpointError(f"{path}: variables shard {shard} of {self.num_shards} is missing "
                                      f"(it holds {len(users)} variable(s), {users[0]!r} first)")
            size = check_regular(path, f"variables shard {shard}", CheckpointError)
            with open(path, "rb") as f:
                self._shards[shard] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        return self._shards[shard]

    def read(self, key: str) -> np.ndarray:
        """The tensor under `key`, checked against its stored CRC (numeric tensors: memory-mapped)."""
        if key not in self.entries:
            raise CheckpointError(f"{self.index_path}: no variable {key!r} in the checkpoint")
        e = self.entries[key]
        if e.sliced:
            raise CheckpointError(f"{self.index_path}: variable {key!r} is saved in slices (a partitioned "
                                  "variable); Ember reads whole tensors only")
        buf = self._shard(e.shard, key)
        where = f"{self.shard_path(e.shard)}: variable {key!r}"
        if e.offset + e.size > len(buf):
            raise CheckpointError(f"{where} lies at bytes {e.offset}..{e.offset + e.size}, past the end of the "
                                  f"shard ({len(buf)} bytes): the shard is truncated")
        raw = memoryview(buf)[e.offset:e.offset + e.size]
        dtype = numpy_dtype(e.dtype, where)
        count = numel(e.shape, where)
        if dtype == np.dtype(object):
            return _strings(raw, count, e, where)
        if crc32c.mask(crc32c.crc32c(raw)) != e.crc:
            raise CheckpointError(f"{where}: checksum mismatch (the shard is corrupted)")
        if count * dtype.itemsize != e.size:
            raise CheckpointError(f"{where}: {e.size} bytes for {count} elements of {dtype}")
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<"), count=count).reshape(e.shape)

    def close(self) -> None:
        for m in self._shards.values():
            if isinstance(m, mmap.mmap):
                try:
                    m.close()
                except BufferError:  # arrays still map it; the OS frees it with them
                    pass
        self._shards.clear()


def _strings(raw: memoryview, count: int, e: Entry, where: str) -> np.ndarray:
    """A string tensor's bundle form: every length as a varint, the masked CRC of the lengths,
    then the bytes. The entry's CRC covers the lengths as uint32s, that checksum, and the bytes."""
    lengths, pos = [], 0
    for _ in range(count):
        n, pos = _varint(raw, pos, where)
        lengths.append(n)
    length_crc = bytes(raw[pos:pos + 4])
    pos += 4
    data = bytes(raw[pos:])
    if sum(lengths) != len(data):
        raise CheckpointError(f"{where}: string lengths do not match the entry's size (corrupted)")
    covered = struct.pack(f"<{count}I", *lengths) + length_crc + data
    if crc32c.mask(crc32c.crc32c(covered)) != e.crc:
        raise CheckpointError(f"{where}: checksum mismatch (the shard is corrupted)")
    out, pos = [], 0
    for n in lengths:
        out.append(data[pos:pos + n])
        pos += n
    return np.array(out, dtype=object).reshape(e.shape)
