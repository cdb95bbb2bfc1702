from __future__ import annotations

from collections.abc import Iterator

import pytest

from airssys_storage import StorageManager, StorageSettings
from airssys_storage.testing import isolated_environment  # noqa: F401 - autouse: no developer settings leak in


@pytest.fixture
def manager() -> Iterator[StorageManager]:
    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        yield manager
