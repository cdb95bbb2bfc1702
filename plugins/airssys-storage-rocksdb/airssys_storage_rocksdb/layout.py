"""The physical layout: how (namespace, key) rows and host metadata become RocksDB records.

Component data and host metadata live in column families of their own, so no
component key can ever reach a metadata record, whatever bytes it holds::

    CF "default"   len(ns) | ns | key           -> row: header | value
    CF "counters"  ns                           -> counter: <u64 bytes><u64 keys><u64 floor><u64 expiring>
    CF "ops"       len(ns) | ns | op_id         -> recorded op: <u64 time ms><i72 result>
    CF "op_times"  len(ns) | ns | time | op_id  -> b"" (time: u64 big-endian ms; the retention index)
    CF "meta"      "schema"                     -> schema version, ASCII digits
    CF "meta"      "c" | len(ns) | ns | seq     -> change record (seq: u64 big-endian; the change feed)

The length byte makes the namespace part prefix-free: the prefix of namespace
``a`` (``01 'a'``) is never a prefix of namespace ``ab``'s keys (``02 'a' 'b'
…``), so no key written through one namespace can land in or be listed by
another. Within a namespace the keys follow the prefix unchanged, so RocksDB's
bytewise order is the keys' bytewise order and a key range is one contiguous
iterator range. Rows and counters are laid out as in the LevelDB plugin: the
row header is :mod:`airssys_storage.rowformat` (shared), and the counter's
``expiring`` (rows that have an expiry) is this backend's expiry index: a
listing reads no value while it is zero, and a sweep finds nothing at once.
A namespace's change records are one contiguous key range of ``meta`` in seq
order (their format: :func:`airssys_storage.kvengine.encode_change`), so
reading the events after a seq is one iterator; a store without a feed has none.
"""

from __future__ import annotations

# The counter and op records are the shared core's (airssys_storage.kvengine).
from airssys_storage.kvengine import COUNTER, OP_RESULT, OP_TIME, op_time_key
from airssys_storage.rowformat import EXPIRES, decode_header, encode_namespace, encode_row

__all__ = [
    "CHANGE_PREFIX",
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
    "change_prefix",
    "op_time_key",
]

COUNTERS_CF = "counters"
OPS_CF = "ops"
OP_TIMES_CF = "op_times"
META_CF = "meta"
#: Every column family besides "default" (which holds the rows), in a fixed order.
COLUMN_FAMILIES = (COUNTERS_CF, OPS_CF, OP_TIMES_CF, META_CF)
SCHEMA_KEY = b"schema"
#: Before a namespace's change records in ``meta`` (no other key there starts with it).
CHANGE_PREFIX = b"c"
#: The layout written by this version; a newer one is refused.
SCHEMA_VERSION = 1


def change_prefix(namespace: str) -> bytes:
    """The prefix of *namespace*'s change records in ``meta`` (each followed by its seq, big-endian u64)."""
    return CHANGE_PREFIX + encode_namespace(namespace)
