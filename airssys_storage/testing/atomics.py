"""Conformance tests of the per-key state of contract v2: versions, compare-and-swap, counters, operation ids.

:class:`AtomicsConformance` is mixed into
:class:`~airssys_storage.testing.BackendConformance`, so every backend runs
it. It also holds the backend-level checks that every write path honours an
unlimited quota and that a backend's hot paths (:meth:`StorageBackend.put_one`,
:meth:`StorageBackend.delete_one`) give exactly what :meth:`StorageBackend.apply`
gives, and :meth:`ComponentStorage.limits`. Each test's docstring names the
contract clause it checks.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airssys_storage import (
    Access,
    ComponentStorage,
    InvalidArgument,
    Manifest,
    PermissionDenied,
    PreconditionFailed,
    QuotaExceeded,
    StorageBackend,
    StorageError,
    StorageManager,
    StorageSettings,
    Usage,
)
from airssys_storage.planner import KeyState, Write, WriteKind, check
from airssys_storage.policies import FixedQuota, ManifestPolicy

from .clock import FakeClock
from .processes import run_spawned, worker_manager

__all__ = ["AtomicsConformance", "run_counter_race"]

MiB = 1024 * 1024
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_components = itertools.count()


def _fresh(prefix: str) -> str:
    """A component id no other test of this run uses (tests may share one store)."""
    return f"{prefix}-{next(_components)}"


def _open(
    manager: StorageManager, component_id: str, access: str = "read-write", max_size: int | None = None
) -> ComponentStorage:
    return manager.component(Manifest(component_id, Access(access), max_size))


def _unlimited(manager: StorageManager, component_id: str) -> ComponentStorage:
    """A read-write component with no quota at all (a second manager sharing the backend, never closed)."""
    settings = manager.settings
    # The same clock: a manager sets its clock on the backend it is given.
    other = StorageManager(
        settings, manager.backend, [ManifestPolicy(settings)], FixedQuota(settings), clock=manager.clock
    )
    store = other.component(Manifest(component_id, Access.READ_WRITE))
    assert store.quota is None
    return store


def _run_threads(count: int, target: Callable[[int], object]) -> list[BaseException]:
    """Run ``target(index)`` in *count* threads at once; the exceptions they raised."""
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:  # reported to the test, which fails with it
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(thread.is_alive() for thread in threads), "a racing thread hung"
    return errors


def _cas_increment(store: ComponentStorage, key: str) -> int:
    """Add one to the decimal counter at *key* with a compare-and-swap loop; the number of conflicts met."""
    conflicts = 0
    while True:
        entry = store.get_entry(key)
        current = 0 if entry is None else int(entry.value)
        try:
            store.compare_and_swap(key, b"%d" % (current + 1), version=None if entry is None else entry.version)
            return conflicts
        except PreconditionFailed:
            conflicts += 1


def _first_result(
    backend: StorageBackend, namespace: str, write: Write, limit: int | None, removed: bool = False
) -> int | bool:
    """``apply`` of the one *write*: its result, or (*removed*) whether it removed a live key."""
    result = backend.apply(namespace, (write,), limit).results[0]
    return result == 1 if removed else result


def _cas_rounds(store: ComponentStorage, key: str, rounds: int, meet: Callable[[], object]) -> list[int]:
    """Play *rounds* rounds of a compare-and-swap race on the decimal counter at *key*; 1 for each round won.

    In each round every player meets the others (*meet*: a barrier's wait),
    reads the entry, meets them again and swaps the value for value + 1 at
    the version read: exactly one player may win each round.
    """
    won: list[int] = []
    for _ in range(rounds):
        meet()
        entry = store.get_entry(key)
        assert entry is not None
        meet()
        try:
            store.compare_and_swap(key, b"%d" % (int(entry.value) + 1), version=entry.version)
            won.append(1)
        except PreconditionFailed:
            won.append(0)
    return won


def _outcome(call: Callable[[], object]) -> tuple[str, object]:
    """``("ok", result)`` or ``("error", code)``: what a differential test compares."""
    try:
        return ("ok", call())
    except StorageError as exc:
        return ("error", exc.code)


def _same_apply(backend: StorageBackend, one: str, other: str, write: Write) -> None:
    """Apply *write* in namespaces *one* and *other*: the same results."""
    assert backend.apply(one, (write,), None).results == backend.apply(other, (write,), None).results


def _same_rows_and_floor(backend: StorageBackend, one: str, other: str, keys: list[bytes]) -> None:
    """Namespaces *one* and *other* hold the same rows of *keys* and the same version floor."""
    for key in keys:
        assert backend.get_entry(one, key) == backend.get_entry(other, key)
    # Equal floors: a key created now on each side gets floor + 1.
    fresh = (Write(b"fresh", WriteKind.PUT, b""),)
    assert backend.apply(one, fresh, None).results == backend.apply(other, fresh, None).results


class AtomicsConformance:
    """Mix-in: versions, compare-and-swap, counters, op ids, limits (needs BackendConformance's fixtures)."""

    #: Threads racing in the thread tests, and rounds / increments per thread.
    race_threads = 8
    race_rounds = 25
    #: Processes racing on backends with ``capabilities.multi_process``, and increments per process.
    race_processes = 4
    race_process_increments = 50
    #: Examples of the differential test of put_one/delete_one against apply.
    differential_examples = 100

    # -- versions --------------------------------------------------------------

    def test_set_returns_the_version_get_entry_reports(self, store: ComponentStorage) -> None:
        """Versions: set returns the new version, get_entry reports the same value and version, no expiry."""
        version = store.set("k", b"value")
        assert isinstance(version, int) and 1 <= version < 2**64
        entry = store.get_entry("k")
        assert entry is not None
        assert (entry.value, entry.version, entry.expires_at) == (b"value", version, None)
        assert type(entry.value) is bytes
        assert store.get_entry("missing") is None

    def test_versions_grow_with_every_write_of_a_key(self, store: ComponentStorage) -> None:
        """Versions: monotonic per key; an overwrite (same bytes too) gives a larger version."""
        seen = [store.set("k", b"a")]
        for value in (b"a", b"bb", b"", b"bb"):
            seen.append(store.set("k", value))
            assert store.get_entry("k").version == seen[-1]  # type: ignore[union-attr]
        assert seen == sorted(set(seen)), seen
        other = store.set("other", b"x")
        assert store.get_entry("k").version == seen[-1], "a write of another key changed this key's version"  # type: ignore[union-attr]
        assert other >= 1

    def test_reads_do_not_change_versions(self, store: ComponentStorage) -> None:
        """Versions: unchanged by every read (get, has, get_many, keys, range, scan, get_entry, ttl, limits)."""
        version = store.set("k", b"v")
        store.set("j", b"w", ttl=60)
        for read in (
            lambda: store.get("k"),
            lambda: store.has("k"),
            lambda: store.get_many(["k", "j"]),
            lambda: store.keys(),
            lambda: store.range("a", "z"),
            lambda: store.scan(),
            lambda: store.get_entry("k"),
            lambda: store.ttl("k"),
            lambda: store.ttl("j"),
            lambda: store.limits(),
            lambda: store.usage(),
        ):
            read()
        assert store.get_entry("k").version == version  # type: ignore[union-attr]

    def test_versions_are_not_reused_after_delete_and_re_create(self, store: ComponentStorage) -> None:
        """Versions: never reused for a key after delete, delete_many, delete_if, delete_prefix or delete_range."""
        deletions: list[Callable[[str], object]] = [
            store.delete,
            lambda key: store.delete_many([key, "absent"]),
            lambda key: store.delete_if(key, version=store.get_entry(key).version),  # type: ignore[union-attr]
            lambda key: store.delete_prefix(key),
            lambda key: store.delete_range(key, key + "\x7e"),
        ]
        for index, delete in enumerate(deletions):
            key = f"k{index}"
            first = store.set(key, b"one")
            second = store.set(key, b"two")
            delete(key)
            assert store.get_entry(key) is None
            again = store.set(key, b"one")
            assert again > second > first, (index, first, second, again)

    def test_versions_are_not_reused_after_clear(self, manager: StorageManager) -> None:
        """Versions: clear keeps the floor; a key re-created after clear gets a version above any it had."""
        admin = _open(manager, _fresh("clear-versions"), "admin")
        before = {key: admin.set(key, b"v") for key in ("a", "b")}
        before["a"] = admin.set("a", b"w")
        admin.clear()
        assert admin.get_entry("a") is None and admin.usage() == Usage()
        assert admin.set("b", b"x") > max(before.values())
        admin.clear()
        admin.clear()  # clearing an empty namespace keeps the floor too
        assert admin.set("a", b"y") > max(before.values())

    def test_set_many_gives_every_key_a_version(self, store: ComponentStorage) -> None:
        """Versions: set_many gives each key a version (above an overwritten key's old one), readable by get_entry."""
        old = store.set("b", b"old")
        store.set_many({"a": b"1", "b": b"2", "c": b"3"})
        entries = {key: store.get_entry(key) for key in ("a", "b", "c")}
        assert all(entry is not None for entry in entries.values())
        assert [entries[key].value for key in ("a", "b", "c")] == [b"1", b"2", b"3"]  # type: ignore[union-attr]
        assert entries["b"].version > old  # type: ignore[union-attr]
        store.set_many({"a": b"4", "c": b"3"})
        assert store.get_entry("a").version > entries["a"].version  # type: ignore[union-attr]
        assert store.get_entry("c").version > entries["c"].version  # type: ignore[union-attr]
        assert store.get_entry("b").version == entries["b"].version  # type: ignore[union-attr]

    def test_versions_and_floor_survive_reopen(self, manager_factory: Callable[[], StorageManager]) -> None:
        """Versions (capability persistent): versions and the floor survive reopen; a re-created key goes higher."""
        component = _fresh("reopen-versions")
        with manager_factory() as first:
            if not first.backend.capabilities.persistent:
                pytest.skip(f"backend {first.backend.name!r} is not persistent (capabilities.persistent=False)")
            store = _open(first, component, "admin")
            kept = store.set("kept", b"1")
            gone = store.set("gone", b"1")
            gone = store.set("gone", b"2")
            store.delete("gone")
            cleared = _open(first, component + "-c", "admin")
            wiped = cleared.set("k", b"v")
            cleared.clear()
        with manager_factory() as second:
            store = _open(second, component, "admin")
            assert store.get_entry("kept").version == kept  # type: ignore[union-attr]
            assert store.set("gone", b"3") > gone
            assert store.set("kept", b"2") > kept
            assert _open(second, component + "-c", "admin").set("k", b"v") > wiped

    # -- compare-and-swap and friends -------------------------------------------

    def test_compare_and_swap_on_an_absent_key(self, store: ComponentStorage) -> None:
        """CAS: version=None writes only an absent key; a present key is precondition-failed, nothing written."""
        version = store.compare_and_swap("k", b"first", version=None)
        assert store.get_entry("k") == (b"first", version, None)
        usage = store.usage()
        with pytest.raises(PreconditionFailed) as refused:
            store.compare_and_swap("k", b"second!", version=None)
        assert refused.value.code == "precondition-failed"
        assert store.get_entry("k") == (b"first", version, None)
        assert store.usage() == usage

    def test_compare_and_swap_on_a_present_key(self, store: ComponentStorage) -> None:
        """CAS: the current version succeeds with a larger one; a stale one is precondition-failed, writes nothing."""
        first = store.set("k", b"one")
        second = store.compare_and_swap("k", b"two", version=first)
        assert second > first
        assert store.get_entry("k") == (b"two", second, None)
        usage = store.usage()
        for stale in (first, second + 1, second + 1000):
            with pytest.raises(PreconditionFailed):
                store.compare_and_swap("k", b"three!", version=stale)
        assert store.get_entry("k") == (b"two", second, None)
        assert store.usage() == usage

    def test_compare_and_swap_with_a_version_on_an_absent_key_fails(self, store: ComponentStorage) -> None:
        """CAS: a version given for an absent (or deleted) key is precondition-failed and writes nothing."""
        with pytest.raises(PreconditionFailed):
            store.compare_and_swap("never", b"v", version=1)
        version = store.set("k", b"v")
        store.delete("k")
        with pytest.raises(PreconditionFailed):
            store.compare_and_swap("k", b"v", version=version)
        assert store.get_entry("never") is None and store.get_entry("k") is None
        assert store.usage() == Usage()

    def test_stale_compare_and_swap_never_succeeds_after_re_create(self, store: ComponentStorage) -> None:
        """CAS (ABA): a version read before delete and re-create never matches the re-created key."""
        stale = store.set("k", b"v")
        for _ in range(3):
            store.delete("k")
            store.set("k", b"v")
            with pytest.raises(PreconditionFailed):
                store.compare_and_swap("k", b"w", version=stale)
        assert store.get("k") == b"v"

    def test_compare_and_swap_refused_for_quota_writes_nothing(self, manager: StorageManager) -> None:
        """CAS: a swap refused by the quota writes nothing (the guard rule holds for conditional writes)."""
        store = _open(manager, _fresh("cas-quota"), max_size=20)
        version = store.set("k", b"v" * 9)
        with pytest.raises(QuotaExceeded):
            store.compare_and_swap("k", b"v" * 30, version=version)
        with pytest.raises(QuotaExceeded):
            store.compare_and_swap("new", b"v" * 30, version=None)
        assert store.get_entry("k") == (b"v" * 9, version, None)
        assert store.usage() == Usage(10, 1)

    def test_set_if_absent(self, store: ComponentStorage) -> None:
        """set_if_absent: True and writes when absent; False and writes nothing when present."""
        assert store.set_if_absent("k", b"first") is True
        entry = store.get_entry("k")
        assert store.set_if_absent("k", b"second") is False
        assert store.get_entry("k") == entry
        assert store.usage() == Usage(6, 1)

    def test_delete_if(self, store: ComponentStorage) -> None:
        """delete_if: removes the key only at the given version; otherwise False and nothing removed."""
        version = store.set("k", b"v")
        assert store.delete_if("k", version=version + 1) is False
        assert store.delete_if("missing", version=version) is False
        assert store.get_entry("k") == (b"v", version, None)
        assert store.delete_if("k", version=version) is True
        assert store.get_entry("k") is None and store.usage() == Usage()
        assert store.delete_if("k", version=version) is False

    def test_threads_racing_compare_and_swap_have_one_winner_per_round(self, store: ComponentStorage) -> None:
        """CAS under threads: all read one version, then swap at once: exactly one winner per round, no lost update."""
        count, rounds = self.race_threads, self.race_rounds
        store.set("k", b"0")
        barrier = threading.Barrier(count, timeout=120)
        wins: list[list[int]] = [[] for _ in range(count)]

        def play(index: int) -> None:
            try:
                wins[index] = _cas_rounds(store, "k", rounds, barrier.wait)
            except BaseException:
                barrier.abort()  # release the other threads instead of letting them time out
                raise

        assert _run_threads(count, play) == []
        assert [sum(column) for column in zip(*wins, strict=True)] == [1] * rounds
        assert store.get("k") == b"%d" % rounds

    def test_threads_compare_and_swap_loops_lose_no_update(self, store: ComponentStorage) -> None:
        """CAS under threads: N threads x M read-modify-CAS loops leave the counter at exactly N x M."""
        count, rounds = self.race_threads, self.race_rounds
        assert _run_threads(count, lambda _: [_cas_increment(store, "k") for _ in range(rounds)]) == []
        assert store.get("k") == b"%d" % (count * rounds)

    # -- counters ------------------------------------------------------------------

    def test_increment_counts_from_zero_in_decimal_ascii(self, store: ComponentStorage) -> None:
        """increment: a missing key counts 0; the value is decimal ASCII; negative deltas; each step a new version."""
        assert store.increment("c") == 1
        assert store.get("c") == b"1"
        first = store.get_entry("c").version  # type: ignore[union-attr]
        assert store.increment("c", 41) == 42
        assert store.increment("c", -50) == -8
        assert store.get("c") == b"-8"
        assert store.get_entry("c").version > first  # type: ignore[union-attr]
        assert store.increment("z", 0) == 0 and store.get("z") == b"0"
        assert store.usage() == Usage(len("c-8") + len("z0"), 2)
        store.set("s", b"-9223372036854775808")
        assert store.increment("s", 0) == _INT64_MIN

    @pytest.mark.parametrize("value", [b"abc", b"", b"+1", b" 1", b"1 ", b"1.0", b"1_0", b"\xd9\xa1", b"0x10"])
    def test_increment_of_a_non_counter_is_invalid_argument(self, store: ComponentStorage, value: bytes) -> None:
        """increment: a value that is not decimal ASCII of a signed 64-bit integer is invalid-argument, unchanged."""
        version = store.set("c", value)
        with pytest.raises(InvalidArgument):
            store.increment("c")
        assert store.get_entry("c") == (value, version, None)

    @pytest.mark.parametrize(
        ("start", "delta"),
        [(_INT64_MAX, 1), (_INT64_MIN, -1), (0, _INT64_MAX), (1, _INT64_MIN), (2**63, 0), (-1, _INT64_MIN)],
        ids=["max+1", "min-1", "to-max", "to-min+1", "stored-past-max", "to-min-1"],
    )
    def test_increment_overflow_is_an_error_not_a_wrap(self, store: ComponentStorage, start: int, delta: int) -> None:
        """increment: a result outside the signed 64-bit range is an error (never a wrap) and changes nothing."""
        version = store.set("c", b"%d" % start)
        if _INT64_MIN <= start + delta <= _INT64_MAX and _INT64_MIN <= start <= _INT64_MAX:
            assert store.increment("c", delta) == start + delta
            return
        with pytest.raises(InvalidArgument):
            store.increment("c", delta)
        assert store.get_entry("c") == (b"%d" % start, version, None)

    def test_increment_refused_for_quota_writes_nothing(self, manager: StorageManager) -> None:
        """increment: a counter growing past the quota is quota-exceeded and keeps its old value."""
        store = _open(manager, _fresh("incr-quota"), max_size=3)
        assert store.increment("c", 9) == 9  # "c" + "9": 2 bytes
        with pytest.raises(QuotaExceeded):
            store.increment("c", 991)  # "c" + "1000": 5 bytes
        assert store.get("c") == b"9" and store.usage() == Usage(2, 1)

    def test_threads_incrementing_count_exactly(self, store: ComponentStorage) -> None:
        """increment under threads: N threads x M increments give exactly N x M (and every result is distinct)."""
        count, rounds = self.race_threads, self.race_rounds * 4
        results: list[list[int]] = [[] for _ in range(count)]
        errors = _run_threads(count, lambda index: results[index].extend(store.increment("n") for _ in range(rounds)))
        assert errors == []
        assert store.get("n") == b"%d" % (count * rounds)
        everything = sorted(itertools.chain.from_iterable(results))
        assert everything == list(range(1, count * rounds + 1)), "two increments saw the same value"

    def test_processes_racing_on_one_key_lose_no_update(
        self, manager: StorageManager, storage_settings: StorageSettings
    ) -> None:
        """Capability multi_process: N processes racing CAS rounds (one winner each), increments and CAS loops."""
        if not manager.backend.capabilities.multi_process:
            pytest.skip(f"backend {manager.backend.name!r} is single-process (capabilities.multi_process=False)")
        processes, increments = self.race_processes, self.race_process_increments
        report = run_counter_race(storage_settings, _fresh("counter-race"), processes, increments, self.race_rounds)
        assert report["errors"] == []
        assert report["round_winners"] == [1] * self.race_rounds
        assert report["rounds"] == self.race_rounds
        assert report["increment"] == processes * increments
        assert report["cas"] == processes * increments
        assert sorted(report["increment_results"]) == list(range(1, processes * increments + 1))

    # -- operation ids -----------------------------------------------------------------

    def test_op_id_replay_returns_the_first_result_and_applies_nothing(self, store: ComponentStorage) -> None:
        """increment op_id: a repeated id returns the first result and applies nothing, even after the value changed."""
        assert store.increment("c", 5, op_id="op-1") == 5
        entry = store.get_entry("c")
        assert store.increment("c", 5, op_id="op-1") == 5
        assert store.increment("c", 7, op_id="op-1") == 5, "a replay returns the first result whatever its delta"
        assert store.get_entry("c") == entry
        assert store.increment("c", 5, op_id="op-2") == 10
        store.set("c", b"100")
        changed = store.get_entry("c")
        assert store.increment("c", 5, op_id="op-1") == 5
        assert store.increment("c", 5, op_id="op-2") == 10
        assert store.get_entry("c") == changed
        assert store.increment("c", 1) == 101, "increments without an op_id always apply"
        assert store.increment("c", 1) == 102

    def test_op_ids_are_per_key(self, store: ComponentStorage) -> None:
        """increment op_id: ids are kept per key; one request id serving two counters applies to each once."""
        assert store.increment("views", 7, op_id="req") == 7
        assert store.increment("clicks", 1, op_id="req") == 1
        assert store.increment("views", 7, op_id="req") == 7 and store.increment("clicks", 1, op_id="req") == 1
        assert (store.get("views"), store.get("clicks")) == (b"7", b"1")

    def test_op_ids_are_per_component(self, manager: StorageManager) -> None:
        """increment op_id: ids are kept per component; the same id in another component applies there."""
        one, two = _open(manager, _fresh("ops-a")), _open(manager, _fresh("ops-b"))
        assert one.increment("c", 3, op_id="same") == 3
        assert two.increment("c", 4, op_id="same") == 4
        assert one.increment("c", 3, op_id="same") == 3 and two.increment("c", 4, op_id="same") == 4
        assert (one.get("c"), two.get("c")) == (b"3", b"4")

    def test_op_id_is_kept_for_the_retention_window(self, store: ComponentStorage, clock: FakeClock) -> None:
        """increment op_id: replays within op_id_retention_seconds (at least 10 minutes) still apply nothing."""
        retention = store.settings.op_id_retention_seconds
        assert retention >= 600
        assert store.increment("c", 1, op_id="late") == 1
        clock.advance(retention - 1)
        assert store.increment("c", 1, op_id="late") == 1
        assert store.get("c") == b"1"

    def test_op_id_inside_a_transaction(self, store: ComponentStorage) -> None:
        """increment op_id in a transaction: the store's record answers (probed without a write); the commit records."""
        # The probe (airssys_storage.transaction.recorded_result) is an op-id write under a condition no
        # row meets: the backend must look op ids up before conditions, as the planner does.
        from airssys_storage.storage import _op_record_id
        from airssys_storage.transaction import recorded_result

        assert store.increment("c", 5, op_id="before") == 5
        store.set("text", b"not a counter")
        before = (store.get_entry("c"), store.get_entry("text"), store.usage())
        backend, namespace = store._backend, store._ns
        assert recorded_result(backend, namespace, b"c", _op_record_id(b"c", "unknown")) is None
        assert recorded_result(backend, namespace, b"text", _op_record_id(b"text", "unknown")) is None
        assert recorded_result(backend, namespace, b"c", _op_record_id(b"c", "before")) == 5
        assert (store.get_entry("c"), store.get_entry("text"), store.usage()) == before, "the probe wrote"
        with store.transaction() as tx:
            assert tx.increment("c", 5, op_id="before") == 5
            assert tx.increment("c", 2, op_id="new") == 7
            assert tx.increment("c", 2, op_id="new") == 7
            tx.set("other", b"o")
        assert store.get_many(["c", "other"]) == [b"7", b"o"]
        assert store.increment("c", 2, op_id="new") == 7 and store.get("c") == b"7"

    def test_op_id_inside_a_transaction_then_the_key_changes(self, store: ComponentStorage) -> None:
        """increment op_id in a transaction, then the key is set, deleted, incremented: the commit records them."""
        # The commit writes each key's final state and records the op ids as their own elements
        # (planner WriteKind.RECORD): the backend records them beside the key's write, atomically.
        store.set("text", b"not a counter")
        store.set("expiring", b"1", ttl=600)
        with store.transaction() as tx:
            assert tx.increment("s", 3, op_id="a") == 3
            tx.set("s", b"then a value")
            assert tx.increment("d", 4, op_id="a") == 4
            assert tx.delete("d")
            assert tx.increment("n", 1, op_id="a") == 1
            assert tx.increment("n", 10) == 11
            assert tx.increment("n", 100, op_id="b") == 111
            assert tx.increment("n", 100, op_id="a") == 1, "a repeat answers the first result"
            tx.set("text", b"5")
            assert tx.increment("text", 1, op_id="a") == 6, "after a write that made a counter"
            tx.persist("expiring")
            assert tx.increment("expiring", 1, op_id="a") == 2, "after a write that changed the expiry"
            assert tx.commit() == 5  # keys written: the op records are not keys
        assert store.get_many(["s", "d", "n", "text", "expiring"]) == [b"then a value", None, b"111", b"6", b"2"]
        assert store.ttl("expiring") is None
        usage = store.usage()
        replays = [("s", 9, "a", 3), ("d", 9, "a", 4), ("n", 9, "a", 1), ("n", 9, "b", 111), ("text", 9, "a", 6)]
        for key, delta, op_id, first in replays:
            assert store.increment(key, delta, op_id=op_id) == first, f"{key} {op_id} was not recorded"
        assert store.increment("expiring", 9, op_id="a") == 2
        assert store.get_many(["s", "d", "n", "text", "expiring"]) == [b"then a value", None, b"111", b"6", b"2"]
        assert store.usage() == usage

    def test_op_id_recorded_apart_is_refused_once_recorded(self, store: ComponentStorage) -> None:
        """increment op_id, then delete, in two transactions at once: the second commit is refused, nothing written."""
        first, second = store.transaction(), store.transaction()
        for tx in (first, second):
            assert tx.increment("n", 2, op_id="req") == 2
            assert tx.delete("n")
            tx.set(f"mark-{'a' if tx is first else 'b'}", b"x")
        assert first.commit() == 2  # "n" stays absent: its delete (condition: absent) holds for both
        with pytest.raises(PreconditionFailed, match="recorded by another writer"):
            second.commit()
        assert store.keys() == ["mark-a"]
        assert store.increment("n", 2, op_id="req") == 2 and store.get("n") is None  # recorded once: no-op
        with store.transaction() as tx:  # the rerun answers from the record
            assert tx.increment("n", 2, op_id="req") == 2
            assert tx.delete("n") is False
            tx.set("mark-b", b"x")
        assert store.keys() == ["mark-a", "mark-b"]

    def test_op_id_replay_survives_reopen(self, manager_factory: Callable[[], StorageManager]) -> None:
        """increment op_id (capability persistent): recorded with the data, so a replay survives reopen."""
        component = _fresh("ops-reopen")
        with manager_factory() as first:
            if not first.backend.capabilities.persistent:
                pytest.skip(f"backend {first.backend.name!r} is not persistent (capabilities.persistent=False)")
            assert _open(first, component).increment("c", 2, op_id="once") == 2
        with manager_factory() as second:
            store = _open(second, component)
            assert store.increment("c", 2, op_id="once") == 2
            assert store.get("c") == b"2"

    # -- validation and permissions (core) ---------------------------------------------

    def test_new_arguments_are_validated(self, store: ComponentStorage) -> None:
        """Validation (core): bad ttl, version, delta and op_id are invalid-argument naming the fix; nothing written."""
        store.set("k", b"v")
        before = (store.get_entry("k"), store.usage())
        bad_ttls: list[Any] = [0, -1, 0.0, -0.5, float("nan"), float("inf"), True, "1", b"1"]
        bad_versions: list[Any] = [0, -1, 2**64, True, 1.0, "1"]
        bad_deltas: list[Any] = [True, 1.5, 2**63, -(2**63) - 1, "1", None]
        bad_op_ids: list[Any] = ["", "x" * 257, "é" * 129, "tab\there", "nl\n", 5, b"id"]
        calls: list[Callable[[], object]] = []
        for ttl in bad_ttls:
            calls += [
                partial(store.set, "k", b"w", ttl=ttl),
                partial(store.set_many, {"k": b"w"}, ttl=ttl),
                partial(store.expire, "k", ttl),
                partial(store.set_if_absent, "n", b"w", ttl=ttl),
                partial(store.compare_and_swap, "n", b"w", version=None, ttl=ttl),
            ]
        for version in bad_versions:
            calls += [
                partial(store.compare_and_swap, "k", b"w", version=version),
                partial(store.delete_if, "k", version=version),
            ]
        calls += [partial(store.increment, "n", delta) for delta in bad_deltas]
        calls += [partial(store.increment, "n", 1, op_id=op_id) for op_id in bad_op_ids]
        for call in calls:
            with pytest.raises(InvalidArgument) as refused:
                call()
            assert refused.value.message
        assert (store.get_entry("k"), store.usage()) == before
        assert store.get_entry("n") is None

    def test_new_operations_need_their_permissions(self, manager: StorageManager) -> None:
        """Permissions (core): get_entry, ttl and limits need read-only; every new write needs read-write."""
        component = _fresh("perm")
        writer = _open(manager, component)
        writer.set("k", b"1", ttl=60)
        reader = _open(manager, component, "read-only")
        assert reader.get_entry("k") is not None
        assert reader.ttl("k") == pytest.approx(60, abs=0.01)
        assert reader.limits().keys == 1
        writes: list[Callable[[], object]] = [
            lambda: reader.compare_and_swap("k", b"2", version=None),
            lambda: reader.set_if_absent("x", b"2"),
            lambda: reader.delete_if("k", version=1),
            lambda: reader.increment("k"),
            lambda: reader.expire("k", 5),
            lambda: reader.persist("k"),
            lambda: reader.purge_expired(),
            lambda: reader.delete_prefix("k"),
            lambda: reader.delete_range("a", "z"),
            lambda: reader.set("k", b"2", ttl=5),
        ]
        for write in writes:
            with pytest.raises(PermissionDenied):
                write()
        none = _open(manager, _fresh("perm-none"), "none")
        for read in (lambda: none.get_entry("k"), lambda: none.ttl("k"), lambda: none.limits()):
            with pytest.raises(PermissionDenied):
                read()
        assert writer.get("k") == b"1" and writer.ttl("k") == pytest.approx(60, abs=0.01)

    # -- limits ------------------------------------------------------------------

    def test_limits_report_settings_quota_usage_and_capabilities(self, manager: StorageManager) -> None:
        """limits(): the settings' limits, the quota, bytes used and remaining, keys, capabilities, op-id retention."""
        store = _open(manager, _fresh("limits"), max_size=1000)
        store.set("k", b"v" * 10)
        limits = store.limits()
        settings, caps = manager.settings, manager.backend.capabilities
        assert (limits.max_key_bytes, limits.max_value_bytes) == (settings.max_key_bytes, settings.max_value_bytes)
        assert limits.max_keys_per_query == settings.max_keys_per_query
        assert limits.max_batch_ops == settings.max_batch_ops
        assert (limits.quota, limits.bytes_used, limits.keys, limits.bytes_remaining) == (1000, 11, 1, 989)
        assert (limits.persistent, limits.multi_process, limits.native_atomics) == (
            caps.persistent,
            caps.multi_process,
            caps.native_atomics,
        )
        assert limits.op_id_retention_seconds == settings.op_id_retention_seconds
        store.set("j", b"v" * 988)
        assert (store.limits().bytes_used, store.limits().bytes_remaining) == (1000, 0)
        unlimited = _unlimited(manager, _fresh("limits-none")).limits()
        assert (unlimited.quota, unlimited.bytes_remaining, unlimited.bytes_used) == (None, None, 0)

    # -- backend write paths ---------------------------------------------------------

    def test_unlimited_quota_on_every_backend_write_path(self, manager: StorageManager) -> None:
        """Guard rule with limit=None: put_one, delete_one, apply with every WriteKind, delete_range and clear."""
        backend, ns, now = manager.backend, _fresh("unlimited"), manager.backend.clock()
        big = b"x" * MiB
        first = backend.put_one(ns, b"a", big, None)
        assert backend.put_one(ns, b"a", b"y", None) > first
        plan = backend.apply(ns, (Write(b"b", WriteKind.PUT, big), Write(b"c", WriteKind.PUT, b"z")), None)
        assert plan.existed == [False, False] and len(plan.results) == 2
        writes = (
            Write(b"b", WriteKind.DELETE),
            Write(b"a", WriteKind.PUT, b"w" * 10),
            Write(b"d", WriteKind.DELETE),
            Write(b"n", WriteKind.INCREMENT, delta=12345),
            Write(b"c", WriteKind.TOUCH, expires_at=now + 3_600_000),
            Write(b"e", WriteKind.PUT, big, expires_at=now + 3_600_000),
            Write(b"f", WriteKind.SWEEP),
        )
        plan = backend.apply(ns, writes, None)
        assert plan.results[0] == 1 and plan.results[2] == 0 and plan.results[3] == 12345 and plan.results[6] == 0
        assert backend.usage(ns) == Usage((1 + 10) + (1 + 1) + (1 + 5) + (1 + MiB), 4)
        assert backend.get_entry(ns, b"c").expires_at == now + 3_600_000  # type: ignore[union-attr]
        assert backend.delete_one(ns, b"a") is True
        assert backend.get(ns, b"c") == b"z" and backend.get(ns, b"a") is None
        assert sum(backend.delete_range(ns, b"e", b"f").results) == 1
        assert sum(backend.delete_range(ns, b"", None, expired_only=True).results) == 0
        assert backend.usage(ns) == Usage(2 + 6, 2)
        backend.clear(ns)
        assert backend.usage(ns) == Usage()
        assert backend.put_one(ns, b"again", b"1", None) >= 1
        assert backend.usage(ns) == Usage(6, 1)

    def test_unlimited_quota_for_the_new_operations(self, manager: StorageManager) -> None:
        """Guard rule with limit=None through the API: ttl writes, CAS, set_if_absent, increment, range deletes."""
        store = _unlimited(manager, _fresh("unlimited-ops"))
        big = b"x" * MiB
        for index in range(11):  # past the 10 MiB default quota of read-write components
            store.set(f"big{index:02}", big, ttl=3600)
        version = store.compare_and_swap("cas", big, version=None)
        store.compare_and_swap("cas", b"y" * MiB, version=version)
        assert store.set_if_absent("sia", big) is True
        assert store.increment("n", 7) == 7
        store.set_many({"m1": big, "m2": b""}, ttl=60)
        assert store.expire("n", 60) is True and store.persist("n") is True
        assert store.delete_prefix("big") == 11
        assert store.delete_range("m1", "m3") == 2
        assert store.usage() == Usage((3 + MiB) + (3 + MiB) + 2, 3)

    def differential_settings(self) -> settings:
        """The hypothesis settings of the differential tests (hot paths against the planner's path)."""
        return settings(
            max_examples=self.differential_examples,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )

    def test_put_one_and_delete_one_equal_apply(self, manager: StorageManager, clock: FakeClock) -> None:
        """Hot paths: put_one/compare_and_swap_one/increment_one/delete_one equal apply (results, rows, floor)."""
        backend = manager.backend
        keys = st.sampled_from([b"a", b"b", b"ab", b"c"])
        # Counters (some at the ends of the signed 64-bit range, some a digit short of a longer
        # value) beside other bytes, so that increments meet each case.
        counters = st.sampled_from([b"0", b"9", b"-1", b"99", b"-10", b"9223372036854775807", b"-9223372036854775808"])
        values = st.one_of(st.binary(max_size=12), counters, st.integers(-1000, 1000).map(lambda n: str(n).encode()))
        deltas = st.one_of(st.integers(-3, 3), st.sampled_from([-(2**63), 2**63 - 1]))
        operations = st.lists(
            st.one_of(
                st.tuples(st.just("put"), keys, values, st.sampled_from([None, 0, 8, 20, 40])),
                st.tuples(st.just("increment"), keys, deltas, st.sampled_from([None, 0, 8, 20, 40])),
                st.tuples(st.just("delete"), keys),
                st.tuples(
                    st.just("cas"),
                    keys,
                    st.binary(max_size=12),
                    st.sampled_from([None, 0, 8, 20, 40]),
                    st.sampled_from(["absent", "current", "stale", "ahead"]),
                ),
                st.tuples(st.just("put-with-expiry"), keys, values, st.integers(1, 30)),
                st.tuples(st.just("advance"), st.integers(1, 20)),
            ),
            max_size=40,
        )

        @self.differential_settings()
        @given(operations)
        def differential(steps: list[tuple[Any, ...]]) -> None:
            hot, planned = _fresh("hot"), _fresh("planned")
            for step in steps:
                if step[0] == "put":
                    _, key, value, limit = step
                    put = Write(key, WriteKind.PUT, value)
                    assert _outcome(partial(backend.put_one, hot, key, value, limit)) == _outcome(
                        partial(_first_result, backend, planned, put, limit)
                    )
                elif step[0] == "cas":  # compare_and_swap_one, with a condition that holds or not
                    _, key, value, limit, which = step
                    entry = backend.get_entry(planned, key)
                    current = 0 if entry is None else entry.version
                    version = {"absent": 0, "current": current, "stale": current - 1, "ahead": current + 1}[which]
                    version = max(version, 0)
                    swap = Write(key, WriteKind.PUT, value, if_version=version)
                    assert _outcome(partial(backend.compare_and_swap_one, hot, key, value, version, limit)) == _outcome(
                        partial(_first_result, backend, planned, swap, limit)
                    )
                elif step[0] == "increment":  # increment_one
                    _, key, delta, limit = step
                    add = Write(key, WriteKind.INCREMENT, delta=delta)
                    assert _outcome(partial(backend.increment_one, hot, key, delta, limit)) == _outcome(
                        partial(_first_result, backend, planned, add, limit)
                    )
                elif step[0] == "delete":
                    _, key = step
                    delete = Write(key, WriteKind.DELETE)
                    assert _outcome(partial(backend.delete_one, hot, key)) == _outcome(
                        partial(_first_result, backend, planned, delete, None, removed=True)
                    )
                elif step[0] == "put-with-expiry":  # rows that expire, written the same way on both sides
                    _, key, value, ttl_ms = step
                    _same_apply(backend, hot, planned, Write(key, WriteKind.PUT, value, expires_at=clock() + ttl_ms))
                else:
                    clock.advance(step[1] / 1000)
                assert backend.usage(hot) == backend.usage(planned)
            _same_rows_and_floor(backend, hot, planned, [b"a", b"b", b"ab", b"c"])

        differential()

    def test_plain_put_batches_equal_the_planner(self, manager: StorageManager, clock: FakeClock) -> None:
        """Batches of plain puts (set_many): put_many and apply decide as the planner's general path does."""
        # Backends decide such batches on a path of their own (LevelDB and RocksDB
        # in kvengine, SQLite's upsert); the reference side sends the same puts
        # through the planner's general loop by adding a check of a key never
        # written (which changes nothing). Results or error codes, usage, every
        # row and the version floor must be equal, whatever the old rows were:
        # new keys, other sizes, expired rows, a full quota, a key named twice.
        backend = manager.backend
        names = [b"a", b"b", b"ab", b"c", b"d"]
        keys = st.sampled_from(names)
        values = st.binary(max_size=10)
        batch = st.lists(st.tuples(keys, values), min_size=1, max_size=6)
        limits = st.sampled_from([None, 0, 20, 40, 80])
        operations = st.lists(
            st.one_of(
                st.tuples(st.just("put_many"), batch, limits),
                st.tuples(st.just("apply"), batch, limits),
                st.tuples(st.just("delete"), keys),
                st.tuples(st.just("put-with-expiry"), keys, values, st.integers(1, 30)),
                st.tuples(st.just("advance"), st.integers(1, 20)),
            ),
            max_size=25,
        )
        never = check(b"never-written", 0)  # sends a commit to the planner's general loop, changes nothing

        @self.differential_settings()
        @given(operations)
        def differential(steps: list[tuple[Any, ...]]) -> None:
            fast, planned = _fresh("batch"), _fresh("batch-planned")
            for step in steps:
                if step[0] in ("put_many", "apply"):
                    _, pairs, limit = step
                    writes = [Write(key, WriteKind.PUT, value) for key, value in pairs]
                    if step[0] == "put_many":
                        hot: Callable[[], object] = partial(
                            backend.put_many, fast, [key for key, _ in pairs], [value for _, value in pairs], limit
                        )
                    else:
                        hot = partial(lambda w, n: backend.apply(fast, w, n).results, writes, limit)
                    reference = partial(lambda w, n: backend.apply(planned, [*w, never], n).results[:-1], writes, limit)
                    assert _outcome(hot) == _outcome(reference), step
                elif step[0] == "delete":
                    _same_apply(backend, fast, planned, Write(step[1], WriteKind.DELETE))
                elif step[0] == "put-with-expiry":  # rows that expire: the fast paths must leave them to the planner
                    _, key, value, ttl_ms = step
                    _same_apply(backend, fast, planned, Write(key, WriteKind.PUT, value, expires_at=clock() + ttl_ms))
                else:
                    clock.advance(step[1] / 1000)
                assert backend.usage(fast) == backend.usage(planned)
            _same_rows_and_floor(backend, fast, planned, names)

        differential()

    def test_reads_of_rows_without_expiry_do_not_read_the_clock(
        self, manager: StorageManager, clock: FakeClock
    ) -> None:
        """Backend reads: get, get_entry, has and get_many call the clock only for rows that have an expiry."""
        backend, ns = manager.backend, _fresh("no-clock")
        backend.put_one(ns, b"a", b"1", None)
        backend.put_one(ns, b"b", b"2", None)
        backend.apply(ns, (Write(b"e", WriteKind.PUT, b"3", expires_at=clock() + 60_000),), None)
        calls: list[int] = []

        def counting_clock() -> int:
            calls.append(1)
            return clock()

        backend.clock = counting_clock
        try:
            for read in (backend.get, backend.get_entry, backend.has):
                for key in (b"a", b"missing"):
                    read(ns, key)
            backend.get_many(ns, [b"a", b"b", b"missing"])
            assert calls == [], "a read of rows without expiry read the clock"
            assert backend.get(ns, b"e") == b"3"
            assert calls, "a read of a row with an expiry must read the clock"
        finally:
            backend.clock = clock

    def test_backend_delete_range_limit_takes_rows_in_key_order(
        self, manager: StorageManager, clock: FakeClock
    ) -> None:
        """Backend delete_range(limit=n): removes the first n rows in key order (expired_only: the first n expired)."""
        backend, ns = manager.backend, _fresh("range-limit")
        soon = clock() + 10
        for key in (b"a", b"b", b"c", b"d", b"e"):
            expiry = soon if key in (b"b", b"d") else None
            backend.apply(ns, (Write(key, WriteKind.PUT, key, expires_at=expiry),), None)
        clock.advance(0.01)  # b and d expire
        assert sum(backend.delete_range(ns, b"", None, expired_only=True, limit=1).results) == 1
        assert backend.usage(ns) == Usage(8, 4), "the first expired row in key order (b) goes first"
        assert sum(backend.delete_range(ns, b"", None, limit=2).results) == 2, "the first two rows: a and c"
        assert [key for key, _ in backend.items(ns, b"", None, 10)] == [b"e"]
        assert backend.usage(ns) == Usage(4, 2)
        assert sum(backend.delete_range(ns, b"", None, expired_only=True).results) == 1
        assert backend.usage(ns) == Usage(2, 1)

    def test_get_entry_is_the_backend_row(self, manager: StorageManager, clock: FakeClock) -> None:
        """Backend get_entry: KeyState(size, version, expires_at, value) of a live row; None when missing or expired."""
        backend, ns = manager.backend, _fresh("entry")
        version = backend.put_one(ns, b"k", b"value", None)
        assert backend.get_entry(ns, b"k") == KeyState(5, version, None, b"value")
        deadline = clock() + 10
        [again] = backend.apply(ns, (Write(b"k", WriteKind.PUT, b"v2", expires_at=deadline),), None).results
        assert backend.get_entry(ns, b"k") == KeyState(2, again, deadline, b"v2")
        clock.advance(0.01)
        assert backend.get_entry(ns, b"k") is None and backend.get_entry(ns, b"missing") is None


# -- the multi-process counter race (children are spawned: they import this module) ---------


def run_counter_race(
    settings: StorageSettings, component: str, processes: int, increments: int, rounds: int
) -> dict[str, Any]:
    """*processes* spawned processes race on the keys of *component*: CAS rounds, then increments and CAS loops.

    Each process first plays *rounds* compare-and-swap rounds on ``"round"``
    (see :func:`_cas_rounds`; a barrier across the processes starts each
    round), then calls ``increment("n")`` and a compare-and-swap loop on
    ``"cas"`` *increments* times each. Returns the winners of each round
    (``round_winners``), the final values (``rounds``, ``increment``,
    ``cas``), every result the increments returned (``increment_results``)
    and any errors the workers met.
    """
    with StorageManager.from_settings(settings) as manager:
        _open(manager, component).set("round", b"0")
    outcomes = run_spawned(settings, _counter_worker, [(component, rounds, increments)] * processes)
    with StorageManager.from_settings(settings) as manager:
        store = _open(manager, component)
        final = {key: store.get(key) for key in ("round", "n", "cas")}
    return {
        "round_winners": [sum(column) for column in zip(*(outcome["won"] for outcome in outcomes), strict=True)],
        "rounds": None if final["round"] is None else int(final["round"]),
        "increment": None if final["n"] is None else int(final["n"]),
        "cas": None if final["cas"] is None else int(final["cas"]),
        "increment_results": [value for outcome in outcomes for value in outcome["results"]],
        "errors": [error for outcome in outcomes for error in outcome["errors"]],
    }


def _counter_worker(
    payload: dict[str, Any], component: str, rounds: int, increments: int, barrier: Any, results: Any
) -> None:
    won: list[int] = []
    seen: list[int] = []
    errors: list[str] = []
    manager = worker_manager(payload, barrier, results)
    if manager is None:
        return
    with manager:
        store = _open(manager, component)
        try:
            won = _cas_rounds(store, "round", rounds, barrier.wait)
        except Exception as exc:
            barrier.abort()
            errors.append(f"{type(exc).__name__}: {exc}")
        for _ in range(increments):
            try:
                seen.append(store.increment("n"))
                _cas_increment(store, "cas")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
    results.put({"won": won or [0] * rounds, "results": seen, "errors": errors})
