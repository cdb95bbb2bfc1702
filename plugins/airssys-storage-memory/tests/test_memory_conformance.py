import pytest

from airssys_storage import StorageBackend
from airssys_storage.testing import BackendConformance


class TestMemoryBackend(BackendConformance):
    @pytest.fixture
    def storage_url(self) -> str:
        return "memory://"

    def tamper_usage(self, backend: StorageBackend, namespace: str, used_bytes: int) -> None:
        backend._spaces[namespace].used = used_bytes  # type: ignore[attr-defined]


def test_a_closed_store_says_so() -> None:
    from airssys_storage import Access, Manifest, StorageError, StorageManager, StorageSettings

    manager = StorageManager.from_settings(StorageSettings(url="memory://"))
    store = manager.component(Manifest("app", Access.ADMIN))
    store.set("k", b"v")
    manager.close()
    for call in (lambda: store.set("j", b""), lambda: store.get("k"), lambda: store.keys(), lambda: store.size()):
        with pytest.raises(StorageError, match="closed"):
            call()
