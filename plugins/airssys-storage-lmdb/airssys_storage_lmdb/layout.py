"""The physical layout: how (namespace, key) rows and host metadata become records of LMDB's named databases.

One LMDB environment (a directory holding ``data.mdb`` and ``lock.mdb``)
holds seven named databases (sub-dbs), each ordered bytewise::

    data      len(ns) | ns | key                       -> row: version | expires_at | value
    usage     ns                                       -> counter: <u64 bytes><u64 rows><u64 floor>
    ops       len(ns) | ns | op_id                     -> recorded op: <u64 time ms><i72 result>
    op-times  len(ns) | ns | time | op_id              -> b"" (the retention index of ``ops``)
    expiry    len(ns) | ns | expires_at | key          -> b"" (every row that has an expiry, by time)
    meta      "schema"                                 -> schema version, ASCII digits
    changes   len(ns) | ns | seq                       -> change record (seq: u64 big-endian; the change feed)

The length byte makes the namespace part prefix-free (as in the LevelDB
plugin): namespace ``a``'s prefix ``01 'a'`` is never a prefix of namespace
``ab``'s keys (``02 'a' 'b' …``), whatever bytes the keys contain, so no key
of one namespace can be read, listed or deleted through another. Within a
namespace the keys follow the prefix unchanged, so LMDB's bytewise order is
the keys' bytewise order and a key range is one cursor range. Metadata lives
in databases of its own, which no component key can reach.

A row is a fixed 16-byte header (:data:`ROW`: the version, then the expiry
in milliseconds since the epoch, 0 for none; both little-endian u64)
followed by the value unchanged. Times in index keys (``time``,
``expires_at``) are big-endian u64, so that the index is in time order.

A namespace's change records (:func:`airssys_storage.kvengine.encode_change`,
the format the LevelDB and RocksDB plugins store) are one key range in seq
order: its newest key gives the last seq, its first the oldest retained.
``changes`` is created empty on the first open by this version; nothing else
changes, so the schema version stays.
"""

from __future__ import annotations

import struct

# Op records are the shared core's (airssys_storage.kvengine), as in the LevelDB and RocksDB plugins.
from airssys_storage.kvengine import OP_RESULT, OP_TIME
from airssys_storage.rowformat import encode_namespace

__all__ = [
    "COUNTER",
    "DATABASES",
    "NO_EXPIRY",
    "OP_RESULT",
    "OP_TIME",
    "ROW",
    "SCHEMA_KEY",
    "SCHEMA_VERSION",
    "TIME",
    "namespace_prefix",
]

#: The named databases, in the order the backend opens them.
DATABASES = (b"data", b"usage", b"ops", b"op-times", b"expiry", b"meta", b"changes")
SCHEMA_KEY = b"schema"
#: The layout written by this version; a newer one is refused.
SCHEMA_VERSION = 1
#: A row's header: version, expires_at (0: none), little-endian u64 each.
ROW = struct.Struct("<QQ")
#: The expiry field of a row without expiry.
NO_EXPIRY = bytes(8)
#: A usage record: bytes used, rows, version floor (little-endian u64 each).
COUNTER = struct.Struct("<QQQ")
#: A time in an index key (big-endian, so that keys sort by time).
TIME = struct.Struct(">Q")


def namespace_prefix(namespace: str) -> bytes:
    """The prefix of *namespace*'s keys in ``data``, ``ops``, ``op-times`` and ``expiry``: ``len(ns) | ns``.

    :func:`airssys_storage.rowformat.encode_namespace` (shared with the LevelDB and RocksDB plugins).
    """
    return encode_namespace(namespace)
