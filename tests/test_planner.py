"""The commit planner on its own: examples for each rule, and a hypothesis model of a whole store."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from airssys_storage import InternalError, InvalidArgument, PreconditionFailed, QuotaExceeded, planner
from airssys_storage.planner import (
    MAX_VERSION,
    Event,
    KeyState,
    Plan,
    SpaceState,
    Write,
    WriteKind,
    decode_counter,
    plan,
)

NS = "app"


def apply(rows: dict[bytes, KeyState], result: Plan) -> None:
    """What every backend does with a plan (here: to a dict of rows)."""
    for put in result.puts:
        value = rows[put.key].value if put.value is None else put.value
        assert value is not None
        rows[put.key] = KeyState(len(value), put.version, put.expires_at, value)
    for key in result.deletes:
        del rows[key]


def test_put_charges_key_and_value_bytes_and_creates_version_above_floor() -> None:
    """Sizes: len(key) + len(value); a new row gets floor + 1."""
    result = plan(NS, [Write(b"ab", value=b"xyz")], [None], SpaceState(10, 1, floor=7), None, 0)
    assert result.space == SpaceState(15, 2, 7)
    assert result.results == [8]
    assert result.existed == [False]
    assert result.space_changed


def test_same_size_overwrite_leaves_counter_row_alone() -> None:
    """An overwrite of the same size changes no counter (backends skip writing the row)."""
    result = plan(NS, [Write(b"k", value=b"new")], [KeyState(3, 4)], SpaceState(4, 1, 9), None, 0)
    assert not result.space_changed
    assert result.results == [5]  # the row's version + 1, not the floor's
    assert result.existed == [True]


def test_guard_refuses_growth_past_limit_and_accepts_shrinking_writes() -> None:
    """Guard: delta > 0 and used + delta > limit is refused; writes that do not grow pass."""
    with pytest.raises(QuotaExceeded):
        plan(NS, [Write(b"k", value=b"12345")], [None], SpaceState(95, 3), 100, 0)
    plan(NS, [Write(b"k", value=b"1234")], [None], SpaceState(95, 3), 100, 0)  # exactly at the limit
    over = SpaceState(500, 3)  # above a lowered quota
    assert plan(NS, [Write(b"k", WriteKind.DELETE)], [KeyState(5, 1)], over, 100, 0).space.bytes == 494
    assert plan(NS, [Write(b"k", value=b"1")], [KeyState(5, 1)], over, 100, 0).space.bytes == 496


def test_delete_raises_floor_so_recreated_key_never_reuses_a_version() -> None:
    """Versions: removing a row raises the floor; re-creating the key starts above it."""
    deleted = plan(NS, [Write(b"k", WriteKind.DELETE)], [KeyState(1, 41)], SpaceState(2, 1, 3), None, 0)
    assert deleted.space == SpaceState(0, 0, 41)
    assert deleted.results == [1]
    again = plan(NS, [Write(b"k", value=b"v")], [None], deleted.space, None, 0)
    assert again.results == [42]


def test_delete_of_missing_key_changes_nothing() -> None:
    """Deleting a missing key is a no-op: no event, no counter write."""
    result = plan(NS, [Write(b"k", WriteKind.DELETE)], [None], SpaceState(5, 1, 2), 0, 0)
    assert result == Plan([], [], SpaceState(5, 1, 2), False, [0], [False], [], [])


def test_expired_row_is_absent_but_charged_until_removed() -> None:
    """Expiry: an expired row is absent for conditions and results, still charged, replaced with a higher version."""
    row = KeyState(3, 8, expires_at=1000)
    for now in (1000, 5000):
        result = plan(NS, [Write(b"k", value=b"ab", if_version=0)], [row], SpaceState(4, 1), 100, now)
        assert result.existed == [False]
        assert result.results == [9]
        assert result.space == SpaceState(3, 1, 0)
    live = plan(NS, [Write(b"k", WriteKind.DELETE)], [row], SpaceState(4, 1), None, 999)
    assert live.results == [1] and live.events[0].op == "delete"
    swept = plan(NS, [Write(b"k", WriteKind.DELETE)], [row], SpaceState(4, 1), None, 1000)
    assert swept.results == [0] and swept.events[0].op == "expire" and swept.space == SpaceState(0, 0, 8)


def test_sweep_removes_only_expired_rows() -> None:
    """purge_expired: a SWEEP removes a row only if it is expired at now."""
    row = KeyState(3, 8, expires_at=1000)
    assert plan(NS, [Write(b"k", WriteKind.SWEEP)], [row], SpaceState(4, 1), None, 999).deletes == []
    assert plan(NS, [Write(b"k", WriteKind.SWEEP)], [row], SpaceState(4, 1), None, 1000).deletes == [b"k"]
    assert plan(NS, [Write(b"k", WriteKind.SWEEP)], [None], SpaceState(), None, 1000).deletes == []


@pytest.mark.parametrize(
    ("row", "condition", "ok"),
    [
        (None, 0, True),
        (None, 3, False),
        (KeyState(1, 3), 3, True),
        (KeyState(1, 3), 2, False),
        (KeyState(1, 3), 0, False),
        (KeyState(1, 3, expires_at=10), 3, False),  # expired: absent
        (KeyState(1, 3, expires_at=10), 0, True),
    ],
)
def test_compare_and_swap_conditions(row: KeyState | None, condition: int, ok: bool) -> None:
    """Conditions: 0 means absent (or expired), n means live at version n; a failure applies nothing."""
    writes = [Write(b"k", value=b"v", if_version=condition)]
    if ok:
        assert plan(NS, writes, [row], SpaceState(2, 1), None, 100).puts[0].value == b"v"
    else:
        with pytest.raises(PreconditionFailed, match="'k'"):
            plan(NS, writes, [row], SpaceState(2, 1), None, 100)


def test_check_writes_decide_their_condition_and_change_nothing_visible() -> None:
    """Checks: planner.check is a condition on a key the commit does not change; an expired row is swept."""
    live, expired = KeyState(1, 4), KeyState(1, 6, expires_at=5)
    space = SpaceState(30, 3, floor=2)
    writes = [planner.check(b"a", 4), planner.check(b"b", 0), planner.check(b"c", 0), Write(b"d", value=b"v")]
    result = plan(NS, writes, [live, None, expired, None], space, None, 10)
    assert [put.key for put in result.puts] == [b"d"] and result.deletes == [b"c"]
    assert result.results[:3] == [0, 0, 1]
    assert result.space == SpaceState(30 - 2 + 2, 3, floor=6)
    assert [event.op for event in result.events] == ["expire", "set"]
    for row, condition in ((live, 5), (live, 0), (None, 4), (expired, 6)):
        with pytest.raises(PreconditionFailed, match="'a'"):
            plan(NS, [Write(b"d", value=b"v"), planner.check(b"a", condition)], [None, row], space, None, 10)


def test_one_failed_condition_refuses_the_whole_batch() -> None:
    """Conditions: all or nothing across a batch."""
    writes = [Write(b"a", value=b"1"), Write(b"b", value=b"2", if_version=5)]
    with pytest.raises(PreconditionFailed):
        plan(NS, writes, [None, KeyState(1, 4)], SpaceState(2, 1), None, 0)


def test_increment_counts_from_zero_and_keeps_live_expiry() -> None:
    """Counters: a missing key counts as 0; a live key keeps its expiry; values are decimal ASCII."""
    fresh = plan(NS, [Write(b"n", WriteKind.INCREMENT, delta=-5)], [None], SpaceState(), None, 0)
    assert fresh.results == [-5] and fresh.puts[0].value == b"-5"
    row = KeyState(2, 3, expires_at=50, value=b"41")
    result = plan(NS, [Write(b"n", WriteKind.INCREMENT, delta=1)], [row], SpaceState(3, 1), None, 10)
    assert result.results == [42] and result.puts[0].expires_at == 50 and result.puts[0].version == 4


@pytest.mark.parametrize(
    "value", [b"", b"x", b"1.0", b"+1", b" 1", b"1_0", b"--1", "\u0661".encode(), b"9223372036854775808"]
)
def test_non_counter_values_are_invalid_argument(value: bytes) -> None:
    """Counters: only canonical decimal ASCII of a signed 64-bit integer is a counter."""
    with pytest.raises(InvalidArgument):
        decode_counter(value, b"k")


def test_increment_overflow_is_an_error_not_a_wrap() -> None:
    """Counters: overflow is invalid-argument."""
    row = KeyState(19, 1, value=b"9223372036854775807")
    with pytest.raises(InvalidArgument, match="64-bit"):
        plan(NS, [Write(b"n", WriteKind.INCREMENT, delta=1)], [row], SpaceState(20, 1), None, 0)
    assert decode_counter(b"-9223372036854775808", b"k") == -(2**63)


def test_op_id_replay_returns_first_result_and_applies_nothing() -> None:
    """Operation ids: a recorded id returns its result; a new one is recorded with the commit."""
    first = plan(NS, [Write(b"n", WriteKind.INCREMENT, delta=2, op_id="x")], [None], SpaceState(), None, 0)
    assert first.op_records == [("x", 2)]
    again = plan(
        NS,
        [Write(b"n", WriteKind.INCREMENT, delta=2, op_id="x")],
        [KeyState(1, 1, value=b"2")],
        first.space,
        None,
        0,
        {"x": 2},
    )
    assert again.results == [2] and again.puts == [] and not again.space_changed and again.op_records == []


def test_record_element_records_apart_from_the_keys_write() -> None:
    """Op records: a RECORD records (op_id, delta) beside any write of its key, and is refused once recorded."""
    writes = [
        Write(b"n", WriteKind.PUT, b"x"),
        Write(b"n", WriteKind.RECORD, op_id="x", delta=7),
        Write(b"m", WriteKind.RECORD, op_id="y", delta=-1),
    ]
    old = [KeyState(1, 3, value=b"2"), None, None]
    result = plan(NS, writes, old, SpaceState(2, 1), None, 0)
    assert result.op_records == [("x", 7), ("y", -1)] and result.results == [4, 7, -1]
    assert result.existed == [True, False, False] and [put.key for put in result.puts] == [b"n"]
    assert result.events == [Event(b"n", "set", 4)] and not result.space_changed
    assert plan(NS, [writes[1]], [None], SpaceState(), None, 0, {"y": 1}).op_records == [("x", 7)]
    with pytest.raises(PreconditionFailed, match="'x' on key 'n' of component 'app' was recorded by another writer"):
        plan(NS, writes, old, SpaceState(2, 1), None, 0, {"x": 7})  # even with the same result
    with pytest.raises(InternalError, match="RECORD"):
        plan(NS, [Write(b"n", WriteKind.RECORD, delta=1)], [None], SpaceState(), None, 0)
    with pytest.raises(InternalError, match="RECORD"):
        plan(NS, [Write(b"n", WriteKind.RECORD, if_version=0, op_id="x")], [None], SpaceState(), None, 0)
    with pytest.raises(InternalError, match="twice"):  # the exemption is for RECORDs only
        plan(NS, [*writes, Write(b"n", WriteKind.DELETE)], [*old, None], SpaceState(2, 1), None, 0)


def test_touch_changes_expiry_of_live_keys_only() -> None:
    """expire/persist: a TOUCH keeps the value, bumps the version, and does nothing to a missing key."""
    result = plan(NS, [Write(b"k", WriteKind.TOUCH, expires_at=99)], [KeyState(3, 2)], SpaceState(4, 1), None, 0)
    assert result.puts[0].value is None and result.puts[0].expires_at == 99 and result.results == [3]
    assert not result.space_changed
    assert plan(NS, [Write(b"k", WriteKind.TOUCH)], [None], SpaceState(), None, 0).results == [0]


def test_malformed_calls_are_internal_errors() -> None:
    """A backend passing mismatched or duplicate input gets an internal error, not a wrong plan."""
    with pytest.raises(InternalError):
        plan(NS, [Write(b"k")], [], SpaceState(), None, 0)
    with pytest.raises(InternalError):
        plan(NS, [Write(b"k"), Write(b"k")], [None, None], SpaceState(), None, 0)
    with pytest.raises(InternalError):
        plan(NS, [Write(b"k", WriteKind.INCREMENT)], [KeyState(1, 1)], SpaceState(2, 1), None, 0)
    with pytest.raises(InternalError, match="2\\*\\*64"):
        plan(NS, [Write(b"k")], [KeyState(1, MAX_VERSION)], SpaceState(2, 1), None, 0)


KEYS = st.sampled_from([b"a", b"b", b"cc", b"d\xc3\xa9"])
VALUES = st.binary(max_size=12)


class PlannedStore(RuleBasedStateMachine):
    """A store that applies plans to a dict, checked against a model of what callers see."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[bytes, KeyState] = {}
        self.space = SpaceState()
        self.now = 1_000
        self.limit: int | None = 60
        # The model: live values, their expiry, and every version each key ever had.
        self.live: dict[bytes, tuple[bytes, int | None]] = {}
        self.history: dict[bytes, list[int]] = {}
        self.done_ops: dict[str, int] = {}

    def _visible(self) -> None:
        for key, (_, expires_at) in list(self.live.items()):
            if expires_at is not None and expires_at <= self.now:
                del self.live[key]

    def _commit(self, writes: list[Write]) -> Plan | None:
        old = [self.rows.get(write.key) for write in writes]
        try:
            result = plan(NS, writes, old, self.space, self.limit, self.now, self.done_ops)
        except (QuotaExceeded, PreconditionFailed, InvalidArgument):
            return None
        apply(self.rows, result)
        self.space = result.space
        self.done_ops.update(result.op_records)
        for put in result.puts:
            versions = self.history.setdefault(put.key, [])
            assert not versions or put.version > max(versions), "a version was reused or went back"
            versions.append(put.version)
        return result

    @rule(key=KEYS, value=VALUES, ttl=st.none() | st.integers(1, 50))
    def put(self, key: bytes, value: bytes, ttl: int | None) -> None:
        self._visible()
        expires_at = None if ttl is None else self.now + ttl
        before = self.space.bytes
        result = self._commit([Write(key, value=value, expires_at=expires_at)])
        if result is None:
            assert self.limit is not None
            row = self.rows.get(key)
            assert before - (0 if row is None else len(key) + row.size) + len(key) + len(value) > self.limit
        else:
            self.live[key] = (value, expires_at)

    @rule(key=KEYS)
    def delete(self, key: bytes) -> None:
        self._visible()
        result = self._commit([Write(key, WriteKind.DELETE)])
        assert result is not None  # deletes never grow usage
        assert result.results == [int(key in self.live)]
        self.live.pop(key, None)

    @rule(pairs=st.dictionaries(KEYS, VALUES, min_size=1, max_size=4))
    def set_many(self, pairs: dict[bytes, bytes]) -> None:
        self._visible()
        if self._commit([Write(key, value=value) for key, value in pairs.items()]) is not None:
            self.live.update((key, (value, None)) for key, value in pairs.items())

    @rule(key=KEYS, value=VALUES, stale=st.booleans())
    def compare_and_swap(self, key: bytes, value: bytes, stale: bool) -> None:
        self._visible()
        row = self.rows.get(key)
        current = row.version if key in self.live and row is not None else 0
        expected = current + 1 if stale else current
        result = self._commit([Write(key, value=value, if_version=expected)])
        if stale:
            assert result is None
        elif result is not None:
            self.live[key] = (value, None)

    @rule(key=KEYS, delta=st.integers(-5, 5), op=st.none() | st.sampled_from(["o1", "o2"]))
    def increment(self, key: bytes, delta: int, op: str | None) -> None:
        self._visible()
        recorded = None if op is None else self.done_ops.get(op)
        current = self.live.get(key)
        result = self._commit([Write(key, WriteKind.INCREMENT, delta=delta, op_id=op)])
        if recorded is not None:
            assert result is not None and result.results == [recorded] and result.puts == []
            return
        try:
            number = 0 if current is None else decode_counter(current[0], key)
        except InvalidArgument:
            assert result is None
            return
        if result is not None:
            assert result.results == [number + delta]
            self.live[key] = (str(number + delta).encode(), None if current is None else current[1])

    @rule(
        key=KEYS,
        delta=st.integers(-5, 5),
        op=st.sampled_from(["o1", "o2", "o3"]),
        then=st.none() | VALUES,
    )
    def increment_then_write(self, key: bytes, delta: int, op: str, then: bytes | None) -> None:
        """A transaction's commit: an op-id increment whose key is then set (or deleted), recorded apart."""
        self._visible()
        current = self.live.get(key)
        try:
            number = 0 if current is None else decode_counter(current[0], key)
        except InvalidArgument:
            return  # the transaction's increment fails before anything is buffered
        row = self.rows.get(key)
        condition = row.version if current is not None and row is not None else 0
        final = Write(key, value=then, if_version=condition) if then is not None else None
        final = final or Write(key, WriteKind.DELETE, if_version=condition)
        recorded = op in self.done_ops
        result = self._commit([final, Write(key, WriteKind.RECORD, op_id=op, delta=number + delta)])
        if recorded:
            assert result is None, "an op id recorded by another writer refuses the commit"
            return
        if result is None:  # only the quota can refuse it
            assert then is not None and self.limit is not None
            return
        assert result.op_records == [(op, number + delta)] and result.results[1] == number + delta
        if then is None:
            self.live.pop(key, None)
        else:
            self.live[key] = (then, None)

    @rule(key=KEYS, ttl=st.none() | st.integers(1, 50))
    def touch(self, key: bytes, ttl: int | None) -> None:
        self._visible()
        expires_at = None if ttl is None else self.now + ttl
        result = self._commit([Write(key, WriteKind.TOUCH, expires_at=expires_at)])
        assert result is not None
        if key in self.live:
            self.live[key] = (self.live[key][0], expires_at)

    @rule()
    def sweep(self) -> None:
        self._visible()
        expired = sum(row.expires_at is not None and row.expires_at <= self.now for row in self.rows.values())
        result = self._commit([Write(key, WriteKind.SWEEP) for key in sorted(self.rows)])
        assert result is not None and sum(result.results) == expired
        assert all(row.expires_at is None or row.expires_at > self.now for row in self.rows.values())

    @rule(step=st.integers(1, 30))
    def tick(self, step: int) -> None:
        self.now += step

    @precondition(lambda self: self.limit is not None)
    @rule(limit=st.integers(0, 80))
    def change_limit(self, limit: int) -> None:
        self.limit = limit

    @invariant()
    def counter_equals_rows(self) -> None:
        assert self.space.bytes == sum(len(key) + row.size for key, row in self.rows.items())
        assert self.space.keys == len(self.rows)

    @invariant()
    def visible_rows_equal_model(self) -> None:
        self._visible()
        visible = {
            key: (row.value, row.expires_at)
            for key, row in self.rows.items()
            if row.expires_at is None or row.expires_at > self.now
        }
        assert visible == self.live

    @invariant()
    def floor_covers_removed_versions(self) -> None:
        for key, versions in self.history.items():
            if key not in self.rows:
                assert self.space.floor >= max(versions)


