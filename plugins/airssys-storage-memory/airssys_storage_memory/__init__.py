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

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from sortedcontainers import SortedList

from airssys_storage import Capabilities, InternalError, StorageBackend, Usage, VerifyReport, hookimpl
from airssys_storage.backend import BadKey, key_problems, verify_report
from airssys_storage.forking import ForkAware, track
from airssys_storage.planner import KeyState, Plan, SpaceState, Write, WriteKind, plan

__all__ = ["MemoryBackend"]

#: What ``_Space.values`` holds for a key: the value, or ``(value, expires_at)`` for a row with an
#: expiry (ms since the epoch). One dict entry, so a lock-free read sees a value with its own expiry;
#: rows without one stay plain ``bytes`` (no tuple to allocate, nothing for the garbage collector).
Stored = bytes | tuple[bytes, int]


class _Space:
    """One namespace: its rows, its counter row (bytes, floor), its op records and its keys in order.

    A row is ``values[key]`` (see :data:`Stored`) and ``versions[key]``;
    ``len(values)`` is the key count of the counter row (expired rows
    included until removed). ``expiring`` holds the keys whose row has an
    expiry: listings of a namespace without any skip every clock call, and
    sweeps read only those keys.

    ``order`` (a :class:`sortedcontainers.SortedList`) is the key set as of the
    last listing. A write that adds or removes a key only appends the key to
    ``changed`` (a list append: a write costs what a dict write costs), and the
    next listing reconciles those keys with ``values`` in O(k log n) for k of
    them, never re-sorting the component. ``order`` is rebuilt from ``values``
    (O(n log n)) only when more than n/8 keys changed since the last listing,
    or when ``changed`` outgrows twice the key count plus 1024 (so churn
    without listings keeps memory bounded): each time after at least n/8
    writes. Overwrites touch the dicts alone.
    """

    __slots__ = ("changed", "expiring", "floor", "ops", "order", "used", "values", "versions")

    def __init__(self) -> None:
        self.values: dict[bytes, Stored] = {}
        self.versions: dict[bytes, int] = {}
        self.used = 0
        #: The highest version of any row removed from the namespace (see the planner's "Versions").
        self.floor = 0
        self.expiring: set[bytes] = set()
        #: op_id -> (result, recorded at ms), oldest first (insertion order).
        self.ops: dict[str, tuple[int, int]] = {}
        self.order: SortedList | None = SortedList()  # None: rebuild from values
        self.changed: list[bytes] = []  # keys added or removed since order was current (may repeat)

    def note(self, key: bytes) -> None:
        """Note that *key* was added to or removed from ``values``."""
        changed = self.changed
        changed.append(key)
        if len(changed) > 1024 and len(changed) > 2 * len(self.values):
            self.note_overflow()

    def note_overflow(self) -> None:
        """Too many notes: drop them, and rebuild ``order`` at the next listing."""
        self.order, self.changed = None, []

    def ordered(self) -> SortedList:
        """Every key of ``values``, in bytewise order (call it holding the backend's lock)."""
        order, changed, values = self.order, self.changed, self.values
        if order is None or len(changed) * 8 > len(order):
            order = self.order = SortedList(values)
        elif changed:
            for key in set(changed):
                if key in values:
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
        stored = self.values.get(key)
        if stored is None:
            return None
        value, expires_at = _split(stored)
        return KeyState(len(value), self.versions[key], expires_at, value)

    def counter(self) -> SpaceState:
        return SpaceState(self.used, len(self.values), self.floor)

    def size(self) -> int:
        """The bytes of every row, expired ones included: a recount of ``used``."""
        return sum(len(key) + len(_split(stored)[0]) for key, stored in self.values.items())

    def write(self, applied: Plan) -> None:
        """Write *applied* (a plan made from this space's current rows), holding the backend's lock."""
        values, versions, expiring = self.values, self.versions, self.expiring
        for key, value, version, expires_at in applied.puts:
            old = values.get(key)
            if value is None:  # TOUCH: keep the stored value
                if old is None:
                    raise InternalError(f"memory: the plan touches missing key {key!r}")
                value = _split(old)[0]
            elif old is None:
                self.note(key)
            if expires_at is None:
                values[key] = value
                expiring.discard(key)
            else:
                values[key] = (value, expires_at)
                expiring.add(key)
            versions[key] = version
        for key in applied.deletes:
            del values[key], versions[key]
            expiring.discard(key)
            self.note(key)
        if applied.space_changed:
            self.used = applied.space.bytes
            self.floor = applied.space.floor

    def remove(self, key: bytes) -> tuple[bytes, int | None]:
        """Drop *key*'s row outside the planner (delete_one, repair): its value and expiry; raise the floor."""
        value, expires_at = _split(self.values.pop(key))
        version = self.versions.pop(key)
        if version > self.floor:
            self.floor = version
        self.used -= len(key) + len(value)
        if expires_at is not None:
            self.expiring.discard(key)
        self.note(key)
        return value, expires_at

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


