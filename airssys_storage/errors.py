"""The one error hierarchy callers see.

Every error carries a stable ``code``. The first six codes are the cases of the
WIT ``storage-error`` variant of ``airssys:wasm@0.1.0``; the others are either
extension cases (``too-many-keys``, ``invalid-argument``, reachable by guests
through the extension interfaces) or host-side configuration problems that a
guest never sees.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "StorageError",
    "PermissionDenied",
    "QuotaExceeded",
    "KeyNotFound",
    "InvalidKey",
    "ValueTooLarge",
    "InternalError",
    "OutcomeUnknown",
    "StoreDamaged",
    "StoreUnreachable",
    "TooManyKeys",
    "InvalidArgument",
    "PreconditionFailed",
    "ChangeGap",
    "ConfigurationError",
    "ManifestError",
    "PluginError",
    "WIT_0_1_0_CODES",
]

#: Codes that exist as cases of ``storage-error`` in ``airssys:wasm/storage@0.1.0``.
WIT_0_1_0_CODES = frozenset(
    {
        "permission-denied",
        "quota-exceeded",
        "key-not-found",
        "invalid-key",
        "value-too-large",
        "internal-error",
    }
)


class StorageError(Exception):
    """Base class of every error raised by the public API."""

    code: ClassVar[str] = "internal-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class PermissionDenied(StorageError):
    """The component's permissions do not allow the operation."""

    code = "permission-denied"


class QuotaExceeded(StorageError):
    """The write would take the component past its byte quota; nothing was written.

    ``detail`` is the message without its fix (what was refused, by how many
    bytes); :meth:`with_source` adds what set the limit and how to raise it.
    """

    code = "quota-exceeded"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = message if detail is None else detail

    def with_source(self, source: str) -> QuotaExceeded:
        """This error, its fix naming *source*: what set the limit and how to raise it."""
        return QuotaExceeded(f"{self.detail}; delete data, or raise the limit: {source}", detail=self.detail)


class KeyNotFound(StorageError):
    """A key that had to exist does not."""

    code = "key-not-found"


class InvalidKey(StorageError):
    """A key or prefix is empty, too long, not encodable or contains control characters."""

    code = "invalid-key"


class ValueTooLarge(StorageError):
    """A value is larger than the configured maximum."""

    code = "value-too-large"


class InternalError(StorageError):
    """The backend failed (I/O, lost connection, corruption); the message names the cause."""

    code = "internal-error"


class OutcomeUnknown(InternalError):
    """A write failed in a way that leaves its outcome unknown: it may or may not have been applied.

    Raised when the connection to a database server was lost while the write
    was being committed (the server may have committed it and the answer got
    lost). Read the keys back before retrying. Its code stays
    ``internal-error``: the WIT ``storage-error`` cases are frozen, and callers
    that handle backend failures keep working; Python callers tell it apart by
    its class.
    """


class StoreDamaged(InternalError):
    """The store's files or tables are damaged (a checksum or integrity failure, an undecodable record).

    Raised by backends, at open or on a read that meets the damage; the
    message names the path and the command that helps. Its code stays
    ``internal-error`` (the WIT cases are frozen); ``airssys-storage verify``
    tells it apart by its class and exits 6 (damage found) instead of 5.
    """


class StoreUnreachable(InternalError):
    """The backend cannot reach its database server (refused, timed out, connection lost outside a commit).

    Raised by server backends when a connection cannot be made or was lost
    before a request was sent; the message names the server (password
    redacted). Its code stays ``internal-error`` (the WIT cases are frozen);
    the CLI tells it apart by its class and adds "check that the store is
    reachable and the URL is right" only to it, not to errors that already
    name their fix (in use, damaged, read-only).
    """


class TooManyKeys(StorageError):
    """A query or batch is larger than the configured maximum."""

    code = "too-many-keys"


class InvalidArgument(StorageError):
    """An argument other than a key is malformed (a cursor, a limit, a batch)."""

    code = "invalid-argument"


class PreconditionFailed(StorageError):
    """A compare-and-swap condition did not hold (the key's version changed); nothing was written."""

    code = "precondition-failed"


class ChangeGap(StorageError):
    """A change-feed reader is behind the retention window: the events after its cursor are gone.

    ``oldest`` is the lowest seq still retained. Resynchronise with
    :meth:`ComponentStorage.resync` (a scan that returns the seq it is
    consistent with) and pull from there.
    """

    code = "gap"

    def __init__(self, message: str, *, oldest: int) -> None:
        super().__init__(message)
        self.oldest = oldest


class ConfigurationError(StorageError):
    """Settings are invalid (host side only).

    ``count`` is how many problems the message lists (one per bad option of a
    table), so that a summary counts what it shows.
    """

    code = "invalid-config"

    def __init__(self, message: str, *, count: int = 1) -> None:
        super().__init__(message)
        self.count = count


class ManifestError(ConfigurationError):
    """A component manifest is invalid (host side only)."""

    code = "invalid-manifest"


class PluginError(ConfigurationError):
    """A plugin is missing, broken or registered twice (host side only)."""

    code = "plugin-error"
