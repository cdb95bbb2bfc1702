"""The store the explorer serves: operator access, with the quotas of the manifests it was given.

Writes from the explorer are operator writes, as the CLI's data commands make
them (:func:`airssys_storage.exchange.operator_settings`): admin rights, and
no quota, except for a component whose manifest was given (``serve
--manifest``), whose writes obey the quota the configured strategy gives that
manifest, as ``airssys-storage set --manifest`` does. That limit reaches the
core through a quota strategy of this module (:class:`ServedQuotas`, a plugin
of this registry only), so every write takes the core's one path: permission,
validation, quota, backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ..exchange import operator_settings
from ..hookspecs import hookimpl
from ..manifest import Manifest
from ..plugins import PluginRegistry, check_plugin_options
from ..policies import QuotaStrategy
from ..storage import StorageManager

if TYPE_CHECKING:
    from ..settings import StorageSettings

__all__ = ["ServedQuota", "ServedQuotas", "open_store"]

#: The name of :class:`ServedQuotas` (as a quota strategy and as the plugin that provides it).
STRATEGY_NAME = "explorer-served-quotas"


class ServedQuota(BaseModel):
    """One component's quota as the configured strategy gives its manifest."""

    #: Bytes; ``None``: unlimited.
    limit: int | None
    #: What sets it and how to raise it (the strategy's ``describe_limit``), for ``quota-exceeded`` messages.
    source: str


class ServedQuotas(QuotaStrategy):
    """Quotas per component id (``options.quotas``); components without one are unlimited (operator writes)."""

    name = STRATEGY_NAME

    class Options(BaseModel):
        quotas: dict[str, ServedQuota] = {}

    def limit_for(self, manifest: Manifest) -> int | None:
        found: ServedQuota | None = self.options.quotas.get(manifest.id)
        return None if found is None else found.limit

    def describe_limit(self, manifest: Manifest) -> str:
        found: ServedQuota | None = self.options.quotas.get(manifest.id)
        if found is None:  # unlimited: never in a quota-exceeded message
            return "operator writes are not quota-limited"
        return found.source


class _Plugin:
    @hookimpl
    def register_quota_strategies(self) -> list[type[QuotaStrategy]]:
        return [ServedQuotas]


@contextmanager
def open_store(
    settings: StorageSettings,
    quotas: Mapping[str, ServedQuota] | None = None,
    *,
    existing: bool = True,
) -> Iterator[StorageManager]:
    """An operator manager on *settings*' backend whose handles obey *quotas* (component id -> quota).

    *settings*' own ``plugin_options`` are validated first, as every CLI data
    command does. *existing*: a missing store is a
    :class:`~airssys_storage.ConfigurationError`, never created (the default:
    the explorer shows a store). Close the manager by leaving the context.
    """
    registry = PluginRegistry.load(blocked=settings.blocked_plugins, plugins={STRATEGY_NAME: _Plugin()})
    check_plugin_options(registry, settings)
    operator = operator_settings(settings)
    table = {cid: quota.model_dump() for cid, quota in (quotas or {}).items()}
    tables = {name: options for name, options in operator.plugin_options.items() if name != operator.quota_strategy}
    served = operator.model_copy(
        update={"quota_strategy": STRATEGY_NAME, "plugin_options": {**tables, STRATEGY_NAME: {"quotas": table}}}
    )
    with StorageManager.from_settings(served, registry=registry, existing=existing) as manager:
        yield manager
