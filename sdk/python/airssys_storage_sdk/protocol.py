"""The store protocol the collections are written against: what both transports offer.

The host adapter is :class:`airssys_storage.ComponentStorage` itself (its
methods have these names and shapes); a guest uses
:class:`airssys_storage_sdk.guest.GuestStore` over the componentize-py
bindings of the ``airssys:wasm`` world. Keys are ``str`` (1 to
``max_key_bytes`` bytes of UTF-8, no control characters), values ``bytes``.
Every method raises the ``StorageError`` classes of
:mod:`airssys_storage_sdk.errors` (``precondition-failed`` for a
compare-and-swap whose version no longer holds).

Beyond the eleven operations of the design (get, set, delete, has, get-many,
set-many, delete-many, scan, compare-and-swap, increment, get-entry), the
sorted map needs ``range`` (seeking to a key), the vector and queue need
``delete_if`` (removing a stale slot only if it is still the one read), and
every collection needs ``atomic`` (:class:`Batch`: a multi-key write batch
with checks, Deno KV's ``atomic()``), so that an item and its collection's
counter change in one atomic step; all are in the WIT world
(``storage-commit`` for the batch) and in ``ComponentStorage``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

__all__ = ["Batch", "EntryLike", "Store"]


class EntryLike(Protocol):
    """A live key's value and version (``ComponentStorage.get_entry`` returns one)."""

    @property
    def value(self) -> bytes: ...

    @property
    def version(self) -> int: ...


class Batch(Protocol):
    """A multi-key write batch with checks, committed in one atomic step (``ComponentStorage.atomic()``).

    ``check(key, version)``: commit only if *key* is at *version* (0: absent;
    ``None``: no check). ``set``, ``delete`` and ``increment`` each change one
    key (each key at most once per batch); ``commit`` applies all of them or
    none, returning each changed key's new version (0 for a deleted key), or
    raises ``PreconditionFailed`` naming the key whose check failed (then
    nothing was written). At most ``max_batch_ops`` keys per batch.
    """

    def check(self, key: str, version: int | None) -> Batch: ...

    def set(self, key: str, value: bytes) -> Batch: ...

    def delete(self, key: str) -> Batch: ...

    def increment(self, key: str, delta: int) -> Batch: ...

    def commit(self) -> Mapping[str, int]: ...


class Store(Protocol):
    """One component's key-value storage, as the collections use it."""

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes) -> object: ...

    def delete(self, key: str) -> bool: ...

    def has(self, key: str) -> bool: ...

    def get_many(self, keys: list[str]) -> Sequence[bytes | None]: ...

    def set_many(self, items: list[tuple[str, bytes]]) -> object: ...

    def delete_many(self, keys: list[str]) -> int: ...

    def scan(
        self, prefix: str | None, cursor: str | None, limit: int
    ) -> tuple[Sequence[tuple[str, bytes]], str | None]: ...

    def range(self, start: str, end: str, limit: int) -> Sequence[tuple[str, bytes]]: ...

    def compare_and_swap(self, key: str, value: bytes, *, version: int | None) -> int: ...

    def delete_if(self, key: str, *, version: int) -> bool: ...

    def increment(self, key: str, delta: int) -> int: ...

    def get_entry(self, key: str) -> EntryLike | None: ...

    def atomic(self) -> Batch: ...
