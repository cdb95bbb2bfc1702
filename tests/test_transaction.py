"""Transactions (airssys_storage.transaction): buffered writes, read-your-writes, one atomic commit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airssys_storage import (
    ComponentStorage,
    InvalidArgument,
    Manifest,
    ManifestError,
    PreconditionFailed,
    QuotaExceeded,
    StorageManager,
    StorageSettings,
    TooManyKeys,
    ValueTooLarge,
)
from airssys_storage.testing import FakeClock
from airssys_storage.transaction import PROVISIONAL_VERSIONS, recorded_result


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def storage(clock: FakeClock) -> Iterator[ComponentStorage]:
    with StorageManager.from_settings(StorageSettings(url="memory://"), clock=clock) as manager:
        yield manager.component(Manifest(id="c", access="admin", max_size="1KB"))


def test_writes_are_invisible_until_commit_then_all_appear(storage: ComponentStorage) -> None:
    """Other handles see none of a transaction's writes before commit and all of them after."""
    storage.set("gone", b"x")
    tx = storage.transaction()
    tx.set_many({"a": b"1", "b": b"2"})
    tx.set("c", b"3")
    tx.delete("gone")
    assert storage.keys() == ["gone"] and storage.get("a") is None
    assert tx.pending_writes == 4
    assert tx.commit() == 4
    assert storage.keys() == ["a", "b", "c"] and tx.pending_writes == 0


def test_rollback_and_exception_discard(storage: ComponentStorage) -> None:
    """rollback() and an exception in the with-block leave the store untouched."""
    tx = storage.transaction()
    tx.set("a", b"1")
    tx.rollback()
    assert tx.commit() == 0 and storage.keys() == []
    with pytest.raises(RuntimeError), storage.transaction() as tx:
        tx.set("a", b"1")
        raise RuntimeError("guest failed")
    assert storage.keys() == []


def test_reads_see_own_writes_everywhere(storage: ComponentStorage) -> None:
    """get, has, get-many, get-entry, keys, range, scan and usage merge the buffer over the store."""
    storage.set_many({"k1": b"old", "k2": b"two", "k4": b"four"})
    tx = storage.transaction()
    tx.set("k1", b"new")
    tx.delete("k2")
    tx.set("k3", b"three")
    assert tx.get("k1") == b"new" and tx.get("k2") is None and tx.has("k3") and not tx.has("k2")
    assert tx.get_many(["k1", "k2", "k3", "k4", "zz"]) == [b"new", None, b"three", b"four", None]
    assert tx.keys("k") == ["k1", "k3", "k4"]
    assert tx.range("k1", "k4") == [("k1", b"new"), ("k3", b"three")]
    assert tx.range("k", "l", limit=2) == [("k1", b"new"), ("k3", b"three")]
    page, cursor = tx.scan("k", limit=2)
    assert page == [("k1", b"new"), ("k3", b"three")] and cursor is not None
    assert tx.scan("k", cursor, limit=2) == ([("k4", b"four")], None)
    assert tx.usage().keys == 3 and tx.size() == storage.size() - len("k2two") + len("k3three")
    assert tx.delete_prefix("k") == 3 and tx.keys() == [] and storage.keys() == ["k1", "k2", "k4"]


def test_atomics_against_the_buffer(storage: ComponentStorage) -> None:
    """Compare-and-swap, set-if-absent, delete-if and increment decide on the transaction's own state."""
    tx = storage.transaction()
    version = tx.set("a", b"1")
    assert version > PROVISIONAL_VERSIONS
    assert tx.compare_and_swap("a", b"2", version=version) > version
    with pytest.raises(PreconditionFailed):
        tx.compare_and_swap("a", b"3", version=version)
    assert not tx.set_if_absent("a", b"x") and tx.set_if_absent("b", b"y")
    assert tx.increment("n", 5) == 5 and tx.increment("n") == 6
    entry = tx.get_entry("b")
    assert entry is not None and tx.delete_if("b", version=entry.version) and not tx.has("b")
    tx.commit()
    assert storage.get("a") == b"2" and storage.get("n") == b"6" and not storage.has("b")


