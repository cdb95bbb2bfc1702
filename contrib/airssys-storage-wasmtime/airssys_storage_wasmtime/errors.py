"""Errors of the WASM host. All are :class:`airssys_storage.StorageError` subclasses.

A guest never sees these: storage errors reach a guest as ``storage-error``
values. These are what the host's caller sees when a guest cannot be loaded,
linked or run.
"""

from __future__ import annotations

from airssys_storage import ConfigurationError, StorageError

__all__ = ["GuestError", "GuestLimitExceeded", "GuestTimeout", "GuestTrap", "InvalidGuest", "UnsupportedRuntime"]


class GuestError(StorageError):
    """Base class: something went wrong with a guest component."""

    code = "guest-error"


class InvalidGuest(GuestError):
    """The guest cannot be used: unreadable, not a component, imports the host does not
    provide with the types it provides, or no such export."""

    code = "invalid-guest"


class GuestTrap(GuestError):
    """A call into the guest failed: the guest trapped or the host failed while serving it.

    The instance is discarded afterwards. Storage stays consistent: every
    storage call the guest made either completed or did not happen.
    ``details`` holds wasmtime's full report (with the wasm backtrace).
    """

    code = "guest-trap"

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class GuestLimitExceeded(GuestTrap):
    """The guest was stopped at a sandbox limit (see :class:`~.SandboxLimits`); the instance is discarded.

    The message names the guest, the export (or instantiation) and the limit.
    """

    code = "guest-limit-exceeded"


class GuestTimeout(GuestLimitExceeded):
    """A call into the guest ran past its time limit (``timeout``) and was stopped."""

    code = "guest-timeout"


class UnsupportedRuntime(ConfigurationError):
    """The installed wasmtime-py is not the release this package was built for."""

    code = "unsupported-runtime"
