"""The row record of the embedded key-value backends (LevelDB, RocksDB): a self-delimiting header, then the value.

::

    h (1 byte) | version (w bytes, little-endian) | [expires_at (8 bytes, little-endian ms)] | value

with ``w = h & 0x0F`` (1 to 8: the version's width) and ``h & 0x10`` set when an
expiry follows. A row without expiry has ``0 < h < 9``, so a plain read is
one byte test and one slice: ``value = raw[h + 1:]``. A version below 256
costs two bytes per row. (Backends' hot paths inline this no-expiry case.)
"""

from __future__ import annotations

from .errors import InvalidArgument

__all__ = ["EXPIRES", "decode_header", "encode_namespace", "encode_row"]

#: Header flag: an 8-byte expiry follows the version.
EXPIRES = 0x10


_MAX_NAMESPACE_BYTES = 255


def encode_namespace(namespace: str) -> bytes:
    """``len(ns) | ns``: a prefix-free encoding of *namespace* (1 to 255 ASCII bytes) for key prefixes.

    The length byte means the prefix of namespace ``a`` is never a prefix of
    namespace ``ab``'s keys, whatever bytes the keys hold. Raises
    :class:`~airssys_storage.InvalidArgument` for anything else.
    """
    if not isinstance(namespace, str):
        raise InvalidArgument(f"namespace must be a str, not {type(namespace).__name__}")
    try:
        raw = namespace.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidArgument(f"namespace {namespace!r} is not ASCII") from None
    if not 0 < len(raw) <= _MAX_NAMESPACE_BYTES:
        raise InvalidArgument(f"namespace {namespace[:32]!r} must be 1 to {_MAX_NAMESPACE_BYTES} ASCII characters")
    return bytes([len(raw)]) + raw


def encode_row(version: int, expires_at: int | None, value: bytes) -> bytes:
    """A row record: the header (see the module docs) followed by *value*."""
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