def test_expiry_in_the_buffer(storage: ComponentStorage, clock: FakeClock) -> None:
    """A buffered key with a ttl expires for the transaction's reads; expire/persist change buffered keys."""
    tx = storage.transaction()
    tx.set("t", b"v", ttl=10)
    assert tx.ttl("t") == 10
    tx.set("p", b"v", ttl=10)
    assert tx.persist("p") and tx.ttl("p") is None
    clock.advance(11)
    assert tx.get("t") is None and tx.keys() == ["p"]
    assert not tx.expire("t", 5)
    tx.commit()
    assert storage.keys() == ["p"]


def test_quota_is_checked_per_write_on_what_the_transaction_sees(storage: ComponentStorage) -> None:
    """The write that would pass the quota on the transaction's state fails at once; the others stay buffered."""
    tx = storage.transaction()
    tx.set("a", b"x" * 400)
    tx.set("b", b"x" * 400)
    with pytest.raises(QuotaExceeded):
        tx.set("c", b"x" * 400)
    tx.delete("a")
    tx.set("c", b"x" * 400)  # room made inside the transaction counts
    tx.commit()
    assert storage.keys() == ["b", "c"]


def test_quota_is_checked_again_at_commit(storage: ComponentStorage) -> None:
    """Another writer uses the room before the commit: the commit is refused as a whole and writes nothing."""
    tx = storage.transaction()
    tx.set("a", b"x" * 400)
    tx.set("b", b"x" * 400)
    storage.set("other", b"x" * 400)
    with pytest.raises(QuotaExceeded):
        tx.commit()
    assert storage.keys() == ["other"] and tx.pending_writes == 0


def test_conflicting_writer_fails_the_commit(storage: ComponentStorage) -> None:
    """A key read by an atomic operation and changed by another writer before commit fails the commit."""
    storage.set("n", b"1")
    tx = storage.transaction()
    tx.set("other", b"x")
    assert tx.increment("n") == 2
    storage.set("n", b"100")
    with pytest.raises(PreconditionFailed):
        tx.commit()
    assert storage.get("n") == b"100" and not storage.has("other")
    tx.set_if_absent("new", b"mine")
    storage.set("new", b"theirs")
    with pytest.raises(PreconditionFailed):
        tx.commit()
    assert storage.get("new") == b"theirs"


def test_blind_writes_win_without_condition(storage: ComponentStorage) -> None:
    """A plain set in a transaction overwrites a concurrent change (last writer wins, as outside)."""
    tx = storage.transaction()
    tx.set("k", b"mine")
    storage.set("k", b"theirs")
    tx.commit()
    assert storage.get("k") == b"mine"


def test_buffer_limits(storage: ComponentStorage) -> None:
    """Past max_writes or max_bytes the write fails and the buffer keeps what it had."""
    tx = storage.transaction(max_writes=2, max_bytes=100)
    tx.set("a", b"1")
    tx.set("b", b"2")
    tx.set("a", b"3")  # a key already written costs no new write
    with pytest.raises(TooManyKeys, match="limit is 2 keys"):
        tx.set("c", b"x")
    with pytest.raises(ValueTooLarge, match="limit is 100 bytes"):
        tx.set("a", b"x" * 100)
    assert tx.pending_writes == 2 and tx.get("a") == b"3"
    with pytest.raises(InvalidArgument):
        storage.transaction(max_writes=0)


def test_op_id_recorded_before_the_transaction(storage: ComponentStorage) -> None:
    """An op id the store recorded: the recorded result, nothing buffered, nothing applied at commit."""
    assert storage.increment("n", 5, op_id="req-1") == 5
    assert storage.increment("n", 1) == 6
    tx = storage.transaction()
    assert tx.increment("n", 5, op_id="req-1") == 5
    assert tx.pending_writes == 0 and tx.get("n") == b"6"
    assert tx.commit() == 0
    assert storage.get("n") == b"6"


