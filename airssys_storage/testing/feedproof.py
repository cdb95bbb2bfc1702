"""The change feed's proofs across processes (issue 14), for backends with ``change_feed`` and ``multi_process``.

- **Writer race**: ``feed_race_processes`` spawned writer processes make
  ``feed_race_writes`` writes each (sets, overwrites, deletes, increments)
  while a reader in the test process follows the feed: it sees every seq
  exactly once, in order, with no gap, and its events replayed onto an empty
  dict give the final state exactly.
- **Killed reader**: a reader process (this module run with ``python -m``)
  watches the feed, appends each event's seq to a file and fsyncs it, then
  saves the seq as its cursor (write, rename). It is SIGKILLed
  mid-stream while the test keeps writing, and restarted from the saved
  cursor: no seq is missing, each run's seqs are in order without a gap,
  and a seq comes twice only at the restart boundary (the one in flight
  when the reader died: at least once, never less).

Sizes are class attributes. The defaults are the issue's proof (4 x 2,500);
an engine whose every commit waits for a disk flush that the seq serialises
may lower them in its test class, saying why there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from airssys_storage import Access, ChangeEvent, ComponentStorage, Manifest, StorageManager, StorageSettings

from .processes import run_spawned, worker_manager

__all__ = ["FeedProofConformance", "run_feed_race"]


def _feed_settings(settings: StorageSettings) -> StorageSettings:
    return settings.model_copy(update={"changes_capture_values": True})


def dense_problem(seqs: Sequence[int], first: int, last: int) -> str | None:
    """Why *seqs* is not exactly ``first..last`` in order (a short description), or ``None`` when it is."""
    expected = range(first, last + 1)
    if list(seqs) == list(expected):
        return None
    seen = set(seqs)
    missing = [seq for seq in expected if seq not in seen]
    twice = sorted(seq for seq, count in Counter(seqs).items() if count > 1)
    backwards = [(a, b) for a, b in pairwise(seqs) if b <= a]
    stray = sorted(seen - set(expected))
    return (
        f"{len(seqs)} seqs, expected {first}..{last}: missing {missing[:10]} ({len(missing)}), "
        f"twice {twice[:10]}, out of order {backwards[:5]}, outside {stray[:10]}"
    )


class FeedProofConformance:
    """Mix-in of :class:`~airssys_storage.testing.BackendConformance`: the change feed across processes."""

    #: Writer processes and writes per process of the writer race (the issue's proof: 4 x 2,500).
    feed_race_processes = 4
    feed_race_writes = 2500
    #: Writes made while the killed reader follows the feed, and how many events it records before the kill.
    feed_kill_writes = 600
    feed_kill_after = 150

    @pytest.fixture
    def feed_proof_settings(self, manager: StorageManager, storage_settings: StorageSettings) -> StorageSettings:
        """The suite's settings with values captured; skips a backend without a multi-process change feed."""
        capabilities = manager.backend.capabilities
        if not capabilities.change_feed:
            pytest.skip(f"backend {manager.backend.name!r} keeps no change feed (capabilities.change_feed=False)")
        if not capabilities.multi_process:
            pytest.skip(f"backend {manager.backend.name!r} is single-process (capabilities.multi_process=False)")
        return _feed_settings(storage_settings)

    def test_feed_proof_writer_processes(self, feed_proof_settings: StorageSettings) -> None:
        """Change feed, capability multi_process: racing writer processes; a reader sees each seq once, in order."""
        # ... with no gap, and the events replayed onto an empty dict give the final state.
        report = run_feed_race(feed_proof_settings, "feed-race", self.feed_race_processes, self.feed_race_writes)
        start, seqs = report["start"], report["seqs"]
        problem = dense_problem(seqs, start + 1, start + self.feed_race_processes * self.feed_race_writes)
        assert problem is None, problem
        assert report["replayed"] == report["final"]

    def test_feed_proof_killed_reader_resumes(self, feed_proof_settings: StorageSettings, tmp_path: Path) -> None:
        """Change feed, capability multi_process: a SIGKILLed reader restarted from its cursor misses no event."""
        # Each run reads in order, and only the event in flight at the kill comes twice.
        assert self.feed_kill_after < self.feed_kill_writes
        settings, component = feed_proof_settings, "feed-kill"
        cursor, out = tmp_path / "cursor", tmp_path / "seen"
        failures: list[BaseException] = []
        with StorageManager.from_settings(settings) as manager:
            store = manager.component(Manifest(component, Access.ADMIN, changes=True))
            store.clear()
            start = store.snapshot_seq()
            cursor.write_text(str(start))

            def write() -> None:
                try:
                    for i in range(self.feed_kill_writes):
                        store.set(f"k{i % 100}", b"%d" % i)
                except BaseException as exc:  # reported by the test
                    failures.append(exc)

            writer = threading.Thread(target=write)
            reader = start_feed_reader(settings, component, cursor, out)
            try:
                writer.start()
                _wait_for(lambda: len(_seqs(out)) >= self.feed_kill_after, "the reader's first events", reader)
                reader.send_signal(signal.SIGKILL)
                reader.wait()
                first_run, saved = _seqs(out), int(cursor.read_text())
                reader = start_feed_reader(settings, component, cursor, out)
                writer.join()
                assert not failures, f"the writer failed: {failures[0]!r}"
                last = store.snapshot_seq()
                assert last == start + self.feed_kill_writes
                _wait_for(lambda: cursor.read_text() == str(last), "the restarted reader to reach the end", reader)
            finally:
                reader.kill()
                reader.wait()
                writer.join()
        seen = _seqs(out)
        second_run = seen[len(first_run) :]
        assert first_run and first_run[-1] < last, "the reader was not killed mid-stream"
        problem = dense_problem(first_run, start + 1, first_run[-1])
        assert problem is None, f"before the kill: {problem}"
        assert first_run[-1] - 1 <= saved <= first_run[-1], f"cursor {saved} after recording up to {first_run[-1]}"
        problem = dense_problem(second_run, saved + 1, last)
        assert problem is None, f"after the restart from cursor {saved}: {problem}"
        assert set(seen) == set(range(start + 1, last + 1))


