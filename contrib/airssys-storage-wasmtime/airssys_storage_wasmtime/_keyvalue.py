"""``wasi:keyvalue@0.2.0-draft2`` (store, atomics, batch) and Spin's key-value on a component's storage.

Spin's ``fermyon:spin/key-value@2.0.0`` is served the same way: a store label
is a bucket (same manifest list, same layout, same errors, plus
``store-table-full``); ``get-keys`` returns every key of the store, sorted, or
``other("too-many-keys: …")`` beyond ``max_keys_per_query`` (it has no cursor).
An instance holds at most :data:`MAX_HANDLES` open handles (buckets, stores
and cas together); past it ``open`` and ``cas.new`` fail with
``store-table-full`` (wasi:keyvalue: ``other("store-table-full: …")``).

Buckets
    A component may open the buckets its manifest lists
    (``storage = { access = "read-write", buckets = ["default", "cache"] }``;
    without the field only ``"default"``). Opening another valid bucket name
    is ``access-denied``; a name that cannot be a bucket is ``no-such-store``.
    Permissions (read-only, none) and the quota are the component's: every
    bucket lives in the component's own storage and is charged to its quota.

Layout
    A key *k* of bucket *b* is stored as the component key
    ``"\\U0010ffff" + b + "/" + k``. U+10FFFF is the largest code point (a
    Unicode noncharacter, valid in keys, so ``verify`` finds nothing wrong),
    and bucket names cannot contain ``/``, so no two buckets share a key.
    The ``airssys:wasm`` interfaces refuse every key, prefix or bound that
    starts with U+10FFFF (``invalid-key``), so a component's own keys never
    reach a bucket; its listings and size do include the bucket keys (they
    are its storage). A bucket key may be at most ``max_key_bytes`` minus
    ``len(b) + 5`` bytes of UTF-8.

Semantics (stricter than the standard allows)
    ``list-keys`` pages are the storage's scan: sorted, every key present
    for the whole listing exactly once, the cursor opaque (a forged one is
    ``other("invalid-argument: …")``). Batches are atomic (all or nothing).
    ``increment`` uses the storage's counter encoding (decimal ASCII of an
    s64; a missing key counts as 0). ``cas`` records the key's version when
    created; ``swap`` writes only if the version is unchanged, else
    ``cas-failed`` with a new handle at the current version.

Errors
    ``permission-denied`` -> ``access-denied``; every other storage error ->
    ``other("<code>: <message>")`` (e.g. ``other("quota-exceeded: …")``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from airssys_storage import InvalidKey, PermissionDenied, PreconditionFailed, StorageError
from airssys_storage.manifest import BUCKET_NAME, DEFAULT_BUCKETS

from ._codec import BYTES, STRING, Borrow, Codec, ErrorVariant, ListOf, OptionOf, Own, RecordOf, TupleOf, boxed

__all__ = [
    "KV_ATOMICS",
    "KV_BATCH",
    "KV_STORE",
    "PAIR",
    "RESERVED",
    "SPIN_KV",
    "CasFailed",
    "KeyValueCalls",
    "NoSuchStore",
    "bucket_prefix",
]

KV_PACKAGE = "wasi:keyvalue"
KV_VERSION = "0.2.0-draft2"
KV_STORE = f"{KV_PACKAGE}/store@{KV_VERSION}"
KV_ATOMICS = f"{KV_PACKAGE}/atomics@{KV_VERSION}"
KV_BATCH = f"{KV_PACKAGE}/batch@{KV_VERSION}"
#: Spin's key-value interface: a store label is a bucket.
SPIN_KV = "fermyon:spin/key-value@2.0.0"

#: The first character of every bucket key in a component's storage (see the module docstring).
RESERVED = "\U0010ffff"

#: Host resource type ids (any distinct u32s; the reps are per instance).
BUCKET_TYPE = 0x6B760001
CAS_TYPE = 0x6B760002
SPIN_STORE_TYPE = 0x6B760003
#: Open handles (buckets, stores, cas) one instance may hold: each costs host memory until the guest drops it.
MAX_HANDLES = 1024


def bucket_prefix(bucket: str) -> str:
    """The component-key prefix of *bucket*'s keys."""
    return f"{RESERVED}{bucket}/"


# A bucket's key prefix as messages show it: raw, or escaped by repr() (U+10FFFF is not printable).
_PREFIX_IN_MESSAGE = re.compile("(?:\\\\U0010ffff|\U0010ffff)[^/'\"]*/")


def hide_bucket_prefixes(message: str) -> str:
    """*message* with every bucket key prefix removed: a guest sees its own key, not the host's layout."""
    return _PREFIX_IN_MESSAGE.sub("", message)