def test_op_id_not_recorded_applies_once_and_is_recorded_by_the_commit(storage: ComponentStorage) -> None:
    """A new op id: applied to the buffer (read-your-writes), recorded with the commit, so a retry applies nothing."""
    storage.set("n", b"40")
    tx = storage.transaction()
    assert tx.increment("n", 2, op_id="req-1") == 42
    assert tx.get("n") == b"42" and storage.get("n") == b"40"
    tx.commit()
    assert storage.get("n") == b"42"
    assert storage.increment("n", 2, op_id="req-1") == 42  # recorded by the commit
    assert storage.transaction().increment("n", 2, op_id="req-1") == 42
    assert storage.get("n") == b"42"


def test_op_id_discarded_with_the_transaction(storage: ComponentStorage) -> None:
    """A rolled-back transaction recorded nothing: the op id applies later."""
    tx = storage.transaction()
    assert tx.increment("n", 2, op_id="req-1") == 2
    tx.rollback()
    assert storage.increment("n", 2, op_id="req-1") == 2


def test_same_op_id_twice_in_one_transaction(storage: ComponentStorage) -> None:
    """The second increment with the same op id (same key) returns the first result and adds nothing."""
    tx = storage.transaction()
    assert tx.increment("n", 5) == 5
    assert tx.increment("n", -7) == -2
    assert tx.increment("n", 10, op_id="op-1") == 8
    assert tx.increment("n", 10, op_id="op-1") == 8
    assert tx.increment("other", 1, op_id="op-1") == 1  # op ids are per key, as outside
    assert tx.get("n") == b"8"
    tx.commit()
    assert storage.get_many(["n", "other"]) == [b"8", b"1"]
    assert storage.increment("n", 10, op_id="op-1") == 8


def test_op_id_recorded_by_a_concurrent_writer(storage: ComponentStorage) -> None:
    """Recorded between the transaction's increment and its commit: applied once in all."""
    tx = storage.transaction()
    assert tx.increment("n", 3, op_id="req-1") == 3
    tx.set("other", b"o")
    assert storage.increment("n", 3, op_id="req-1") == 3  # the same request, retried elsewhere
    tx.commit()  # the planner answers the recorded result for the op id's write and skips it
    assert storage.get_many(["n", "other"]) == [b"3", b"o"]
    assert storage.increment("n", 3, op_id="req-1") == 3


def test_op_id_key_changed_by_a_concurrent_writer(storage: ComponentStorage) -> None:
    """The counter changed (no op id) before the commit: precondition-failed, nothing written or recorded."""
    tx = storage.transaction()
    assert tx.increment("n", 3, op_id="req-1") == 3
    tx.set("other", b"o")
    storage.increment("n", 100)
    with pytest.raises(PreconditionFailed, match="'n'"):
        tx.commit()
    assert storage.get_many(["n", "other"]) == [b"100", None]
    assert storage.increment("n", 3, op_id="req-1") == 103  # not recorded: applies now


def test_op_id_increment_then_later_writes_of_the_key(storage: ComponentStorage) -> None:
    """After an increment with an op id the key stays free: set, delete, increment it; the commit records apart."""
    for key, later, final in (
        ("set", lambda tx: tx.set("set", b"text"), b"text"),
        ("delete", lambda tx: tx.delete("delete"), None),
        ("add", lambda tx: tx.increment("add", 10), b"11"),
        ("op", lambda tx: tx.increment("op", 10, op_id="b"), b"11"),
        ("ttl", lambda tx: tx.set("ttl", b"5", ttl=60), b"5"),
    ):
        tx = storage.transaction()
        assert tx.increment(key, 1, op_id="a") == 1
        later(tx)
        assert tx.increment(key, 7, op_id="a") == 1  # a repeat still answers the first result
        kinds = [write.kind.value for write in tx._overlay.commit_writes()]
        assert kinds == ["delete" if final is None else "put", "record"] + ["record"] * (key == "op")
        assert tx.commit() == 1
        assert storage.get(key) == final
        assert storage.increment(key, 1, op_id="a") == 1 and storage.get(key) == final  # recorded: applies nothing
        if key == "op":
            assert storage.increment(key, 1, op_id="b") == 11


