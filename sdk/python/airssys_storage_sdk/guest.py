"""The store adapter inside a Python guest: the componentize-py bindings of the ``airssys:wasm`` world.

``GuestStore()`` imports the bindings a guest built with
``componentize-py -d <wit> -w <world> componentize app`` gets (module
``wit_world``; its world must include ``airssys:wasm/component-full``, i.e.
the interfaces ``storage``, ``storage-batch``, ``storage-ranges`` and
``storage-atomics``) and implements :class:`~airssys_storage_sdk.protocol.Store`
with them. A WIT error case becomes the :mod:`airssys_storage_sdk.errors`
class of the same name (``invalid-key`` → ``InvalidKey``,
``precondition-failed`` → ``PreconditionFailed`` …), carrying the host's
message; so collection code behaves the same on both sides.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, cast

from . import errors
from .protocol import Batch, EntryLike

__all__ = ["GuestBatch", "GuestStore"]

_CASES: dict[str, type[errors.StorageError]] = {
    "PermissionDenied": errors.PermissionDenied,
    "QuotaExceeded": errors.QuotaExceeded,
    "KeyNotFound": errors.KeyNotFound,
    "InvalidKey": errors.InvalidKey,
    "ValueTooLarge": errors.ValueTooLarge,
    "InternalError": errors.InternalError,
    "TooManyKeys": errors.TooManyKeys,
    "InvalidArgument": errors.InvalidArgument,
    "PreconditionFailed": errors.PreconditionFailed,
}


_INTERFACES = ("storage", "storage_batch", "storage_ranges", "storage_atomics")


def _load_bindings(bindings: str) -> None:
    """Import the binding modules of *bindings* now, if they exist (they do only inside a guest build)."""
    for name in _INTERFACES:
        try:
            importlib.import_module(f"{bindings}.imports.{name}")
        except ImportError:
            return


# componentize-py keeps only the modules imported while it builds (it snapshots the initialised
# interpreter), so an app that imports this module gets the default bindings loaded here; with other
# bindings, import their four interface modules in the app. Outside a guest this finds nothing.
_load_bindings("wit_world")


class GuestStore:
    """:class:`~airssys_storage_sdk.protocol.Store` over the generated bindings (module *bindings*: ``wit_world``)."""

    def __init__(self, bindings: str = "wit_world") -> None:
        def interface(name: str) -> Any:
            return importlib.import_module(f"{bindings}.imports.{name}")

        try:  # componentize-py 0.17 and later; earlier ones put Err in <bindings>.types
            self._err: type[Exception] = importlib.import_module("componentize_py_types").Err
        except ImportError:
            self._err = importlib.import_module(bindings + ".types").Err
        self._storage, self._batch, self._ranges, self._atomics = map(interface, _INTERFACES)

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except self._err as err:
            case = err.value  # type: ignore[attr-defined]
            name = type(case).__name__.rsplit("_", 1)[-1]
            message = getattr(case, "value", None)
            raise _CASES.get(name, errors.InternalError)(message if isinstance(message, str) else name) from None

    def get(self, key: str) -> bytes | None:
        return cast("bytes | None", self._call(self._storage.storage_get, key))

    def set(self, key: str, value: bytes) -> None:
        self._call(self._storage.storage_set, key, value)

    def delete(self, key: str) -> bool:
        return cast("bool", self._call(self._storage.storage_delete, key))

    def has(self, key: str) -> bool:
        return cast("bool", self._call(self._storage.storage_has, key))

    def get_many(self, keys: list[str]) -> Sequence[bytes | None]:
        return cast("Sequence[bytes | None]", self._call(self._batch.storage_get_many, list(keys)))

    def set_many(self, items: list[tuple[str, bytes]]) -> None:
        self._call(self._batch.storage_set_many, list(items))

    def delete_many(self, keys: list[str]) -> int:
        return cast("int", self._call(self._batch.storage_delete_many, list(keys)))

    def scan(
        self, prefix: str | None, cursor: str | None, limit: int
    ) -> tuple[Sequence[tuple[str, bytes]], str | None]:
        page, following = self._call(self._ranges.storage_scan, prefix, cursor, limit)
        return page, following

    def range(self, start: str, end: str, limit: int) -> Sequence[tuple[str, bytes]]:
        return cast("Sequence[tuple[str, bytes]]", self._call(self._ranges.storage_range, start, end, limit))

    def compare_and_swap(self, key: str, value: bytes, *, version: int | None) -> int:
        return cast("int", self._call(self._atomics.storage_compare_and_swap, key, value, version))

    def delete_if(self, key: str, *, version: int) -> bool:
        return cast("bool", self._call(self._atomics.storage_delete_if, key, version))

    def increment(self, key: str, delta: int) -> int:
        return cast("int", self._call(self._atomics.storage_increment, key, delta, None))

    def get_entry(self, key: str) -> EntryLike | None:
        return cast("EntryLike | None", self._call(self._atomics.storage_get_entry, key))

    def atomic(self) -> Batch:
        return GuestBatch(self)


class GuestBatch:
    """:class:`~airssys_storage_sdk.protocol.Batch` over ``storage-commit``: built in the guest, one call to commit."""

    def __init__(self, store: GuestStore) -> None:
        self._store = store
        self._checks: list[tuple[str, int]] = []
        self._mutations: list[Any] = []
        self._keys: list[str] = []

    def check(self, key: str, version: int | None) -> GuestBatch:
        if version is not None:
            self._checks.append((key, version))
        return self

    def set(self, key: str, value: bytes) -> GuestBatch:
        self._mutations.append(self._store._atomics.Mutation_Set((key, bytes(value), None)))
        self._keys.append(key)
        return self

    def delete(self, key: str) -> GuestBatch:
        self._mutations.append(self._store._atomics.Mutation_Delete(key))
        self._keys.append(key)
        return self

    def increment(self, key: str, delta: int) -> GuestBatch:
        self._mutations.append(self._store._atomics.Mutation_Increment((key, delta)))
        self._keys.append(key)
        return self

    def commit(self) -> dict[str, int]:
        """The host checks and applies the batch (its errors, e.g. ``PreconditionFailed``, as the store's)."""
        store = self._store
        versions = store._call(store._atomics.storage_commit, self._checks, self._mutations)
        return dict(zip(self._keys, versions, strict=True))
