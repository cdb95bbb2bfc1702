"""Crash safety: a writer SIGKILLed at random points loses no acknowledged write and tears no batch.

(The LevelDB plugin's crash loop, on lmdb:// with the default options; the writer starts on a 64 KiB
map, so kills also land in commits that grow it, and every kill of a writer holding LMDB's write lock
checks that the next process takes the lock over.)

The child writes a deterministic sequence of operations (single sets, some
with a ttl, and deletes, batches of sets and deletes, increments with an
operation id, compare-and-swap, prefix deletes) through ComponentStorage and
acknowledges each one on a pipe after the call returned. The parent kills it
at a random moment, reopens the database and checks it against an oracle:
the data must equal the state after the last acknowledged operation, or after
the one in flight (which may or may not have committed) — anything else is a
lost write, a torn batch or a torn range delete. The usage counter must equal
the recomputed sum, and every key's version must never go back (and must grow
whenever its value changed). An increment in flight is then retried with its
operation id: it must apply exactly once in all.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from airssys_storage_lmdb import LMDBBackend

from airssys_storage import (
    Access,
    ComponentStorage,
    Manifest,
    PluginRegistry,
    StorageManager,
    StorageSettings,
    Usage,
)

ROUNDS = 120
NAMESPACE = "crash"
KEYS = [f"k{i:02}" for i in range(40)]

COUNTERS = ["n0", "n1"]

Op = tuple[str, dict[str, bytes | None]]


def operation(seed: int, index: int) -> Op:
    """Operation *index* of the sequence: what it does is a pure function of its number.

    ``increment`` holds ``{counter: delta as ASCII}`` and ``delete_prefix`` ``{prefix: None}``;
    the others the keys they write (``None``: delete).
    """
    rng = random.Random(seed * 1_000_003 + index)

    def value(j: int) -> bytes:
        return f"{index}.{j}:".encode() + rng.randbytes(rng.randrange(0, 300))

    kind = rng.random()
    if kind < 0.2:
        return "set", {rng.choice(KEYS): value(0)}
    if kind < 0.3:
        return "set_ttl", {rng.choice(KEYS): value(0)}
    if kind < 0.4:
        return "delete", {rng.choice(KEYS): None}
    if kind < 0.6:
        keys = rng.sample(KEYS, rng.randint(2, 20))
        return "set_many", {key: value(j) for j, key in enumerate(keys)}
    if kind < 0.67:
        return "delete_many", dict.fromkeys(rng.sample(KEYS, rng.randint(2, 10)))
    if kind < 0.82:
        return "increment", {rng.choice(COUNTERS): str(rng.randint(-50, 100)).encode()}
    if kind < 0.94:
        return "compare_and_swap", {rng.choice(KEYS): value(0)}
    return "delete_prefix", {f"k{rng.randrange(4)}": None}


def apply(state: dict[str, bytes], op: Op) -> dict[str, bytes]:
    kind, changes = op
    after = dict(state)
    for key, value in changes.items():
        if kind == "increment":
            assert value is not None
            after[key] = str(int(after.get(key, b"0")) + int(value)).encode()
        elif kind == "delete_prefix":
            for name in [name for name in after if name.startswith(key)]:
                del after[name]
        elif value is None:
            after.pop(key, None)
        else:
            after[key] = value
    return after


def perform(store: ComponentStorage, index: int, op: Op) -> None:
    """Run operation number *index* on *store* (the parent retries an increment in flight with the same id)."""
    kind, changes = op
    if kind in ("set", "set_ttl"):
        [(key, value)] = changes.items()
        assert value is not None
        store.set(key, value, ttl=3600 if kind == "set_ttl" else None)
    elif kind == "delete":
        store.delete(next(iter(changes)))
    elif kind == "set_many":
        store.set_many({key: value for key, value in changes.items() if value is not None})
    elif kind == "delete_many":
        store.delete_many(list(changes))
    elif kind == "increment":
        [(key, delta)] = changes.items()
        assert delta is not None
        store.increment(key, int(delta), op_id=f"op-{index}")
    elif kind == "compare_and_swap":
        [(key, value)] = changes.items()
        assert value is not None
        entry = store.get_entry(key)  # one writer: the version read is still current when the swap runs
        store.compare_and_swap(key, value, version=None if entry is None else entry.version)
    else:
        store.delete_prefix(next(iter(changes)))


def writer(url: str, registry: PluginRegistry, seed: int, start: int, ack_fd: int) -> None:
    """The child: perform operations from *start* on, acknowledging each after it returned."""
    settings = StorageSettings(url=url, backend_options={"map_size": "64KiB"})
    manager = StorageManager.from_settings(settings, registry=registry)
    store = manager.component(Manifest(NAMESPACE, Access.ADMIN))
    for index in range(start, start + 100_000):
        perform(store, index, operation(seed, index))
        os.write(ack_fd, index.to_bytes(4, "little"))


def run_until_killed(url: str, registry: PluginRegistry, seed: int, start: int, rng: random.Random) -> int:
    """Fork a writer, kill it at a random point; returns how many operations it acknowledged."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        try:
            writer(url, registry, seed, start, write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    acked = b""
    wanted = rng.randrange(0, 80)
    while len(acked) // 4 < wanted:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        acked += chunk
    # Mostly kill at once (mid-operation), sometimes a little later (mid-open, mid-map-growth).
    time.sleep(rng.choice([0, 0, 0, rng.random() / 500]))
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), "the writer ended on its own (it should run until killed)"
    while chunk := os.read(read_fd, 65536):  # acks written before the kill are acknowledged too
        acked += chunk
    os.close(read_fd)
    assert len(acked) % 4 == 0
    indexes = [int.from_bytes(acked[i : i + 4], "little") for i in range(0, len(acked), 4)]
    assert indexes == list(range(start, start + len(indexes)))
    return len(indexes)


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_write_and_tears_no_batch(tmp_path: Path) -> None:
    seed = int(os.environ.get("AIRSSYS_STORAGE_TEST_SEED", "20240607"))
    rng = random.Random(seed)
    url = f"lmdb://{tmp_path}/db"  # the default options: sync and metasync on
    registry = PluginRegistry.load()  # once, before forking: children start writing at once
    state: dict[str, bytes] = {}  # the oracle: state after every acknowledged operation
    index = 0  # the first operation not known to be in the database
    outcomes = {"in-flight operation committed": 0, "in-flight operation not committed": 0}
    versions: dict[str, tuple[int, bytes]] = {}  # the last version seen of each key, and its value then
    for round_ in range(ROUNDS):
        acknowledged = run_until_killed(url, registry, seed, index, rng)
        for i in range(index, index + acknowledged):
            state = apply(state, operation(seed, i))
        index += acknowledged
        in_flight = apply(state, operation(seed, index))
        backend = LMDBBackend.open(url, {"map_size": "64KiB"})
        try:
            found = {key.decode(): value for key, value in backend.items(NAMESPACE, b"", None, 10**6)}
            usage = backend.usage(NAMESPACE)
            assert backend.verify().ok, f"round {round_}: verify finds damage"
            for key in found:
                entry = backend.get_entry(NAMESPACE, key.encode())
                assert entry is not None and entry.value == found[key]
                last = versions.get(key)
                if last is not None:
                    assert entry.version >= last[0], f"round {round_}: {key} went back from version {last[0]}"
                    assert entry.value == last[1] or entry.version > last[0], f"round {round_}: {key} changed"
                versions[key] = (entry.version, entry.value)
        finally:
            backend.close()
        if found == state:
            outcomes["in-flight operation not committed"] += 1
        elif found == in_flight:
            outcomes["in-flight operation committed"] += 1
            state = in_flight
            index += 1
        else:
            wrong = sorted(
                k
                for k in set(found) | set(state) | set(in_flight)
                if found.get(k) not in (state.get(k), in_flight.get(k))
            )
            mixed = sorted(
                k
                for k in set(state) | set(in_flight)
                if state.get(k) != in_flight.get(k) and found.get(k) == in_flight.get(k)
            )
            pytest.fail(
                f"round {round_}, after {index} acknowledged operations: the database matches neither the "
                f"acknowledged state nor the in-flight operation {operation(seed, index)[0]} applied; keys "
                f"with values from neither: {wrong}; keys of a partially applied batch: {mixed}"
            )
        assert usage == Usage(sum(len(k.encode()) + len(v) for k, v in found.items()), len(found)), round_
        if operation(seed, index - 1)[0] == "increment" and state is in_flight:
            retried = index - 1  # committed before the kill: a retry with its id must apply nothing
        elif operation(seed, index)[0] == "increment":
            retried = index  # not committed: the retry applies it, once
            state, index = apply(state, operation(seed, index)), index + 1
        else:
            continue
        settings = StorageSettings(url=url, backend_options={"map_size": "64KiB"})
        with StorageManager.from_settings(settings, registry=registry) as manager:
            store = manager.component(Manifest(NAMESPACE, Access.ADMIN))
            perform(store, retried, operation(seed, retried))
            assert dict(store.scan()[0]) == state, f"round {round_}: the retried increment applied twice"
    print(f"{ROUNDS} kills, {index} operations acknowledged and found: {outcomes}")
