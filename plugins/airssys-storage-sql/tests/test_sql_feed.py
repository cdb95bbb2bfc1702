"""The change feed's proof on the engine selected by AIRSSYS_STORAGE_TEST_SQL (issue 14).

- 4 writer processes x 2,500 writes: a reader sees every seq exactly once, in
  order, no gaps, and the events replayed onto an empty dict give the final state;
- a reader SIGKILLed mid-stream and restarted from its saved cursor misses nothing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airssys_storage import Access, Manifest, StorageManager, StorageSettings
from airssys_storage.testing.changes import run_feed_race

HERE = Path(__file__).parent


def _settings(store_url: str, store_options: dict[str, Any]) -> StorageSettings:
    return StorageSettings(url=store_url, backend_options=store_options, changes_capture_values=True)


@pytest.mark.slow
def test_four_writer_processes_and_one_reader(store_url: str, store_options: dict[str, Any]) -> None:
    """4 x 2,500 writes from spawned processes: every seq once, in order, dense; replay equals the final state."""
    report = run_feed_race(_settings(store_url, store_options), "feed-proof", 4, 2500)
    assert report["seqs_in_order"] and report["no_duplicates"]
    assert report["seen"] == report["expected"] == 10_000
    assert report["replayed"] == report["final"]


def _lines(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split("\n") if line] if path.exists() else []


def _reader(settings: StorageSettings, cursor: Path, out: Path) -> subprocess.Popen[bytes]:
    payload = json.dumps(settings.model_dump(mode="json"))
    return subprocess.Popen(
        [sys.executable, str(HERE / "feedreader.py"), payload, "feed-kill", str(cursor), str(out)],
        cwd=HERE,
    )


def _wait_for(condition: Any, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.slow
def test_a_killed_reader_resumes_from_its_cursor(store_url: str, store_options: dict[str, Any], tmp_path: Path) -> None:
    """SIGKILL the reader mid-stream and restart it from its cursor: every seq is delivered (at least once)."""
    settings = _settings(store_url, store_options)
    cursor, out = tmp_path / "cursor", tmp_path / "seen"
    writes = 3000
    with StorageManager.from_settings(settings) as manager:
        store = manager.component(Manifest("feed-kill", Access.ADMIN, changes=True))
        store.clear()
        start = store.snapshot_seq()
        cursor.write_text(str(start))
        reader = _reader(settings, cursor, out)
        writer = threading.Thread(target=lambda: [store.set(f"k{i % 100}", b"%d" % i) for i in range(writes)])
        try:
            writer.start()
            _wait_for(lambda: len(_lines(out)) >= 300, "the first reader to see 300 events")
            reader.send_signal(signal.SIGKILL)
            reader.wait()
            killed_at = len(_lines(out))
            assert killed_at < writes + 1, "the reader must be killed mid-stream"
            reader = _reader(settings, cursor, out)
            writer.join()
            last = store.snapshot_seq()
            _wait_for(lambda: cursor.read_text() == str(last), "the restarted reader to reach the last seq")
        finally:
            reader.kill()
            reader.wait()
    seen = _lines(out)
    assert set(seen) == set(range(start + 1, last + 1)), "an event was missed"
    first_run, second_run = seen[:killed_at], seen[killed_at:]
    assert first_run == sorted(first_run) and second_run == sorted(second_run)
    assert len(seen) - len(set(seen)) <= 1, "only the event in flight at the kill may come twice"
