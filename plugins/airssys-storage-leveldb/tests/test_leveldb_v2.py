"""Contract v2 on LevelDB: the row format, migration from schema 1, expiry, versions, op ids, range deletes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plyvel
import pytest
from airssys_storage_leveldb import LevelDBBackend
from airssys_storage_leveldb import backend as backend_module
from airssys_storage_leveldb.layout import (
    COUNTER,
    MIGRATING_KEY,
    OP_PREFIX,
    OP_TIME_PREFIX,
    SCHEMA_KEY,
    counter_key,
    decode_header,
    encode_row,
    namespace_prefix,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from airssys_storage import ConfigurationError, PreconditionFailed, QuotaExceeded, StoreDamaged, Usage
from airssys_storage.planner import MAX_VERSION, KeyState, Write, WriteKind
from airssys_storage.testing import FakeClock

DATA = Path(__file__).parent / "data"
T0 = 1_700_000_000_000


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"leveldb://{tmp_path}/db"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start_ms=T0)


@pytest.fixture
def backend(url: str, clock: FakeClock) -> Iterator[LevelDBBackend]:
    backend = LevelDBBackend.open(url, {})
    backend.clock = clock
    try:
        yield backend
    finally:
        backend.close()


def put(key: bytes, value: bytes, ttl_ms: int | None = None, *, now: int = T0, **extra: Any) -> Write:
    return Write(key, WriteKind.PUT, value, None if ttl_ms is None else now + ttl_ms, **extra)


def raw_records(backend: LevelDBBackend, prefix: bytes) -> dict[bytes, bytes]:
    return dict(backend._db.iterator(prefix=prefix))


def no_clock() -> int:
    raise AssertionError("the clock was read for a row without expiry")


# -- the row format ------------------------------------------------------------------


@given(
    version=st.integers(1, MAX_VERSION),
    expires_at=st.none() | st.integers(0, 2**64 - 1),
    value=st.binary(max_size=40),
)
def test_row_header_round_trips_and_delimits_the_value(version: int, expires_at: int | None, value: bytes) -> None:
    """decode_header(encode_row(...)) gives the version, expiry and the value's offset, for every value."""
    raw = encode_row(version, expires_at, value)
    offset, got_version, got_expiry = decode_header(raw)
    assert (got_version, got_expiry, raw[offset:]) == (version, expires_at, value)
    # A row without expiry is told by its first byte alone (the read hot path).
    assert (0 < raw[0] < 9) is (expires_at is None)
    assert offset == 1 + (version.bit_length() + 7) // 8 + (0 if expires_at is None else 8)


@pytest.mark.parametrize("raw", [b"", b"\x00abc", b"\x09", b"\x20\x01", b"\x02\x01", b"\x11\x01\x00"])
def test_malformed_headers_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_header(raw)


def test_a_plain_row_costs_two_bytes_and_a_read_needs_no_clock(backend: LevelDBBackend) -> None:
    """Version 1 without expiry is a 2-byte header; reads of such rows never call the clock."""
    backend.put_one("app", b"k", b"value", None)
    assert raw_records(backend, namespace_prefix("app")) == {namespace_prefix("app") + b"k": b"\x01\x01value"}
    backend.clock = no_clock
    assert backend.get("app", b"k") == b"value"
    assert backend.get_entry("app", b"k") == KeyState(5, 1, None, b"value")
    assert backend.get_many("app", [b"k", b"x"]) == [b"value", None]
    assert backend.has("app", b"k") and not backend.has("app", b"x")
    assert backend.items("app", b"", None, 10) == [(b"k", b"value")]
    assert backend.keys("app", b"", None, 10) == [b"k"]
    assert backend.put_one("app", b"k", b"other", None) == 2  # an overwrite of such a row needs none either


def test_a_damaged_row_is_an_error_naming_verify_repair(backend: LevelDBBackend) -> None:
    backend.put_one("app", b"ok", b"1", None)
    backend._db.put(namespace_prefix("app") + b"bad", b"\x00junk")
    with pytest.raises(StoreDamaged, match=r"row of key 'bad' of component 'app'.*verify --repair"):
        backend.get("app", b"bad")
    with pytest.raises(StoreDamaged):
        backend.items("app", b"", None, 10)
    report = backend.verify()
    assert not report.ok and [found.key for found in report.bad_keys] == [b"bad"]
    assert backend.verify(repair=True).bad_keys and backend.verify().ok
    assert backend.items("app", b"", None, 10) == [(b"ok", b"1")] and backend.usage("app") == Usage(3, 1)