TestPlannedStore = PlannedStore.TestCase
TestPlannedStore.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)


# -- the fast loops (plain PUT-only and DELETE-only commits) against the general loop ---------------

ROWS = st.none() | st.builds(
    KeyState,
    size=st.integers(0, 20),
    version=st.sampled_from([1, 2, 7, MAX_VERSION - 1, MAX_VERSION]),
    expires_at=st.none() | st.integers(990, 1010),
    value=st.none() | st.sampled_from([b"5", b"-3", b"x"]),
)


@st.composite
def commits(draw: st.DrawFn) -> tuple[list[Write], list[KeyState | None]]:
    """Distinct keys, mostly uniform plain PUT or DELETE batches, sometimes one odd write among them."""
    keys = draw(st.lists(st.binary(min_size=1, max_size=4), unique=True, max_size=6))
    uniform = draw(st.sampled_from([WriteKind.PUT, WriteKind.DELETE, None]))
    writes = []
    for key in keys:
        kind = uniform if uniform is not None and draw(st.integers(0, 5)) else draw(st.sampled_from(list(WriteKind)))
        odd = draw(st.integers(0, 7)) == 0
        writes.append(
            Write(
                key,
                kind,
                draw(VALUES),
                draw(st.none() | st.integers(990, 1010)),
                draw(st.none() | st.integers(0, 8)) if odd or not draw(st.integers(0, 3)) else None,
                draw(st.integers(-3, 3)),
                draw(st.sampled_from(["o1", "o2"])) if odd and draw(st.booleans()) else None,
            )
        )
    if writes and draw(st.integers(0, 3)) == 0:  # an op record beside a written key
        writes.append(Write(draw(st.sampled_from(keys)), WriteKind.RECORD, delta=draw(st.integers(-3, 3)), op_id="o3"))
    return writes, [draw(ROWS) for _ in writes]


