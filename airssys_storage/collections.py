"""Typed values and collections on the host: the maps, the set, the vector and the queue of airssys-storage-sdk.

One implementation serves host and guest: it lives in the pure-Python
distribution ``airssys-storage-sdk`` (``sdk/python/``, standard library
only, so a componentize-py guest bundles it), and this module re-exports it.
A :class:`~airssys_storage.ComponentStorage` is the host's store adapter as
it is: ``StorageMap(storage, "users/")``. The SDK's errors are the core's
classes here (``except StorageError`` catches them), plus
``ValueDecodeError`` (``value-decode-error``) and ``PrefixConflict``
(``prefix-conflict``). Nothing of this is imported by ``import airssys_storage``.

Install: ``pip install -e sdk/python`` (from a clone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

try:
    from airssys_storage_sdk import (
        REGISTRY_PREFIX,
        Codec,
        Key,
        PrefixConflict,
        StorageMap,
        StorageQueue,
        StorageSet,
        StorageTreeMap,
        StorageVector,
        Store,
        ValueDecodeError,
        decode_key,
        encode_key,
    )
except ModuleNotFoundError as exc:  # pragma: no cover - the message is the point
    if exc.name != "airssys_storage_sdk":
        raise
    raise ModuleNotFoundError(
        "airssys_storage.collections needs the package airssys-storage-sdk: `pip install -e sdk/python` "
        "from a clone of airssys-storage",
        name=exc.name,
    ) from None

if TYPE_CHECKING:
    from .storage import ComponentStorage

    def _host_adapter(storage: ComponentStorage) -> Store:
        return storage  # mypy checks here that ComponentStorage is the host's Store as it is


__all__ = [
    "REGISTRY_PREFIX",
    "Codec",
    "Key",
    "PrefixConflict",
    "StorageMap",
    "StorageQueue",
    "StorageSet",
    "StorageTreeMap",
    "StorageVector",
    "Store",
    "ValueDecodeError",
    "decode_key",
    "encode_key",
]
