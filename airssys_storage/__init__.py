"""airssys-storage: durable, isolated, quota-limited key-value storage for WebAssembly components.

Importing this package does nothing but define names: plugins are loaded and
settings read only when :meth:`StorageManager.from_settings` is called.
"""

from __future__ import annotations

from .backend import Capabilities, Change, StorageBackend, Usage, key_successor, quota_exceeded
from .errors import (
    ConfigurationError,
    InternalError,
    InvalidArgument,
    InvalidKey,
    KeyNotFound,
    ManifestError,
    PermissionDenied,
    PluginError,
    PreconditionFailed,
    QuotaExceeded,
    StorageError,
    TooManyKeys,
    ValueTooLarge,
)
from .hookspecs import hookimpl
from .manifest import Access, Manifest, parse_size
from .operations import Operation
from .plugins import PluginRegistry
from .policies import PermissionPolicy, QuotaStrategy
from .settings import StorageSettings
from .storage import ComponentStorage, StorageManager

__version__ = "0.1.0"

__all__ = [
    "Access",
    "Capabilities",
    "Change",
    "ComponentStorage",
    "ConfigurationError",
    "InternalError",
    "InvalidArgument",
    "InvalidKey",
    "KeyNotFound",
    "Manifest",
    "ManifestError",
    "Operation",
    "PermissionDenied",
    "PermissionPolicy",
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
    "Usage",
    "ValueTooLarge",
    "hookimpl",
    "key_successor",
    "parse_size",
    "quota_exceeded",
]