def test_op_id_increment_after_other_writes_of_the_key(storage: ComponentStorage) -> None:
    """An op-id increment after the transaction made the key a counter or changed its expiry: works, recorded."""
    storage.set("s", b"text")
    storage.set("e", b"1", ttl=60)
    tx = storage.transaction()
    tx.set("s", b"1")
    assert tx.increment("s", 1, op_id="a") == 2
    tx.set("e", b"1")  # no expiry now
    assert tx.increment("e", 1, op_id="a") == 2
    assert tx.increment("e", 1, op_id="b") == 3
    assert tx.commit() == 2
    assert storage.get_many(["s", "e"]) == [b"2", b"3"] and storage.ttl("e") is None
    assert [storage.increment("s", 5, op_id="a"), storage.increment("e", 5, op_id="a")] == [2, 2]
    assert storage.increment("e", 5, op_id="b") == 3 and storage.get_many(["s", "e"]) == [b"2", b"3"]


def test_op_id_recorded_apart_and_recorded_by_a_concurrent_writer(storage: ComponentStorage) -> None:
    """The key written after the op-id increment, the op id recorded elsewhere meanwhile: the commit is refused."""
    tx = storage.transaction()
    assert tx.increment("n", 3, op_id="req-1") == 3
    tx.set("n", b"done")
    tx.set("other", b"o")
    assert storage.increment("n", 3, op_id="req-1") == 3  # the same request, retried elsewhere
    with pytest.raises(PreconditionFailed, match="'n'"):  # its condition on "n" (the op record would refuse too)
        tx.commit()
    assert storage.get_many(["n", "other"]) == [b"3", None]
    with storage.transaction() as tx:  # the rerun: the increment answers from the record
        assert tx.increment("n", 3, op_id="req-1") == 3
        tx.set("n", b"done")
        tx.set("other", b"o")
    assert storage.get_many(["n", "other"]) == [b"done", b"o"]


def test_op_id_probe_writes_nothing(storage: ComponentStorage) -> None:
    """recorded_result: None for an unknown op id (nothing written), the recorded result for a known one."""
    backend, namespace = storage._backend, storage._ns
    before = backend.usage(namespace)
    assert recorded_result(backend, namespace, b"n", "unknown") is None
    assert backend.usage(namespace) == before and storage.keys() == []
    storage.set("n", b"text")
    assert recorded_result(backend, namespace, b"n", "unknown") is None  # no counter check before the condition


def test_manifest_transactional_field() -> None:
    """permissions.storage.transactional parses as a bool and needs write access."""
    text = '[component]\nid = "c"\n[permissions]\nstorage = {{ access = "{}", transactional = {} }}\n'
    assert Manifest.from_toml(text.format("read-write", "true")).transactional
    assert not Manifest.from_toml(text.format("read-write", "false")).transactional
    with pytest.raises(ManifestError, match="true or false"):
        Manifest.from_toml(text.format("read-write", '"yes"'))
    with pytest.raises(ManifestError, match="needs access"):
        Manifest.from_toml(text.format("read-only", "true"))


def test_atomic_batch_inside_a_transaction(storage: ComponentStorage) -> None:
    """An atomic batch in a transaction: decided on the buffer; a key only checked is a commit condition, no write."""
    checked = storage.set("checked", b"c")
    tx = storage.transaction()
    tx.atomic().check("checked", checked).check("absent", 0).set("a", b"1").increment("n", 2).commit()
    assert tx.get_many(["a", "n"]) == [b"1", b"2"] and storage.get("a") is None
    assert tx.pending_writes == 2
    tx.commit()
    assert storage.get_entry("checked") == (b"c", checked, None)
    assert storage.get_many(["a", "n"]) == [b"1", b"2"]
    # Another writer changes a checked key between the batch and the commit: the commit is refused.
    tx.atomic().check("checked", checked).set("b", b"2").commit()
    storage.set("checked", b"changed")
    with pytest.raises(PreconditionFailed, match="'checked'"):
        tx.commit()
    assert storage.get("b") is None
    tx.atomic().check("absent", 0).set("b", b"2").commit()
    storage.set("absent", b"now present")
    with pytest.raises(PreconditionFailed, match="'absent'"):
        tx.commit()
    assert storage.get("b") is None
