"""In-memory backend for airssys-storage: ``memory://``.

Same limits and semantics as every other backend (contract v2: atomic commits
decided by :func:`airssys_storage.planner.plan`, versions, expiry, exact usage
counters, bytewise order); data lives as long as the manager.

After ``os.fork()`` the child holds a private copy of the data, taken at a
moment when no commit was halfway done (the fork waits for the commit lock),
and keeps working on it; the parent's copy is unaffected. That is the right
answer for a store that is neither persistent nor shared: nothing two
processes could disagree about is ever written anywhere, and refusing would
break the common pattern of preparing data and then forking workers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from queue import SimpleQueue
from time import time_ns as _time_ns
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from sortedcontainers import SortedList

from airssys_storage import Capabilities, InternalError, StorageBackend, Usage, VerifyReport, hookimpl
from airssys_storage.backend import BadKey, key_problems, verify_report, wall_clock_ms
from airssys_storage.changes import ChangeBatch, ChangeLog, clear_record, plan_records, range_records
from airssys_storage.forking import ForkAware, track
from airssys_storage.options import FORBID_EXTRA
from airssys_storage.planner import MAX_VERSION, KeyState, Plan, Put, SpaceState, Write, WriteKind, plan, set_events

__all__ = ["MemoryBackend", "MemoryOptions"]

#: A row: ``(value, version, expires_at)``, expires_at in ms since the epoch or ``None``; or the value
#: alone (``bytes``), which means ``(value, 1, None)``: put_one stores a new key of a namespace whose
#: floor is 0 that way (no tuple to allocate and none for the garbage collector to scan: ~0.1 µs of
#: a ~0.9 µs insert, benchmarks/bench_memory.py). The first plain overwrite by put_one makes a row a
#: list, which later ones update in place (no allocation per overwrite: measured ~40 ns per set
#: against a new tuple each time, and a second dict of versions cost more). Only rows without an
#: expiry are ever lists, so a row object's ``expires_at`` never changes: a lock-free read of
#: ``row[2]`` then ``row[0]`` is consistent. Read a row of unknown form with :func:`_full`.
Row = bytes | tuple[bytes, int, "int | None"] | list[Any]


@dataclass(frozen=True)
class MemoryOptions:
    """``backend_options`` of ``memory://``: none (every key is refused, naming the option)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_EXTRA


# tuple.__new__ skips NamedTuple.__new__'s argument handling (~0.4 µs each), as the planner does.
_new = tuple.__new__
_PUT = WriteKind.PUT


def _full(row: Row) -> tuple[bytes, int, int | None] | list[Any]:
    """*row* as ``(value, version, expires_at)`` (see :data:`Row`)."""
    return (row, 1, None) if type(row) is bytes else row  # type: ignore[return-value]


def _live(row: Row, now: int) -> bytes | None:
    """The value of *row* if it is live at *now* (ms), else ``None``."""
    if type(row) is bytes:
        return row
    expires_at = row[2]
    return row[0] if expires_at is None or expires_at > now else None  # type: ignore[return-value]


