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


def test_forked_child_gets_a_consistent_private_copy() -> None:
    """memory:// after fork: the child's copy is never caught halfway through a commit; the parent is untouched."""
    import multiprocessing
    import sys
    import threading

    from airssys_storage import Access, Manifest, StorageManager, StorageSettings

    ctx = multiprocessing.get_context("fork")
    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        stop = threading.Event()

        def churn() -> None:  # batches that keep "a" and "b" equal, of changing sizes
            n = 0
            while not stop.is_set():
                value = b"x" * (n % 200)
                store.set_many([("a", value), ("b", value)])
                n += 1

        thread = threading.Thread(target=churn)
        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads often, so forks land inside commits
        thread.start()
        try:
            for _ in range(40):
                process = ctx.Process(target=_check_copy, args=(store,))
                process.start()
                process.join(30)
                assert process.exitcode == 0
        finally:
            sys.setswitchinterval(switch)
            stop.set()
            thread.join(30)
        store.set("parent", b"p")
        assert store.get("child") is None
        assert manager.backend.verify().ok


def _check_copy(store: object) -> None:
    from airssys_storage import ComponentStorage

    assert isinstance(store, ComponentStorage)
    a, b = store.get("a"), store.get("b")
    assert a == b, "the copy holds half of a batch"
    assert store._manager.backend.verify().ok  # counters agree with the copied data
    store.set("child", b"c")  # the lock the fork inherited is usable
    assert store.get("child") == b"c"
