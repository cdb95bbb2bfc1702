"""The commit planner: the guard rule, versions, expiry, conditions and counters, decided once.

Every backend commit has the same shape: open the atomic section, read the old
state of the changed keys (:class:`KeyState`) and the namespace's counter row
(:class:`SpaceState`), call :func:`plan`, apply the returned :class:`Plan`,
close the section. The planner is pure — no I/O, no clock, no lock — so every
backend gets the same answer for the same inputs, and the rules below are
written here and nowhere else (``../shared/DESIGN.md``, "Phase 2").

The rules
---------
Sizes
    A stored key costs ``len(key) + len(value)`` bytes (the seed's measure).
    A *row* is a stored key, live or expired: an expired row stays charged to
    the quota (and counted in :class:`SpaceState`) until a commit removes it.
Guard
    ``delta`` is the sum over the commit's rows of new size minus old size. If
    ``limit`` is not ``None`` and ``delta > 0`` and ``used + delta > limit``,
    :func:`plan` raises :class:`~airssys_storage.QuotaExceeded` and nothing is
    applied. A commit that does not grow usage is always accepted, so a
    component above a lowered quota can still delete.
Versions
    A write to a key that has a row gives it ``row.version + 1``; a write that
    creates a row gives it ``floor + 1``, where ``floor`` is the namespace's
    highest version of any row ever removed. Removing a row raises the floor to
    at least that row's version. So a key's versions strictly increase over its
    whole history, delete and re-create included (a stale compare-and-swap can
    never succeed), while an overwrite reads no namespace-wide counter.
    Versions are unsigned 64-bit; reaching the end is an ``internal-error``.
Expiry
    ``expires_at`` is an absolute time in milliseconds since the Unix epoch. A
    row with ``expires_at <= now`` is expired: it is absent for conditions and
    results and returned by no read; writing it replaces it like a missing key
    (but with a version above the old row's).
Conditions
    ``if_version=None``: no condition; ``0``: the key must be absent (or
    expired); ``n``: the key must be live with version ``n``. One failed
    condition raises :class:`~airssys_storage.PreconditionFailed` and nothing
    is applied.
Checks
    A condition on a key the commit does not change is a :attr:`WriteKind.SWEEP`
    with ``if_version`` (:func:`check`): the condition is decided like any
    other, and the write changes nothing visible (a live key is left alone;
    an expired row, absent for every reader, is removed as a sweep would).
    So a multi-key write batch with checks (``ComponentStorage.atomic``, in
    the spirit of Deno KV's ``atomic().check()``) is one ordinary commit
    that every backend applies as it applies any other.
Counters
    :attr:`WriteKind.INCREMENT` values are the decimal ASCII of a signed 64-bit
    integer (a missing or expired key counts as 0); another value is
    ``invalid-argument``, and so is a result outside the signed 64-bit range
    (overflow is an error, never a wrap). A live key's expiry is kept.
Operation ids
    A write may carry a caller-chosen ``op_id``. When the backend finds that id
    among the namespace's recorded operations (``done_ops``, read in the same
    atomic section), the write is not applied and its result is the recorded
    one; otherwise the plan asks the backend to record ``(op_id, result)``.
Op records
    A :attr:`WriteKind.RECORD` write records ``(op_id, delta)`` as its own
    element of the commit, independent of any key's write: ``delta`` is the
    result to record and its result, ``key`` names the key the operation
    belongs to (it may also be written by the commit: a RECORD is exempt from
    the distinct-keys rule, and its old state is ignored, so a backend may
    pass ``None`` without reading the row). If ``op_id`` is already recorded
    (in ``done_ops``: another writer applied the operation since the caller
    decided its result), the commit raises
    :class:`~airssys_storage.PreconditionFailed` and nothing is applied. A
    transaction uses it to record an increment's op id when its commit writes
    the key's final state instead of that increment (a later set, delete or
    increment of the key in the same transaction).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import NamedTuple, overload

from .backend import quota_exceeded
from .errors import InternalError, InvalidArgument, PreconditionFailed

__all__ = [
    "MAX_VERSION",
    "Event",
    "KeyState",
    "Plan",
    "Put",
    "SpaceState",
    "Write",
    "WriteKind",
    "add_to_counter",
    "check",
    "decode_counter",
    "plan",
    "set_events",
]

#: The largest version (unsigned 64-bit).
MAX_VERSION = 2**64 - 1
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MAX_COUNTER_BYTES = 20  # len(b"-9223372036854775808")


class WriteKind(enum.Enum):
    """What one write of a commit does to its key."""

    #: Store ``value`` with ``expires_at`` (``None`` clears an old expiry).
    PUT = "put"
    #: Remove the key; a missing key is a no-op.
    DELETE = "delete"
    #: Add ``delta`` to the key's counter value (see "Counters").
    INCREMENT = "increment"
    #: Change only the expiry of a live key (``expire`` / ``persist``); a no-op on a missing key.
    TOUCH = "touch"
    #: Remove the key only if it is expired at ``now`` (``purge_expired``); otherwise a no-op.
    SWEEP = "sweep"
    #: Change no key: record ``(op_id, delta)``; refused if ``op_id`` is already recorded (see "Op records").
    RECORD = "record"


class Write(NamedTuple):
    """One requested change of a commit (keys of one commit are distinct, a :attr:`WriteKind.RECORD`'s excepted)."""

    key: bytes
    kind: WriteKind = WriteKind.PUT
    #: The new value for :attr:`WriteKind.PUT`.
    value: bytes = b""
    #: Absolute expiry in milliseconds since the epoch, or ``None`` (PUT, TOUCH).
    expires_at: int | None = None
    #: Compare-and-swap condition: ``None`` none, ``0`` absent, ``n`` live at version ``n``.
    if_version: int | None = None
    #: The amount an :attr:`WriteKind.INCREMENT` adds (may be negative); the result a :attr:`WriteKind.RECORD` records.
    delta: int = 0
    #: Caller-chosen id that makes a retried write apply once (see "Operation ids").
    op_id: str | None = None

    @property
    def needs_value(self) -> bool:
        """Whether the backend must pass the stored value in :attr:`KeyState.value`."""
        return self.kind is WriteKind.INCREMENT


class KeyState(NamedTuple):
    """A key's row as the backend read it inside its atomic section (``None`` when there is no row)."""

    #: ``len(value)`` in bytes.
    size: int
    version: int
    #: Milliseconds since the epoch, or ``None``.
    expires_at: int | None = None
    #: The stored value; required only for writes whose :attr:`Write.needs_value` is true.
    value: bytes | None = None


class SpaceState(NamedTuple):
    """A namespace's counter row: usage (rows, expired ones included) and the version floor."""

    bytes: int = 0
    keys: int = 0
    #: The highest version of any row ever removed from the namespace.
    floor: int = 0


class Put(NamedTuple):
    """A row to write: ``value=None`` keeps the stored value (a :attr:`WriteKind.TOUCH`)."""

    key: bytes
    value: bytes | None
    version: int
    expires_at: int | None


class Event(NamedTuple):
    """One change, for the change feed: ``op`` is ``"set"``, ``"delete"`` or ``"expire"``.

    ``version`` is the new version for ``"set"`` and the removed row's version otherwise.
    """

    key: bytes
    op: str
    version: int


class Plan(NamedTuple):
    """What a backend applies, all in one atomic step.

    ``results[i]`` answers ``writes[i]``: the new version (PUT, TOUCH), the
    counter's new value (INCREMENT), or 1 / 0 for whether a live key was
    removed (DELETE) or an expired one swept (SWEEP); a TOUCH of a missing key
    gives 0; a RECORD its ``delta``. ``existed[i]`` says whether the key was
    live before the commit (``False`` for a RECORD, which reads no row).
    """

    puts: list[Put]
    deletes: list[bytes]
    #: The counter row after the commit.
    space: SpaceState
    #: Whether the counter row changed (a same-size overwrite leaves it alone).
    space_changed: bool
    results: list[int]
    existed: list[bool]
    #: The change events, in write order (a sequence; a PUT-only plan makes them when they are read).
    events: Sequence[Event]
    #: ``(op_id, result)`` pairs to record with the commit.
    op_records: list[tuple[str, int]]


def check(key: bytes, if_version: int) -> Write:
    """A write that only checks *key* (see "Checks"): ``0`` absent (or expired), ``n`` live at version ``n``.

    Its result is 0, or 1 when it removed an expired row.
    """
    return Write(key, WriteKind.SWEEP, if_version=if_version)


def decode_counter(value: bytes, key: bytes) -> int:
    """The integer a counter value holds; ``invalid-argument`` naming *key* when it holds none."""
    # int() alone would also accept "+1", " 1", "1_0" and non-ASCII digits; bytes.isdigit() is
    # true for one or more ASCII digits only, so this is the regex -?[0-9]+ (~0.1 µs cheaper).
    if len(value) <= _MAX_COUNTER_BYTES and (value.isdigit() or (value[:1] == b"-" and value[1:].isdigit())):
        number = int(value)
        if _INT64_MIN <= number <= _INT64_MAX:
            return number
    raise InvalidArgument(
        f"key {key.decode(errors='replace')!r} does not hold a counter (decimal ASCII of a signed "
        f"64-bit integer): {value[:32]!r}"
    )


# The planner runs inside every commit: module-level aliases and tuple.__new__ keep one
# single-key plan near a microsecond (enum attribute access and NamedTuple.__new__ with
# defaults cost about 0.25 and 0.5 µs each on CPython 3.11; zip(strict=True), a keyword
# call, ~0.15 µs more than zip(), so plan() checks the lengths itself).
_PUT, _DELETE, _INCREMENT, _TOUCH, _SWEEP, _RECORD = WriteKind  # in definition order
_new = tuple.__new__


def _version_overflow() -> InternalError:
    return InternalError("a key's version reached 2**64 - 1; the key cannot be written again")


def plan(
    namespace: str,
    writes: Sequence[Write],
    old: Sequence[KeyState | None],
    space: SpaceState,
    limit: int | None,
    now: int,
    done_ops: Mapping[str, int] | None = None,
) -> Plan:
    """Decide a commit: ``old[i]`` is the row of ``writes[i].key`` (``None``: no row).

    *space* is the namespace's counter row, *limit* the quota in bytes
    (``None``: unlimited), *now* the time in milliseconds since the epoch,
    *done_ops* the recorded results of the writes' operation ids.

    Raises :class:`~airssys_storage.QuotaExceeded`,
    :class:`~airssys_storage.PreconditionFailed` or
    :class:`~airssys_storage.InvalidArgument` (counters) before deciding
    anything; :class:`~airssys_storage.InternalError` for a malformed call.
    """
    count = len(writes)
    if len(old) != count:
        raise InternalError(f"planner: {count} writes but {len(old)} old states")
    if count > 1 and len({write[0] for write in writes}) != count:
        changes = [write[0] for write in writes if write[1] is not _RECORD]  # a RECORD may name a written key
        if len(set(changes)) != len(changes):
            raise InternalError("planner: a key appears twice in one commit")
    puts: list[Put] = []
    deletes: list[bytes] = []
    results: list[int] = []
    existed: list[bool] = []
    events: list[Event] = []
    set_events: Sequence[Event] | None = None
    op_records: list[tuple[str, int]] = []
    delta = key_delta = 0
    floor = space.floor
    # PUT-only commits (set, set_many, compare-and-swap, the collections' atomic batches of
    # conditional puts, ...) and plain DELETE-only ones (delete_many, ...) take a loop that
    # decides only what they need: the general loop's rules with op ids and the other kinds
    # (and, for deletes, conditions) left out (~15% less per write; a Put and an Event, ~0.1 µs
    # each to build, are most of what is left). Any other write sends the whole commit to the
    # general loop, from the start (the plan is pure, nothing was applied). A failed condition
    # raises in write order, as in the general loop.
    # tests/test_planner.py checks both loops give the same plan on random commits.
    first = writes[0] if count and _FAST_LOOPS else None
    kind = None if first is None or first[6] is not None else first[1]
    general = True
    if kind is _PUT:
        for (key, kind, value, expires_at, condition, _, op_id), row in zip(writes, old):  # noqa: B905 - lengths checked above
            if kind is not _PUT or op_id is not None:
                break
            if row is None:
                if condition:  # a version (0: absent, which holds)
                    raise _precondition_failed(namespace, key, None, condition)
                version = floor + 1
                existed.append(False)
                key_delta += 1
                delta += len(key) + len(value)
            else:
                live = row[2] is None or row[2] > now
                if condition is not None and condition != (row[1] if live else 0):
                    raise _precondition_failed(namespace, key, row if live else None, condition)
                version = row[1] + 1
                existed.append(live)
                delta += len(value) - row[0]
            if version > MAX_VERSION:
                raise _version_overflow()
            puts.append(_new(Put, (key, value, version, expires_at)))
            results.append(version)
        else:
            general = False
            set_events = _SetEvents(puts)  # one "set" per put, made when read (a third of this loop's cost)
    elif kind is _DELETE and first[4] is None:  # type: ignore[index]
        for (key, kind, _, _, condition, _, op_id), row in zip(writes, old):  # noqa: B905 - lengths checked above
            if kind is not _DELETE or condition is not None or op_id is not None:
                break
            if row is None:
                existed.append(False)
                results.append(0)
                continue
            live = row[2] is None or row[2] > now
            existed.append(live)
            deletes.append(key)
            delta -= len(key) + row[0]
            key_delta -= 1
            if row[1] > floor:
                floor = row[1]
            events.append(_new(Event, (key, "delete" if live else "expire", row[1])))
            results.append(1 if live else 0)
        else:
            general = False
    if general and results:  # a fast loop met another write: start again
        puts, deletes, results, existed, events = [], [], [], [], []
        delta = key_delta = 0
        floor = space.floor
    if general:
        for write, row in zip(writes, old):  # noqa: B905 - lengths checked above
            key, kind, value, expires_at, condition, _, op_id = write
            if kind is _RECORD:
                op_records.append((_record(namespace, write, done_ops), write[5]))
                existed.append(False)
                results.append(write[5])
                continue
            if row is None:
                live = False
                old_size = 0
            else:
                live = row.expires_at is None or row.expires_at > now
                old_size = len(key) + row.size
            existed.append(live)
            if op_id is not None and done_ops and op_id in done_ops:
                results.append(done_ops[op_id])
                continue
            if condition is not None and condition != (row.version if live and row is not None else 0):
                raise _precondition_failed(namespace, key, row if live else None, condition)
            if kind is _PUT or kind is _INCREMENT:
                if kind is _INCREMENT:
                    number, value, expires_at = _increment(key, row if live else None, write.delta)
                version = (floor if row is None else row.version) + 1
                if version > MAX_VERSION:
                    raise _version_overflow()
                if row is None:
                    key_delta += 1
                delta += len(key) + len(value) - old_size
                puts.append(_new(Put, (key, value, version, expires_at)))
                events.append(_new(Event, (key, "set", version)))
                result = number if kind is _INCREMENT else version
            elif kind is _TOUCH:
                if not live or row is None:
                    result = 0
                else:
                    version = row.version + 1
                    if version > MAX_VERSION:
                        raise _version_overflow()
                    puts.append(_new(Put, (key, None, version, expires_at)))
                    events.append(_new(Event, (key, "set", version)))
                    result = version
            elif row is None or (kind is _SWEEP and live):  # DELETE or SWEEP with nothing to remove
                result = 0
            else:  # remove the row (a SWEEP only an expired one)
                deletes.append(key)
                delta -= old_size
                key_delta -= 1
                if row.version > floor:
                    floor = row.version
                events.append(_new(Event, (key, "delete" if live else "expire", row.version)))
                result = 1 if live or kind is _SWEEP else 0
            results.append(result)
            if op_id is not None:
                op_records.append((op_id, result))
    if limit is not None and delta > 0 and space.bytes + delta > limit:
        raise quota_exceeded(namespace, space.bytes, delta, limit)
    if delta or key_delta or floor != space.floor:
        after = _new(SpaceState, (space.bytes + delta, space.keys + key_delta, floor))
        changed = True
    else:
        after, changed = space, False
    if set_events is not None:
        return _new(Plan, (puts, deletes, after, changed, results, existed, set_events, op_records))
    return _new(Plan, (puts, deletes, after, changed, results, existed, events, op_records))


def set_events(puts: list[Put]) -> Sequence[Event]:
    """The events of a commit of *puts* only: ``Event(key, "set", version)`` per put, made when read.

    For a backend that decides such a commit itself (memory's written-out
    puts) and returns a :class:`Plan` like the planner's.
    """
    return _SetEvents(puts)


class _SetEvents(Sequence[Event]):
    """The events of a PUT-only plan: ``Event(key, "set", version)`` per put, made when read.

    Nothing reads them on a plain write, and building one per key cost a
    third of the PUT-only loop (~0.18 µs per key here).
    """

    __slots__ = ("_puts",)

    def __init__(self, puts: list[Put]) -> None:
        self._puts = puts

    def __len__(self) -> int:
        return len(self._puts)

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...
    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if isinstance(index, slice):
            return [Event(put[0], "set", put[2]) for put in self._puts[index]]
        put = self._puts[index]
        return Event(put[0], "set", put[2])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # like the list it stands for

    def __repr__(self) -> str:
        return repr(list(self))


#: Whether :func:`plan` may take its PUT-only and DELETE-only loops (tests turn them off to
#: compare them with the general loop).
_FAST_LOOPS = True


def _increment(key: bytes, row: KeyState | None, delta: int) -> tuple[int, bytes, int | None]:
    """The counter's new value, its bytes and the expiry it keeps (*row* is the live row or ``None``)."""
    if row is None:
        return (*add_to_counter(key, None, delta), None)
    if row.value is None:
        raise InternalError(f"planner: the backend did not read the value of counter {key!r}")
    return (*add_to_counter(key, row.value, delta), row.expires_at)


def add_to_counter(key: bytes, value: bytes | None, delta: int) -> tuple[int, bytes]:
    """The rule of :attr:`WriteKind.INCREMENT`: the new number and its bytes for live *value* (``None``: absent).

    For backends' single-key increment paths (:meth:`StorageBackend.increment_one`), so the
    rule stays here. Raises :class:`~airssys_storage.InvalidArgument` when *value* holds no
    counter or the result leaves the signed 64-bit range (see "Counters").
    """
    current = 0 if value is None else decode_counter(value, key)
    number = current + delta
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise InvalidArgument(
            f"incrementing counter {key.decode(errors='replace')!r} ({current}) by {delta} "
            "leaves the signed 64-bit range"
        )
    return number, str(number).encode("ascii")


def _record(namespace: str, write: Write, done_ops: Mapping[str, int] | None) -> str:
    """The op id of a :attr:`WriteKind.RECORD` (see "Op records"), checked: well-formed and not recorded yet."""
    op_id = write.op_id
    if op_id is None or write.if_version is not None:
        raise InternalError("planner: a RECORD write needs an op_id and takes no condition")
    if done_ops and op_id in done_ops:
        raise PreconditionFailed(
            f"operation {op_id!r} on key {write.key.decode(errors='replace')!r} of component {namespace!r} was "
            "recorded by another writer before this commit: read the key again and retry (the retry answers "
            "with the recorded result)"
        )
    return op_id


def _precondition_failed(namespace: str, key: bytes, live_row: KeyState | None, condition: int) -> PreconditionFailed:
    current = "absent" if live_row is None else f"version {live_row.version}"
    wanted = "absent" if condition == 0 else f"version {condition}"
    return PreconditionFailed(
        f"key {key.decode(errors='replace')!r} of component {namespace!r} is {current}, "
        f"not {wanted}: read it again and retry"
    )