# -- migration from schema 1 ------------------------------------------------------------


def _schema1_store(tmp_path: Path) -> str:
    shutil.copytree(DATA / "schema1", tmp_path / "db")
    return f"leveldb://{tmp_path}/db"


def _expected() -> dict[str, dict[bytes, bytes]]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_schema1", DATA / "make_schema1.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data: dict[str, dict[bytes, bytes]] = module.expected()
    return data


def _check_migrated(backend: LevelDBBackend) -> None:
    for ns, data in _expected().items():
        assert dict(backend.items(ns, b"", None, 10**6)) == data
        assert backend.usage(ns) == Usage(sum(len(k) + len(v) for k, v in data.items()), len(data))
        assert all(backend.get_entry(ns, key) == KeyState(len(v), 1, None, v) for key, v in data.items())
    assert backend.namespaces() == ["app", "other"]
    assert backend.verify().ok
    assert backend._db.get(SCHEMA_KEY) == b"2" and backend._db.get(MIGRATING_KEY) is None


def test_a_store_written_by_schema_1_code_is_migrated_on_open(tmp_path: Path) -> None:
    """The fixture was written by the previous release: every row, counter and namespace survives, at version 1."""
    url = _schema1_store(tmp_path)
    backend = LevelDBBackend.open(url, {})
    try:
        _check_migrated(backend)
        assert backend._db.get(counter_key("gone")) == COUNTER.pack(0, 0, 0, 0)
        assert backend.put_one("app", b"k001", b"new", None) == 2  # versions continue from the migrated 1
    finally:
        backend.close()
    backend = LevelDBBackend.open(url, {})  # a second open finds nothing to migrate
    try:
        assert backend.get("app", b"k001") == b"new"
    finally:
        backend.close()


class _CrashingDB:
    """Passes everything to the real database, but its write batches "crash" after *writes* were written."""

    def __init__(self, db: Any, writes: int) -> None:
        self.db, self.left = db, writes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)

    def write_batch(self, **kwargs: Any) -> Any:
        real = self.db.write_batch(**kwargs)
        outer = self

        class Batch:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def write(self) -> None:
                if outer.left == 0:
                    raise KeyboardInterrupt("crash")
                outer.left -= 1
                real.write()

        return Batch()


@pytest.mark.parametrize("crash_after", [0, 1, 2, 5, 9])
def test_an_interrupted_migration_resumes_and_never_rewrites_a_row_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_after: int
) -> None:
    """Killed after any batch of the migration, the next open finishes it: no row lost, none re-wrapped."""
    url = _schema1_store(tmp_path)
    monkeypatch.setattr(backend_module, "_PROGRESS_STEP", 17)  # many chunks
    db = plyvel.DB(str(tmp_path / "db"))
    try:
        with pytest.raises(KeyboardInterrupt):
            backend_module._migrate(_CrashingDB(db, crash_after), str(tmp_path / "db"), 1)
        if crash_after:
            assert db.get(SCHEMA_KEY) == b"2" and db.get(MIGRATING_KEY) is not None
    finally:
        db.close()
    if crash_after == 0:  # nothing was written: still schema 1
        db = plyvel.DB(str(tmp_path / "db"))
        assert db.get(SCHEMA_KEY) == b"1"
        db.close()
    backend = LevelDBBackend.open(url, {})
    try:
        _check_migrated(backend)
    finally:
        backend.close()


def test_code_of_schema_1_would_refuse_a_store_mid_migration(tmp_path: Path) -> None:
    """The first batch of a migration sets schema 2, which schema 1 code refuses ("newer ... upgrade")."""
    url = _schema1_store(tmp_path)
    db = plyvel.DB(str(tmp_path / "db"))
    with pytest.raises(KeyboardInterrupt):
        backend_module._migrate(_CrashingDB(db, 1), str(tmp_path / "db"), 1)
    assert int(db.get(SCHEMA_KEY)) > 1
    db.close()
    LevelDBBackend.open(url, {}).close()


def test_a_corrupted_schema_1_counter_refuses_the_migration(tmp_path: Path) -> None:
    url = _schema1_store(tmp_path)
    db = plyvel.DB(str(tmp_path / "db"))
    db.put(counter_key("app"), b"junk")
    db.close()
    with pytest.raises(StoreDamaged, match="cannot be migrated"):
        LevelDBBackend.open(url, {})


# -- versions, expiry, conditions ---------------------------------------------------------


