"""Differential test: the commit script (commit.lua) against :func:`airssys_storage.planner.plan`.

The script is the planner's second implementation (it must run on the server
to be atomic across clients). Hypothesis builds an old state — rows with
versions up to 2**64 - 1, expiries around ``now``, counter values at the
signed 64-bit edges and malformed ones, the counter row, recorded op ids —
and a commit, with op records (``WriteKind.RECORD``, recorded or not, malformed
ones too) beside written keys,
writes it into Redis around the backend, runs one commit both ways and
requires the same outcome: the same error class with the store unchanged, or
the same results and exactly the rows, counter row and op records the plan
says. With the change feed on (drawn), the script's appended events must be
exactly :func:`~airssys_storage.changes.plan_records` of the plan (none for a
refusal); range deletes and clears are compared with
:func:`~airssys_storage.changes.range_records` and
:func:`~airssys_storage.changes.clear_record` the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from airssys_storage_redis import RedisBackend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airssys_storage import InternalError, PreconditionFailed, StorageError
from airssys_storage.changes import FeedConfig, Pending, clear_record, plan_records, range_records
from airssys_storage.planner import MAX_VERSION, KeyState, SpaceState, Write, WriteKind, plan

NOW = 1_700_000_000_000
#: Stored rows as the test writes and reads them: key -> (version, expires_at, value).
Rows = dict[bytes, tuple[int, int | None, bytes]]
_ids = itertools.count()

_keys = st.sampled_from([b"a", b"b", b"k\xc3\xa9", b"z" * 5])
_versions = st.one_of(st.integers(1, 20), st.sampled_from([2**53 - 1, 2**53 + 1, MAX_VERSION - 1, MAX_VERSION]))
_expiries = st.one_of(st.none(), st.sampled_from([NOW - 1, NOW, NOW + 1, 1, 2**53]))
_values = st.one_of(
    st.binary(max_size=8),
    st.sampled_from(
        [
            b"0",
            b"41",
            b"-0",
            b"007",
            b"+1",
            b" 1",
            b"-",
            b"9223372036854775807",
            b"-9223372036854775808",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"00000000000000000001",
            b"000000000000000000001",
            b"999999999",
            b"1000000000",
            b"-1000000000",
            b"x" * 40,
        ]
    ),
)
_rows = st.one_of(st.none(), st.builds(lambda v, x, val: (v, x, val), _versions, _expiries, _values))
_deltas = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([2**63 - 1, -(2**63), 999_999_999, -999_999_999, 1_000_000_000, -1_000_000_001]),
)


@st.composite
def _write(draw: Any, key: bytes) -> Write:
    kind = draw(st.sampled_from([kind for kind in WriteKind if kind is not WriteKind.RECORD]))
    return Write(
        key,
        kind,
        draw(st.binary(max_size=6)) if kind is WriteKind.PUT else b"",
        draw(_expiries) if kind in (WriteKind.PUT, WriteKind.TOUCH) else None,
        draw(st.one_of(st.none(), st.just(0), _versions)),
        draw(_deltas) if kind is WriteKind.INCREMENT else 0,
        draw(st.one_of(st.none(), st.sampled_from(["op1", "op2"]))),
    )


@st.composite
def _case(
    draw: Any,
) -> tuple[Rows, SpaceState, dict[str, int], list[Write], int | None, FeedConfig | None]:
    rows = {key: row for key in (b"a", b"b", b"k\xc3\xa9", b"z" * 5) if (row := draw(_rows)) is not None}
    space = SpaceState(draw(st.integers(0, 200)), len(rows), draw(st.one_of(st.integers(0, 30), _versions)))
    done = draw(st.dictionaries(st.sampled_from(["op1", "op2"]), st.integers(-5, 5), max_size=2))  # op3: never
    keys = draw(st.lists(_keys, min_size=1, max_size=4, unique=True))
    writes = [draw(_write(key)) for key in keys]
    for _ in range(draw(st.integers(0, 2))):  # op records (a transaction's), beside written keys or alone
        record = Write(
            draw(_keys),
            WriteKind.RECORD,
            b"",
            None,
            draw(st.one_of(st.none(), st.none(), st.just(0))),  # a condition is malformed: refused, nothing applied
            draw(_deltas),
            draw(st.sampled_from(["op1", "op2", "op3", None])),  # op3 is never recorded before; None malformed
        )
        writes.insert(draw(st.integers(0, len(writes))), record)
    limit = draw(st.one_of(st.none(), st.integers(0, 250)))
    return rows, space, done, writes, limit, draw(_feeds)


#: The change feed: off, or on with values captured up to a cap that some values pass and some do not.
_feeds = st.one_of(
    st.none(),
    st.builds(
        lambda cap, capture: FeedConfig(capture_values=capture, max_value_bytes=cap), st.integers(0, 8), st.booleans()
    ),
)


def _logged(backend: RedisBackend, namespace: str) -> list[Pending]:
    """The events the script appended to the namespace's change log, as the planner's pending records."""
    batch = backend.read_changes(namespace, 0, 1000)
    assert [r.seq for r in batch.records] == list(range(1, batch.last + 1)), "dense seqs from 1"
    return [(r.key, r.op, r.version, r.value, r.end) for r in batch.records]


@pytest.fixture
def backend(redis_url: str, key_prefix: str) -> Iterator[RedisBackend]:
    opened = RedisBackend.open(redis_url, {"key_prefix": key_prefix})
    opened.clock = lambda: NOW
    yield opened
    opened.close()


def _store(
    backend: RedisBackend,
    namespace: str,
    rows: Rows,
    space: SpaceState,
    done: dict[str, int],
) -> None:
    """Write the old state around the backend, in its layout."""
    data, index, expiry, counter, ops, times = backend._names(namespace)
    for key, (version, expires_at, value) in rows.items():
        meta = str(version) if expires_at is None else f"{version},{expires_at}"
        backend._call("setup", True, b"HSET", data, key, meta.encode() + b":" + value)
        backend._call("setup", True, b"ZADD", index, 0, key)
        if expires_at is not None:
            backend._call("setup", True, b"ZADD", expiry, expires_at, key)
    backend._call("setup", True, b"HSET", counter, b"b", space.bytes, b"k", space.keys, b"f", space.floor)
    for op_id, result in done.items():
        backend._call("setup", True, b"HSET", ops, op_id, result)
        backend._call("setup", True, b"ZADD", times, NOW, op_id)


def _load(
    backend: RedisBackend, namespace: str
) -> tuple[Rows, SpaceState, dict[str, int], list[bytes], dict[bytes, float]]:
    """The state as stored: rows, counter row, op records, the ordered index and the expiry index."""
    from airssys_storage_redis.backend import parse_row

    data, index, expiry, counter, ops, _ = backend._names(namespace)
    flat = backend._call("load", False, b"HGETALL", data)
    rows = {}
    for key, raw in zip(flat[::2], flat[1::2], strict=True):
        version, expires_at, offset = parse_row(raw)
        rows[key] = (version, expires_at, raw[offset:])
    b, k, f = backend._call("load", False, b"HMGET", counter, b"b", b"k", b"f")
    flat_ops = backend._call("load", False, b"HGETALL", ops)
    done = {op.decode(): int(result) for op, result in zip(flat_ops[::2], flat_ops[1::2], strict=True)}
    ordered = backend._call("load", False, b"ZRANGEBYLEX", index, b"-", b"+")
    flat_expiry = backend._call("load", False, b"ZRANGE", expiry, 0, -1, b"WITHSCORES")
    deadlines = {key: float(score) for key, score in zip(flat_expiry[::2], flat_expiry[1::2], strict=True)}
    return rows, SpaceState(int(b or 0), int(k or 0), int(f or 0)), done, ordered, deadlines


def _outcome(namespace: str, writes: list[Write], old: list[KeyState | None], *args: Any) -> object:
    try:
        return plan(namespace, writes, old, args[0], args[1], NOW, args[2])
    except StorageError as exc:
        return type(exc), str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_case())
def test_commit_script_decides_as_the_planner(backend: RedisBackend, case: Any) -> None:
    """Same old state, same writes: the script gives the planner's results and error, and stores its plan."""
    rows, space, done, writes, limit, feed = case
    namespace = f"n{next(_ids)}"
    _store(backend, namespace, rows, space, done)
    if feed is not None:
        backend.enable_changes(namespace, feed)
    old = [None if (row := rows.get(w.key)) is None else KeyState(len(row[2]), row[0], row[1], row[2]) for w in writes]
    if any(write.kind is WriteKind.RECORD for write in writes):  # the planner ignores a RECORD's old state
        assert _outcome(namespace, writes, old, space, limit, done) == _outcome(
            namespace,
            writes,
            [None if w.kind is WriteKind.RECORD else row for w, row in zip(writes, old, strict=True)],
            space,
            limit,
            done,
        )
    try:
        expected = plan(namespace, writes, old, space, limit, NOW, done)
    except StorageError as exc:
        with pytest.raises(type(exc)) as caught:
            backend.apply(namespace, writes, limit)
        assert not isinstance(caught.value, InternalError) or isinstance(exc, InternalError)
        assert str(caught.value) == str(exc)
        assert _load(backend, namespace)[:3] == (rows, space, done), "a refused commit wrote nothing"
        if feed is not None:
            assert _logged(backend, namespace) == [], "a refused commit appended no event"
        return
    got = backend.apply(namespace, writes, limit)  # raises InternalError if script and planner disagree
    assert got == expected
    after = dict(rows)
    for put in expected.puts:
        value = after[put.key][2] if put.value is None else put.value
        after[put.key] = (put.version, put.expires_at, value)
    for key in expected.deletes:
        del after[key]
    records = {**done, **dict(expected.op_records)}
    stored_rows, stored_space, stored_ops, ordered, deadlines = _load(backend, namespace)
    assert stored_rows == after
    assert stored_space == (expected.space if expected.space_changed else space)
    assert stored_ops == records
    assert ordered == sorted(after), "the ordered index holds exactly the rows, bytewise"
    assert deadlines == {key: float(row[1]) for key, row in after.items() if row[1] is not None}
    if feed is not None:
        assert _logged(backend, namespace) == plan_records(expected, feed)