def start_feed_reader(settings: StorageSettings, component: str, cursor: Path, out: Path) -> subprocess.Popen[bytes]:
    """Start the reader process (:func:`main`) on *component*, from the seq saved in *cursor*, appending to *out*."""
    process = subprocess.Popen(
        [sys.executable, "-m", __name__, component, str(cursor), str(out)],
        stdin=subprocess.PIPE,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(settings.model_dump(mode="json")).encode())  # not in argv: ps shows argv
    process.stdin.close()
    return process


def _seqs(path: Path) -> list[int]:
    """The seqs recorded in *path* (complete lines: each was written with one write and fsynced)."""
    if not path.exists():
        return []
    return [int(line) for line in path.read_text(encoding="ascii").split("\n") if line]


def _wait_for(condition: Callable[[], bool], what: str, reader: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if reader.poll() is not None:
            pytest.fail(f"the reader process exited ({reader.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.02)


def run_feed_race(settings: StorageSettings, component: str, processes: int, writes: int) -> dict[str, Any]:
    """*processes* spawned writers make *writes* writes each while this process watches the feed.

    Returns ``start`` (the seq before the race), ``seqs`` (those the watcher
    saw, in order), ``replayed`` (its events replayed onto an empty dict) and
    ``final`` (the component's keys and values at the end).
    """
    from airssys_storage.changes import replay

    manifest = Manifest(component, Access.ADMIN, changes=True)
    with StorageManager.from_settings(settings) as manager:
        store = manager.component(manifest)
        store.clear()
        start = store.snapshot_seq()
        done = threading.Event()
        outcomes: list[Any] = []

        def race() -> None:
            try:
                outcomes.extend(
                    run_spawned(settings, _feed_writer, [(component, worker, writes) for worker in range(processes)])
                )
            finally:
                done.set()

        thread = threading.Thread(target=race)
        thread.start()
        events: list[ChangeEvent] = []
        since = start
        while True:
            finished = done.is_set()  # read before the pull: the pull after it sees every commit
            page, since = store.changes(since)
            events += page
            if finished and not page:
                break
            if not page:
                manager.backend.wait_for_changes(component, since, 0.05)
        thread.join()
        assert all(outcome is None for outcome in outcomes), outcomes
        state: dict[str, bytes | None] = {}
        replay(state, events)
        return {"start": start, "seqs": [event.seq for event in events], "replayed": state, "final": _scan_all(store)}


def _scan_all(store: ComponentStorage) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    cursor = None
    while True:
        page, cursor = store.scan(None, cursor)
        found.update(page)
        if cursor is None:
            return found


def _feed_writer(payload: dict[str, Any], component: str, worker: int, writes: int, barrier: Any, results: Any) -> None:
    """One writer: sets, overwrites, deletes and increments on shared and own keys."""
    manager = worker_manager(payload, barrier, results)
    if manager is None:
        return
    try:
        store = manager.component(Manifest(component, Access.ADMIN, changes=True))
        for i in range(writes):
            step = i % 5
            if step == 3:
                store.delete(f"w{worker}-{i - 1}")
            elif step == 4:
                store.increment("shared-counter", 1)
            else:
                store.set(f"w{worker}-{i}" if step else f"shared-{i % 7}", f"{worker}:{i}".encode())
        results.put(None)
    except Exception as exc:
        results.put((f"writer {worker}", f"{type(exc).__name__}: {exc}"))
    finally:
        manager.close()


def main(component: str, cursor_path: str, out_path: str) -> None:
    """The reader process: settings (JSON) on stdin; watches *component* from the seq saved in *cursor_path*.

    For each event it appends the seq to *out_path* (one write) and fsyncs
    it, then saves the seq as the cursor (write a temporary file, rename).
    Killed anywhere, it has recorded every seq up to its cursor, and at most
    the one after it too: a restart from the cursor repeats at most that one
    and misses none. The cursor is not fsynced: a SIGKILL loses nothing
    written, and a cursor that a power loss took back only repeats events.
    """
    settings = StorageSettings(**json.loads(sys.stdin.read()))
    cursor = Path(cursor_path)
    temporary = cursor.with_name(cursor.name + ".tmp")
    since = int(cursor.read_text())
    with StorageManager.from_settings(settings) as manager:
        store = manager.component(Manifest(component, Access.READ_ONLY, changes=True))
        out = os.open(out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for event in store.watch(since):
                os.write(out, b"%d\n" % event.seq)
                os.fsync(out)
                temporary.write_text(str(event.seq), encoding="ascii")
                os.replace(temporary, cursor)
        finally:
            os.close(out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
