"""Fixtures of the explorer tests (tox env ``explorer``; needs ``pip install -e '.[explorer-test]'``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from explorer_helpers import TOKEN, MakeClient
from starlette.applications import Starlette
from starlette.testclient import TestClient

from airssys_storage.exchange import operator_settings, operator_storage
from airssys_storage.explorer.app import ExplorerConfig, create_app
from airssys_storage.settings import StorageSettings
from airssys_storage.storage import StorageManager
from airssys_storage.testing import isolated_environment  # noqa: F401 - autouse: no developer settings leak in


@pytest.fixture
def manager() -> Iterator[StorageManager]:
    """An operator manager on memory:// with component ``app`` (three keys) and ``other`` (one key)."""
    settings = operator_settings(StorageSettings(url="memory://"))
    with StorageManager.from_settings(settings) as opened:
        app = operator_storage(opened, "app")
        app.set("config/theme", b"dark")
        app.set("doc.json", b'{"b": [1, 2], "a": "x"}')
        app.set("blob", bytes(range(256)))
        operator_storage(opened, "other").set("k", b"v", ttl=3600)
        yield opened


@pytest.fixture
def make_client(manager: StorageManager) -> Iterator[MakeClient]:
    """``make_client(allow_writes=..., quotas=..., changes=...)``: a test client of the explorer over *manager*."""
    clients: list[TestClient] = []

    def make(
        *,
        allow_writes: bool = False,
        quotas: dict[str, int | None] | None = None,
        changes: dict[str, bool] | None = None,
    ) -> TestClient:
        config = ExplorerConfig(
            allow_writes=allow_writes,
            token=TOKEN if allow_writes else None,
            quotas=quotas or {},
            changes=changes or {},
            store_label="memory://",
            sample_interval=3600,
        )
        app: Starlette = create_app(manager, config)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $AIRSSYS_STORAGE_TEST_ARTIFACTS if set (CI keeps it), else the test's tmp dir."""
    chosen = os.environ.get("AIRSSYS_STORAGE_TEST_ARTIFACTS")
    path = Path(chosen) if chosen else tmp_path / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path