def test_versions_survive_delete_clear_and_reopen(url: str, clock: FakeClock) -> None:
    """The floor keeps versions increasing over delete, re-create, clear and a reopen."""
    backend = LevelDBBackend.open(url, {})
    backend.clock = clock
    assert backend.put_one("app", b"a", b"1", None) == 1
    assert backend.put_one("app", b"a", b"2", None) == 2
    assert backend.delete_one("app", b"a") is True
    assert backend.put_one("app", b"a", b"3", None) == 3
    assert backend.put_one("app", b"b", b"1", None) == 3  # a new key starts above the floor (2)
    backend.clear("app")
    assert backend.usage("app") == Usage() and backend.namespaces() == []
    backend.close()
    backend = LevelDBBackend.open(url, {})
    try:
        assert backend.put_one("app", b"c", b"1", None) == 4
        assert backend._db.get(counter_key("app")) == COUNTER.pack(2, 1, 3, 0)
    finally:
        backend.close()


def test_expired_rows_are_invisible_to_every_read_and_charged_until_swept(
    backend: LevelDBBackend, clock: FakeClock
) -> None:
    backend.apply("app", [put(b"t", b"temp", 1000), put(b"p", b"perm")], None)
    assert backend.keys("app", b"", None, 10) == [b"p", b"t"]
    clock.advance(1)  # exactly the deadline: expired
    assert backend.get("app", b"t") is None and backend.get_entry("app", b"t") is None
    assert backend.get_many("app", [b"t", b"p"]) == [None, b"perm"]
    assert not backend.has("app", b"t")
    assert backend.items("app", b"", None, 1) == [(b"p", b"perm")]  # skipped rows do not count in the limit
    assert backend.keys("app", b"", None, 10) == [b"p"]
    assert backend.usage("app") == Usage(5 + 5, 2)  # still charged
    assert backend.verify().ok  # the recount counts the expired row too
    assert sum(backend.delete_range("app", b"", None, expired_only=True).results) == 1
    assert backend.usage("app") == Usage(5, 1) and backend._space("app").counter == (5, 1, 1, 0)


def test_ttl_survives_reopen_and_a_plain_put_clears_it(url: str, clock: FakeClock) -> None:
    backend = LevelDBBackend.open(url, {})
    backend.clock = clock
    backend.apply("app", [put(b"k", b"v", 5000)], None)
    backend.close()
    backend = LevelDBBackend.open(url, {})
    backend.clock = clock
    try:
        assert backend.get_entry("app", b"k") == KeyState(1, 1, T0 + 5000, b"v")
        assert backend.put_one("app", b"k", b"w", None) == 2
        clock.advance(10)
        assert backend.get_entry("app", b"k") == KeyState(1, 2, None, b"w")
        assert backend._space("app").counter == (2, 1, 0, 0)  # no row with expiry left
    finally:
        backend.close()


def test_touch_keeps_the_value_and_increment_keeps_the_expiry(backend: LevelDBBackend, clock: FakeClock) -> None:
    backend.apply("app", [put(b"n", b"41", 1000)], None)
    plan = backend.apply("app", [Write(b"n", WriteKind.INCREMENT, delta=1)], None)
    assert plan.results == [42] and backend.get_entry("app", b"n") == KeyState(2, 2, T0 + 1000, b"42")
    assert backend.apply("app", [Write(b"n", WriteKind.TOUCH, expires_at=None)], None).results == [3]
    assert backend.get_entry("app", b"n") == KeyState(2, 3, None, b"42")
    assert backend.apply("app", [Write(b"x", WriteKind.TOUCH, expires_at=T0 + 5)], None).results == [0]
    assert backend._space("app").counter == (3, 1, 0, 0) and backend.verify().ok


def test_a_refused_commit_writes_nothing(backend: LevelDBBackend) -> None:
    backend.put_one("app", b"a", b"1", None)
    before = dict(backend._db.iterator())
    with pytest.raises(PreconditionFailed):
        backend.apply("app", [put(b"b", b"2"), put(b"a", b"3", if_version=7)], None)
    with pytest.raises(QuotaExceeded):
        backend.apply("app", [put(b"b", b"2" * 10, op_id="op")], 5)
    assert dict(backend._db.iterator()) == before
    assert backend.put_one("app", b"b", b"2", None) == 1  # the row cache learned nothing from them


# -- operation ids ------------------------------------------------------------------------


