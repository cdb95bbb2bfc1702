"""Races of spawned processes on one store, for the tests of capability ``multi_process``.

Children are spawned (not forked): each imports the worker's module and
opens the store from scratch, by URL, as another host would.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Sequence
from typing import Any

from airssys_storage import StorageManager, StorageSettings

__all__ = ["run_spawned", "worker_manager"]


def run_spawned(
    settings: StorageSettings, target: Callable[..., None], arguments: Sequence[tuple[Any, ...]]
) -> list[Any]:
    """Run ``target(payload, *args, barrier, results)`` in one spawned process per entry of *arguments*.

    *payload* is *settings* as JSON data (open it with :func:`worker_manager`),
    *barrier* a barrier of all the workers, *results* a queue on which each
    worker puts exactly one result. Returns the results (in no set order);
    fails naming the reason when a worker could not start.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(arguments), timeout=120)
    results = ctx.Queue()
    payload = settings.model_dump(mode="json")
    workers = [ctx.Process(target=target, args=(payload, *args, barrier, results), daemon=True) for args in arguments]
    for process in workers:
        process.start()
    try:
        outcomes = [results.get(timeout=300) for _ in workers]
    finally:
        for process in workers:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    broken = [outcome for outcome in outcomes if isinstance(outcome, str)]
    assert broken == [], f"workers failed to start: {broken}"
    return outcomes


def worker_manager(payload: dict[str, Any], barrier: Any, results: Any) -> StorageManager | None:
    """In a worker: open the store, then wait until every worker has; ``None`` (reported) when that failed."""
    try:
        manager = StorageManager.from_settings(StorageSettings(**payload))
    except Exception as exc:  # reported, so the parent fails with the reason instead of a timeout
        barrier.abort()
        results.put(f"{type(exc).__name__}: {exc}")
        return None
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        manager.close()
        results.put("another worker could not open the store")
        return None
    return manager
