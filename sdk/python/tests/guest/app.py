"""A componentize-py guest using airssys-storage-sdk: the same collections as the host, through GuestStore.

Built by ``tests/test_guest.py`` (``componentize-py -d wit -w sdk-guest
componentize -p <this folder> -p sdk/python app``). Every SDK error becomes
``Err("<code>: <message>")``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import wit_world
from airssys_storage_sdk import StorageError, StorageMap, StorageQueue, StorageSet, StorageTreeMap, StorageVector
from airssys_storage_sdk.guest import GuestStore
from componentize_py_types import Err

KINDS: dict[str, Any] = {
    "map": StorageMap,
    "treemap": StorageTreeMap,
    "set": StorageSet,
    "vector": StorageVector,
    "queue": StorageQueue,
}
PAGE = 5  # the host's max_batch_ops in the test
_T = TypeVar("_T")


def guarded(work: Callable[[], _T]) -> _T:
    try:
        return work()
    except StorageError as exc:
        raise Err(f"{exc.code}: {exc}") from None


class WitWorld(wit_world.WitWorld):
    def fill_collections(self, count: int) -> int:
        def work() -> int:
            store = GuestStore()
            users: StorageTreeMap[str, dict[str, Any]] = StorageTreeMap(store, "users/", page_size=PAGE)
            jobs: StorageQueue[dict[str, int]] = StorageQueue(store, "jobs/", page_size=PAGE)
            for index in range(count):
                users[f"user-{index:03}"] = {"n": index, "name": f"User {index}"}
                jobs.push({"job": index})
            return len(users)

        return guarded(work)

    def pop_jobs(self, n: int) -> list[str]:
        def work() -> list[str]:
            jobs: StorageQueue[Any] = StorageQueue(GuestStore(), "jobs/", page_size=PAGE)
            popped = []
            for _ in range(n):
                item = jobs.pop()
                if item is None:
                    break
                popped.append(json.dumps(item))
            return popped

        return guarded(work)

    def open_collection(self, kind: str, prefix: str) -> str:
        def work() -> str:
            KINDS[kind](GuestStore(), prefix, page_size=PAGE)
            return ""

        return guarded(work)
