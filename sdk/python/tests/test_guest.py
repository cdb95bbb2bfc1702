"""A Python guest built with componentize-py uses the SDK; the host reads the same collections, and back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import needs_wasmtime

from airssys_storage import ComponentStorage, Manifest, StorageManager, StorageSettings
from airssys_storage.collections import StorageQueue, StorageSet, StorageTreeMap

LIMITS = {"max_batch_ops": 5, "max_keys_per_query": 10}


@pytest.fixture(autouse=True)
def _needs_wasmtime() -> None:
    needs_wasmtime()


@pytest.fixture
def storage() -> Iterator[ComponentStorage]:
    with StorageManager.from_settings(StorageSettings(url="memory://", **LIMITS)) as manager:
        yield manager.component(Manifest(id="app", access="read-write"))


def test_guest_and_host_share_collections(guest_wasm: Path, host: Any, storage: ComponentStorage) -> None:
    """The guest fills a tree map and a queue; the host reads both and pushes; the guest pops in FIFO order."""
    with host.instantiate(host.load(guest_wasm), storage) as instance:
        assert instance.call("fill-collections", 12) == 12
        users = StorageTreeMap(storage, "users/", page_size=5)
        assert len(users) == 12
        assert users["user-007"] == {"n": 7, "name": "User 7"}
        assert users.last() == ("user-011", {"n": 11, "name": "User 11"})
        assert [key for key, _ in users.range("user-003", "user-006")] == ["user-003", "user-004", "user-005"]
        jobs = StorageQueue(storage, "jobs/", page_size=5)
        assert len(jobs) == 12
        assert jobs.pop() == {"job": 0}
        jobs.push({"job": "from the host"})
        popped = instance.call("pop-jobs", 100)
        assert popped == [f'{{"job": {index}}}' for index in range(1, 12)] + ['{"job": "from the host"}']
        assert len(jobs) == 0 and jobs.pop() is None


def test_the_registry_is_shared_with_the_guest(guest_wasm: Path, host: Any, storage: ComponentStorage) -> None:
    """A prefix the host registered is refused to the guest when it overlaps, with the same error code."""
    StorageSet(storage, "tags/", page_size=5)
    with host.instantiate(host.load(guest_wasm), storage) as instance:
        opened = instance.call("open-collection", "set", "tags/")  # result<string, string>: a tagged variant
        assert (opened.tag, opened.payload) == ("ok", "")
        for kind, prefix, message in [
            ("map", "tags/x", "prefix-conflict: prefix 'tags/x' starts with 'tags/'"),
            ("queue", "tags/", "prefix-conflict: prefix 'tags/' holds a set, not a queue"),
            ("map", "", "invalid-key: a collection prefix is a non-empty str"),
        ]:
            refused = instance.call("open-collection", kind, prefix)
            assert refused.tag == "err" and refused.payload.startswith(message)