def test_an_op_id_applies_once_within_the_retention(backend: LevelDBBackend, clock: FakeClock) -> None:
    backend.op_retention_ms = 10_000
    incr = Write(b"n", WriteKind.INCREMENT, delta=5, op_id="op-1")
    assert backend.apply("app", [incr], None).results == [5]
    clock.advance(9.999)
    assert backend.apply("app", [incr], None).results == [5]  # replayed: nothing applied
    assert backend.get("app", b"n") == b"5"
    assert backend.apply("other", [incr], None).results == [5]  # op ids are per namespace
    clock.advance(0.001)  # the record is now as old as the retention: it may go
    assert backend.apply("app", [incr], None).results == [10]
    assert backend.apply("app", [incr], None).results == [10]
    # The metadata space holds one record and one index entry per id and namespace, none reachable from a key.
    ops = raw_records(backend, OP_PREFIX)
    assert sorted(ops) == [OP_PREFIX + b"\x03appop-1", OP_PREFIX + b"\x05otherop-1"]
    assert len(raw_records(backend, OP_TIME_PREFIX)) == 2


def test_old_op_records_are_dropped_by_later_commits(backend: LevelDBBackend, clock: FakeClock) -> None:
    """Records older than the retention go, a bounded number per commit that records an op id."""
    backend.op_retention_ms = 1000
    for i in range(100):
        backend.apply("app", [Write(b"n", WriteKind.INCREMENT, delta=1, op_id=f"id-{i}")], None)
    clock.advance(2)
    for i in range(3):
        backend.apply("app", [Write(b"n", WriteKind.INCREMENT, delta=1, op_id=f"late-{i}")], None)
    assert len(raw_records(backend, OP_PREFIX)) == len(raw_records(backend, OP_TIME_PREFIX)) == 3
    assert backend.get("app", b"n") == b"103"
    assert backend.usage("app") == Usage(4, 1)  # op records are not charged


# -- range deletes ----------------------------------------------------------------------------


def test_delete_range_removes_in_key_order_up_to_the_limit(backend: LevelDBBackend, clock: FakeClock) -> None:
    backend.apply("app", [put(b"k%d" % i, b"v", 1000 if i % 2 else None) for i in range(10)], None)
    backend.put_one("app", b"z", b"v", None)
    plan = backend.delete_range("app", b"k", b"l", limit=3)
    assert plan.deletes == [b"k0", b"k1", b"k2"] and sum(plan.results) == 3
    clock.advance(1)
    assert backend.delete_range("app", b"", None, expired_only=True, limit=2).deletes == [b"k3", b"k5"]
    plan = backend.delete_range("app", b"k", b"l", expired_only=True)
    assert plan.deletes == [b"k7", b"k9"] and sum(plan.results) == 2
    assert backend.delete_range("app", b"", None, expired_only=True).deletes == []
    assert backend.keys("app", b"", None, 100) == [b"k4", b"k6", b"k8", b"z"]
    assert backend._space("app").counter == (11, 4, 1, 0) and backend.verify().ok


