"""Hook specifications: the contract between airssys-storage and its plugins.

Hooks are for registration only. Each returns classes; the core resolves the
configured ones once at start-up and calls them directly afterwards, so no
hook is called on the per-operation path. Hooks are always called through
pluggy with keyword arguments, so an implementation may take any subset of a
spec's arguments and a spec can grow new arguments without breaking plugins.
A registration hook returns a list of classes; anything else (or raising)
marks the plugin broken: it is logged and skipped (see
:mod:`airssys_storage.plugins`).

A plugin module implements any subset of these with the
:data:`airssys_storage.hookimpl` marker and is announced through the
``airssys_storage`` entry-point group::

    [project.entry-points.airssys_storage]
    redis = "airssys_storage_redis"

or registered in-process with :func:`airssys_storage.register_plugin`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from .backend import StorageBackend
    from .policies import PermissionPolicy, QuotaStrategy

PROJECT_NAME = "airssys_storage"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_backends() -> list[type[StorageBackend]]:  # type: ignore[empty-body]
    """Return the storage backend classes this plugin provides.

    Each class subclasses :class:`airssys_storage.StorageBackend` and sets a
    unique ``name`` and the ``url_schemes`` it serves (``"sqlite"``,
    ``"leveldb"`` …; a ``+driver`` suffix in a URL is ignored for the match).

    .. versionadded:: 0.1
    """


@hookspec
def register_permission_policies() -> list[type[PermissionPolicy]]:  # type: ignore[empty-body]
    """Return the permission policy classes this plugin provides.

    Each subclasses :class:`airssys_storage.PermissionPolicy` and sets a unique
    ``name``; settings select policies by that name (``policies = [...]``) and
    combine them by the veto rule: any deny wins, no allow means deny.

    .. versionadded:: 0.1
    """


@hookspec
def register_quota_strategies() -> list[type[QuotaStrategy]]:  # type: ignore[empty-body]
    """Return the quota strategy classes this plugin provides.

    Each subclasses :class:`airssys_storage.QuotaStrategy` and sets a unique
    ``name``; settings select one by that name (``quota_strategy = "..."``).

    .. versionadded:: 0.1
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``airssys-storage`` command line (a :class:`click.Group`).

    Used by integrations such as ``airssys-storage-wasmtime`` (``run``).

    .. versionadded:: 0.1
    """