class _Space:
    """One namespace: its rows, its counter row (bytes, floor), its op records and its keys in order.

    ``rows[key]`` is a :data:`Row`; ``len(rows)`` is the key count of the
    counter row (expired rows included until removed). ``expiring`` holds the
    keys whose row has an expiry: listings of a namespace without any read
    no clock, and sweeps read only those keys.

    ``order`` (a :class:`sortedcontainers.SortedList`) is the key set as of the
    last listing. A write that adds or removes a key only appends the key to
    ``changed`` (a list append: a write costs what a dict write costs), and the
    next listing reconciles those keys with ``rows`` in O(k log n) for k of
    them, never re-sorting the component. ``order`` is rebuilt from ``rows``
    (O(n log n)) only when more than n/8 keys changed since the last listing,
    or when ``changed`` outgrows twice the key count plus 1024 (so churn
    without listings keeps memory bounded): each time after at least n/8
    writes. Overwrites touch the rows alone. While ``order`` is ``None`` (a
    namespace never listed, or listed before too many changes) writes note
    nothing: the next listing sorts ``rows`` anyway.
    """

    __slots__ = ("changed", "expiring", "floor", "log", "ops", "order", "rows", "used")

    def __init__(self) -> None:
        self.rows: dict[bytes, Row] = {}
        self.used = 0
        #: The highest version of any row removed from the namespace (see the planner's "Versions").
        self.floor = 0
        self.expiring: set[bytes] = set()
        #: op_id -> (result, recorded at ms), oldest first (insertion order).
        self.ops: dict[str, tuple[int, int]] = {}
        self.order: SortedList | None = None  # None: rebuild from rows at the next listing
        self.changed: list[bytes] = []  # keys added or removed since order was current (may repeat)
        #: The change log (only once the namespace's feed is on: see StorageBackend.enable_changes).
        self.log: ChangeLog | None = None

    def note(self, key: bytes) -> None:
        """Note that *key* was added to or removed from ``rows`` (nothing to note while ``order`` is ``None``)."""
        if self.order is None:
            return
        changed = self.changed
        changed.append(key)
        if len(changed) > 1024 and len(changed) > 2 * len(self.rows):
            self.note_overflow()

    def note_overflow(self) -> None:
        """Too many notes: drop them, and rebuild ``order`` at the next listing."""
        self.order, self.changed = None, []

    def ordered(self) -> SortedList:
        """Every key of ``rows``, in bytewise order (call it holding the backend's lock)."""
        order, changed, rows = self.order, self.changed, self.rows
        if order is None or len(changed) * 8 > len(order):
            order = self.order = SortedList(rows)
        elif changed:
            for key in set(changed):
                if key in rows:
                    if key not in order:
                        order.add(key)
                else:
                    order.discard(key)
        else:
            return order
        self.changed = []
        return order

    def state(self, key: bytes) -> KeyState | None:
        """The row of *key* as the planner takes it (value included), or ``None`` (holding the lock)."""
        row = self.rows.get(key)
        if row is None:
            return None
        value, version, expires_at = _full(row)
        return _new(KeyState, (len(value), version, expires_at, value))

    def counter(self) -> SpaceState:
        return _new(SpaceState, (self.used, len(self.rows), self.floor))

    def size(self) -> int:
        """The bytes of every row, expired ones included: what ``used`` must be."""
        return sum(len(key) + len(_full(row)[0]) for key, row in self.rows.items())

    def write(self, applied: Plan) -> None:
        """Write *applied* (a plan made from this space's current rows), holding the backend's lock."""
        rows, expiring = self.rows, self.expiring
        for key, value, version, expires_at in applied.puts:
            row = rows.get(key)
            if value is None:  # TOUCH: keep the stored value
                if row is None:
                    raise InternalError(f"memory: the plan touches missing key {key!r}")
                value = _full(row)[0]
            elif row is None:
                self.note(key)
            rows[key] = (value, version, expires_at)  # a new row object: see Row
            if expires_at is None:
                expiring.discard(key)
            else:
                expiring.add(key)
        for key in applied.deletes:
            del rows[key]
            expiring.discard(key)
            self.note(key)
        if applied.space_changed:
            self.used = applied.space.bytes
            self.floor = applied.space.floor

    def remove(self, key: bytes) -> int | None:
        """Drop *key*'s row outside the planner (delete_one, repair): returns its expiry; raises the floor."""
        value, version, expires_at = _full(self.rows.pop(key))
        if version > self.floor:
            self.floor = version
        self.used -= len(key) + len(value)
        if expires_at is not None:
            self.expiring.discard(key)
        self.note(key)
        return expires_at

    def record(self, op_records: Sequence[tuple[str, int]], now: int, retention: int) -> None:
        """Keep the plan's op results with the time, and drop those older than *retention* ms."""
        ops = self.ops
        for op_id, result in op_records:
            ops.pop(op_id, None)  # re-recorded (its old record expired): move it to the end
            ops[op_id] = (result, now)
        oldest = now - retention
        while ops:  # insertion order is time order: drop from the front while too old
            first = next(iter(ops))
            if ops[first][1] >= oldest:
                break
            del ops[first]

    def done_ops(self, writes: Sequence[Write], now: int, retention: int) -> dict[str, int] | None:
        """The recorded results of the op_ids of *writes* younger than *retention* ms."""
        ops = self.ops
        if not ops:
            return None
        oldest = now - retention
        found = {}
        for write in writes:
            if write.op_id is not None:
                record = ops.get(write.op_id)
                if record is not None and record[1] >= oldest:
                    found[write.op_id] = record[0]
        return found


#: The most writes :func:`_put_few` takes (the collections' batches have 2 to 4).
_FAST_PUTS = 8