def test_delete_range_is_one_batch(backend: LevelDBBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A range delete whose batch fails leaves every row and the counter as they were."""
    backend.apply("app", [put(b"k%d" % i, b"v") for i in range(50)], None)
    before = dict(backend._db.iterator())

    class Failing:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def write(self) -> None:
            raise plyvel.IOError(b"IO error: disk full")

    real = backend._engine._batch
    backend._engine._batch = Failing()
    with pytest.raises(Exception, match="disk full"):
        backend.delete_range("app", b"", None)
    backend._engine._batch = real
    assert dict(backend._db.iterator()) == before and backend.usage("app") == Usage(10 * 3 + 40 * 4, 50)
    assert sum(backend.delete_range("app", b"", None).results) == 50


# -- verify -------------------------------------------------------------------------------------


def test_verify_recounts_rows_with_an_expiry_and_repair_fixes_the_count(
    backend: LevelDBBackend, clock: FakeClock
) -> None:
    backend.apply("app", [put(b"a", b"1", 1000), put(b"b", b"2")], None)
    backend._db.put(counter_key("app"), COUNTER.pack(4, 2, 0, 0))  # says no row has an expiry: a lie
    backend._spaces["app"].counter = None
    report = backend.verify()
    assert not report.ok and "says 0 rows have an expiry, a recount finds 1" in report.problems[0]
    assert backend.verify(repair=True).repaired
    assert backend.verify().ok and backend._space("app").counter == (4, 2, 0, 1)
    clock.advance(1)
    assert backend.keys("app", b"", None, 10) == [b"b"]  # listings trust the count again


# -- hot paths equal the planner ------------------------------------------------------------------

_ops = st.lists(
    st.tuples(st.sampled_from(["put", "delete"]), st.sampled_from([b"a", b"b", b"c"]), st.integers(0, 6)),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(ops=_ops, limit=st.none() | st.integers(0, 30), cache=st.sampled_from([0, 2, 1000]))
def test_put_one_and_delete_one_equal_apply(
    tmp_path_factory: pytest.TempPathFactory, ops: Any, limit: Any, cache: int
) -> None:
    """The same sequence through put_one/delete_one and through apply: same results, rows, counters (floor too)."""
    path = tmp_path_factory.mktemp("diff")
    backend = LevelDBBackend.open(f"leveldb://{path}/db", {"size_cache_keys": cache})
    try:
        for kind, key, size in ops:
            outcomes = []
            for ns, hot in (("hot", True), ("planned", False)):
                # No row here has an expiry: the hot paths must not need the clock (apply reads it once).
                backend.clock = no_clock if hot else FakeClock(T0)
                try:
                    if kind == "put" and hot:
                        outcomes.append(backend.put_one(ns, key, b"x" * size, limit))
                    elif kind == "put":
                        outcomes.append(backend.apply(ns, [put(key, b"x" * size)], limit).results[0])
                    elif hot:
                        outcomes.append(backend.delete_one(ns, key))
                    else:
                        outcomes.append(backend.apply(ns, [Write(key, WriteKind.DELETE)], None).results[0] == 1)
                except QuotaExceeded:
                    outcomes.append("quota")
            assert outcomes[0] == outcomes[1]
            assert backend.usage("hot") == backend.usage("planned")
            assert backend._db.get(counter_key("hot")) == backend._db.get(counter_key("planned"))
            assert backend.items("hot", b"", None, 10) == backend.items("planned", b"", None, 10)
            assert [backend.get_entry("hot", k) for k in (b"a", b"b", b"c")] == [
                backend.get_entry("planned", k) for k in (b"a", b"b", b"c")
            ]
    finally:
        backend.close()


def test_put_one_over_a_row_with_an_expiry_takes_the_general_path(backend: LevelDBBackend, clock: FakeClock) -> None:
    backend.apply("app", [put(b"k", b"v", 1000)], None)
    clock.advance(5)  # expired: a put replaces it with a version above it, without adding a key
    assert backend.put_one("app", b"k", b"w", None) == 2
    assert backend._space("app").counter == (2, 1, 0, 0) and backend.verify().ok


def test_schema_newer_than_this_code_is_refused(url: str, tmp_path: Path) -> None:
    LevelDBBackend.open(url, {}).close()
    db = plyvel.DB(str(tmp_path / "db"))
    db.put(SCHEMA_KEY, b"3")
    db.close()
    with pytest.raises(ConfigurationError, match="newer"):
        LevelDBBackend.open(url, {})


# -- the engine marker ------------------------------------------------------------------


def test_a_store_of_an_earlier_version_opens_and_gets_its_marker(tmp_path: Path) -> None:
    """The schema 1 fixture has no ``AIRSSYS-STORE``: its LevelDB files identify it; the first open writes one."""
    from airssys_storage.storeid import MARKER, detect_engine

    url = _schema1_store(tmp_path)
    assert not (tmp_path / "db" / MARKER).exists() and detect_engine(str(tmp_path / "db")) == "leveldb"
    LevelDBBackend.open(url, {}).close()
    assert "engine=leveldb" in (tmp_path / "db" / MARKER).read_text()


@pytest.mark.parametrize(
    ("files", "found"),
    [
        (["CURRENT", "MANIFEST-000005", "OPTIONS-000007", "IDENTITY", "000009.sst"], "rocksdb"),
        (["data.mdb", "lock.mdb"], "lmdb"),
    ],
)
def test_a_store_of_another_engine_is_never_opened_or_repaired(tmp_path: Path, files: list[str], found: str) -> None:
    store = tmp_path / "db"
    store.mkdir()
    for name in files:
        (store / name).write_bytes(b"x" * 200)
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    url = f"leveldb://{store}"
    for attempt in (
        lambda: LevelDBBackend.open(url, {}),
        lambda: LevelDBBackend.repair_url(url),
        lambda: LevelDBBackend.exists(url, {}),
    ):
        with pytest.raises(ConfigurationError, match=f"use {found}://{store}"):
            attempt()
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before
