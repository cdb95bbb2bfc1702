"""Redis / Valkey backend for airssys-storage: ``redis://host:port/db``, ``rediss://`` for TLS.

For many hosts sharing one store: every commit (quota guard, versions,
conditions, counters, expiry) is one server-side Lua script, atomic across
every client. Nothing is imported from redis-py until a store is opened.
"""

from __future__ import annotations

from airssys_storage import StorageBackend, hookimpl

from .backend import RedisBackend
from .options import RedisOptions

__all__ = ["RedisBackend", "RedisOptions"]


@hookimpl
def register_backends() -> list[type[StorageBackend]]:
    return [RedisBackend]
