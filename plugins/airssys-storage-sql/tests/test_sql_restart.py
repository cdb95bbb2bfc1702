"""The manager keeps working across a PostgreSQL restart (stops the shared local server briefly).

Opt-in: stopping a server takes it away from everything else on the machine,
so the test runs only with ``AIRSSYS_STORAGE_TEST_RESTART_SERVERS=1`` (``.ci/run``
sets it; tox passes ``AIRSSYS_STORAGE_TEST_*`` through) and is skipped with that
reason otherwise, even under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from sqlsupport import Server, skip_or_fail

from airssys_storage import Access, InternalError, Manifest, StorageManager, StorageSettings


def _cluster() -> list[str]:
    """The pg_ctlcluster command for the local cluster, or skip/fail (CI) when there is none."""
    tool = shutil.which("pg_ctlcluster")
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if tool is None or not versions:
        skip_or_fail("restarting PostgreSQL needs a local cluster managed by pg_ctlcluster")
    return [str(tool), "--skip-systemctl-redirect", versions[0], "main"]


def _wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"PostgreSQL did not come back on {host}:{port}")


@contextmanager
def postgresql_stopped(server: Server) -> Iterator[None]:
    """Stop the local cluster for the body; start it again whatever happens."""
    url = make_url(server.url)
    host, port = url.host or "127.0.0.1", url.port or 5432
    if host not in ("127.0.0.1", "localhost", "::1"):
        skip_or_fail(f"restarting PostgreSQL needs the local server, not {host}")
    command = _cluster()
    server.admin.dispose()  # pooled admin connections die with the server
    subprocess.run([*command, "stop", "-m", "fast"], check=True, timeout=60, capture_output=True)
    try:
        yield
    finally:
        subprocess.run([*command, "start"], check=True, timeout=120, capture_output=True)
        _wait_for_port(host, port, 60)


RESTART_SERVERS_ENV = "AIRSSYS_STORAGE_TEST_RESTART_SERVERS"


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get(RESTART_SERVERS_ENV) != "1",
    reason=f"stops and restarts the local PostgreSQL: opt in with {RESTART_SERVERS_ENV}=1",
)
@pytest.mark.service("postgresql")
@pytest.mark.engines("postgresql")
def test_manager_works_again_after_postgresql_restarts(
    server: Server, store_url: str, store_options: dict[str, Any]
) -> None:
    settings = StorageSettings(url=store_url, backend_options=store_options)
    with StorageManager.from_settings(settings) as manager:
        store = manager.component(Manifest("restart", Access.READ_WRITE, 1024 * 1024))
        store.set("before", b"1")
        assert store.get("before") == b"1"
        with postgresql_stopped(server):
            with pytest.raises(
                InternalError, match=r"(lost the connection to|cannot connect to) PostgreSQL at"
            ) as read:
                store.get("before")
            with pytest.raises(InternalError, match="cannot connect to PostgreSQL at"):
                store.set("during", b"2")
        # Back up: the same manager and handle reconnect on their own.
        assert store.get("before") == b"1"
        store.set("after", b"3")
        assert store.keys() == ["after", "before"]
        assert store.usage().bytes == len("after") + 1 + len("before") + 1
    print(f"\nwhile PostgreSQL was down: {read.value}")