_bounds = st.sampled_from([b"", b"a", b"b", b"k", b"k\xc3\xa9", b"z"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.dictionaries(_keys, st.builds(lambda v, x: (v, x, b"v"), _versions, _expiries), max_size=4),
    start=_bounds,
    end=st.one_of(st.none(), _bounds.filter(bool)),  # b"" is no end (keys are never empty; the script reads "" as none)
    expired_only=st.booleans(),
    most=st.one_of(st.none(), st.integers(1, 3)),
    clear=st.booleans(),
)
def test_range_and_clear_events_are_the_planners(
    backend: RedisBackend,
    rows: Rows,
    start: bytes,
    end: bytes | None,
    expired_only: bool,
    most: int | None,
    clear: bool,
) -> None:
    """A range delete (or sweep) appends range_records of the plan it applied; a clear of rows clear_record."""
    namespace = f"r{next(_ids)}"
    used = sum(len(key) + len(row[2]) for key, row in rows.items())
    _store(backend, namespace, rows, SpaceState(used, len(rows), 0), {})
    backend.enable_changes(namespace, FeedConfig())
    if clear:
        backend.clear(namespace)
        floor = max([0, *(row[0] for row in rows.values())])
        assert _logged(backend, namespace) == (clear_record(floor) if rows else [])
        return
    planned = backend.delete_range(namespace, start, end, expired_only=expired_only, limit=most)
    assert _logged(backend, namespace) == range_records(planned, start, end, expired_only)


def test_commit_script_refuses_an_op_record_already_recorded(backend: RedisBackend) -> None:
    """A RECORD of a recorded op id refuses the whole commit in the script too (nothing written); a new one records."""
    namespace = f"n{next(_ids)}"
    _store(backend, namespace, {}, SpaceState(), {"op1": 1})
    put, record = Write(b"a", WriteKind.PUT, b"x"), Write(b"a", WriteKind.RECORD, delta=5, op_id="op1")
    with pytest.raises(PreconditionFailed, match="recorded by another writer"):
        backend.apply(namespace, [put, record], None)
    assert _load(backend, namespace)[:3] == ({}, SpaceState(), {"op1": 1})
    got = backend.apply(namespace, [put, record._replace(op_id="op2")], None)
    assert got.results == [1, 5] and got.op_records == [("op2", 5)]
    assert _load(backend, namespace)[:3] == ({b"a": (1, None, b"x")}, SpaceState(2, 1, 0), {"op1": 1, "op2": 5})
