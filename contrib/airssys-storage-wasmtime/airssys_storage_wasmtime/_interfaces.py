"""The imports the host provides: the WIT of ``airssys:wasm@0.1.0``, as codecs.

Each :class:`HostFunction` names the :class:`~airssys_storage.ComponentStorage`
method that implements it. The tests compare this table with the WIT file
shipped in ``airssys_storage`` so the two cannot drift apart.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from airssys_storage import StorageError

from ._codec import (
    BOOL,
    BYTES,
    S64,
    STRING,
    U32,
    U64,
    Codec,
    EnumOf,
    ErrorVariant,
    ListOf,
    OptionOf,
    RecordOf,
    Resource,
    ResultOf,
    TupleOf,
    VariantOf,
    boxed,
)
from ._keyvalue import (
    BUCKET,
    BUCKET_REF,
    CAS,
    CAS_ERROR,
    CAS_REF,
    KEY_RESPONSE,
    KV_ATOMICS,
    KV_BATCH,
    KV_ERROR,
    KV_STORE,
    PAIR,
    SPIN_ERROR,
    SPIN_KV,
    SPIN_STORE,
    SPIN_STORE_REF,
)

__all__ = [
    "ATOMICS",
    "BATCH",
    "CHANGES",
    "CHANGES_FUNCTIONS",
    "CHANGE_HANDLER",
    "CHANGE_EVENT",
    "EXPIRY",
    "EXTENSION_TYPES",
    "FUNCTIONS",
    "INTERFACES",
    "KEYVALUE_FUNCTIONS",
    "KEYVALUE_INTERFACES",
    "SPIN_FUNCTIONS",
    "LIMITS",
    "RANGES",
    "RANGE_DELETE",
    "STATE_TYPES",
    "STORAGE",
    "HostFunction",
]

PACKAGE = "airssys:wasm"
VERSION = "0.1.0"
STORAGE = f"{PACKAGE}/storage@{VERSION}"
EXTENSION_TYPES = f"{PACKAGE}/extension-types@{VERSION}"
BATCH = f"{PACKAGE}/storage-batch@{VERSION}"
RANGES = f"{PACKAGE}/storage-ranges@{VERSION}"
STATE_TYPES = f"{PACKAGE}/state-types@{VERSION}"
ATOMICS = f"{PACKAGE}/storage-atomics@{VERSION}"
EXPIRY = f"{PACKAGE}/storage-expiry@{VERSION}"
RANGE_DELETE = f"{PACKAGE}/storage-range-delete@{VERSION}"
LIMITS = f"{PACKAGE}/storage-limits@{VERSION}"
CHANGES = f"{PACKAGE}/storage-changes@{VERSION}"
#: The interface a subscriber exports (``on-changes``); the host calls it, it imports nothing.
CHANGE_HANDLER = f"{PACKAGE}/change-handler@{VERSION}"
#: Every interface of the package, in the order the linker defines them.
INTERFACES = (STORAGE, EXTENSION_TYPES, BATCH, RANGES, STATE_TYPES, ATOMICS, EXPIRY, RANGE_DELETE, LIMITS)

_SEED_CASES = (
    ("permission-denied", False),
    ("quota-exceeded", False),
    ("key-not-found", False),
    ("invalid-key", False),
    ("value-too-large", False),
    ("internal-error", True),
)
STORAGE_ERROR = ErrorVariant(_SEED_CASES)
_EXTENDED_CASES = (*_SEED_CASES, ("too-many-keys", True), ("invalid-argument", True))
EXTENDED_ERROR = ErrorVariant(_EXTENDED_CASES)
STATE_ERROR = ErrorVariant((*_EXTENDED_CASES, ("precondition-failed", True)))
ENTRY = RecordOf(("value", BYTES), ("version", U64), ("expires-at-ms", OptionOf(U64)))
LIMITS_RECORD = RecordOf(
    ("max-key-bytes", U32),
    ("max-value-bytes", U32),
    ("max-keys-per-query", U32),
    ("max-batch-ops", U32),
    ("quota-bytes", OptionOf(U64)),
    ("used-bytes", U64),
    ("keys", U64),
    ("persistent", BOOL),
    ("multi-process", BOOL),
)

#: storage-atomics' ``mutation``: one change of a storage-commit batch.
MUTATION = VariantOf(
    ("set", TupleOf(STRING, BYTES, OptionOf(U64))),
    ("delete", STRING),
    ("increment", TupleOf(STRING, S64)),
)
_OPTIONAL_BYTES = OptionOf(BYTES)
_PAIRS = ListOf(TupleOf(STRING, BYTES))
_PAGE = TupleOf(_PAIRS, OptionOf(STRING))


#: storage-changes' ``change-op``: the ``op`` of :class:`~airssys_storage.ChangeEvent`.
CHANGE_OP = EnumOf("set", "delete", "expire", "clear", "delete-range")
#: storage-changes' ``change-event`` (Python side: a dict, see :class:`~._calls.ChangeCalls`).
CHANGE_EVENT = RecordOf(
    ("seq", U64),
    ("key", STRING),
    ("op", CHANGE_OP),
    ("version", U64),
    ("end", OptionOf(STRING)),
    ("value", OptionOf(BYTES)),
)


class ChangesError(ErrorVariant):
    """storage-changes' ``changes-error``: error codes as cases, plus ``gap(u64)`` carrying the oldest retained seq.

    ``invalid-config`` (the component's feed is off) is ``changes-disabled``;
    a code without a case is ``internal-error`` prefixed with the code.
    """

    def __init__(self) -> None:
        super().__init__(
            (
                ("permission-denied", False),
                ("changes-disabled", True),
                ("gap", False),
                ("invalid-argument", True),
                ("internal-error", True),
            ),
            aliases={"invalid-config": "changes-disabled"},
            code_in_fallback=True,
        )
        self.wit = (
            "variant{permission-denied, changes-disabled(string), gap(u64), invalid-argument(string), "
            "internal-error(string)}"
        )

    def lift(self, v: Any) -> tuple[str, Any]:
        variant = v.of.variant
        name = ctypes.string_at(variant.discriminant.data, variant.discriminant.size).decode()
        payload = variant.val
        if not payload:
            return name, None
        return name, (U64 if name == "gap" else STRING).lift(payload[0])

    def lower(self, value: StorageError, out: Any) -> None:
        if value.code == "gap":
            self.lower_case("gap", boxed(U64, int(getattr(value, "oldest", 0))), out)
        else:
            super().lower(value, out)


CHANGES_ERROR = ChangesError()


@dataclass(frozen=True)
class HostFunction:
    """One imported function: where it lives, its types, and the storage method behind it."""

    interface: str
    name: str
    params: tuple[Codec, ...]
    result: ResultOf
    #: Name of the method called with the lifted arguments, on the object :attr:`target` names.
    method: str
    #: ``"storage"``: the :class:`~airssys_storage.ComponentStorage` itself; ``"state"``: a
    #: :class:`~._calls.StateCalls` over it (units and records converted); ``"keyvalue"``: the
    #: instance's :class:`~._keyvalue.KeyValueCalls`; ``"changes"``: a :class:`~._calls.ChangeCalls`.
    target: str = "storage"

    @property
    def uses_resources(self) -> bool:
        """Whether a parameter or the result holds a resource handle (the call then needs its store context)."""
        return any(isinstance(param, Resource) for param in self.params) or isinstance(self.result.ok, Resource)

    @property
    def guards_reserved_keys(self) -> bool:
        """Whether the bucket area (keys starting with U+10FFFF) must be refused in its string arguments."""
        return self.target != "keyvalue" and any("string" in param.wit for param in self.params)

    @property
    def wit(self) -> str:
        """The function type, structurally (compared with the guest's import type)."""
        return "func(" + ", ".join(param.wit for param in self.params) + f") -> {self.result.wit}"

    @property
    def qualified_name(self) -> str:
        return f"{self.interface}#{self.name}"


def _seed(name: str, params: tuple[Codec, ...], ok: Codec | None, method: str) -> HostFunction:
    return HostFunction(STORAGE, name, params, ResultOf(ok, STORAGE_ERROR), method)


def _extended(interface: str, name: str, params: tuple[Codec, ...], ok: Codec | None, method: str) -> HostFunction:
    return HostFunction(interface, name, params, ResultOf(ok, EXTENDED_ERROR), method)


def _state(interface: str, name: str, params: tuple[Codec, ...], ok: Codec | None, method: str) -> HostFunction:
    return HostFunction(interface, name, params, ResultOf(ok, STATE_ERROR), method, "state")


FUNCTIONS: tuple[HostFunction, ...] = (
    _seed("storage-get", (STRING,), _OPTIONAL_BYTES, "get"),
    _seed("storage-set", (STRING, BYTES), None, "set"),
    _seed("storage-delete", (STRING,), BOOL, "delete"),
    _seed("storage-has", (STRING,), BOOL, "has"),
    _seed("storage-keys", (OptionOf(STRING),), ListOf(STRING), "keys"),
    _seed("storage-size", (), U64, "size"),
    _seed("storage-clear", (), None, "clear"),
    _extended(BATCH, "storage-get-many", (ListOf(STRING),), ListOf(_OPTIONAL_BYTES), "get_many"),
    _extended(BATCH, "storage-set-many", (_PAIRS,), None, "set_many"),
    _extended(BATCH, "storage-delete-many", (ListOf(STRING),), U32, "delete_many"),
    _extended(RANGES, "storage-range", (STRING, STRING, OptionOf(U32)), _PAIRS, "range"),
    _extended(RANGES, "storage-scan", (OptionOf(STRING), OptionOf(STRING), U32), _PAGE, "scan"),
    _state(ATOMICS, "storage-get-entry", (STRING,), OptionOf(ENTRY), "get_entry"),
    _state(ATOMICS, "storage-compare-and-swap", (STRING, BYTES, OptionOf(U64)), U64, "compare_and_swap"),
    _state(ATOMICS, "storage-set-if-absent", (STRING, BYTES), BOOL, "set_if_absent"),
    _state(ATOMICS, "storage-delete-if", (STRING, U64), BOOL, "delete_if"),
    _state(ATOMICS, "storage-increment", (STRING, S64, OptionOf(STRING)), S64, "increment"),
    _state(ATOMICS, "storage-commit", (ListOf(TupleOf(STRING, U64)), ListOf(MUTATION)), ListOf(U64), "commit"),
    _state(EXPIRY, "storage-set-with-ttl", (STRING, BYTES, U64), U64, "set_with_ttl"),
    _state(EXPIRY, "storage-get-ttl", (STRING,), OptionOf(U64), "get_ttl"),
    _state(EXPIRY, "storage-expire", (STRING, U64), BOOL, "expire"),
    _state(EXPIRY, "storage-persist", (STRING,), BOOL, "persist"),
    _state(RANGE_DELETE, "storage-delete-prefix", (STRING,), U64, "delete_prefix"),
    _state(RANGE_DELETE, "storage-delete-range", (STRING, STRING), U64, "delete_range"),
    _state(LIMITS, "storage-limits", (), LIMITS_RECORD, "limits"),
)


#: ``storage-changes``, served by :class:`~._calls.ChangeCalls` (over the component's storage itself, never
#: an invocation transaction: the feed holds committed changes only).
CHANGES_FUNCTIONS: tuple[HostFunction, ...] = (
    HostFunction(
        CHANGES,
        "changes",
        (U64, OptionOf(STRING), U32),
        ResultOf(TupleOf(ListOf(CHANGE_EVENT), U64), CHANGES_ERROR),
        "changes",
        "changes",
    ),
    HostFunction(CHANGES, "snapshot-seq", (), ResultOf(U64, CHANGES_ERROR), "snapshot_seq", "changes"),
)


def _kv(interface: str, name: str, params: tuple[Codec, ...], ok: Codec | None, method: str) -> HostFunction:
    return HostFunction(interface, name, params, ResultOf(ok, KV_ERROR), method, "keyvalue")


#: ``wasi:keyvalue@0.2.0-draft2``, served by :class:`~._keyvalue.KeyValueCalls`.
KEYVALUE_FUNCTIONS: tuple[HostFunction, ...] = (
    _kv(KV_STORE, "open", (STRING,), BUCKET, "open"),
    _kv(KV_STORE, "[method]bucket.get", (BUCKET_REF, STRING), OptionOf(BYTES), "get"),
    _kv(KV_STORE, "[method]bucket.set", (BUCKET_REF, STRING, BYTES), None, "set"),
    _kv(KV_STORE, "[method]bucket.delete", (BUCKET_REF, STRING), None, "delete"),
    _kv(KV_STORE, "[method]bucket.exists", (BUCKET_REF, STRING), BOOL, "exists"),
    _kv(KV_STORE, "[method]bucket.list-keys", (BUCKET_REF, OptionOf(STRING)), KEY_RESPONSE, "list_keys"),
    _kv(KV_ATOMICS, "[static]cas.new", (BUCKET_REF, STRING), CAS, "cas_new"),
    _kv(KV_ATOMICS, "[method]cas.current", (CAS_REF,), OptionOf(BYTES), "cas_current"),
    _kv(KV_ATOMICS, "increment", (BUCKET_REF, STRING, S64), S64, "increment"),
    HostFunction(KV_ATOMICS, "swap", (CAS, BYTES), ResultOf(None, CAS_ERROR), "swap", "keyvalue"),
    _kv(KV_BATCH, "get-many", (BUCKET_REF, ListOf(STRING)), ListOf(OptionOf(PAIR)), "get_many"),
    _kv(KV_BATCH, "set-many", (BUCKET_REF, ListOf(PAIR)), None, "set_many"),
    _kv(KV_BATCH, "delete-many", (BUCKET_REF, ListOf(STRING)), None, "delete_many"),
)
KEYVALUE_INTERFACES = (KV_STORE, KV_ATOMICS, KV_BATCH)


def _spin(name: str, params: tuple[Codec, ...], ok: Codec | None, method: str) -> HostFunction:
    return HostFunction(SPIN_KV, name, params, ResultOf(ok, SPIN_ERROR), method, "keyvalue")


#: Spin's ``fermyon:spin/key-value@2.0.0``: store labels are buckets (the same :class:`~._keyvalue.KeyValueCalls`).
SPIN_FUNCTIONS: tuple[HostFunction, ...] = (
    _spin("[static]store.open", (STRING,), SPIN_STORE, "open"),
    _spin("[method]store.get", (SPIN_STORE_REF, STRING), OptionOf(BYTES), "get"),
    _spin("[method]store.set", (SPIN_STORE_REF, STRING, BYTES), None, "set"),
    _spin("[method]store.delete", (SPIN_STORE_REF, STRING), None, "delete"),
    _spin("[method]store.exists", (SPIN_STORE_REF, STRING), BOOL, "exists"),
    _spin("[method]store.get-keys", (SPIN_STORE_REF,), ListOf(STRING), "get_keys"),
)

#: interface -> function name -> function, for every interface the host serves
BY_INTERFACE: dict[str, dict[str, HostFunction]] = {
    interface: {
        f.name: f
        for f in (*FUNCTIONS, *CHANGES_FUNCTIONS, *KEYVALUE_FUNCTIONS, *SPIN_FUNCTIONS)
        if f.interface == interface
    }
    for interface in (*INTERFACES, CHANGES, *KEYVALUE_INTERFACES, SPIN_KV)
}
