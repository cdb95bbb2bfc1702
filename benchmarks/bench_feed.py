"""What the change feed costs and how fast watchers wake (issue 14's speed points), as ratios and medians.

* ``on/off``: ``set`` with the feed on over ``set`` with it off, on memory://,
  SQLite, LevelDB, RocksDB and LMDB (target >= 0.7 on SQLite and LevelDB): two
  stores, interleaved rounds, the median of the per-round ratios of writes per
  second; same-size overwrites (the cheapest write with the feed off: one
  autocommit statement on SQLite, one put on LevelDB) and new keys.
* ``off/main``: ``set`` with the feed off (no component enabled it) on this
  tree over the same on another checkout (``--main PATH``, e.g. a worktree of
  ``main``): alternating child processes, each timing one round by CPU time
  (target >= 0.98).
* ``wake``: a same-process watcher (``watch``) woken by a commit of another
  thread: milliseconds from the writer's commit returning to the watcher
  holding the event (target <= 5 ms median), on each backend measured.
* ``pg-notify``: a watcher in this process, the writer in another process
  (as another host would be) on PostgreSQL: LISTEN/NOTIFY wakes the watcher,
  which pulls (target <= 50 ms median). ``--pg URL`` (skipped without it).
* Redis (``--redis URL``, and ``redis`` in ``--only``): the same on/off,
  off/main and same-process rows on Redis (keys under a key prefix of this
  run, deleted afterwards), and the cross-process wake-up by pub/sub (the
  commit script PUBLISHes, a listener thread wakes the watcher, which pulls).

    python benchmarks/bench_feed.py [--writes 5000] [--rounds 7] [--samples 50] [--main /path/to/main]
                                    [--pg postgresql+psycopg://postgres@127.0.0.1/test]
                                    [--redis redis://127.0.0.1:6379/13 --only redis]
                                    [--only memory,sqlite,leveldb,rocksdb,lmdb]

Run it from outside the repository (``cd /tmp``), so the installed packages are measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from airssys_storage import Access, ComponentStorage, Manifest, StorageManager, StorageSettings

VALUE = b"v" * 100
#: The Redis server of ``--redis`` (the kind ``redis`` runs against it).
REDIS_URL = "redis://127.0.0.1:6379/13"


def redis_options(name: str) -> dict[str, Any]:
    """Backend options putting this run's keys under their own prefix (deleted by :func:`drop_redis`)."""
    return {"key_prefix": f"benchfeed{os.getpid()}_{name}:"}


