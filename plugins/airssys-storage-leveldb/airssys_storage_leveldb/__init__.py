"""LevelDB backend for airssys-storage: ``leveldb:///absolute/path``.

The fastest embedded backend, for a single host process: LevelDB's lock file
lets one process open a database at a time, and a second process gets a
clear error pointing to the SQL backend. Every commit — data and usage
counter together — is one atomic write batch.
"""

from __future__ import annotations

from airssys_storage import StorageBackend, hookimpl

from .backend import LevelDBBackend, path_from_url
from .options import LevelDBOptions

__all__ = ["LevelDBBackend", "LevelDBOptions", "path_from_url"]


@hookimpl
def register_backends() -> list[type[StorageBackend]]:
    return [LevelDBBackend]