def _split(stored: Stored) -> tuple[bytes, int | None]:
    """A stored row's value and expiry."""
    if type(stored) is tuple:
        return stored
    return stored, None  # type: ignore[return-value]


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

    One lock makes every commit and every multi-key read atomic; single-key
    reads need none (one dict lookup of a whole row is atomic). Every write
    goes through the planner, except the plain :meth:`put_one` and
    :meth:`delete_one`, whose common cases are written out because they are
    measurably faster (benchmarks/bench_memory.py); anything unusual there
    (a quota refusal, the last version) is handed to :meth:`apply`.
    """

    name = "memory"
    url_schemes = ("memory",)
    capabilities = Capabilities()

    def __init__(self) -> None:
        self._spaces: dict[str, _Space] = {}
        self._lock = threading.Lock()
        track(self)

    # -- fork: the child keeps a consistent private copy (module docs) ----------------

    def before_fork(self) -> None:
        self._lock.acquire()  # no commit is halfway done in the copy the child gets

    def after_fork_in_parent(self) -> None:
        self._lock.release()

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # the inherited one is held (by the parent's forking thread)

    @classmethod
    def open(cls, url: str, options: Mapping[str, Any]) -> MemoryBackend:
        if options:
            from airssys_storage import ConfigurationError

            raise ConfigurationError(f"the memory backend takes no backend_options, got {sorted(options)}")
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
        value = space.values.get(key)
        if type(value) is tuple:  # a row with an expiry
            value, expires_at = value
            if expires_at <= self.clock():
                return None
        return value  # type: ignore[return-value]  # bytes here: a tuple was unpacked above

    def get_entry(self, namespace: str, key: bytes) -> KeyState | None:
        with self._lock:  # the value and the version from one moment
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
            get = space.values.get
            found = [get(key) for key in keys]
        if not any(type(stored) is tuple for stored in found):
            return found  # type: ignore[return-value]
        now = self.clock()
        return [_live(stored, now) for stored in found]

    def has(self, namespace: str, key: bytes) -> bool:
        return self.get(namespace, key) is not None

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        with self._lock:
            space = self._spaces.get(namespace)
            if space is None:
                return []
            values = space.values
            found = self._slice(space, start, end, limit)
            if not space.expiring:
                return [(key, values[key]) for key in found]  # type: ignore[misc]
            return [(key, _split(values[key])[0]) for key in found]

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
        values, expiring = space.values, space.expiring
        found: list[bytes] = []
        for key in ordered.irange(start, end, inclusive=(True, False)):
            if key in expiring and _live(values[key], now) is None:
                continue
            found.append(key)
            if len(found) >= limit:
                break
        return found

    def usage(self, namespace: str) -> Usage:
        with self._lock:
            space = self._spaces.get(namespace)
            return Usage() if space is None else Usage(space.used, len(space.values))

    # -- writes ----------------------------------------------------------------------------

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        with self._lock:
            space = self._space(namespace)
            state = space.state
            old = [state(write.key) for write in writes]
            now = self.clock()
            retention = self.op_retention_ms
            applied = plan(namespace, writes, old, space.counter(), limit, now, space.done_ops(writes, now, retention))
            space.write(applied)
            if applied.op_records or space.ops:
                space.record(applied.op_records, now, retention)
            return applied

    def put_one(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        # The planner's PUT written out for its common cases, because it is measurably faster
        # (benchmarks/bench_memory.py); the rest (a quota refusal, a row with an expiry) goes to
        # apply(), so those rules and their messages stay in one place. No version overflow check:
        # here every version comes from +1 steps of this process (2**64 of them are out of reach).
        lock = self._lock
        lock.acquire()  # cheaper than `with` on the hot path
        try:
            try:
                space = self._spaces[namespace]
            except KeyError:
                space = self._space(namespace)
            values = space.values
            old = values.get(key)
            if old is None:
                delta = len(key) + len(value)
                if limit is None or space.used + delta <= limit:
                    values[key] = value
                    version = space.versions[key] = space.floor + 1
                    space.used += delta
                    changed = space.changed  # space.note(key), written out: the insert hot path
                    changed.append(key)
                    if len(changed) > 1024 and len(changed) > 2 * len(values):
                        space.note_overflow()
                    return version
            elif type(old) is bytes:
                delta = len(value) - len(old)
                if not delta:  # same-size overwrite: the counter row stays as it is
                    values[key] = value
                    versions = space.versions
                    version = versions[key] = versions[key] + 1
                    return version
                if delta < 0 or limit is None or space.used + delta <= limit:
                    values[key] = value
                    versions = space.versions
                    version = versions[key] = versions[key] + 1
                    space.used += delta
                    return version
        finally:
            lock.release()
        return self.apply(namespace, (Write(key, WriteKind.PUT, value),), limit).results[0]

    def delete_one(self, namespace: str, key: bytes) -> bool:
        # The planner's DELETE written out (measured: bench_memory.py).
        with self._lock:
            space = self._spaces.get(namespace)
            if space is None or key not in space.values:
                return False
            _, expires_at = space.remove(key)
        return expires_at is None or expires_at > self.clock()

    def delete_range(
        self, namespace: str, start: bytes, end: bytes | None, *, expired_only: bool = False, limit: int | None = None
    ) -> Plan:
        with self._lock:
            space = self._space(namespace)
            now = self.clock()
            if expired_only:  # read only the rows with an expiry (the expiry index)
                values = space.values
                found = sorted(
                    key
                    for key in space.expiring
                    if start <= key and (end is None or key < end) and _live(values[key], now) is None
                )
                kind = WriteKind.SWEEP
            else:
                found = list(space.ordered().irange(start, end, inclusive=(True, False)))
                kind = WriteKind.DELETE
            if limit is not None:
                del found[limit:]
            state = space.state
            applied = plan(
                namespace,
                [Write(key, kind) for key in found],
                [state(key) for key in found],
                space.counter(),
                None,
                now,
            )
            space.write(applied)
            return applied

    def clear(self, namespace: str) -> None:
        with self._lock:
            space = self._spaces.get(namespace)
            if space is None:
                return
            space.floor = max(space.floor, *space.versions.values(), 0)
            space.values, space.versions, space.used, space.expiring = {}, {}, 0, set()
            space.order, space.changed = SortedList(), []

    # -- administration ----------------------------------------------------------------------

    def namespaces(self) -> list[str]:
        with self._lock:
            return sorted(ns for ns, space in self._spaces.items() if space.values)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            spaces = [space for space in self._spaces.values() if space.values]
            return {
                "namespaces": len(spaces),
                "keys": sum(len(space.values) for space in spaces),
                "bytes": sum(space.used for space in spaces),
            }

    def verify(self, repair: bool = False, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Recount every namespace's bytes from its rows, expired ones included (key counts are always exact).

        Keys that break the key rules (only a caller of :meth:`apply` going
        around the core can store one) are reported, and removed with *repair*.
        """
        with self._lock:
            stored = {ns: Usage(space.used, len(space.values)) for ns, space in self._spaces.items()}
            actual = {ns: Usage(space.size(), len(space.values)) for ns, space in self._spaces.items()}
            bad = []
            for ns, space in self._spaces.items():
                keys = list(space.values)
                for index, problem in key_problems(keys):
                    key = keys[index]
                    bad.append(BadKey(ns, key, len(key) + len(_split(space.values[key])[0]), problem))
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


def _live(stored: Stored | None, now: int) -> bytes | None:
    """The value of a stored row if it is live at *now* (ms), else ``None``."""
    if type(stored) is tuple:
        return stored[0] if stored[1] > now else None
    return stored  # type: ignore[return-value]


@hookimpl
def register_backends() -> list[type[StorageBackend]]:
    return [MemoryBackend]
