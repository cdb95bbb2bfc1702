"""LMDB backend for airssys-storage: ``lmdb:///absolute/path``.

An embedded engine that several processes may open at once: LMDB allows one
writer at a time (a lock shared by every process) and any number of readers,
each on its own snapshot (MVCC), so reads never wait for a commit. Every
commit — rows, usage counter, operation ids and expiry index together — is
one LMDB write transaction, with its quota guard exact across processes.
"""

from __future__ import annotations

from airssys_storage import StorageBackend, hookimpl

from .backend import LMDBBackend, path_from_url
from .options import LMDBOptions

__all__ = ["LMDBBackend", "LMDBOptions", "path_from_url"]


@hookimpl
def register_backends() -> list[type[StorageBackend]]:
    return [LMDBBackend]