def _outcome(*args: object) -> object:
    try:
        return plan(*args)  # type: ignore[arg-type]
    except (QuotaExceeded, PreconditionFailed, InvalidArgument, InternalError) as exc:
        return type(exc), str(exc)


@settings(max_examples=500, deadline=None)
@given(
    commit=commits(),
    space=st.builds(SpaceState, st.integers(0, 100), st.integers(0, 6), st.sampled_from([0, 3, 8, MAX_VERSION])),
    limit=st.none() | st.integers(0, 120),
    now=st.integers(990, 1010),
    done_ops=st.none() | st.dictionaries(st.sampled_from(["o1", "o2", "o3"]), st.integers(-5, 5)),
)
def test_fast_loops_plan_what_the_general_loop_plans(
    commit: tuple[list[Write], list[KeyState | None]],
    space: SpaceState,
    limit: int | None,
    now: int,
    done_ops: dict[str, int] | None,
) -> None:
    """plan() with its PUT-only / DELETE-only loops equals plan() with the general loop alone."""
    writes, old = commit
    fast = _outcome(NS, writes, old, space, limit, now, done_ops)
    planner._FAST_LOOPS = False
    try:
        general = _outcome(NS, writes, old, space, limit, now, done_ops)
    finally:
        planner._FAST_LOOPS = True
    assert fast == general
    if isinstance(fast, Plan) and isinstance(general, Plan):  # the same types too (a tuple equals a NamedTuple)
        assert [type(item) for item in [*fast.puts, *fast.events]] == [
            type(item) for item in [*general.puts, *general.events]
        ]


