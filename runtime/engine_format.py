"""The engine file's container: a checked prefix, a JSON header, and checksummed sections.

Layout (docs/engine-format.md has the full description):

    0   8 bytes  magic b"EMBERENG"
    8   u32 LE   format version
    12  u32 LE   reserved (0)
    16  u64 LE   header length H
    24  u32 LE   CRC-32 of bytes 0..24
    28  u32 LE   reserved (0)
    32  H bytes  header: UTF-8 JSON, sorted keys, no whitespace
    32+H 32 B    SHA-256 of bytes 0..32+H
    ...          sections, each at its header-given offset (a multiple of its alignment),
                 zero padding between them and after the last one up to the file's size

The header names every section with its offset, size and SHA-256, and records the
file's size, so a truncated file is told apart from a corrupted one, and each section
is checked before it is used. Every byte is covered: the prefix by its CRC, the header
by its hash, each section by its own, and the padding must be zero.

Nothing here knows what the sections mean; `engine.py` does.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ember.errors import EmberError
from ember.ir.atomic_file import atomic_write
from ember.ir.regular_files import open_regular

MAGIC = b"EMBERENG"
FORMAT_VERSION = 2
_PREFIX = struct.Struct("<8sIIQII")  # magic, version, reserved, header length, crc32 of the first 24 bytes, reserved
PREFIX_SIZE = _PREFIX.size  # 32
DIGEST_SIZE = 32
PAGE = 4096


class EngineFormatError(EmberError, ValueError):
    """A file that is not an engine this Ember can run: truncated, corrupted, too new, or for another GPU."""


@dataclass(frozen=True)
class Section:
    name: str
    data: bytes | memoryview
    alignment: int = 64


def canonical_json(obj: Any) -> bytes:
    """JSON with sorted keys and no whitespace: equal objects give equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain).encode("utf-8")


def _plain(obj: Any) -> Any:
    """numpy scalars (an int64 shape, a float32 scalar argument) as Python numbers."""
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _aligned(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def layout(header_fields: Mapping[str, Any], sections: Sequence[Section]) -> tuple[bytes, list[tuple[int, Section]]]:
    """The prefix+header+digest bytes and each section's offset.

    Offsets depend on the header's length, which holds the offsets: iterate until the
    header stops growing (twice at most in practice)."""
    names = [s.name for s in sections]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate section names: {names}")
    digests = [hashlib.sha256(s.data).hexdigest() for s in sections]
    header_len = 0
    for _ in range(8):
        offset = PREFIX_SIZE + header_len + DIGEST_SIZE
        placed = []
        entries = []
        for s, digest in zip(sections, digests):
            offset = _aligned(offset, s.alignment)
            placed.append((offset, s))
            entries.append({"name": s.name, "offset": offset, "size": len(s.data), "align": s.alignment,
                            "sha256": digest})
            offset += len(s.data)
        file_size = _aligned(offset, 64)
        header = dict(header_fields)
        header.update({"format": "ember-engine", "format_version": FORMAT_VERSION, "file_size": file_size,
                       "sections": entries})
        text = canonical_json(header)
        if len(text) == header_len:
            break
        header_len = len(text)
    else:  # pragma: no cover - the length converges after one or two rounds
        raise RuntimeError("engine header length did not settle")
    start = _PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(text), 0, 0)
    crc = zlib.crc32(start[:24])
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(text), crc, 0)
    digest = hashlib.sha256(prefix + text).digest()
    return prefix + text + digest, placed


def write(path: str | os.PathLike, header_fields: Mapping[str, Any], sections: Sequence[Section]) -> int:
    """Write the file atomically, replacing an existing one (`ember.ir.atomic_file`: a temporary
    in the same folder, fsynced and renamed over `path`; the mode follows the umask; a failed or
    killed write leaves the old file). Returns the file's size."""
    head, placed = layout(header_fields, sections)
    with atomic_write(path) as f:
        f.write(head)
        pos = len(head)
        for offset, s in placed:
            f.write(b"\0" * (offset - pos))
            f.write(s.data)
            pos = offset + len(s.data)
        end = _aligned(pos, 64)
        f.write(b"\0" * (end - pos))
    return end


def to_bytes(header_fields: Mapping[str, Any], sections: Sequence[Section]) -> bytes:
    head, placed = layout(header_fields, sections)
    out = bytearray(head)
    for offset, s in placed:
        out.extend(b"\0" * (offset - len(out)))
        out.extend(s.data)
    out.extend(b"\0" * (_aligned(len(out), 64) - len(out)))
    return bytes(out)


