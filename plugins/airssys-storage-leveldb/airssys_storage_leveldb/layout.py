"""The physical layout: how (namespace, key) pairs and host metadata become LevelDB keys.

Every LevelDB key starts with a tag byte that names its key space::

    DATA  0x01 | len(ns) (1 byte) | ns (ASCII) | key (UTF-8 bytes)   -> value
    META  0x00 | "u" | len(ns) | ns                                   -> usage: <u64 bytes><u64 keys>
    META  0x00 | "schema"                                             -> schema version, ASCII digits

The length byte makes the namespace part prefix-free: the prefix of namespace
``a`` (``01 01 'a'``) is never a prefix of namespace ``ab``'s keys (``01 02
'a' 'b' …``), whatever bytes the keys contain, so no key written through one
namespace can land in or be listed by another. Within a namespace the keys
follow the prefix unchanged, so LevelDB's bytewise order is the keys'
bytewise order and a key range is one contiguous iterator range. Metadata
sits under another tag, where no namespace encoding can reach.
"""

from __future__ import annotations

import struct

from airssys_storage import InvalidArgument

__all__ = [
    "DATA_TAG",
    "DATA_END",
    "META_TAG",
    "SCHEMA_KEY",
    "SCHEMA_VERSION",
    "USAGE_PREFIX",
    "USAGE",
    "namespace_prefix",
    "usage_key",
    "namespace_of_usage_key",
]

DATA_TAG = b"\x01"
#: First key after the whole data space (exclusive upper bound of a full scan).
DATA_END = b"\x02"
META_TAG = b"\x00"
SCHEMA_KEY = META_TAG + b"schema"
#: The layout written by this version; a database with a higher one is refused.
SCHEMA_VERSION = 1
USAGE_PREFIX = META_TAG + b"u"
#: Usage value: bytes used, number of keys (little-endian u64 each).
USAGE = struct.Struct("<QQ")

_MAX_NAMESPACE_BYTES = 255


def _encode_namespace(namespace: str) -> bytes:
    if not isinstance(namespace, str):
        raise InvalidArgument(f"namespace must be a str, not {type(namespace).__name__}")
    try:
        raw = namespace.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidArgument(f"namespace {namespace!r} is not ASCII") from None
    if not 0 < len(raw) <= _MAX_NAMESPACE_BYTES:
        raise InvalidArgument(f"namespace {namespace[:32]!r} must be 1 to {_MAX_NAMESPACE_BYTES} ASCII characters")
    return bytes([len(raw)]) + raw


def namespace_prefix(namespace: str) -> bytes:
    """The prefix of every data key of *namespace*."""
    return DATA_TAG + _encode_namespace(namespace)


def usage_key(namespace: str) -> bytes:
    """Where *namespace*'s usage counter lives."""
    return USAGE_PREFIX + _encode_namespace(namespace)


def namespace_of_usage_key(key: bytes) -> str:
    """Inverse of :func:`usage_key`."""
    return key[len(USAGE_PREFIX) + 1 :].decode("ascii")
