"""Typed values and collections over airssys-storage, the same code on the host and in a Python guest.

``from airssys_storage_sdk import StorageMap, StorageTreeMap, StorageSet,
StorageVector, StorageQueue``; each is built as ``Cls(storage, prefix, …)``
where *storage* follows :class:`~airssys_storage_sdk.protocol.Store`: on the
host an :class:`airssys_storage.ComponentStorage` (or use
``airssys_storage.collections``, which re-exports this package), in a
componentize-py guest :class:`airssys_storage_sdk.guest.GuestStore`. Standard
library only, so a guest bundles it as it is.
"""

from __future__ import annotations

from .collections import REGISTRY_PREFIX, StorageMap, StorageQueue, StorageSet, StorageTreeMap, StorageVector
from .errors import PrefixConflict, StorageError, ValueDecodeError
from .keys import Key, decode_key, encode_key
from .protocol import EntryLike, Store
from .values import Codec, codec_for, decode_json, encode_json

__all__ = [
    "REGISTRY_PREFIX",
    "Codec",
    "EntryLike",
    "Key",
    "PrefixConflict",
    "StorageError",
    "StorageMap",
    "StorageQueue",
    "StorageSet",
    "StorageTreeMap",
    "StorageVector",
    "Store",
    "ValueDecodeError",
    "codec_for",
    "decode_json",
    "decode_key",
    "encode_json",
    "encode_key",
]