class Container:
    """A checked engine file: its header and each section's bytes (views of a read-only map)."""

    def __init__(self, header: dict[str, Any], sections: dict[str, memoryview], source: str,
                 buffer: Any = None) -> None:
        self.header, self.sections, self.source, self.buffer = header, sections, source, buffer

    def __getitem__(self, name: str) -> memoryview:
        if name not in self.sections:
            raise EngineFormatError(f"{self.source}: the engine has no {name!r} section "
                                    f"(sections: {', '.join(self.sections)})")
        return self.sections[name]

    def json(self, name: str) -> Any:
        try:
            return json.loads(bytes(self[name]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise EngineFormatError(f"{self.source}: section {name!r} is not valid JSON ({_first_line(err)})") \
                from None


def read(path: str | os.PathLike) -> Container:
    """Map the file and check it: prefix, version, header, size, every section, padding."""
    source = str(path)
    with open_regular(path, "the engine file", EngineFormatError) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise EngineFormatError(f"{source}: the file is empty, not an Ember engine")
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return parse(memoryview(buf), source, buf)


def parse(data: memoryview | bytes, source: str = "<bytes>", owner: Any = None) -> Container:
    """Check an engine held in memory (see `read`)."""
    view = memoryview(data)
    size = len(view)
    if size < 8 or bytes(view[:8]) != MAGIC:
        if bytes(view[:min(size, 8)]) == MAGIC[:min(size, 8)] and size < 8:
            raise EngineFormatError(f"{source}: truncated: the file ends at byte {size}, inside the magic number")
        raise EngineFormatError(f"{source}: not an Ember engine file (it does not start with {MAGIC!r})")
    if size < PREFIX_SIZE:
        raise EngineFormatError(f"{source}: truncated: the file ends at byte {size}, inside the "
                                f"{PREFIX_SIZE}-byte prefix")
    magic, version, _, header_len, crc, _ = _PREFIX.unpack_from(view, 0)
    if zlib.crc32(bytes(view[:24])) != crc:
        raise EngineFormatError(f"{source}: corrupted: the file prefix (format version, header length) "
                                "fails its CRC-32")
    if version > FORMAT_VERSION:
        raise EngineFormatError(f"{source}: engine format version {version} is newer than this Ember reads "
                                f"(version {FORMAT_VERSION}); upgrade Ember or rebuild the engine")
    if version < 1:
        raise EngineFormatError(f"{source}: engine format version {version} is not a version Ember ever wrote")
    head_end = PREFIX_SIZE + header_len + DIGEST_SIZE
    if size < head_end:
        raise EngineFormatError(f"{source}: truncated: the file ends at byte {size}, inside the header "
                                f"(bytes {PREFIX_SIZE}..{head_end})")
    digest = bytes(view[PREFIX_SIZE + header_len:head_end])
    if hashlib.sha256(view[:PREFIX_SIZE + header_len]).digest() != digest:
        raise EngineFormatError(f"{source}: corrupted: the header fails its SHA-256 checksum")
    try:
        header = json.loads(bytes(view[PREFIX_SIZE:PREFIX_SIZE + header_len]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise EngineFormatError(f"{source}: the header is not a valid engine header ({_first_line(err)})") from None
    entries, file_size = _header_layout(header, source)
    if size < file_size:
        cut = [e["name"] for e in entries if e["offset"] + e["size"] > size]
        where = f"; section{'s' if len(cut) > 1 else ''} {', '.join(repr(c) for c in cut)} cut off" if cut else ""
        raise EngineFormatError(f"{source}: truncated: {size} of {file_size} bytes{where}")
    if size > file_size:
        raise EngineFormatError(f"{source}: corrupted: {size - file_size} unexpected bytes after the end of the "
                                f"engine ({file_size} bytes)")
    sections: dict[str, memoryview] = {}
    pos = head_end
    for e in entries:
        name, offset, length = e["name"], e["offset"], e["size"]
        if offset < pos or offset + length > file_size:
            raise EngineFormatError(f"{source}: corrupted: section {name!r} at bytes {offset}..{offset + length} "
                                    "overlaps another part of the file")
        _check_zero(view, pos, offset, source, f"the padding before section {name!r}")
        chunk = view[offset:offset + length]
        if hashlib.sha256(chunk).hexdigest() != e["sha256"]:
            raise EngineFormatError(f"{source}: corrupted: section {name!r} fails its SHA-256 checksum")
        sections[name] = chunk
        pos = offset + length
    _check_zero(view, pos, file_size, source, "the padding at the end of the file")
    return Container(header, sections, source, owner)


def _header_layout(header: Any, source: str) -> tuple[list[dict[str, Any]], int]:
    """The header's section entries and file size, each field of the type the reader relies on."""
    def bad(what: str) -> EngineFormatError:
        return EngineFormatError(f"{source}: the header is not a valid engine header ({what})")

    if not isinstance(header, dict):
        raise bad(f"a JSON {type(header).__name__}, not an object")
    file_size, entries = header.get("file_size"), header.get("sections")
    if isinstance(file_size, bool) or not isinstance(file_size, int) or file_size < 0:
        raise bad(f"file_size {file_size!r} is not a size")
    if not isinstance(entries, list):
        raise bad(f"sections {type(entries).__name__} is not a list")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not isinstance(e.get("sha256"), str):
            raise bad(f"section entry {i} lacks a name or a sha256")
        for key in ("offset", "size"):
            if isinstance(e.get(key), bool) or not isinstance(e.get(key), int) or e[key] < 0:
                raise bad(f"section {e['name']!r}: {key} {e.get(key)!r} is not a size")
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise bad("a section is listed twice")
    return entries, file_size


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _check_zero(view: memoryview, start: int, end: int, source: str, what: str) -> None:
    if end > start and any(bytes(view[start:end])):
        raise EngineFormatError(f"{source}: corrupted: {what} (bytes {start}..{end}) is not zero")


__all__ = ["EngineFormatError", "Section", "FORMAT_VERSION", "MAGIC", "write", "read", "parse", "to_bytes",
           "canonical_json", "Container", "PAGE"]
