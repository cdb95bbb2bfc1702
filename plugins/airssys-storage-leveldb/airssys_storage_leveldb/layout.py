"""The physical layout: how (namespace, key) rows and host metadata become LevelDB records.

Every LevelDB key starts with a tag byte that names its key space::

    DATA  0x01 | len(ns) | ns | key                 -> row: header | value
    META  0x00 | "schema"                           -> schema version, ASCII digits
    META  0x00 | "migrating"                        -> last data key migrated (only while migrating)
    META  0x00 | "u" | len(ns) | ns                 -> counter: <u64 bytes><u64 keys><u64 floor><u64 expiring>
    META  0x00 | "o" | len(ns) | ns | op_id         -> recorded op: <u64 time ms><i72 result>
    META  0x00 | "t" | len(ns) | ns | time | op_id  -> b"" (time: u64 big-endian ms; the retention index)
    META  0x00 | "c" | len(ns) | ns | seq           -> change record (seq: u64 big-endian; the change feed)

The length byte makes the namespace part prefix-free: the prefix of namespace
``a`` (``01 01 'a'``) is never a prefix of namespace ``ab``'s keys (``01 02
'a' 'b' …``), whatever bytes the keys contain, so no key written through one
namespace can land in or be listed by another. Within a namespace the keys
follow the prefix unchanged, so LevelDB's bytewise order is the keys'
bytewise order and a key range is one contiguous iterator range. Metadata
(counters, operation ids, change records) sits under another tag, where no
component key can reach. A namespace's change records are one contiguous key
range in seq order (:func:`airssys_storage.kvengine.encode_change` gives their
format), so reading the events after a seq is one iterator.

A row's header (schema 2) is self-delimiting, so the value follows it unchanged
(:mod:`airssys_storage.rowformat`, shared with the RocksDB plugin)::

    h (1 byte) | version (w bytes, little-endian) | [expires_at (8 bytes, little-endian ms)] | value

with ``w = h & 0x0F`` (1 to 8: the version's width) and ``h & 0x10`` set when an
expiry follows. A row without expiry has ``0 < h < 9``, so a plain read is
one byte test and one slice: ``value = raw[h + 1:]``. A version below 256
costs two bytes per row. (The backend's hot paths inline this no-expiry case
of :func:`encode_row` and :func:`decode_header`, saving a call per row.) The
counter's ``floor`` is the highest version of any removed row; ``expiring``
counts the rows that have an expiry (listings skip reading values while it
is zero, and a sweep finds nothing at once).
"""

from __future__ import annotations

import struct

# The counter and op records are the shared core's (airssys_storage.kvengine).
from airssys_storage.kvengine import COUNTER, OP_RESULT, OP_TIME, op_time_key
from airssys_storage.rowformat import EXPIRES, decode_header, encode_row
from airssys_storage.rowformat import encode_namespace as _encode_namespace

__all__ = [
    "CHANGE_PREFIX",
    "COUNTER",
    "DATA_END",
    "DATA_TAG",
    "EXPIRES",
    "META_TAG",
    "MIGRATING_KEY",
    "OP_PREFIX",
    "OP_RESULT",
    "OP_TIME",
    "OP_TIME_PREFIX",
    "SCHEMA_KEY",
    "SCHEMA_VERSION",
    "USAGE_PREFIX",
    "V1_USAGE",
    "change_prefix",
    "counter_key",
    "decode_header",
    "encode_row",
    "namespace_of_counter_key",
    "namespace_prefix",
    "op_key",
    "op_time_key",
    "op_time_prefix",
]

DATA_TAG = b"\x01"
#: First key after the whole data space (exclusive upper bound of a full scan).
DATA_END = b"\x02"
META_TAG = b"\x00"
SCHEMA_KEY = META_TAG + b"schema"
#: The layout written by this version; an older one is migrated at open, a newer one refused.
SCHEMA_VERSION = 2
#: Present only while a migration runs: the last data key already rewritten (b"" before the first).
MIGRATING_KEY = META_TAG + b"migrating"
USAGE_PREFIX = META_TAG + b"u"
OP_PREFIX = META_TAG + b"o"
OP_TIME_PREFIX = META_TAG + b"t"
CHANGE_PREFIX = META_TAG + b"c"
#: Schema 1's counter value: bytes used, number of keys.
V1_USAGE = struct.Struct("<QQ")


def namespace_prefix(namespace: str) -> bytes:
    """The prefix of every data key of *namespace*."""
    return DATA_TAG + _encode_namespace(namespace)


def counter_key(namespace: str) -> bytes:
    """Where *namespace*'s counter record lives."""
    return USAGE_PREFIX + _encode_namespace(namespace)


def namespace_of_counter_key(key: bytes) -> str:
    """Inverse of :func:`counter_key`."""
    return key[len(USAGE_PREFIX) + 1 :].decode("ascii")


def op_key(namespace: str, op_id: str) -> bytes:
    """Where the result of *namespace*'s operation *op_id* is recorded."""
    return OP_PREFIX + _encode_namespace(namespace) + op_id.encode()


def op_time_prefix(namespace: str) -> bytes:
    """The prefix of *namespace*'s retention index (records in time order)."""
    return OP_TIME_PREFIX + _encode_namespace(namespace)


def change_prefix(namespace: str) -> bytes:
    """The prefix of *namespace*'s change records (each followed by its seq, big-endian u64)."""
    return CHANGE_PREFIX + _encode_namespace(namespace)