def _put_few(space: _Space, writes: Sequence[Write], limit: int | None) -> Plan | None:
    """A small commit of puts (conditional or not) without expiries or op ids, decided and written; else ``None``.

    The planner's PUT with its condition written out, as :meth:`MemoryBackend.put_one`
    writes out a single put, for the atomic batches of the collections
    (a slot and its counter, each checked): measurably faster than reading
    :class:`KeyState` rows and planning (benchmarks/bench_collections.py).
    Anything unusual (another kind, an expiry, a row with an expiry, a failed
    condition, a quota refusal, a repeated key) returns ``None`` before
    anything is written, and :meth:`MemoryBackend.apply` plans it as usual,
    so those rules and their messages stay in one place. Call it holding the
    backend's lock, for a namespace without a change feed or op records.
    """
    rows = space.rows
    floor = space.floor
    delta = 0
    puts: list[Put] = []
    existed: list[bool] = []
    for key, kind, value, expires_at, condition, _, op_id in writes:
        if kind is not _PUT or expires_at is not None or op_id is not None:
            return None
        row = rows.get(key)
        if row is None:
            if condition:  # must be live at a version: refused, in the planner's words
                return None
            version = floor + 1
            delta += len(key) + len(value)
            existed.append(False)
        else:
            if type(row) is bytes:
                version, old_size = 1, len(row)
            elif row[2] is None:
                version, old_size = row[1], len(row[0])  # type: ignore[arg-type]
            else:
                return None  # a row with an expiry: the planner decides whether it is live
            if condition is not None and condition != version:
                return None
            version += 1
            delta += len(value) - old_size
            existed.append(True)
        if version > MAX_VERSION:
            return None
        puts.append(_new(Put, (key, value, version, None)))
    count = len(puts)
    if count == 2:
        if puts[0][0] == puts[1][0]:
            return None
    elif count > 2 and len({put[0] for put in puts}) != count:
        return None
    if limit is not None and delta > 0 and space.used + delta > limit:
        return None
    # Decided: write it (no key of these has an expiry, so none is in space.expiring).
    added = 0
    for write, put, was in zip(writes, puts, existed):  # noqa: B905 - built together above
        key = write[0]
        rows[key] = (write[2], put[2], None)  # a new row object: see Row
        if not was:
            added += 1
            space.note(key)
    if delta:
        space.used += delta
    after = _new(SpaceState, (space.used, len(rows), floor))
    results = [put[2] for put in puts]
    return _new(Plan, (puts, [], after, bool(delta or added), results, existed, set_events(puts), []))


class _Mutex(SimpleQueue[None]):
    """The backend's lock: a queue holding one token; taking it (``get``) acquires, putting it back releases.

    A blocking mutex like :class:`threading.Lock` (``get`` waits with the GIL
    released, and signals interrupt the wait as they do ``Lock.acquire``), but
    cheaper: its ``get``, ``put`` and ``with`` are single C calls, where
    ``Lock.acquire`` and ``release`` parse their arguments on each call and
    ``Lock.__exit__`` takes three. Measured on CPython 3.11 here: ``with``
    about 0.15 µs less, a take and a put-back about 0.05 µs less than
    acquire and release, which is a tenth of a ``set`` (benchmarks/bench_memory.py).
    """

    def __init__(self) -> None:
        super().__init__()
        self.put(None)  # the token: free

    if TYPE_CHECKING:

        def __enter__(self) -> None: ...
        def __exit__(self, *exc: object) -> None: ...

    else:
        __enter__ = SimpleQueue.get
        # Called with (type, value, traceback): puts the token back (item=type; block and timeout
        # are ignored by SimpleQueue) and returns None, so an exception is never swallowed.
        __exit__ = SimpleQueue.put


class _ClosedSpaces(dict[str, _Space]):
    """Stands in for the data after close(): every access says so (no check on the hot path)."""

    def _closed(self, *args: object, **kwargs: object) -> NoReturn:
        raise InternalError("the memory:// store is closed: its StorageManager was closed, and its data with it")

    get = __getitem__ = __setitem__ = pop = items = values = _closed  # type: ignore[assignment]


