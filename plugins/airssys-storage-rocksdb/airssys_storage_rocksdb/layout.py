"""The physical layout: how (namespace, key) rows and host metadata become RocksDB records.

Component data and host metadata live in column families of their own, so no
component key can ever reach a metadata record, whatever bytes it holds::

    CF "default"   len(ns) | ns | key           -> row: header | value
    CF "counters"  ns                           -> counter: <u64 bytes><u64 keys><u64 floor><u64 expiring>
    CF "ops"       len(ns) | ns | op_id         -> recorded op: <u64 time ms><i72 result>
    CF "op_times"  len(ns) | ns | time | op_id  -> b"" (time: u64 big-endian ms; the retention index)
    CF "meta"      "schema"                     -> schema version, ASCII digits

The length byte makes the namespace part prefix-free: the prefix of namespace
``a`` (``01 'a'``) is never a prefix of namespace ``ab``'s keys (``02 'a' 'b'
…``), so no key written through one namespace can land in or be listed by
another. Within a namespace the keys follow the prefix unchanged, so RocksDB's
bytewise order is the keys' bytewise order and a key range is one contiguous
iterator range. The layout of the rows and the counters is the LevelDB
plugin's (:mod:`airssys_storage_leveldb.layout`, borrowed unchanged: the
row header and :func:`encode_row` / :func:`decode_header`); the counter's
``expiring`` (rows that have an expiry) is this backend's expiry index: a
listing reads no value while it is zero, and a sweep finds nothing at once.
"""

from __future__ import annotations

import struct

from airssys_storage import InvalidArgument

__all__ = [
    "COLUMN_FAMILIES",
    "COUNTER",
    "COUNTERS_CF",
    "EXPIRES",
    "META_CF",
    "OPS_CF",
    "OP_RESULT",
    "OP_TIME",
    "OP_TIMES_CF",
    "SCHEMA_KEY",
    "SCHEMA_VERSION",
    "decode_header",
    "encode_namespace",
    "encode_row",
    "op_time_key",
]

COUNTERS_CF = "counters"
OPS_CF = "ops"
OP_TIMES_CF = "op_times"
META_CF = "meta"
#: Every column family besides "default" (which holds the rows), in a fixed order.
COLUMN_FAMILIES = (COUNTERS_CF, OPS_CF, OP_TIMES_CF, META_CF)
SCHEMA_KEY = b"schema"
#: The layout written by this version; a newer one is refused.
SCHEMA_VERSION = 1
#: Counter value: bytes used, number of rows, version floor, rows with an expiry (little-endian u64 each).
COUNTER = struct.Struct("<QQQQ")
#: A recorded operation's time (ms, little-endian u64), followed by :data:`OP_RESULT` bytes of its result.
OP_TIME = struct.Struct("<Q")
#: Bytes of a recorded result: signed little-endian, wide enough for a u64 version and an i64 counter.
OP_RESULT = 9
#: Header flag: an 8-byte expiry follows the version.
EXPIRES = 0x10

_MAX_NAMESPACE_BYTES = 255
_TIME = struct.Struct(">Q")


def encode_namespace(namespace: str) -> bytes:
    """``len(ns) | ns``: the prefix of every data key, op record and retention entry of *namespace*."""
    if not isinstance(namespace, str):
        raise InvalidArgument(f"namespace must be a str, not {type(namespace).__name__}")
    try:
        raw = namespace.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidArgument(f"namespace {namespace!r} is not ASCII") from None
    if not 0 < len(raw) <= _MAX_NAMESPACE_BYTES:
        raise InvalidArgument(f"namespace {namespace[:32]!r} must be 1 to {_MAX_NAMESPACE_BYTES} ASCII characters")
    return bytes([len(raw)]) + raw


def op_time_key(time_prefix: bytes, time_ms: int, op_id: str) -> bytes:
    """The retention-index entry of *op_id* recorded at *time_ms* (under the namespace's prefix)."""
    return time_prefix + _TIME.pack(time_ms) + op_id.encode()


def encode_row(version: int, expires_at: int | None, value: bytes) -> bytes:
    """A row record: ``h | version | [expires_at] | value`` (the LevelDB plugin's row header)."""
    width = (version.bit_length() + 7) >> 3
    if expires_at is None:
        return ((version << 8) | width).to_bytes(width + 1, "little") + value
    header = ((((expires_at << (width * 8)) | version) << 8) | width | EXPIRES).to_bytes(width + 9, "little")
    return header + value


def decode_header(raw: bytes) -> tuple[int, int, int | None]:
    """``(value offset, version, expires_at)`` of a row record; ``ValueError`` if its header is malformed."""
    if not raw:
        raise ValueError("an empty record")
    head = raw[0]
    width = head & 0x0F
    if not 1 <= width <= 8 or head & ~(EXPIRES | 0x0F):
        raise ValueError(f"header byte {head:#04x}")
    end = width + 1
    if head & EXPIRES:
        if len(raw) < end + 8:
            raise ValueError("a truncated expiry")
        return end + 8, int.from_bytes(raw[1:end], "little"), int.from_bytes(raw[end : end + 8], "little")
    if len(raw) < end:
        raise ValueError("a truncated version")
    return end, int.from_bytes(raw[1:end], "little"), None