def drop_redis(url: str, options: dict[str, Any]) -> None:
    """Delete the keys under *options*' key prefix (SCAN + DEL: never FLUSHDB on a shared server)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        for name in client.scan_iter(match=options["key_prefix"] + "*", count=1000):
            client.delete(name)
    finally:
        client.close()


#: The store URLs of each backend measured: ``{}`` is a directory (absolute), ``{name}`` tells two stores apart.
URLS = {
    "memory": "memory://",
    "sqlite": "sqlite:///{}/{name}.db",
    "leveldb": "leveldb://{}/{name}",
    "rocksdb": "rocksdb://{}/{name}",
    "lmdb": "lmdb://{}/{name}",
}
#: The plugin directory of each backend (for the ``--main`` checkout's PYTHONPATH).
PLUGINS = {
    "memory": "airssys-storage-memory",
    "sqlite": "airssys-storage-sql",
    "leveldb": "airssys-storage-leveldb",
    "rocksdb": "airssys-storage-rocksdb",
    "lmdb": "airssys-storage-lmdb",
    "redis": "airssys-storage-redis",
}


def store_url(kind: str, directory: Path | str, name: str) -> str:
    """The URL of store *name* of backend *kind* under *directory* (Redis: ``--redis``; key prefixes part stores)."""
    return REDIS_URL if kind == "redis" else URLS[kind].format(directory, name=name)


def open_store(url: str, feed: bool, **settings: Any) -> tuple[StorageManager, ComponentStorage]:
    manager = StorageManager.from_settings(StorageSettings(url=url, **settings))
    return manager, manager.component(Manifest("bench", Access.ADMIN, None, changes=True if feed else None))


def time_sets(store: ComponentStorage, writes: int, round_: int, insert: bool) -> float:
    """Writes per second of *writes* sets: new keys (*insert*), or same-size overwrites of 1,000 keys."""
    keys = [f"r{round_}-{i}" if insert else f"key-{i % 1000:04d}" for i in range(writes)]
    start = time.perf_counter()
    for key in keys:
        store.set(key, VALUE)
    return writes / (time.perf_counter() - start)


def on_vs_off(kind: str, writes: int, rounds: int, directory: Path, insert: bool) -> float:
    """Median of (sets/s with the feed on) / (sets/s with it off); new keys (*insert*) or overwrites."""
    directory.mkdir(exist_ok=True)
    if kind == "redis":
        on_options, off_options = redis_options("on"), redis_options("off")
        on_manager, on = open_store(REDIS_URL, True, backend_options=on_options)
        off_manager, off = open_store(REDIS_URL, False, backend_options=off_options)
    else:
        on_manager, on = open_store(store_url(kind, directory, "a"), True)
        off_manager, off = open_store(store_url(kind, directory, "b"), False)
    ratios = []
    try:
        for round_ in range(rounds):
            sides = [("on", on), ("off", off)]
            if round_ % 2:
                sides.reverse()
            if not insert and not round_:
                for _, store in sides:
                    time_sets(store, 1000, 0, False)  # the keys exist: every timed set is an overwrite
            speed = {name: time_sets(store, writes, round_, insert) for name, store in sides}
            ratios.append(speed["on"] / speed["off"])
    finally:
        on_manager.close()
        off_manager.close()
        if kind == "redis":
            drop_redis(REDIS_URL, on_options)
            drop_redis(REDIS_URL, off_options)
    return statistics.median(ratios)


_CHILD = """
import json, sys, tempfile, time
from airssys_storage import Access, Manifest, StorageManager, StorageSettings
url, writes, options = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
with tempfile.TemporaryDirectory() as d:
    url = url.replace("DIR", d)
    with StorageManager.from_settings(StorageSettings(url=url, backend_options=options)) as m:
        s = m.component(Manifest("bench", Access.ADMIN, None))
        keys = [f"key-{i % 1000:04d}" for i in range(writes)]
        for key in keys[:1000]:
            s.set(key, b"v" * 100)
        start = time.process_time()  # CPU time: steadier than elapsed time on a shared machine
        for key in keys:
            s.set(key, b"v" * 100)
        print(json.dumps(writes / (time.process_time() - start)))
"""


def off_vs_main(kind: str, main: Path, writes: int, rounds: int) -> float:
    """Median of (sets/s here, feed off) / (sets/s on the *main* checkout), alternating child processes."""
    url = store_url(kind, "DIR", "s")
    options = redis_options("child") if kind == "redis" else {}
    writes *= 20 if kind in ("memory", "leveldb", "rocksdb") else 1  # a set is a few µs: longer rounds
    main_path = os.pathsep.join(str(p) for p in (main, main / "plugins" / PLUGINS[kind]))

    def run(pythonpath: str | None) -> float:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, url, str(writes), json.dumps(options)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        if kind == "redis":
            drop_redis(url, options)
        return float(json.loads(out.stdout))

    ratios = []
    for round_ in range(rounds):
        if round_ % 2:
            base = run(main_path)
            here = run(None)
        else:
            here = run(None)
            base = run(main_path)
        ratios.append(here / base)
    return statistics.median(ratios)


def same_process_wake(kind: str, samples: int, directory: Path) -> float:
    """Median milliseconds from a commit (another thread) returning to a same-process watcher holding its event."""
    url = store_url(kind, directory, "wake")
    options = redis_options("wake") if kind == "redis" else {}
    manager, store = open_store(url, True, backend_options=options)
    received: list[float] = []
    committed: list[float] = []
    got = threading.Event()
    try:
        start = store.snapshot_seq()

        def watcher() -> None:
            for event in store.watch(start, timeout=10):
                received.append(time.perf_counter())
                got.set()
                if event.seq >= start + samples:
                    return

        thread = threading.Thread(target=watcher)
        thread.start()
        time.sleep(0.1)  # the watcher is waiting
        for i in range(samples):
            got.clear()
            store.set(f"k{i}", VALUE)
            committed.append(time.perf_counter())
            got.wait(5)
            time.sleep(0.005)
        thread.join()
    finally:
        manager.close()
        if kind == "redis":
            drop_redis(url, options)
    return statistics.median((r - c) * 1000 for r, c in zip(received, committed, strict=True))


_PG_WRITER = """
import sys, time
from airssys_storage import Access, Manifest, StorageManager, StorageSettings
url, options, samples = sys.argv[1], sys.argv[2], int(sys.argv[3])
import json
with StorageManager.from_settings(StorageSettings(url=url, backend_options=json.loads(options))) as m:
    s = m.component(Manifest("bench-pg", Access.ADMIN, None, changes=True))
    time.sleep(1.0)  # the watcher listens
    for i in range(samples):
        s.set(f"k{i}", b"x")
        print(repr(time.time()), flush=True)
        time.sleep(0.05)
