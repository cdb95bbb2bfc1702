"""Shared by the CLI tests: the persistent backends the tests can use, stores on them, sample data.

``memory://`` lives only as long as one process (one CLI invocation), so
command-line tests that need data to survive between invocations run on the
persistent backends that are installed (SQLite, LevelDB, and PostgreSQL /
MariaDB when the SQL plugin is installed and the server is reachable); the
others are skipped with the reason. Under ``CI=true`` an unreachable server
is an error, not a skip.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from airssys_storage import ComponentStorage, ConfigurationError, StorageManager, StorageSettings
from airssys_storage.exchange import operator_settings, operator_storage

#: Runs the command line in-process (click's runner on ``main``).
Run = Callable[..., Result]
#: The installed console script (``python -m airssys_storage.cli`` where it is not on PATH).
SCRIPT = [found] if (found := shutil.which("airssys-storage")) else [sys.executable, "-m", "airssys_storage.cli"]


@dataclass
class Completed:
    """A finished subprocess run of the console script."""

    returncode: int
    stdout: bytes
    stderr: str


# -- backends ----------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """A kind of store the tests can create: ``make(tmp_path)`` gives a fresh URL.

    On a shared server, stores are told apart by a table prefix of their own
    (``cli_a_``, ``cli_b_``) so that these tests never touch other tests' tables.
    """

    name: str
    make: Callable[[Path], str]
    #: (host, port) of the server, for shared stores.
    server: tuple[str, int] | None = None
    #: The backend option that keeps stores on a shared server apart.
    prefix_option: str = "table_prefix"

    @property
    def shared(self) -> bool:
        """A server shared with other tests: use fresh component ids and clean up."""
        return self.server is not None


def _env_url(name: str, default: str) -> str:
    return os.environ.get(f"AIRSSYS_STORAGE_TEST_{name}_URL", default)


POSTGRESQL_URL = _env_url("POSTGRESQL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = _env_url("MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")
REDIS_URL = _env_url("REDIS", "redis://127.0.0.1:6379/13")

BACKENDS = {
    "sqlite": Backend("sqlite", lambda tmp: f"sqlite:///{tmp}/store.sqlite3"),
    "leveldb": Backend("leveldb", lambda tmp: f"leveldb://{tmp}/leveldb"),
    "lmdb": Backend("lmdb", lambda tmp: f"lmdb://{tmp}/lmdb"),
    "postgresql": Backend("postgresql", lambda tmp: POSTGRESQL_URL, ("127.0.0.1", 5432)),
    "mariadb": Backend("mariadb", lambda tmp: MARIADB_URL, ("127.0.0.1", 3306)),
    "redis": Backend("redis", lambda tmp: REDIS_URL, ("127.0.0.1", 6379), "key_prefix"),
}


def _unavailable(backend: Backend, tmp_path: Path) -> str | None:
    """Why *backend* cannot be used here, or ``None``."""
    if backend.server is not None:
        try:
            socket.create_connection(backend.server, timeout=2).close()
        except OSError as exc:
            reason = f"{backend.name}: server {backend.server[0]}:{backend.server[1]} unreachable ({exc})"
            if os.environ.get("CI") == "true":
                pytest.fail(reason + " — under CI the service must run")
            return reason
    try:  # the plugin, and its driver for this URL, are installed
        StorageManager.from_settings(StorageSettings(url=backend.make(tmp_path))).close()
    except ConfigurationError as exc:
        return f"{backend.name}: not installed ({exc.message})"
    return None


def use_backend(name: str, tmp_path: Path) -> Backend:
    backend = BACKENDS[name]
    reason = _unavailable(backend, tmp_path)
    if reason is not None:
        pytest.skip(reason)
    return backend


@dataclass
class Store:
    """One store for a test: its URL and options, and component ids that are fresh on shared servers."""

    backend: Backend
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def component(self, base: str) -> str:
        """A component id for this test (with a random suffix on shared servers)."""
        cid = f"{base}-{secrets.token_hex(4)}" if self.backend.shared else base
        self.used.add(cid)
        return cid

    def args(self, url_flag: str = "--url", options_flag: str = "--backend-options") -> list[str]:
        """The command-line options naming this store."""
        return [url_flag, self.url, *([options_flag, json.dumps(self.options)] if self.options else [])]

    def manager(self) -> StorageManager:
        settings = StorageSettings(url=self.url, backend_options=self.options)
        return StorageManager.from_settings(operator_settings(settings))

    def write(self, component: str, data: Mapping[str, bytes]) -> None:
        self.used.add(component)
        with self.manager() as manager:
            storage = operator_storage(manager, component)
            items = list(data.items())
            for start in range(0, len(items), 100):
                storage.set_many(items[start : start + 100])

    def write_expiring(self, component: str, entries: Mapping[str, tuple[bytes, int]]) -> None:
        """Write ``key: (value, expires_at ms since the epoch)``; an expiry in the past leaves an unswept row."""
        self.used.add(component)
        with self.manager() as manager:
            operator_storage(manager, component)._restore_many([(k, v, when) for k, (v, when) in entries.items()])

    def expiries(self, component: str) -> dict[str, int | None]:
        """Every live key's exact expiry in ms since the epoch (``None``: never)."""
        self.used.add(component)
        with self.manager() as manager:
            storage = operator_storage(manager, component)
            keys = list(read_all(storage))
            return {key: row.expires_at for key, row in zip(keys, storage._entry_rows(keys), strict=True) if row}

    def read(self, component: str) -> dict[str, bytes]:
        self.used.add(component)
        with self.manager() as manager:
            return read_all(operator_storage(manager, component))

    def cleanup(self) -> None:
        if self.used:
            with self.manager() as manager:
                for cid in self.used:
                    operator_storage(manager, cid).clear()
        if self.backend.prefix_option == "key_prefix":  # Redis: the counter rows a clear keeps go too
            import redis

            client = redis.Redis.from_url(self.url)
            for name in client.scan_iter(match=self.options["key_prefix"] + "*", count=1000):
                client.delete(name)
            client.close()


def read_all(storage: ComponentStorage) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    cursor = None
    while True:
        items, cursor = storage.scan(None, cursor, 500)
        found.update(items)
        if cursor is None:
            return found


#: Keys and values that break naive exporters: separators, wildcards, escapes, case,
#: trailing spaces, non-ASCII up to the 256-byte limit, empty and binary values.
ADVERSARIAL: dict[str, bytes] = {
    "a": b"",
    "b:c": b"\x00",
    "ab": b"\xff" * 3,
    "a_b": b'{"json": "not"}\n',
    "a%b": b"\x00\x01\x02\r\n",
    "back\\slash": b"\\",
    "Key": b"upper",
    "key": b"lower",
    "key ": b"trailing space",
    "kéy": "é".encode(),
    "日本語": "日本語".encode(),
    "😀" * 64: b"256 bytes of UTF-8",
    '"quoted"': b'"',
    "line\u2028sep": b"unicode line separator is not a control character",
    "big": bytes(range(256)) * 4096,  # 1 MiB, the default maximum
}


def sample_data(extra_keys: int = 250) -> dict[str, bytes]:
    """ADVERSARIAL plus enough plain keys to cross scan pages and batch boundaries."""
    data = dict(ADVERSARIAL)
    data.update({f"item/{i:05d}": secrets.token_bytes(i % 97) for i in range(extra_keys)})
    return data
