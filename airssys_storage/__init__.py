"""airssys-storage: durable, isolated, quota-limited key-value storage for WebAssembly components.

Importing this package does nothing but define names: plugins are loaded and
settings read only when :meth:`StorageManager.from_settings` is called. The
names are imported from their modules on first use (module ``__getattr__``),
so ``import airssys_storage`` costs almost nothing and a plugin that needs
only ``StorageBackend`` never imports pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .atomic import AtomicBatch
    from .backend import (
        Capabilities,
        Change,
        CounterMismatch,
        StorageBackend,
        Usage,
        VerifyReport,
        key_successor,
        quota_exceeded,
    )
    from .changes import ChangeEvent, FeedConfig
    from .errors import (
        ChangeGap,
        ConfigurationError,
        InternalError,
        InvalidArgument,
        InvalidKey,
        KeyNotFound,
        ManifestError,
        OutcomeUnknown,
        PermissionDenied,
        PluginError,
        PreconditionFailed,
        QuotaExceeded,
        StorageError,
        StoreDamaged,
        StoreUnreachable,
        TooManyKeys,
        ValueTooLarge,
    )
    from .hookspecs import hookimpl
    from .manifest import Access, Manifest, ManifestLimits, parse_size
    from .operations import READ_OPERATIONS, WRITE_OPERATIONS, Operation
    from .plugins import PluginRegistry, register_plugin, unregister_plugin
    from .policies import PermissionPolicy, QuotaStrategy
    from .settings import StorageSettings
    from .storage import ComponentStorage, Entry, Limits, StorageManager
    from .transaction import Transaction

__version__ = "0.1.0"

__all__ = [
    "READ_OPERATIONS",
    "WRITE_OPERATIONS",
    "Access",
    "AtomicBatch",
    "Capabilities",
    "Change",
    "ChangeEvent",
    "ChangeGap",
    "ComponentStorage",
    "ConfigurationError",
    "CounterMismatch",
    "Entry",
    "FeedConfig",
    "InternalError",
    "InvalidArgument",
    "InvalidKey",
    "KeyNotFound",
    "Limits",
    "Manifest",
    "ManifestError",
    "ManifestLimits",
    "Operation",
    "OutcomeUnknown",
    "PermissionDenied",
    "PermissionPolicy",
    "StoreDamaged",
    "StoreUnreachable",
    "PluginError",
    "PluginRegistry",
    "PreconditionFailed",
    "QuotaExceeded",
    "QuotaStrategy",
    "StorageBackend",
    "StorageError",
    "StorageManager",
    "StorageSettings",
    "TooManyKeys",
    "Transaction",
    "Usage",
    "ValueTooLarge",
    "VerifyReport",
    "hookimpl",
    "key_successor",
    "parse_size",
    "quota_exceeded",
    "register_plugin",
    "unregister_plugin",
]

#: Public name -> the module of this package that defines it.
_MODULES = {
    "AtomicBatch": "atomic",
    **dict.fromkeys(
        [
            "Capabilities",
            "Change",
            "CounterMismatch",
            "StorageBackend",
            "Usage",
            "VerifyReport",
            "key_successor",
            "quota_exceeded",
        ],
        "backend",
    ),
    **dict.fromkeys(
        [
            "ChangeGap",
            "ConfigurationError",
            "InternalError",
            "InvalidArgument",
            "InvalidKey",
            "KeyNotFound",
            "ManifestError",
            "OutcomeUnknown",
            "PermissionDenied",
            "PluginError",
            "PreconditionFailed",
            "QuotaExceeded",
            "StorageError",
            "StoreDamaged",
            "StoreUnreachable",
            "TooManyKeys",
            "ValueTooLarge",
        ],
        "errors",
    ),
    **dict.fromkeys(["ChangeEvent", "FeedConfig"], "changes"),
    "hookimpl": "hookspecs",
    **dict.fromkeys(["Access", "Manifest", "ManifestLimits", "parse_size"], "manifest"),
    **dict.fromkeys(["READ_OPERATIONS", "WRITE_OPERATIONS", "Operation"], "operations"),
    **dict.fromkeys(["PluginRegistry", "register_plugin", "unregister_plugin"], "plugins"),
    **dict.fromkeys(["PermissionPolicy", "QuotaStrategy"], "policies"),
    "StorageSettings": "settings",
    **dict.fromkeys(["ComponentStorage", "Entry", "Limits", "StorageManager"], "storage"),
    "Transaction": "transaction",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