"""


def cross_process_notify(url: str, samples: int) -> float:
    """Median milliseconds from a commit in another process returning to this process's watcher holding it.

    PostgreSQL (NOTIFY) or Redis (pub/sub), by *url*. The poll interval is set to 30 s, so only the
    push channel can wake the watcher in time.
    """
    redis = url.startswith(("redis:", "rediss:"))
    options = redis_options("notify") if redis else {"table_prefix": f"benchfeed{os.getpid()}_"}
    settings = StorageSettings(url=url, backend_options=options, changes_poll_seconds=30)
    manager = StorageManager.from_settings(settings)
    store = manager.component(Manifest("bench-pg", Access.ADMIN, None, changes=True))
    start = store.snapshot_seq()
    received: list[float] = []
    writer = subprocess.Popen(
        [sys.executable, "-c", _PG_WRITER, url, json.dumps(options), str(samples)], stdout=subprocess.PIPE, text=True
    )
    try:
        for event in store.watch(start, timeout=20):
            received.append(time.time())
            if event.seq >= start + samples:
                break
        committed = [float(line) for line in writer.communicate(timeout=60)[0].split()]
    finally:
        writer.kill()
        if redis:
            drop_redis(url, options)
        else:
            _drop(manager, options["table_prefix"])
        manager.close()
    return statistics.median((r - c) * 1000 for r, c in zip(received, committed, strict=True))


def _drop(manager: StorageManager, prefix: str) -> None:
    backend: Any = manager.backend
    for table in ("data", "usage", "meta", "ops", "changes"):
        backend._run("drop", backend._execute, f"DROP TABLE IF EXISTS {prefix}{table}")
    backend._run("drop", backend._execute, f"DROP FUNCTION IF EXISTS {prefix}refuse(text, bigint, bigint)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--main", type=Path, default=None, help="a checkout of main, for off/main")
    parser.add_argument("--pg", default=None, help="a PostgreSQL URL, for the cross-process NOTIFY wake-up")
    parser.add_argument("--redis", default=None, help="a Redis URL: the kind redis, and the pub/sub wake-up")
    parser.add_argument(
        "--only", default="memory,sqlite", help="kinds: memory, sqlite, leveldb, rocksdb, lmdb, redis (needs --redis)"
    )
    args = parser.parse_args()
    global REDIS_URL
    REDIS_URL = args.redis or REDIS_URL
    kinds = args.only.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for kind in kinds:
            stores = directory / kind  # each engine its own directories (none opens another's store)
            stores.mkdir()
            for insert, what in ((False, "overwrite"), (True, "new key")):
                ratio = on_vs_off(kind, args.writes, args.rounds, stores / what.replace(" ", ""), insert)
                print(f"{kind:7} set ({what:9}) feed on/off {ratio:.3f}x")
            if args.main is not None:
                ratio = off_vs_main(kind, args.main, args.writes, args.rounds)
                print(f"{kind:7} set feed off/main    {ratio:.3f}x")
            print(f"{kind:7} same-process wake-up {same_process_wake(kind, args.samples, stores):.2f} ms (median)")
    if args.pg:
        print(f"postgresql NOTIFY wake-up   {cross_process_notify(args.pg, args.samples):.2f} ms (median)")
    if args.redis:
        print(f"redis pub/sub wake-up       {cross_process_notify(args.redis, args.samples):.2f} ms (median)")


if __name__ == "__main__":
    main()
