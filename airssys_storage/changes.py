"""The change feed: event records, the backend side of the log, replay and wake-ups (``../shared/DESIGN.md``).

A component that enabled the feed (manifest ``permissions.storage.changes =
true``, or the setting ``changes_default``) has a change log: each commit
appends its events to it **in the same atomic step as the data**, numbered by
a sequence that is dense (no holes) and strictly increasing per namespace,
across processes on multi-process backends. Readers pull
(:meth:`~airssys_storage.ComponentStorage.changes`); push delivery
(:meth:`~airssys_storage.ComponentStorage.watch`) is built on the pull, so a
crash between an event and its delivery loses nothing.

Events (:class:`ChangeRecord` in a backend, :class:`ChangeEvent` for callers)
``"set"``
    A put, an increment or a TTL change of ``key``; ``version`` is its new
    version; ``value`` its new value when value capture is on and the value
    is at most ``changes_max_value_bytes`` (else ``None``; a TTL change never
    carries it, the value did not change).
``"delete"``
    ``key`` was removed while live; ``version`` is the removed row's.
``"expire"``
    ``key`` was removed after it had expired (a sweep, or a write that
    removed the expired row); ``version`` is the removed row's.
``"delete-range"``
    Every key with ``key <= k < end`` went (``end=None``: unbounded above),
    in one commit; ``version`` is the highest version removed.
``"clear"``
    Every key of the component went; ``key`` is ``""`` and ``version`` the
    namespace's version floor after it.

Replaying the events in order onto an empty mapping (:func:`replay`) gives the
component's state, key for key, when the log is retained from seq 1 and
values are captured, except for the keys whose last ``"set"`` carries no
value (a TTL change, a value above the capture cap): :func:`replay` leaves
them ``None``, to be completed by reading the key. Expired keys not yet swept
have had no event yet.

Backend contract (one place; :class:`~airssys_storage.StorageBackend` has the
hooks, :class:`~airssys_storage.Capabilities` the ``change_feed`` flag)
    - :meth:`StorageBackend.enable_changes` records which namespaces log
      (the core calls it when a component opens); the single-key hot paths
      of a namespace with the feed on are routed to the planner path by the
      base class, so a backend appends events only in ``apply``,
      ``delete_range`` and ``clear``, with :func:`plan_records`,
      :func:`range_records` and :func:`clear_record`, and components without
      the feed pay nothing.
    - Appending: read the namespace's ``last`` seq inside the commit's
      atomic section (already exclusive per namespace), write the records
      as ``last + 1 …``, store the new ``last``, and trim by
      :meth:`FeedConfig.keep_from` and :meth:`FeedConfig.age_cutoff` (always
      a prefix of the log, so the log never has holes) — all before the commit ends; after it, call
      :meth:`StorageBackend.notify_changes`.
    - Reading: :meth:`StorageBackend.read_changes` (records with
      ``seq > since``, in order, at most *limit*, plus the oldest retained
      and the last seq) and :meth:`StorageBackend.change_bounds`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .planner import Plan

_new = tuple.__new__  # skips NamedTuple.__new__'s argument handling, as the planner does

__all__ = [
    "CHANGE_OPS",
    "MAX_SEQ",
    "ChangeBatch",
    "ChangeEvent",
    "ChangeLog",
    "ChangeRecord",
    "ChangeSignal",
    "FeedConfig",
    "clear_record",
    "plan_records",
    "range_records",
    "record_matches",
    "replay",
]

#: How many events past ``retain_events`` (at most) the log may hold before a commit trims it; also how
#: often (in seqs) backends trim by age.
TRIM_STEP = 64

#: The largest seq (engines keep seqs as signed 64-bit integers); a ``since`` above it is no cursor.
MAX_SEQ = 2**63 - 1

#: Every ``op`` an event can have.
CHANGE_OPS = frozenset({"set", "delete", "expire", "clear", "delete-range"})

#: A record to append, before it has a seq: ``(key, op, version, value, end)``.
Pending = tuple[bytes, str, int, "bytes | None", "bytes | None"]


@dataclass(frozen=True)
class FeedConfig:
    """How a namespace's change log is kept (from the settings ``changes_*``).

    The log keeps the newest ``retain_events`` events (holding up to
    :data:`TRIM_STEP` more between trims), and none older than ``retain_ms``
    milliseconds (``None``: no age limit; checked every :data:`TRIM_STEP`
    seqs); whichever is stricter wins (:meth:`keep_from`, :meth:`age_cutoff`). Backends trim
    only prefixes of the log (an event's time is never below its
    predecessor's), so the retained seqs stay dense. ``capture_values``: ``"set"``
    events carry the new
    value when it is at most ``max_value_bytes`` bytes.
    """

    retain_events: int = 100_000
    retain_ms: int | None = 7 * 24 * 3600 * 1000
    capture_values: bool = False
    max_value_bytes: int = 4096

    def keep_from(self, oldest: int, last: int) -> int:
        """The lowest seq to keep of a log holding *oldest* .. *last* (every lower one may go).

        The count limit trims in steps: once the log holds more than
        ``retain_events`` plus a slack of ``min(TRIM_STEP, retain_events)``
        events, it goes back to the newest ``retain_events`` (so a commit
        trims once per step, not every time); until then *oldest* stays.
        """
        if last - oldest + 1 > self.retain_events + min(TRIM_STEP, self.retain_events):
            return last - self.retain_events + 1
        return oldest

    def age_cutoff(self, now: int) -> int | None:
        """Events with a time (ms) below this may go (``None``: no age limit); *now* in ms since the epoch."""
        return None if self.retain_ms is None else now - self.retain_ms


class ChangeRecord(NamedTuple):
    """One stored event, as a backend returns it (keys as bytes; see the module docs for ``op``)."""

    seq: int
    key: bytes
    op: str
    version: int
    #: When the commit ran, in milliseconds since the Unix epoch (the backend's clock).
    at: int
    #: The new value of a ``"set"`` (value capture on, value small enough), else ``None``.
    value: bytes | None = None
    #: The exclusive end of a ``"delete-range"`` (``None``: unbounded, or another op).
    end: bytes | None = None


class ChangeEvent(NamedTuple):
    """One change of a component, in commit order (:meth:`ComponentStorage.changes`).

    ``seq`` is dense and strictly increasing per component; resume with
    ``since=event.seq``. ``key`` is ``""`` for ``"clear"``; ``end`` is the
    exclusive end of a ``"delete-range"`` (``None``: unbounded). ``at`` is the
    commit time in milliseconds since the Unix epoch.
    """

    seq: int
    key: str
    op: str
    version: int
    at: int
    value: bytes | None = None
    end: str | None = None


class ChangeBatch(NamedTuple):
    """What :meth:`StorageBackend.read_changes` returns."""

    #: Records with ``seq > since``, in seq order, at most *limit*.
    records: list[ChangeRecord]
    #: The lowest retained seq (``last + 1`` when the log is empty).
    oldest: int
    #: The seq of the namespace's last event (0: none yet).
    last: int


def plan_records(plan: Plan, feed: FeedConfig) -> list[Pending]:
    """The records of an applied *plan*'s events, in write order (values captured as *feed* says)."""
    events = plan.events
    if not events:
        return []
    cap = feed.max_value_bytes if feed.capture_values else -1
    if type(events) is not list:  # a PUT-only plan (its events are made when read): one "set" per put
        return [
            (key, "set", version, value if value is not None and len(value) <= cap else None, None)
            for key, value, version, _ in plan.puts
        ]
    values: dict[bytes, bytes | None] = {}
    if cap >= 0:
        values = {put[0]: put[1] for put in plan.puts if put[1] is not None and len(put[1]) <= cap}
    return [(key, op, version, values.get(key) if op == "set" else None, None) for key, op, version in events]


def range_records(plan: Plan, start: bytes, end: bytes | None, expired_only: bool) -> list[Pending]:
    """The records of a range delete's *plan*: one ``"delete-range"`` (or an ``"expire"`` per swept row)."""
    events = plan.events
    if expired_only or not events:
        return [(key, op, version, None, None) for key, op, version in events]
    return [(start, "delete-range", max(event[2] for event in events), None, end)]


def clear_record(floor: int) -> list[Pending]:
    """The record of a clear that removed rows (*floor*: the version floor after it)."""
    return [(b"", "clear", floor, None, None)]


def record_matches(key: bytes, op: str, end: bytes | None, start: bytes, stop: bytes | None) -> bool:
    """Whether an event concerns keys in ``[start, stop)`` (a prefix reader's filter; ``stop=None``: unbounded).

    A ``"clear"`` concerns every range; a ``"delete-range"`` those it overlaps.
    """
    if op == "clear":
        return True
    if op == "delete-range":
        return (stop is None or key < stop) and (end is None or start < end)
    return start <= key and (stop is None or key < stop)


def replay(state: MutableMapping[str, bytes | None], events: Iterable[ChangeEvent]) -> None:
    """Apply *events* in order to *state* (key -> value; ``None`` for a set whose value was not captured)."""
    for event in events:
        op = event.op
        if op == "set":
            state[event.key] = event.value
        elif op == "clear":
            state.clear()
        elif op == "delete-range":
            low, high = event.key.encode(), None if event.end is None else event.end.encode()
            for key in [k for k in state if low <= k.encode() and (high is None or k.encode() < high)]:
                del state[key]
        else:
            state.pop(event.key, None)


class ChangeLog:
    """An in-process change log (a deque): for backends whose data lives in the process (``memory://``).

    Not thread-safe by itself: call it inside the backend's commit lock.
    """

    __slots__ = ("last", "records")

    def __init__(self) -> None:
        self.records: deque[ChangeRecord] = deque()
        self.last = 0

    def append(self, pending: Sequence[Pending], now: int, feed: FeedConfig) -> None:
        """Number *pending* ``last + 1 …``, append them, and trim as *feed* says."""
        records, seq = self.records, self.last
        if records and records[-1].at > now:  # never below the previous event's time: age trims a prefix
            now = records[-1].at
        for key, op, version, value, end in pending:
            seq += 1
            records.append(_new(ChangeRecord, (seq, key, op, version, now, value, end)))
        keep = feed.keep_from(records[0].seq if records else seq + 1, seq)
        cutoff = feed.age_cutoff(now) if seq // TRIM_STEP != self.last // TRIM_STEP else None
        self.last = seq
        while records and (records[0].seq < keep or (cutoff is not None and records[0].at < cutoff)):
            records.popleft()

    def read(self, since: int, limit: int) -> ChangeBatch:
        """The records after *since* (at most *limit*), the oldest retained seq and the last."""
        records = self.records
        oldest = records[0].seq if records else self.last + 1
        start = max(since + 1 - oldest, 0)
        found = [records[i] for i in range(start, min(start + limit, len(records)))]
        return ChangeBatch(found, oldest, self.last)

    def bounds(self) -> tuple[int, int]:
        """``(oldest retained seq, last seq)``."""
        return (self.records[0].seq if self.records else self.last + 1), self.last


class ChangeSignal:
    """Wakes same-process readers after a commit: a condition variable with a generation counter.

    :meth:`StorageBackend.notify_changes` calls :meth:`notify`;
    :meth:`StorageBackend.wait_for_changes` waits. Reading the generation
    before checking for news, and waiting only while it is unchanged, closes
    the race of a commit landing between the check and the wait.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self.generation = 0
        #: Threads waiting now: a commit with none to wake skips the lock.
        self.waiters = 0

    def notify(self) -> None:
        # The generation moves first; a waiter counts itself before it checks the generation:
        # so either it sees the move, or this sees it waiting (and takes the lock to wake it).
        self.generation += 1
        if self.waiters:
            with self._condition:
                self._condition.notify_all()

    def wait(self, generation: int, timeout: float) -> None:
        """Wait up to *timeout* seconds unless the generation moved past *generation*."""
        with self._condition:
            self.waiters += 1
            try:
                if self.generation == generation:
                    self._condition.wait(timeout)
            finally:
                self.waiters -= 1


def monotonic() -> float:
    """Seconds of the monotonic clock (one name for the feed's waits)."""
    return time.monotonic()
