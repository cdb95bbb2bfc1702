"""Permission policies and quota strategies: the base classes and the built-ins.

The built-ins are registered through the same hooks as any third-party plugin
(see :mod:`airssys_storage.default_plugins`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from .manifest import QUOTA_TABLE, Access, Manifest
from .operations import READ_OPERATIONS, WRITE_OPERATIONS, Operation

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .settings import StorageSettings

__all__ = [
    "PermissionPolicy",
    "QuotaStrategy",
    "ManifestPolicy",
    "ManifestQuota",
    "FixedQuota",
    "ACCESS_OPERATIONS",
]


class _Configurable:
    """What policies and quota strategies share: a name, the settings, and validated options.

    A class that takes options sets ``Options`` to a pydantic model; the core
    validates the table ``plugin_options.<name>`` of the settings against it
    once at start-up (an error names the plugin and the field) and passes the
    model instance as *options*. Without ``Options``, *options* is ``None``
    and a ``plugin_options`` table for the class is an error.
    """

    name: ClassVar[str]
    #: The pydantic model of this class's options (``None``: it takes none).
    Options: ClassVar[type[BaseModel] | None] = None

    def __init__(self, settings: StorageSettings, options: Any = None) -> None:
        self.settings = settings
        #: The validated options (an instance of :attr:`Options`), or ``None``.
        self.options = options


class PermissionPolicy(_Configurable):
    """Votes on whether a component may perform an operation.

    :meth:`check` returns ``True`` (allow), ``False`` (deny) or ``None``
    (abstain). The configured policies are combined by the veto rule: any
    deny wins, and without at least one allow the operation is denied.

    A policy whose decision does not depend on the key leaves
    ``uses_key = False``: it is then asked once per (manifest, operation) when
    the component is opened or its manifest reloaded, and the answer is kept,
    so it costs nothing per operation. A policy with ``uses_key = True`` is
    called on every operation with the key (``None`` for operations without
    one, such as ``size`` or ``clear``): for batches once per key, so one
    denied key refuses the whole batch; for listings (``keys``, ``range``,
    ``scan``) with the prefix or start key, then once per key found, and the
    keys it denies are left out of the result.

    ``operations`` limits which operations the policy is asked about; for the
    others it abstains without being called. A key-using policy that only
    cares about writes sets ``operations = WRITE_OPERATIONS`` (which includes
    every write operation, present and future), and reads then cost nothing
    extra. ``None`` (the default) means every operation.
    """

    uses_key: ClassVar[bool] = False
    #: The operations this policy votes on (``None``: all); it is not asked about the others.
    operations: ClassVar[frozenset[Operation] | None] = None

    def check(self, manifest: Manifest, operation: Operation, key: str | None) -> bool | None:
        """Allow (``True``), deny (``False``) or abstain (``None``)."""
        raise NotImplementedError


class QuotaStrategy(_Configurable):
    """Gives each component its byte limit (``None`` = unlimited).

    Asked once when a component is opened or its manifest reloaded.
    """

    def limit_for(self, manifest: Manifest) -> int | None:
        """The byte quota of the component described by *manifest*."""
        raise NotImplementedError

    def describe_limit(self, manifest: Manifest) -> str:
        """What sets the limit of *manifest*'s component and how to raise it, for ``quota-exceeded`` messages.

        Asked once with :meth:`limit_for`, never per operation. Override it to
        name your strategy's own setting.
        """
        return (
            f"it is set by quota strategy {self.name!r} (the quota_strategy setting); see that strategy's documentation"
        )


#: The seed's permission table.
ACCESS_OPERATIONS: dict[Access, frozenset[Operation]] = {
    Access.NONE: frozenset(),
    Access.READ_ONLY: READ_OPERATIONS,
    Access.READ_WRITE: READ_OPERATIONS | (WRITE_OPERATIONS - {Operation.CLEAR}),
    Access.ADMIN: frozenset(Operation),
}


class ManifestPolicy(PermissionPolicy):
    """The seed's table: none < read-only < read-write < admin (only admin may clear)."""

    name = "manifest"

    def check(self, manifest: Manifest, operation: Operation, key: str | None) -> bool | None:
        return operation in ACCESS_OPERATIONS[manifest.access]


class ManifestQuota(QuotaStrategy):
    """The manifest's ``max-size``, or the default of its access level (the seed's table)."""

    name = "manifest"

    def limit_for(self, manifest: Manifest) -> int | None:
        return manifest.quota

    def describe_limit(self, manifest: Manifest) -> str:
        maximum = QUOTA_TABLE[manifest.access][1]
        if manifest.max_size is None:
            return (
                f"it is the default quota of access {manifest.access.value!r} (quota strategy 'manifest'; the "
                f"manifest of {manifest.id!r} sets no max-size): set permissions.storage.max-size in it "
                f"(at most {maximum} bytes)"
            )
        return (
            f"it is permissions.storage.max-size in the manifest of {manifest.id!r} (quota strategy 'manifest'): "
            f"raise it (at most {maximum} bytes for access {manifest.access.value!r})"
        )


class FixedQuota(QuotaStrategy):
    """One limit for every component that may write: ``settings.fixed_quota_bytes``."""

    name = "fixed"

    def limit_for(self, manifest: Manifest) -> int | None:
        if manifest.access in (Access.NONE, Access.READ_ONLY):
            return QUOTA_TABLE[manifest.access][0]
        return self.settings.fixed_quota_bytes

    def describe_limit(self, manifest: Manifest) -> str:
        return (
            "it is the fixed_quota_bytes setting (quota strategy 'fixed'): raise it "
            "(AIRSSYS_STORAGE_FIXED_QUOTA_BYTES or the settings file)"
        )