class MemoryBackend(StorageBackend, ForkAware):
    """Dict of rows per namespace; reads and writes are O(1), listings O(log n + keys returned).

    Keys are kept in order beside the dict (a sorted list, into which the next
    listing merges the keys added or removed since the last one), so a listing
    right after a write costs about what any other listing costs.

    One lock makes every commit and every multi-key read atomic; ``get`` and
    ``has`` need none (see :data:`Row`). Every write
    goes through the planner, except the plain :meth:`put_one` and
    :meth:`delete_one`, whose common cases are written out because they are
    measurably faster (benchmarks/bench_memory.py); anything unusual there
    (a quota refusal, a row with an expiry) is handed to :meth:`apply`.
    """

    name = "memory"
    url_schemes = ("memory",)
    capabilities = Capabilities(change_feed=True)
    Options = MemoryOptions

    def __init__(self) -> None:
        self._spaces: dict[str, _Space] = {}
        self._lock = _Mutex()
        track(self)

    # -- fork: the child keeps a consistent private copy (module docs) ----------------

    def before_fork(self) -> None:
        self._lock.get()  # no commit is halfway done in the copy the child gets

    def after_fork_in_parent(self) -> None:
        self._lock.put(None)

    def after_fork_in_child(self) -> None:
        self._lock = _Mutex()  # the inherited one is held (by the parent's forking thread)

    @classmethod
    def open(cls, url: str, options: MemoryOptions | Mapping[str, Any]) -> MemoryBackend:
        cls.parse_options(options)  # called directly with a mapping: refuse any key
        return cls()

    def _space(self, namespace: str) -> _Space:
        space = self._spaces.get(namespace)
        if space is None:
            space = self._spaces[namespace] = _Space()
        return space

    # -- reads: expired rows are absent; the clock is read only for rows with an expiry -----

    def get(self, namespace: str, key: bytes) -> bytes | None:
        space = self._spaces.get(namespace)
        if space is None:
            return None
        row = space.rows.get(key)
        if row is None or type(row) is bytes:
            return row
        expires_at = row[2]
        if expires_at is not None and (
            # The wall clock read inline: expires_at <= time_ns() // 10**6 exactly when
            # expires_at * 10**6 <= time_ns() (integers), at a third of a clock() call's cost.
            expires_at * 1_000_000 <= _time_ns() if self.clock is wall_clock_ms else expires_at <= self.clock()
        ):
            return None
        return row[0]  # type: ignore[return-value]

    def get_entry(self, namespace: str, key: bytes) -> KeyState | None:
        with self._lock:  # the value and the version from one moment (put_one updates lists in place)
            space = self._spaces.get(namespace)
            row = None if space is None else space.state(key)
        if row is None or (row.expires_at is not None and row.expires_at <= self.clock()):
            return None
        return row

    def get_many(self, namespace: str, keys: Sequence[bytes]) -> list[bytes | None]:
        with self._lock:  # all values from one moment: never half of a concurrent batch
            space = self._spaces.get(namespace)
            if space is None:
                return [None] * len(keys)
            get = space.rows.get
            found = [get(key) for key in keys]
        # One clock reading for the whole batch, and none when no row found has an expiry.
        now = (
            self.clock()
            if any(type(row) is not bytes and row is not None and row[2] is not None for row in found)
            else 0
        )
        return [None if row is None else _live(row, now) for row in found]

    def has(self, namespace: str, key: bytes) -> bool:
        space = self._spaces.get(namespace)
        if space is None:
            return False
        row = space.rows.get(key)
        if row is None or type(row) is bytes:
            return row is not None
        expires_at = row[2]
        if expires_at is None:
            return True
        if self.clock is wall_clock_ms:  # see get()
            return expires_at * 1_000_000 > _time_ns()  # type: ignore[no-any-return]
        return expires_at > self.clock()  # type: ignore[no-any-return]

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        with self._lock:
            space = self._spaces.get(namespace)
            if space is None:
                return []
            rows = space.rows
            return [(key, _full(rows[key])[0]) for key in self._slice(space, start, end, limit)]

    def keys(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        with self._lock:
            space = self._spaces.get(namespace)
            return [] if space is None else self._slice(space, start, end, limit)

    def _slice(self, space: _Space, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        """At most *limit* live keys in ``[start, end)``, in order (holding the lock)."""
        ordered = space.ordered()
        if not space.expiring:
            low = ordered.bisect_left(start)
            high = len(ordered) if end is None else ordered.bisect_left(end)
            return ordered[low : min(high, low + limit)]  # type: ignore[no-any-return]
        now = self.clock()
        rows, expiring = space.rows, space.expiring
        found: list[bytes] = []
        for key in ordered.irange(start, end, inclusive=(True, False)):
            if key in expiring and _live(rows[key], now) is None:
                continue
            found.append(key)
            if len(found) >= limit:
                break
        return found

    def usage(self, namespace: str) -> Usage:
        with self._lock:
            space = self._spaces.get(namespace)
            return Usage() if space is None else Usage(space.used, len(space.rows))

    # -- writes ----------------------------------------------------------------------------

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        lock = self._lock
        lock.get()
        try:
            space = self._space(namespace)
            if len(writes) <= _FAST_PUTS and not space.ops and not (self.feeds and namespace in self.feeds):
                applied = _put_few(space, writes, limit)
                if applied is not None:
                    return applied
            state = space.state
            old = [state(write[0]) for write in writes]
            now = self.clock()
            retention = self.op_retention_ms
            done = space.done_ops(writes, now, retention) if space.ops else None
            applied = plan(namespace, writes, old, space.counter(), limit, now, done)
            space.write(applied)
            if applied.op_records or space.ops:
                space.record(applied.op_records, now, retention)
            if self.feeds and namespace in self.feeds:
                self._log(space, namespace, plan_records(applied, self.feeds[namespace]), now)
        finally:
            lock.put(None)
        if self.feeds and namespace in self.feeds:
            self.notify_changes(namespace)
        return applied

    def put_one(self, namespace: str, key: bytes, value: bytes, limit: int | None, version: int | None = None) -> int:
        # The planner's PUT written out for its common cases, because it is measurably faster
        # (benchmarks/bench_memory.py); the rest (a quota refusal, a failed condition, a row with
        # an expiry) goes to apply(), so those rules and their messages stay in one place. No
        # version overflow check: here every version comes from +1 steps of this process (2**64 of
        # them are out of reach). *version* is compare_and_swap_one's condition (None: none; 0:
        # absent; n: live at n); put_one callers never pass it.
        new_version: int
        lock = self._lock
        lock.get()  # take the token: cheaper than `with` on the hot path
        try:
            try:
                space = self._spaces[namespace]
            except KeyError:
                space = self._space(namespace)
            rows = space.rows
            row = rows.get(key)
            if row is None:
                delta = len(key) + len(value)
                if not version and (limit is None or space.used + delta <= limit):
                    floor = space.floor
                    if floor:
                        new_version = floor + 1
                        rows[key] = (value, new_version, None)
                    else:
                        new_version = 1
                        rows[key] = value  # (value, 1, None): see Row
                    space.used += delta
                    if space.order is not None:  # space.note(key), written out: the insert hot path
                        changed = space.changed
                        changed.append(key)
                        if len(changed) > 1024 and len(changed) > 2 * len(rows):
                            space.note_overflow()
                    return new_version
            elif type(row) is list:  # no expiry, overwritten before: update it in place (see Row)
                delta = len(value) - len(row[0])
                # A same-size overwrite leaves the counter row as it is; a refused one goes to apply().
                # The new usage is computed once (an int allocation less than checking and adding).
                if version is None or version == row[1]:
                    if not delta:
                        new_version = row[1] + 1
                        row[0] = value
                        row[1] = new_version
                        return new_version
                    used = space.used + delta
                    if delta < 0 or limit is None or used <= limit:
                        new_version = row[1] + 1
                        row[0] = value
                        row[1] = new_version
                        space.used = used
                        return new_version
            elif type(row) is bytes or row[2] is None:  # never overwritten yet: from now on a list
                old_value, old_version, _ = _full(row)
                delta = len(value) - len(old_value)
                if (version is None or version == old_version) and (
                    not delta or delta < 0 or limit is None or space.used + delta <= limit
                ):
                    new_version = old_version + 1
                    rows[key] = [value, new_version, None]
                    if delta:
                        space.used += delta
                    return new_version
        finally:
            lock.put(None)
        return self.apply(namespace, (_new(Write, (key, _PUT, value, None, version, 0, None)),), limit).results[0]

    def compare_and_swap_one(self, namespace: str, key: bytes, value: bytes, version: int, limit: int | None) -> int:
        # put_one's written-out cases with the condition checked in them (this class's put_one,
        # whatever a subclass makes of its own).
        return MemoryBackend.put_one(self, namespace, key, value, limit, version)

    def delete_one(self, namespace: str, key: bytes) -> bool:
        # The planner's DELETE written out (measured: bench_memory.py).
        with self._lock:
            space = self._spaces.get(namespace)
            if space is None or key not in space.rows:
                return False
            expires_at = space.remove(key)
        return expires_at is None or expires_at > self.clock()

    def delete_range(
        self, namespace: str, start: bytes, end: bytes | None, *, expired_only: bool = False, limit: int | None = None
    ) -> Plan:
        with self._lock:
            space = self._space(namespace)
            now = self.clock()
            if expired_only:  # read only the rows with an expiry (the expiry index)
                rows = space.rows
                found = sorted(
                    key
                    for key in space.expiring
                    if start <= key and (end is None or key < end) and _live(rows[key], now) is None
                )
                kind = WriteKind.SWEEP
            else:
                found = list(space.ordered().irange(start, end, inclusive=(True, False)))
                kind = WriteKind.DELETE
            if limit is not None:
                del found[limit:]
            state = space.state
            writes = [Write(key, kind) for key in found]
            applied = plan(namespace, writes, [state(key) for key in found], space.counter(), None, now)
            space.write(applied)
            logged = bool(self.feeds) and namespace in self.feeds and bool(applied.events)
            if logged:
                self._log(space, namespace, range_records(applied, start, end, expired_only), now)
        if logged:
            self.notify_changes(namespace)
        return applied

    def clear(self, namespace: str) -> None:
        with self._lock:
            space = self._spaces.get(namespace)
            if space is None:
                return
            logged = bool(space.rows) and namespace in self.feeds
            space.floor = max(space.floor, *(_full(row)[1] for row in space.rows.values()), 0)
            space.rows, space.used, space.expiring = {}, 0, set()
            space.order, space.changed = None, []
            if logged:
                self._log(space, namespace, clear_record(space.floor), self.clock())
        if logged:
            self.notify_changes(namespace)

    # -- change feed -------------------------------------------------------------------------

    def _log(self, space: _Space, namespace: str, pending: Sequence[Any], now: int) -> None:
        """Append a commit's records to the namespace's log (holding the lock)."""
        if space.log is None:
            space.log = ChangeLog()
        space.log.append(pending, now, self.feeds[namespace])

    def read_changes(self, namespace: str, since: int, limit: int) -> ChangeBatch:
        with self._lock:
            space = self._spaces.get(namespace)
            if space is None or space.log is None:
                return ChangeBatch([], 1, 0)
            return space.log.read(since, limit)

    def change_bounds(self, namespace: str) -> tuple[int, int]:
        with self._lock:
            space = self._spaces.get(namespace)
            log = None if space is None else space.log
            return (1, 0) if log is None else log.bounds()

    # -- administration ----------------------------------------------------------------------

    def namespaces(self) -> list[str]:
        with self._lock:
            return sorted(ns for ns, space in self._spaces.items() if space.rows)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            spaces = [space for space in self._spaces.values() if space.rows]
            return {
                "namespaces": len(spaces),
                "keys": sum(len(space.rows) for space in spaces),
                "bytes": sum(space.used for space in spaces),
            }

    def verify(self, repair: bool = False, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Recount every namespace's bytes from its rows, expired ones included (key counts are always exact).

        Keys that break the key rules (only a caller of :meth:`apply` going
        around the core can store one) are reported, and removed with *repair*.
        """
        with self._lock:
            stored = {ns: Usage(space.used, len(space.rows)) for ns, space in self._spaces.items()}
            actual = {ns: Usage(space.size(), len(space.rows)) for ns, space in self._spaces.items()}
            bad = []
            for ns, space in self._spaces.items():
                keys = list(space.rows)
                for index, problem in key_problems(keys):
                    key = keys[index]
                    bad.append(BadKey(ns, key, len(key) + len(_full(space.rows[key])[0]), problem))
            report = verify_report("memory://", stored, actual, bad_keys=bad, repaired=repair)
            if repair:
                for found in report.bad_keys:
                    self._spaces[found.namespace].remove(found.key)
                for mismatch in report.mismatches:
                    self._spaces[mismatch.namespace].used = mismatch.actual.bytes
        if progress is not None:
            progress(report.keys)
        return report

    def close(self) -> None:
        with self._lock:
            self._spaces = _ClosedSpaces()


@hookimpl
def register_backends() -> list[type[StorageBackend]]:
    return [MemoryBackend]
