"""SIGKILL a process changing collections on SQLite at random moments: every count stays exact.

Each change of a collection (an item and its ``!size``, a slot and ``!len``,
``!tail`` or ``!head``) is one atomic batch, so there is no moment between an
item and its count at which a killed process could leave them apart.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import component

from airssys_storage import ComponentStorage, StorageManager, StorageSettings
from airssys_storage.collections import StorageMap, StorageQueue, StorageSet, StorageVector

KILLS = 12

_WRITER = """
import random, sys
from airssys_storage import Manifest, StorageManager, StorageSettings
from airssys_storage.collections import StorageMap, StorageQueue, StorageSet, StorageVector

with StorageManager.from_settings(StorageSettings(url=sys.argv[1])) as manager:
    storage = manager.component(Manifest(id="app", access="read-write"))
    things, tags = StorageMap(storage, "things/"), StorageSet(storage, "tags/")
    log, jobs = StorageVector(storage, "log/"), StorageQueue(storage, "jobs/")
    print("ready", flush=True)
    rng = random.Random()
    while True:
        key = rng.randrange(50)
        if rng.random() < 0.6:
            things[key] = {"n": key}
            tags.add(key)
            log.append(key)
            jobs.push(key)
        else:
            things.pop(key, None)
            tags.discard(key)
            if len(log):
                log.pop()
            jobs.pop()
"""


def _stored_keys(storage: ComponentStorage, prefix: str) -> list[str]:
    """Every key under *prefix*, every page of the scan (a queue outgrows one page of 1,000)."""
    keys: list[str] = []
    cursor: str | None = None
    while True:
        items, cursor = storage.scan(prefix, cursor, 1000)
        keys.extend(key for key, _ in items)
        if cursor is None:
            return keys


def _check(storage_url: str) -> tuple[int, int, int, int]:
    """Every count equals what is stored; returns the four lengths."""
    with StorageManager.from_settings(StorageSettings(url=storage_url)) as manager:
        storage = component(manager)
        things: StorageMap[int, dict[str, int]] = StorageMap(storage, "things/")
        tags: StorageSet[int] = StorageSet(storage, "tags/")
        log: StorageVector[int] = StorageVector(storage, "log/")
        jobs: StorageQueue[int] = StorageQueue(storage, "jobs/")
        assert len(things) == sum(1 for _ in things)
        assert len(tags) == sum(1 for _ in tags)
        assert len(log) == sum(1 for _ in log)  # every counted slot is there...
        slots = [key for key in _stored_keys(storage, "log/") if not key.startswith("log/!")]
        assert len(slots) == len(log)  # ...and no slot is stored beyond the length
        head, tail = (int(storage.get(f"jobs/!{name}") or b"0") for name in ("head", "tail"))
        queued = [key for key in _stored_keys(storage, "jobs/") if not key.startswith("jobs/!")]
        assert len(jobs) == tail - head == len(queued)  # pushed and not popped, and nothing else stored
        return len(things), len(tags), len(log), len(jobs)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_counts_are_exact_after_sigkills_on_sqlite(tmp_path: Path) -> None:
    """A writer SIGKILLed 12 times at random moments: after each kill, every collection's count is exact."""
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    rng = random.Random(13)
    seen = set()
    for _ in range(KILLS):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, url], stdout=subprocess.PIPE, text=True, env={**os.environ}
        )
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(30) == -signal.SIGKILL
        writer.stdout.close()
        seen.add(_check(url))
    assert len(seen) > 1  # the writer made progress between kills


def test_the_check_reads_every_page_of_a_long_queue(tmp_path: Path) -> None:
    """Regression: a queue of 999 items (two meta keys beside it) outgrows one scan page of 1,000.

    The crash test once read only the first page and reported 998 stored slots
    for a queue of 999 — a miscount in the test, not in the queue.
    """
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    with StorageManager.from_settings(StorageSettings(url=url)) as manager:
        jobs: StorageQueue[int] = StorageQueue(component(manager), "jobs/")
        for n in range(1005):
            jobs.push(n)
        for _ in range(6):
            jobs.pop()
    assert _check(url) == (0, 0, 0, 999)