@settings(max_examples=300, deadline=None)
@given(
    value=st.lists(st.sampled_from([b"0", b"7", b"9", b"-", b"+", b" ", b"_", b"\n", b"\xd9\xa1"]), max_size=22).map(
        b"".join
    )
)
def test_decode_counter_accepts_exactly_decimal_ascii_of_an_int64(value: bytes) -> None:
    """Counters: -?[0-9]+ in at most 20 bytes, within the signed 64-bit range; anything else is invalid-argument."""
    expected = int(value) if len(value) <= 20 and re.fullmatch(rb"-?[0-9]+", value) else None
    if expected is not None and not -(2**63) <= expected < 2**63:
        expected = None
    try:
        got: int | None = decode_counter(value, b"k")
    except InvalidArgument:
        got = None
    assert got == expected


def test_put_only_plans_make_their_events_when_read() -> None:
    """A PUT-only plan's events: one "set" per put with its new version, equal to the list they stand for."""
    writes = [Write(b"a", WriteKind.PUT, b"1"), Write(b"b", WriteKind.PUT, b"22")]
    decided = plan(NS, writes, [None, KeyState(1, 4)], SpaceState(3, 1, 2), None, 1000)
    expected = [Event(b"a", "set", 3), Event(b"b", "set", 5)]
    assert decided.events == expected and expected == decided.events
    assert len(decided.events) == 2 and decided.events[1] == expected[1] and decided.events[:1] == expected[:1]
    assert list(decided.events) == expected and repr(decided.events) == repr(expected)
    assert decided.events != expected[:1] and decided.events != "not events"
