"""Which engine the tests run on, and a fresh store per test.

``AIRSSYS_STORAGE_TEST_SQL`` picks the engine: ``sqlite`` (default),
``postgresql`` or ``mariadb``. Server URLs default to the servers of the
development machine and are overridden by ``AIRSSYS_STORAGE_TEST_POSTGRESQL_URL``
/ ``AIRSSYS_STORAGE_TEST_MARIADB_URL``. An unreachable server skips the
tests with the reason, except under ``CI=true`` (or ``1``), where it fails
them: CI must never pass with the service tests skipped.

Each test session uses its own table prefix (other people's tests may use
the same server at the same time); tables are emptied before each test and
dropped when the session ends.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlsupport import SERVERS, Server, selected_engine, skip_or_fail

from airssys_storage.testing import isolated_environment  # noqa: F401 - autouse: no developer settings leak in


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "engines(*names): run only when AIRSSYS_STORAGE_TEST_SQL names one of these engines"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (rather than skip) tests written for other engines, so skips stay meaningful."""
    engine = selected_engine()
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("engines")
        (keep if marker is None or engine in marker.args else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def sql_engine() -> str:
    return selected_engine()


@pytest.fixture(scope="session")
def server(sql_engine: str) -> Iterator[Server | None]:
    """The server of the selected engine, or ``None`` for SQLite."""
    if sql_engine == "sqlite":
        yield None
        return
    label, env, default = SERVERS[sql_engine]
    url = os.environ.get(env) or default
    from airssys_storage_sql.backend import parse_url, redact

    try:
        from sqlalchemy import create_engine

        sa_url, _ = parse_url(url)
        engine = create_engine(sa_url, connect_args={"connect_timeout": 3}, isolation_level="AUTOCOMMIT")
        engine.connect().close()
    except ModuleNotFoundError as exc:
        skip_or_fail(
            f"the {label} driver is not installed ({exc}): pip install 'airssys-storage-sql[postgresql,mysql]'"
        )
        return
    except Exception as exc:
        skip_or_fail(
            f"{label} not reachable at {redact(url)} ({type(exc).__name__}: {str(exc).splitlines()[0]}): "
            f"start it or set {env}"
        )
        return
    try:
        yield Server(sql_engine, url, label, engine)
    finally:
        engine.dispose()


def _unused_prefix(letter: str, server: Server | None) -> Iterator[str]:
    """A table prefix nobody else uses; its tables are dropped when the fixture ends."""
    prefix = f"{letter}{os.getpid() % 100000}_{secrets.token_hex(3)}_"
    yield prefix
    if server is not None:
        server.drop(prefix)


@pytest.fixture(scope="session")
def session_prefix(server: Server | None) -> Iterator[str]:
    """A table prefix no other test session uses; its tables are dropped at the end."""
    yield from _unused_prefix("t", server)


@pytest.fixture
def store_url(sql_engine: str, server: Server | None, session_prefix: str, tmp_path: Path) -> str:
    """The URL of an empty store (a new SQLite file, or emptied server tables)."""
    if server is None:
        return f"sqlite:///{tmp_path}/store.sqlite3"
    server.empty(session_prefix)
    return server.url


@pytest.fixture
def store_options(server: Server | None, session_prefix: str) -> dict[str, Any]:
    return {} if server is None else {"table_prefix": session_prefix}


@pytest.fixture
def fresh_prefix(server: Server | None) -> Iterator[str]:
    """A prefix whose tables do not exist yet (dropped after the test)."""
    yield from _unused_prefix("f", server)


@pytest.fixture
def open_backend(store_url: str, store_options: dict[str, Any]) -> Iterator[Callable[..., Any]]:
    """Opens SQL backends on the test's store (closed after the test)."""
    from airssys_storage_sql import SQLBackend

    opened: list[Any] = []

    def open_(url: str | None = None, **options: Any) -> Any:
        backend = SQLBackend.open(url or store_url, {**store_options, **options})
        opened.append(backend)
        return backend

    yield open_
    for backend in opened:
        backend.close()
