"""Concurrent queue: 4 processes push and pop 10,000 items on one store; every item is popped exactly once."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import component, drop_postgresql, postgresql_reachable, skip_or_fail, store_settings

from airssys_storage import StorageManager, StorageSettings
from airssys_storage.collections import StorageQueue

PROCESSES = 4
ITEMS = 10_000


def _worker(settings: StorageSettings, number: int, results: Any) -> None:
    """Push this worker's share, popping after each push; then pop until the queue is empty."""
    popped: list[list[int]] = []
    with StorageManager.from_settings(settings) as manager:
        queue: StorageQueue[list[int]] = StorageQueue(component(manager), "jobs/")
        for index in range(ITEMS // PROCESSES):
            queue.push([number, index])
            if index % 2:
                item = queue.pop()
                if item is not None:
                    popped.append(item)
        while (item := queue.pop()) is not None:
            popped.append(item)
    results.put(popped)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_each_item_is_popped_exactly_once(backend: str, tmp_path: Path) -> None:
    """4 processes push 2,500 items each and pop concurrently: all 10,000 popped, each once, FIFO per pusher."""
    if backend == "postgresql" and (reason := postgresql_reachable()) is not None:
        skip_or_fail(reason)
    settings = store_settings(backend, tmp_path)
    try:
        with StorageManager.from_settings(settings) as manager:  # create the store and register the queue once
            StorageQueue(component(manager), "jobs/")
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        workers = [context.Process(target=_worker, args=(settings, n, results)) for n in range(PROCESSES)]
        for worker in workers:
            worker.start()
        popped = [results.get(timeout=600) for _ in workers]
        for worker in workers:
            worker.join(60)
            assert worker.exitcode == 0
        every = [tuple(item) for share in popped for item in share]
        counts = Counter(every)
        assert len(every) == ITEMS
        assert set(counts) == {(n, i) for n in range(PROCESSES) for i in range(ITEMS // PROCESSES)}
        assert max(counts.values()) == 1
        for share in popped:  # FIFO: one popper sees each pusher's items in push order
            for number in range(PROCESSES):
                mine = [index for n, index in share if n == number]
                assert mine == sorted(mine)
        with StorageManager.from_settings(settings) as manager:
            assert len(StorageQueue(component(manager), "jobs/")) == 0
    finally:
        if backend == "postgresql":
            drop_postgresql(settings)
