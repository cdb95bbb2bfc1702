"""The core's own plugin: built-in policies and quota strategies, registered like any other."""

from __future__ import annotations

from .hookspecs import hookimpl
from .policies import FixedQuota, ManifestPolicy, ManifestQuota, PermissionPolicy, QuotaStrategy


@hookimpl
def register_permission_policies() -> list[type[PermissionPolicy]]:
    return [ManifestPolicy]


@hookimpl
def register_quota_strategies() -> list[type[QuotaStrategy]]:
    return [ManifestQuota, FixedQuota]
