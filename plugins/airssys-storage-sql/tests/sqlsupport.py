"""Engine selection and server helpers shared by the conftest and the test modules."""

from __future__ import annotations

import multiprocessing
import os
import random
import select
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from airssys_storage.planner import Write, WriteKind

ENGINE_ENV = "AIRSSYS_STORAGE_TEST_SQL"
ENGINES = ("sqlite", "postgresql", "mariadb")
SERVERS = {
    "postgresql": (
        "PostgreSQL",
        "AIRSSYS_STORAGE_TEST_POSTGRESQL_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    ),
    "mariadb": ("MariaDB", "AIRSSYS_STORAGE_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def skip_or_fail(reason: str) -> None:
    """Skip on a laptop; fail under CI, where a skipped service test would hide a broken setup."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def run_threads(work: Callable[[int], None], count: int, timeout: float) -> list[BaseException]:
    """Run ``work(0)`` … ``work(count - 1)`` in threads; what they raised (joined up to *timeout* s each)."""
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:  # collected for the caller to assert
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return errors


def commit(backend: Any, namespace: str, changes: Sequence[tuple[bytes, bytes | None]], limit: int | None) -> int:
    """Puts (value) and deletes (``None``) in one :meth:`apply`; how many of the keys were live before."""
    writes = [
        Write(key, WriteKind.PUT, value) if value is not None else Write(key, WriteKind.DELETE)
        for key, value in changes
    ]
    return sum(backend.apply(namespace, writes, limit).existed)


def kill_at_random(
    target: Callable[..., None], args: tuple[Any, ...], rng: random.Random, window: float = 0.03
) -> bytes:
    """Fork a child running ``target(*args, ack_fd)``, SIGKILL it at a random moment; the bytes it acknowledged.

    Usually the kill lands after some acknowledgements (up to *window* seconds after the first), sometimes
    during start-up.
    """
    ctx = multiprocessing.get_context("fork")  # fast restarts; the parent holds no connection while forking
    read_fd, write_fd = os.pipe()
    child = ctx.Process(target=target, args=(*args, write_fd), daemon=True)
    child.start()
    os.close(write_fd)
    if rng.random() < 0.9:
        select.select([read_fd], [], [], 5.0)
    time.sleep(rng.uniform(0, window))
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join(10)
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    return data


def selected_engine() -> str:
    engine = os.environ.get(ENGINE_ENV, "sqlite").strip().lower() or "sqlite"
    if engine not in ENGINES:
        raise pytest.UsageError(f"{ENGINE_ENV}={engine!r}: use one of {', '.join(ENGINES)}")
    return engine


@dataclass
class Server:
    """A reachable database server, administered through short autocommit connections."""

    engine: str
    url: str
    label: str
    admin: Any  # sqlalchemy Engine (AUTOCOMMIT); a connection per statement survives server restarts

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        from sqlalchemy import text

        with self.admin.connect() as connection:
            result = connection.execute(text(sql), params or {})
            return list(result) if result.returns_rows else []

    def drop(self, prefix: str) -> None:
        self.execute(f"DROP TABLE IF EXISTS {prefix}data, {prefix}usage, {prefix}meta, {prefix}ops, {prefix}changes")
        if self.engine == "postgresql":
            self.execute(f"DROP FUNCTION IF EXISTS {prefix}refuse(text, bigint, bigint)")
        else:
            self.execute(f"DROP PROCEDURE IF EXISTS {prefix}put")
            self.execute(f"DROP PROCEDURE IF EXISTS {prefix}delete")
            self.execute(f"DROP PROCEDURE IF EXISTS {prefix}incr")

    def empty(self, prefix: str) -> None:
        for table in ("data", "usage", "ops", "changes"):
            if self.exists(f"{prefix}{table}"):
                self.execute(f"DELETE FROM {prefix}{table}")

    def exists(self, table: str) -> bool:
        if self.engine == "postgresql":
            return self.execute("SELECT to_regclass(:t) IS NOT NULL", {"t": table})[0][0]  # type: ignore[no-any-return]
        rows = self.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = :t", {"t": table}
        )
        return bool(rows)
