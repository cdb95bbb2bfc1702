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

from airssys_storage import StorageManager, StorageSettings
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
        slots = [key for key, _ in storage.scan("log/", None, 1000)[0] if not key.startswith("log/!")]
        assert len(slots) == len(log)  # ...and no slot is stored beyond the length
        head, tail = (int(storage.get(f"jobs/!{name}") or b"0") for name in ("head", "tail"))
        queued = [key for key, _ in storage.scan("jobs/", None, 1000)[0] if not key.startswith("jobs/!")]
        assert len(jobs) == tail - head == len(queued)  # pushed and not popped, and nothing else stored
        return len(things), len(tags), len(log), len(jobs)


@pytest.mark.xfail(
    strict=False,
    reason="known bug (issue 13): after a SIGKILL a queue can count one slot more than it stores "
    "(tail - head 999 vs 998 slots seen in CI); under investigation",
)
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
