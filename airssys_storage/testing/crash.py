"""The SIGKILL crash loop for persistent backends (LevelDB, RocksDB, …).

A writer SIGKILLed at random points loses no acknowledged write and tears no batch.

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

Use it from a backend's test file (mark it ``slow``)::

    @pytest.mark.slow
    def test_sigkill(tmp_path):
        sigkill_loop(f"mybackend://{tmp_path}/db", lambda url: MyBackend.open(url, {}))

Needs POSIX (``os.fork``, or ``pass_fds`` with ``fresh_process``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from airssys_storage import (
    Access,
    ComponentStorage,
    Manifest,
    PluginRegistry,
    StorageBackend,
    StorageManager,
    StorageSettings,
    Usage,
)

__all__ = ["ROUNDS", "sigkill_loop"]

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


def writer(
    url: str, registry: PluginRegistry, seed: int, start: int, ack_fd: int, options: Mapping[str, Any] | None = None
) -> None:
    """The child: perform operations from *start* on, acknowledging each after it returned.

    *options* are the store's ``backend_options``.
    """
    settings = StorageSettings(url=url, backend_options=dict(options or {}))
    manager = StorageManager.from_settings(settings, registry=registry)
    store = manager.component(Manifest(NAMESPACE, Access.ADMIN))
    for index in range(start, start + 100_000):
        perform(store, index, operation(seed, index))
        os.write(ack_fd, index.to_bytes(4, "little"))


def writer_main(argv: list[str]) -> None:
    """A writer in a fresh interpreter: ``URL SEED START ACK_FD OPTIONS_JSON`` (see :func:`sigkill_loop`)."""
    url, seed, start, ack_fd, options = argv
    writer(url, PluginRegistry.load(), int(seed), int(start), int(ack_fd), json.loads(options))


_FRESH_WRITER = "import sys; from airssys_storage.testing.crash import writer_main; writer_main(sys.argv[1:])"


def run_until_killed(
    url: str,
    registry: PluginRegistry,
    seed: int,
    start: int,
    rng: random.Random,
    fresh_process: bool = False,
    options: Mapping[str, Any] | None = None,
) -> int:
    """Start a writer (forked, or a fresh interpreter), kill it at a random point; returns its acknowledged count."""
    read_fd, write_fd = os.pipe()
    child: subprocess.Popen[bytes] | None = None
    if fresh_process:
        command = [sys.executable, "-c", _FRESH_WRITER, url, str(seed), str(start), str(write_fd)]
        command.append(json.dumps(dict(options or {})))
        child = subprocess.Popen(command, pass_fds=(write_fd,))
        pid = child.pid
    else:
        pid = os.fork()
        if pid == 0:  # child
            os.close(read_fd)
            try:
                writer(url, registry, seed, start, write_fd, options)
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
    # Mostly kill at once (mid-operation), sometimes a little later (mid-open, mid-compaction).
    time.sleep(rng.choice([0, 0, 0, rng.random() / 500]))
    os.kill(pid, signal.SIGKILL)
    if child is not None:
        killed = child.wait() == -signal.SIGKILL
    else:
        killed = os.WIFSIGNALED(os.waitpid(pid, 0)[1])
    assert killed, "the writer ended on its own (it should run until killed)"
    while chunk := os.read(read_fd, 65536):  # acks written before the kill are acknowledged too
        acked += chunk
    os.close(read_fd)
    assert len(acked) % 4 == 0
    indexes = [int.from_bytes(acked[i : i + 4], "little") for i in range(0, len(acked), 4)]
    assert indexes == list(range(start, start + len(indexes)))
    return len(indexes)


def sigkill_loop(
    url: str,
    open_backend: Callable[[str], StorageBackend],
    rounds: int = ROUNDS,
    *,
    fresh_process: bool = False,
    options: Mapping[str, Any] | None = None,
    verify: bool = False,
) -> dict[str, int]:
    """Kill a writer on *url* *rounds* times and check the store after each kill (see the module docs).

    The writer is forked from this process, or with *fresh_process* started
    in a new interpreter (slower: for engines whose global state a forked
    child cannot use once this process has used the engine, e.g. RocksDB's
    background thread pool). *options* are the ``backend_options`` of the
    writer and of the retries (e.g. a small LMDB map, so that kills land in
    commits that grow it). With *verify*, the backend's ``verify()`` must
    find the store sound after every kill.

    *open_backend* opens the store at *url* for the checks (and must be closed by the caller's
    ``close()``). Fails the test on a lost write, a torn batch or a wrong counter; returns how
    often the operation in flight had committed or not, and ``acknowledged``: the operations
    acknowledged in all. ``AIRSSYS_STORAGE_TEST_SEED`` picks another sequence.
    """
    seed = int(os.environ.get("AIRSSYS_STORAGE_TEST_SEED", "20240607"))
    rng = random.Random(seed)
    registry = PluginRegistry.load()  # once, before forking: children start writing at once
    state: dict[str, bytes] = {}  # the oracle: state after every acknowledged operation
    index = 0  # the first operation not known to be in the database
    outcomes = {"in-flight operation committed": 0, "in-flight operation not committed": 0}
    versions: dict[str, tuple[int, bytes]] = {}  # the last version seen of each key, and its value then
    for round_ in range(rounds):
        acknowledged = run_until_killed(url, registry, seed, index, rng, fresh_process, options)
        for i in range(index, index + acknowledged):
            state = apply(state, operation(seed, i))
        index += acknowledged
        in_flight = apply(state, operation(seed, index))
        backend = open_backend(url)
        try:
            found = {key.decode(): value for key, value in backend.items(NAMESPACE, b"", None, 10**6)}
            usage = backend.usage(NAMESPACE)
            if verify:
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
        settings = StorageSettings(url=url, backend_options=dict(options or {}))
        with StorageManager.from_settings(settings, registry=registry) as manager:
            store = manager.component(Manifest(NAMESPACE, Access.ADMIN))
            perform(store, retried, operation(seed, retried))
            assert dict(store.scan()[0]) == state, f"round {round_}: the retried increment applied twice"
    print(f"{rounds} kills, {index} operations acknowledged and found: {outcomes}")
    return {**outcomes, "acknowledged": index}