class NoSuchStore(StorageError):
    """The identifier given to ``open`` cannot name a bucket."""

    code = "no-such-store"


class StoreTableFull(StorageError):
    """The instance holds :data:`MAX_HANDLES` open handles: it must drop some first."""

    code = "store-table-full"


class CasFailed(PreconditionFailed):
    """A ``swap`` whose key changed since its ``cas`` was made; carries the new handle's rep."""

    def __init__(self, message: str, rep: int) -> None:
        super().__init__(message)
        self.rep = rep


KV_ERROR = ErrorVariant(
    (("no-such-store", False), ("access-denied", False), ("other", True)),
    aliases={"permission-denied": "access-denied"},
    fallback="other",
    code_in_fallback=True,
)
SPIN_ERROR = ErrorVariant(
    (("store-table-full", False), ("no-such-store", False), ("access-denied", False), ("other", True)),
    aliases={"permission-denied": "access-denied"},
    fallback="other",
    code_in_fallback=True,
)
SPIN_STORE = Own(SPIN_STORE_TYPE, "store")
SPIN_STORE_REF = Borrow(SPIN_STORE_TYPE, "store")
BUCKET = Own(BUCKET_TYPE, "bucket")
BUCKET_REF = Borrow(BUCKET_TYPE, "bucket")
CAS = Own(CAS_TYPE, "cas")
CAS_REF = Borrow(CAS_TYPE, "cas")


class _CasError(Codec):
    """``variant cas-error { store-error(error), cas-failed(cas) }``, lowered from a :class:`StorageError`."""

    wit = f"variant{{store-error({KV_ERROR.wit}), cas-failed({CAS.wit})}}"

    def lift(self, v: Any) -> Any:
        raise NotImplementedError("the host never receives a cas-error")

    def lower(self, value: StorageError, out: Any) -> None:
        if isinstance(value, CasFailed):
            KV_ERROR.lower_case("cas-failed", boxed(CAS, value.rep), out)
        else:
            KV_ERROR.lower_case("store-error", boxed(KV_ERROR, value), out)


PAIR = TupleOf(STRING, BYTES)
KEY_RESPONSE = RecordOf(("keys", ListOf(STRING)), ("cursor", OptionOf(STRING)))
CAS_ERROR: Codec = _CasError()
#: Resource types each interface defines: interface -> ((name, host type id), ...)
RESOURCES: dict[str, tuple[tuple[str, int], ...]] = {
    KV_STORE: (("bucket", BUCKET_TYPE),),
    KV_ATOMICS: (("cas", CAS_TYPE),),
    SPIN_KV: (("store", SPIN_STORE_TYPE),),
}


@dataclass
class _Cas:
    bucket: str
    key: str
    version: int | None
    value: bytes | None


