"""The storage operations, named as in the WIT interface."""

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

    @property
    def wit_name(self) -> str:
        """The WIT function name, e.g. ``storage-get``."""
        return f"storage-{self.value}"


READ_OPERATIONS = frozenset(
    {
        Operation.GET,
        Operation.HAS,
        Operation.KEYS,
        Operation.SIZE,
        Operation.GET_MANY,
        Operation.SCAN,
        Operation.RANGE,
    }
)
WRITE_OPERATIONS = frozenset({Operation.SET, Operation.DELETE, Operation.SET_MANY, Operation.DELETE_MANY})
