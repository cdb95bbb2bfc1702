"""In-memory backend for airssys-storage: ``memory://``.

Same limits and semantics as every other backend (atomic guarded commits,
exact usage counters, bytewise order); data lives as long as the manager.

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

from airssys_storage import (
    Capabilities,
    Change,
    InternalError,
    StorageBackend,
    Usage,
    VerifyReport,
    hookimpl,
    quota_exceeded,
)
from airssys_storage.backend import BadKey, key_problems, verify_report
from airssys_storage.forking import ForkAware, track

__all__ = ["MemoryBackend"]


class _Space:
    """One namespace: its data, its usage counter and its keys in bytewise order.

    ``order`` (a :class:`sortedcontainers.SortedList`) is the key set as of the
    last listing. A write that adds or removes a key only appends the key to
    ``changed`` (a list append: a write costs what a dict write costs), and the
    next listing reconciles those keys with ``data`` in O(k log n) for k of
    them, never re-sorting the component. ``order`` is rebuilt from ``data``
    (O(n log n)) only when more than n/8 keys changed since the last listing,
    or when ``changed`` outgrows twice the key count plus 1024 (so churn
    without listings keeps memory bounded): each time after at least n/8
    writes. Overwrites touch the dict alone.
    """

    __slots__ = ("changed", "data", "order", "used")

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.used = 0
        self.order: SortedList | None = SortedList()  # None: rebuild from data
        self.changed: list[bytes] = []  # keys added or removed since order was current (may repeat)

    def note(self, key: bytes) -> None:
        """Note that *key* was added to or removed from ``data``."""
        changed = self.changed
        changed.append(key)
        if len(changed) > 1024 and len(changed) > 2 * len(self.data):
            self.note_overflow()

    def note_overflow(self) -> None:
        """Too many notes: drop them, and rebuild ``order`` at the next listing."""
        self.order, self.changed = None, []

    def ordered(self) -> SortedList:
        """Every key of ``data``, in bytewise order (call it holding the backend's lock)."""
        order, changed, data = self.order, self.changed, self.data
        if order is None or len(changed) * 8 > len(order):
            order = self.order = SortedList(data)
        elif changed:
            for key in set(changed):
                if key in data:
                    if key not in order:
                        order.add(key)
                else:
                    order.discard(key)
        else:
            return order
        self.changed = []
        return order


class _ClosedSpaces(dict[str, _Space]):
    """Stands in for the data after close(): every access says so (no check on the hot path)."""

    def _closed(self, *args: object, **kwargs: object) -> NoReturn:
        raise InternalError("the memory:// store is closed: its StorageManager was closed, and its data with it")

    get = __getitem__ = __setitem__ = pop = items = values = _closed  # type: ignore[assignment]


class MemoryBackend(StorageBackend, ForkAware):
    """Dict per namespace; reads and writes are O(1), listings O(log n + keys returned).

    Keys are kept in order beside the dict (a sorted list, into which the next
    listing merges the keys added or removed since the last one), so a listing
    right after a write costs about what any other listing costs.

    One lock makes every commit and every multi-key read atomic; single-key
    reads need none (one dict lookup is atomic).
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

    def get(self, namespace: str, key: bytes) -> bytes | None:
        space = self._spaces.get(namespace)
        return None if space is None else space.data.get(key)

    def get_many(self, namespace: str, keys: Sequence[bytes]) -> list[bytes | None]:
        with self._lock:  # all values from one moment: never half of a concurrent batch
            space = self._spaces.get(namespace)
            if space is None:
                return [None] * len(keys)
            get = space.data.get
            return [get(key) for key in keys]

    def has(self, namespace: str, key: bytes) -> bool:
        space = self._spaces.get(namespace)
        return space is not None and key in space.data

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        with self._lock:
            space = self._spaces.get(namespace)
            if space is None:
                return []
            data = space.data
            return [(key, data[key]) for key in self._slice(space, start, end, limit)]

    def keys(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        with self._lock:
            space = self._spaces.get(namespace)
            return [] if space is None else self._slice(space, start, end, limit)

    @staticmethod
    def _slice(space: _Space, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        ordered = space.ordered()
        low = ordered.bisect_left(start)
        high = len(ordered) if end is None else ordered.bisect_left(end)
        return ordered[low : min(high, low + limit)]  # type: ignore[no-any-return]

    def usage(self, namespace: str) -> Usage:
        with self._lock:
            space = self._spaces.get(namespace)
            return Usage() if space is None else Usage(space.used, len(space.data))

    def commit_one(self, namespace: str, key: bytes, value: bytes | None, limit: int | None) -> bool:
        lock = self._lock
        lock.acquire()  # cheaper than `with` on the hot path
        try:
            try:
                space = self._spaces[namespace]
            except KeyError:
                space = self._space(namespace)
            data = space.data
            old = data.get(key)
            if value is None:
                if old is None:
                    return False
                del data[key]
                space.note(key)
                space.used -= len(key) + len(old)
                return True
            if old is None:
                delta = len(key) + len(value)
            else:
                delta = len(value) - len(old)
                if not delta:  # same-size overwrite: the counter stays as it is
                    data[key] = value
                    return True
            used = space.used + delta
            if delta > 0 and limit is not None and used > limit:
                raise quota_exceeded(namespace, space.used, delta, limit)
            data[key] = value
            space.used = used
            if old is None:
                changed = space.changed  # space.note(key), written out: the insert hot path
                changed.append(key)
                if len(changed) > 1024 and len(changed) > 2 * len(data):
                    space.note_overflow()
                return False
            return True
        finally:
            lock.release()

    def commit(self, namespace: str, changes: Sequence[Change], limit: int | None) -> int:
        with self._lock:
            space = self._space(namespace)
            data = space.data
            # Decide everything before touching the data: a refused batch leaves no trace.
            delta = 0
            existed = 0
            for key, value in changes:
                old = data.get(key)
                if old is not None:
                    existed += 1
                    delta -= len(key) + len(old)
                if value is not None:
                    delta += len(key) + len(value)
            if limit is not None and delta > 0 and space.used + delta > limit:
                raise quota_exceeded(namespace, space.used, delta, limit)
            for key, value in changes:
                if value is None:
                    if data.pop(key, None) is not None:
                        space.note(key)
                else:
                    if key not in data:
                        space.note(key)
                    data[key] = value
            space.used += delta
            return existed

    def clear(self, namespace: str) -> None:
        with self._lock:
            self._spaces.pop(namespace, None)

    def namespaces(self) -> list[str]:
        with self._lock:
            return sorted(ns for ns, space in self._spaces.items() if space.data)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            spaces = [space for space in self._spaces.values() if space.data]
            return {
                "namespaces": len(spaces),
                "keys": sum(len(space.data) for space in spaces),
                "bytes": sum(space.used for space in spaces),
            }

    def verify(self, repair: bool = False, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Recount every namespace's bytes from its data (key counts are the dicts' sizes, always exact).

        Keys that break the key rules (only a caller of :meth:`commit` going
        around the core can store one) are reported, and removed with *repair*.
        """
        with self._lock:
            stored = {ns: Usage(space.used, len(space.data)) for ns, space in self._spaces.items()}
            actual = {
                ns: Usage(sum(len(k) + len(v) for k, v in space.data.items()), len(space.data))
                for ns, space in self._spaces.items()
            }
            bad = []
            for ns, space in self._spaces.items():
                keys = list(space.data)
                for index, problem in key_problems(keys):
                    key = keys[index]
                    bad.append(BadKey(ns, key, len(key) + len(space.data[key]), problem))
            report = verify_report("memory://", stored, actual, bad_keys=bad, repaired=repair)
            if repair:
                for found in report.bad_keys:
                    space = self._spaces[found.namespace]
                    del space.data[found.key]
                    space.note(found.key)
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