class KeyValueCalls:
    """wasi:keyvalue for one guest instance: its open buckets and cas handles, on *storage*.

    *storage* is a :class:`~airssys_storage.ComponentStorage`; the buckets it
    may open are its manifest's ``buckets``. Handles are numbered per
    instance; the guest's drops release them (:meth:`drop_bucket`,
    :meth:`drop_cas`).
    """

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        manifest = getattr(storage, "manifest", None)
        self.allowed: tuple[str, ...] = tuple(getattr(manifest, "buckets", None) or DEFAULT_BUCKETS)
        self._buckets: dict[int, str] = {}
        self._cas: dict[int, _Cas] = {}
        self._next = 1
        # The settings of a storage do not change: read on the first key, not on every call.
        self._max_key = 0

    def _handle(self) -> int:
        if len(self._buckets) + len(self._cas) >= MAX_HANDLES:
            raise StoreTableFull(
                f"the guest holds {MAX_HANDLES} open bucket, store and cas handles, the most one instance may: "
                "drop (close) some first"
            )
        rep = self._next
        self._next = rep + 1 if rep < 0xFFFFFFFF else 1
        return rep

    def _bucket(self, rep: int) -> str:
        bucket = self._buckets.get(rep)
        if bucket is None:
            raise TypeError(f"no bucket handle {rep} in this instance")  # wasmtime checks handles: a host bug
        return bucket

    def _key(self, bucket: str, key: str) -> str:
        if not key:
            raise InvalidKey("key is empty: bucket keys are 1 or more bytes of UTF-8")
        stored = bucket_prefix(bucket) + key
        maximum = self._max_key or self._read_max_key()
        # A character is at most 4 bytes of UTF-8: short keys need no encoding to fit.
        if len(stored) * 4 > maximum and len(stored.encode("utf-8", "surrogatepass")) > maximum:
            room = maximum - len(bucket_prefix(bucket).encode())
            raise InvalidKey(
                f"key {key[:32]!r} is too long: keys of bucket {bucket!r} are at most {room} bytes of UTF-8"
            )
        return stored

    def _read_max_key(self) -> int:
        self._max_key = int(self.storage.settings.max_key_bytes)
        return self._max_key

    def _keys(self, bucket: str, keys: Iterable[str]) -> list[str]:
        return [self._key(bucket, key) for key in keys]

    # -- store -------------------------------------------------------------------

    def open(self, identifier: str) -> int:
        if BUCKET_NAME.match(identifier) is None:
            raise NoSuchStore(
                f"no bucket {identifier!r}: bucket names are 1 to 63 of a-z, 0-9, '_', '.', '-' "
                "(starting with a letter or digit)"
            )
        if identifier not in self.allowed:
            raise PermissionDenied(
                f"component {self.storage.component_id!r} may not open bucket {identifier!r}: its manifest allows "
                f"{list(self.allowed)} (permissions.storage.buckets)"
            )
        rep = self._handle()
        self._buckets[rep] = identifier
        return rep

    def drop_bucket(self, rep: int) -> None:
        self._buckets.pop(rep, None)

    def get(self, bucket: int, key: str) -> bytes | None:
        value: bytes | None = self.storage.get(self._key(self._bucket(bucket), key))
        return value

    def set(self, bucket: int, key: str, value: bytes) -> None:
        self.storage.set(self._key(self._bucket(bucket), key), value)

    def delete(self, bucket: int, key: str) -> None:
        self.storage.delete(self._key(self._bucket(bucket), key))

    def exists(self, bucket: int, key: str) -> bool:
        return bool(self.storage.has(self._key(self._bucket(bucket), key)))

    def get_keys(self, bucket: int) -> list[str]:
        """Every key of the bucket (Spin's ``get-keys``), sorted; more than max_keys_per_query is too-many-keys."""
        prefix = bucket_prefix(self._bucket(bucket))
        return [key[len(prefix) :] for key in self.storage.keys(prefix)]

    def list_keys(self, bucket: int, cursor: str | None) -> dict[str, Any]:
        """One page (at most the host's max_keys_per_query keys), sorted, and the next cursor."""
        prefix = bucket_prefix(self._bucket(bucket))
        page, after = self.storage.scan(prefix, cursor, int(self.storage.settings.max_keys_per_query))
        return {"keys": [key[len(prefix) :] for key, _ in page], "cursor": after}

    # -- atomics -------------------------------------------------------------------

    def increment(self, bucket: int, key: str, delta: int) -> int:
        return int(self.storage.increment(self._key(self._bucket(bucket), key), delta))

    def cas_new(self, bucket: int, key: str) -> int:
        name = self._bucket(bucket)
        return self._new_cas(name, key, self._key(name, key))

    def _new_cas(self, bucket: str, key: str, stored: str) -> int:
        entry = self.storage.get_entry(stored)
        rep = self._handle()
        self._cas[rep] = _Cas(
            bucket, key, None if entry is None else entry.version, None if entry is None else entry.value
        )
        return rep

    def cas_current(self, cas: int) -> bytes | None:
        """The value when the handle was made (what a successful swap replaces)."""
        return self._cas_of(cas).value

    def swap(self, cas: int, value: bytes) -> None:
        """Consumes the handle: write if the key's version is unchanged, else :class:`CasFailed` with a new one."""
        handle = self._cas.pop(cas, None)
        if handle is None:
            raise TypeError(f"no cas handle {cas} in this instance")
        stored = self._key(handle.bucket, handle.key)
        try:
            self.storage.compare_and_swap(stored, value, version=handle.version)
        except PreconditionFailed as exc:
            raise CasFailed(
                f"{exc.message}; retry with the new cas handle", self._new_cas(handle.bucket, handle.key, stored)
            ) from None

    def _cas_of(self, rep: int) -> _Cas:
        handle = self._cas.get(rep)
        if handle is None:
            raise TypeError(f"no cas handle {rep} in this instance")
        return handle

    def drop_cas(self, rep: int) -> None:
        self._cas.pop(rep, None)

    # -- batch -------------------------------------------------------------------------

    def get_many(self, bucket: int, keys: list[str]) -> list[tuple[str, bytes] | None]:
        values = self.storage.get_many(self._keys(self._bucket(bucket), keys))
        return [None if value is None else (key, value) for key, value in zip(keys, values, strict=True)]

    def set_many(self, bucket: int, pairs: list[tuple[str, bytes]]) -> None:
        name = self._bucket(bucket)
        self.storage.set_many([(self._key(name, key), value) for key, value in pairs])

    def delete_many(self, bucket: int, keys: list[str]) -> None:
        self.storage.delete_many(self._keys(self._bucket(bucket), keys))
