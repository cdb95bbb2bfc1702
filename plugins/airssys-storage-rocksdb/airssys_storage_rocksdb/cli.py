"""``airssys-storage compact``: compact a RocksDB store (added by the plugin's ``register_commands`` hook)."""

from __future__ import annotations

import click

from airssys_storage.cli.app import Failure
from airssys_storage.cli.common import StoreSpec, echo_json, info, json_option, open_manager, store_options
from airssys_storage.plugins import PluginRegistry

from .backend import RocksDBBackend

__all__ = ["compact"]


@click.command()
@store_options
@json_option
def compact(store: StoreSpec, as_json: bool) -> None:
    """Compact a RocksDB store: drop deleted and overwritten records, rewrite the tables.

    Runs RocksDB's CompactRange over every column family, in the process that
    opens the store (stop the host first: one process writes a RocksDB
    database at a time). Prints the table-file bytes before and after.
    """
    settings = store.settings()
    registry = PluginRegistry.load(blocked=settings.blocked_plugins)
    with open_manager(settings, registry=registry, existing=True) as manager:
        backend = manager.backend
        if not isinstance(backend, RocksDBBackend):
            raise Failure(f"compact works on rocksdb:// stores only, not on backend {backend.name!r}")
        report = backend.compact()
    if as_json:
        echo_json(report)
    else:
        info(
            f"compacted the RocksDB store at {report['path']}: table files {report['sst_files_bytes_before']} -> "
            f"{report['sst_files_bytes']} bytes"
        )
