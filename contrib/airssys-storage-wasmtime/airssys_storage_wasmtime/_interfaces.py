"""The imports the host provides: the WIT of ``airssys:wasm@0.1.0``, as codecs.

Each :class:`HostFunction` names the :class:`~airssys_storage.ComponentStorage`
method that implements it. The tests compare this table with the WIT file
shipped in ``airssys_storage`` so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._codec import BOOL, BYTES, STRING, U32, U64, Codec, ErrorVariant, ListOf, OptionOf, ResultOf, TupleOf

__all__ = [
    "BATCH",
    "EXTENSION_TYPES",
    "FUNCTIONS",
    "INTERFACES",
    "RANGES",
    "STORAGE",
    "HostFunction",
]

PACKAGE = "airssys:wasm"
VERSION = "0.1.0"
STORAGE = f"{PACKAGE}/storage@{VERSION}"
EXTENSION_TYPES = f"{PACKAGE}/extension-types@{VERSION}"
BATCH = f"{PACKAGE}/storage-batch@{VERSION}"
RANGES = f"{PACKAGE}/storage-ranges@{VERSION}"
#: Every interface of the package, in the order the linker defines them.
INTERFACES = (STORAGE, EXTENSION_TYPES, BATCH, RANGES)

_SEED_CASES = (
    ("permission-denied", False),
    ("quota-exceeded", False),
    ("key-not-found", False),
    ("invalid-key", False),
    ("value-too-large", False),
    ("internal-error", True),
)
STORAGE_ERROR = ErrorVariant(_SEED_CASES)
EXTENDED_ERROR = ErrorVariant((*_SEED_CASES, ("too-many-keys", True), ("invalid-argument", True)))

_OPTIONAL_BYTES = OptionOf(BYTES)
_PAIRS = ListOf(TupleOf(STRING, BYTES))
_PAGE = TupleOf(_PAIRS, OptionOf(STRING))


@dataclass(frozen=True)
class HostFunction:
    """One imported function: where it lives, its types, and the storage method behind it."""

    interface: str
    name: str
    params: tuple[Codec, ...]
    result: ResultOf
    #: Name of the :class:`~airssys_storage.ComponentStorage` method called with the lifted arguments.
    method: str

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
)

#: interface -> function name -> function
BY_INTERFACE: dict[str, dict[str, HostFunction]] = {
    interface: {f.name: f for f in FUNCTIONS if f.interface == interface} for interface in INTERFACES
}
