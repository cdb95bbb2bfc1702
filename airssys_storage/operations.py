"""The storage operations, named as in the WIT interface, and which of them write.

Every operation is either a read or a write: :data:`READ_OPERATIONS` and
:data:`WRITE_OPERATIONS` partition :class:`Operation` (a test keeps it so), so
a policy that declares ``operations = WRITE_OPERATIONS`` is asked about every
write, including ones added in later versions.
"""

from __future__ import annotations

import enum

__all__ = ["Operation", "READ_OPERATIONS", "WRITE_OPERATIONS"]


class Operation(enum.StrEnum):
    """One storage operation; ``wit_name`` is the WIT function that performs it."""

    GET = "get"
    SET = "set"
    DELETE = "delete"
    HAS = "has"
    KEYS = "keys"
    SIZE = "size"
    CLEAR = "clear"
    GET_MANY = "get-many"
    SET_MANY = "set-many"
    DELETE_MANY = "delete-many"
    RANGE = "range"
    SCAN = "scan"
    GET_ENTRY = "get-entry"
    COMPARE_AND_SWAP = "compare-and-swap"
    SET_IF_ABSENT = "set-if-absent"
    DELETE_IF = "delete-if"
    INCREMENT = "increment"
    GET_TTL = "get-ttl"
    EXPIRE = "expire"
    PERSIST = "persist"
    PURGE_EXPIRED = "purge-expired"
    DELETE_PREFIX = "delete-prefix"
    DELETE_RANGE = "delete-range"
    LIMITS = "limits"
    CHANGES = "changes"
    #: An atomic write batch with checks (``ComponentStorage.atomic().commit()``).
    COMMIT = "commit"

    @property
    def wit_name(self) -> str:
        """The WIT function name, e.g. ``storage-get``."""
        return f"storage-{self.value}"

    @property
    def is_write(self) -> bool:
        """Whether the operation may change stored data, versions, expiry or usage (see :data:`WRITE_OPERATIONS`)."""
        return self in WRITE_OPERATIONS


#: Operations that only read: ``get``, ``has``, ``keys``, ``size``, ``get-many``, ``range``, ``scan``,
#: ``get-entry``, ``get-ttl``, ``limits``, ``changes`` (the change feed).
READ_OPERATIONS = frozenset(
    {
        Operation.GET,
        Operation.HAS,
        Operation.KEYS,
        Operation.SIZE,
        Operation.GET_MANY,
        Operation.SCAN,
        Operation.RANGE,
        Operation.GET_ENTRY,
        Operation.GET_TTL,
        Operation.LIMITS,
        Operation.CHANGES,
    }
)
#: Operations that may change data, versions, expiry or usage: every operation that is not in
#: :data:`READ_OPERATIONS` (``set``, ``delete``, the batches, ``clear``, the atomics, the expiry
#: changes, ``purge-expired``, ``delete-prefix``, ``delete-range``, ``commit``).
WRITE_OPERATIONS = frozenset(Operation) - READ_OPERATIONS
