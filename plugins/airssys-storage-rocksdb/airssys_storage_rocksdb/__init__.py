"""RocksDB backend for airssys-storage: ``rocksdb:///absolute/path``.

The seed's production choice, for a single host process: RocksDB's lock file
lets one process write a database at a time, and a second one gets a clear
error naming the path; operators read it meanwhile through a read-only
instance (``rocksdb:///path?mode=read-only``). Every commit — data, usage
counter and op records, each in its column family — is one atomic write
batch. Adds the ``airssys-storage compact`` command.
"""

from __future__ import annotations

from typing import Any

from airssys_storage import StorageBackend, hookimpl

from .backend import RocksDBBackend, parse_url, path_from_url
from .options import RocksDBOptions

__all__ = ["RocksDBBackend", "RocksDBOptions", "parse_url", "path_from_url", "register_commands"]


@hookimpl
def register_backends() -> list[type[StorageBackend]]:
    return [RocksDBBackend]


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``airssys-storage compact`` (see :mod:`.cli`); click is imported only here."""
    from .cli import compact

    cli.add_command(compact)
