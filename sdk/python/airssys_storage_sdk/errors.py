"""The errors of the collections: the core's :class:`StorageError` classes on the host, stdlib mirrors in a guest.

On the host (``airssys_storage`` importable) every class here *is* or
subclasses the core's class of the same name, so ``except StorageError``
catches collection errors too and the codes are the core's. In a guest (no
core; only the standard library) the same names are defined here with the
same ``code`` values. Codes are stable: the WIT error cases (``invalid-key``,
``precondition-failed`` …) plus ``value-decode-error`` and ``prefix-conflict``.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "InternalError",
    "InvalidArgument",
    "InvalidKey",
    "KeyNotFound",
    "PermissionDenied",
    "PreconditionFailed",
    "PrefixConflict",
    "QuotaExceeded",
    "StorageError",
    "TooManyKeys",
    "ValueDecodeError",
    "ValueTooLarge",
]

try:  # the host: the core's classes, so one hierarchy and one set of codes
    from airssys_storage.errors import (
        InternalError,
        InvalidArgument,
        InvalidKey,
        KeyNotFound,
        PermissionDenied,
        PreconditionFailed,
        QuotaExceeded,
        StorageError,
        TooManyKeys,
        ValueTooLarge,
    )
except ImportError:  # a guest: the same names and codes, standard library only

    class StorageError(Exception):  # type: ignore[no-redef]
        """Base class of every storage error; ``code`` is stable (the WIT error case)."""

        code: ClassVar[str] = "internal-error"

        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.message = message

        def __str__(self) -> str:
            return self.message

    class PermissionDenied(StorageError):  # type: ignore[no-redef]
        code = "permission-denied"

    class QuotaExceeded(StorageError):  # type: ignore[no-redef]
        code = "quota-exceeded"

    class KeyNotFound(StorageError):  # type: ignore[no-redef]
        code = "key-not-found"

    class InvalidKey(StorageError):  # type: ignore[no-redef]
        code = "invalid-key"

    class ValueTooLarge(StorageError):  # type: ignore[no-redef]
        code = "value-too-large"

    class InternalError(StorageError):  # type: ignore[no-redef]
        code = "internal-error"

    class TooManyKeys(StorageError):  # type: ignore[no-redef]
        code = "too-many-keys"

    class InvalidArgument(StorageError):  # type: ignore[no-redef]
        code = "invalid-argument"

    class PreconditionFailed(StorageError):  # type: ignore[no-redef]
        code = "precondition-failed"


class ValueDecodeError(StorageError):
    """A stored value is not what the collection expects (not JSON, not the model, not an item record).

    Raised instead of the raw ``json.JSONDecodeError`` / ``ValidationError``;
    the message names the key and the cause. Nothing is changed.
    """

    code: ClassVar[str] = "value-decode-error"


class PrefixConflict(StorageError):
    """A collection's prefix overlaps the prefix of another collection of the component (or a different kind).

    Raised when the collection is created, before anything is written (the
    registry of prefixes lives in the component's own storage, so this holds
    across processes and between host and guest).
    """

    code: ClassVar[str] = "prefix-conflict"
