"""Transactions over one component's storage: writes buffered, read back, and committed in one atomic step.

::

    with storage.transaction() as tx:      # a ComponentStorage: the same methods, permissions and limits
        tx.set("a", b"1")
        tx.increment("hits")
        assert tx.get("a") == b"1"          # reads see the transaction's own writes
    # committed here in one backend commit; an exception inside the block discards every write

:class:`Transaction` is a :class:`~airssys_storage.ComponentStorage` whose
backend is a write buffer over the real one (:class:`_Overlay`), so every
rule of a write — versions, expiry, compare-and-swap conditions, counters —
is still decided by :func:`airssys_storage.planner.plan`, once against the
buffer (what the caller sees) and once more, exactly, at commit. The WASM host
(``airssys-storage-wasmtime``, manifest ``transactional = true``) wraps each
invocation of a component in one.

Semantics
---------
Read-your-writes
    Every read (get, has, get-many, get-entry, ttl, keys, range, scan,
    usage) sees the committed state with the transaction's writes laid over
    it; listings merge both in key order (scan cursors keep their
    every-key-exactly-once guarantee for keys present throughout). Expiry is
    applied to buffered keys as to stored ones.
Commit
    :meth:`Transaction.commit` turns the buffer into one write per key (the
    key's final value and expiry, or a delete) and applies them in one atomic
    backend commit under the component's quota: all or nothing, and no other
    reader ever sees part of it. The quota is checked there, exactly: a
    refused commit raises :class:`~airssys_storage.QuotaExceeded` and writes
    nothing. Each write is also checked when it is made, against the usage
    the transaction sees — an estimate: the stored usage plus the buffer's net
    change — so a transaction that alone would pass the quota fails at the
    write that passes it, as outside a transaction; a commit can still be
    refused when other writers used the room meanwhile.
Optimistic concurrency
    A key whose write depended on its stored state — compare-and-swap,
    set-if-absent, delete-if, increment, expire, persist (everything that
    reads before it writes) — is committed with a condition on the version
    the transaction read (absent: must still be absent). If another writer
    changed the key between that read and the commit, the commit fails with
    :class:`~airssys_storage.PreconditionFailed` and writes nothing: rerun
    the transaction. Plain writes (set, delete, set-many, delete-many, range
    deletes) are blind and carry no condition (last writer wins, as outside a
    transaction). Plain reads are not re-validated, and neither are conditions
    that failed inside the transaction (a compare-and-swap that raised
    ``precondition-failed`` there is not checked again).
Versions
    A write inside a transaction returns a *provisional* version: valid for
    the conditions of the same transaction (compare-and-swap on it works),
    strictly above the key's stored version, but not necessarily the version
    the commit assigns (keys created in a transaction get versions from
    2**63 up). Read the entry again after the commit for its real version.
Limits
    At most *max_writes* distinct keys (the writes of the commit) and
    *max_bytes* bytes of buffered keys and values
    (:data:`DEFAULT_MAX_WRITES`, :data:`DEFAULT_MAX_BYTES`); the write that
    would pass either fails with :class:`~airssys_storage.TooManyKeys` or
    :class:`~airssys_storage.ValueTooLarge` (naming the limit), leaving the
    buffer as it was. Range deletes and clear delete key by key inside a
    transaction, so they count every key they remove.
Operation ids
    An increment with an ``op_id`` applies at most once, store included, and
    returns what it would return outside a transaction. It reads the key's
    stored row, then asks the store whether the op id is recorded
    (:func:`recorded_result`: a probe that writes nothing, so every backend
    answers unchanged). Recorded (within the retention window): the recorded
    result, nothing buffered. Not recorded: the increment is buffered like
    any other (a condition on the row read), and the commit records the op
    id's result atomically with the rest. The same op id (on the same key)
    again in the transaction returns the first result. If another writer
    changes the key before the commit, the commit raises
    :class:`~airssys_storage.PreconditionFailed` (nothing written or
    recorded). The key stays free to write: later sets, deletes and
    increments (with or without other op ids) of the key in the same
    transaction work as outside one, and so does an op-id increment after
    other writes of the key. How the commit records the op id:

    - When that increment is the key's only change in the transaction, the
      key's commit write is that increment carrying the op id (the stored
      counter plus the delta). If another writer records the *same* op id on
      the key before the commit (the same request retried elsewhere), the
      planner answers that write with the recorded result and skips it (op
      ids are looked up before conditions): the increment is applied once in
      all and the rest of the commit applies. The transaction's answer was
      the stored counter plus the delta, which equals the recorded one
      unless a third writer changed the counter before that retry — the one
      case a commit cannot refuse, because the planner skips the skipped
      write's condition too.
    - Otherwise (the key was written before or after it in the
      transaction), the key's commit write is its final state, under the
      condition on the row read, and the op id's result is recorded by a
      separate :attr:`~airssys_storage.planner.WriteKind.RECORD` element of
      the commit (see "Op records" in :mod:`airssys_storage.planner`). If
      another writer recorded the op id before the commit, the commit raises
      :class:`~airssys_storage.PreconditionFailed` and writes nothing
      (usually the key's condition fails first, as that writer changed the
      key): rerun the transaction, whose increment then answers with the
      recorded result.
Not in a transaction
    ``purge_expired`` runs at once on the store (it removes only keys no
    reader can see).

After :meth:`~Transaction.commit` (successful or not) or
:meth:`~Transaction.rollback`, the buffer is empty and the same object starts
a new transaction with its next call.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from .backend import Capabilities, StorageBackend, Usage
from .errors import InternalError, InvalidArgument, PreconditionFailed, TooManyKeys, ValueTooLarge
from .planner import MAX_VERSION, KeyState, Plan, SpaceState, Write, WriteKind, check, decode_counter, plan
from .storage import ComponentStorage

if TYPE_CHECKING:
    from .errors import StoreDamaged

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_WRITES", "PROVISIONAL_VERSIONS", "Transaction", "recorded_result"]

#: Distinct keys one transaction may write by default.
DEFAULT_MAX_WRITES = 10_000
#: Bytes (keys + values) one transaction may buffer by default: 16 MiB.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
#: Keys created inside a transaction get provisional versions above this (real versions stay far below).
PROVISIONAL_VERSIONS = 2**63

# Writes that read the key's stored state before deciding: committed with a condition on it.
_INCREMENT, _TOUCH, _SWEEP, _RECORD = WriteKind.INCREMENT, WriteKind.TOUCH, WriteKind.SWEEP, WriteKind.RECORD


def recorded_result(backend: StorageBackend, namespace: str, key: bytes, op_id: str) -> int | None:
    """The result *backend* recorded for *op_id* (an op record id) in *namespace*, or ``None``: writes nothing.

    A probe through the backend contract, so every backend answers unchanged:
    an increment of *key* carrying *op_id* under a condition no row can meet
    (version ``2**64``, above :data:`~airssys_storage.planner.MAX_VERSION`).
    The planner looks the op id up before it checks conditions (see
    "Operation ids" in :mod:`airssys_storage.planner`): a recorded id (within
    the backend's ``op_retention_ms``) gives its result and applies nothing;
    otherwise the condition fails with ``precondition-failed`` and nothing
    is applied either.
    """
    probe = Write(key, _INCREMENT, b"", None, MAX_VERSION + 1, 0, op_id)
    try:
        return backend.apply(namespace, (probe,), None).results[0]
    except PreconditionFailed:
        return None


def _size(key: bytes, row: KeyState | None) -> int:
    """The bytes *row* holds under *key* (the seed's measure); 0 for no row."""
    return 0 if row is None else len(key) + row.size


class _Overlay(StorageBackend):
    """A write buffer over one namespace of a real backend: the backend of a :class:`Transaction`.

    ``_view`` holds the transaction's state of every key it wrote (a row, or
    ``None`` for deleted); ``_stored`` the stored rows it read (live rows as
    :meth:`StorageBackend.get_entry` gives them, ``None`` for absent), which
    give the commit's conditions. Not shared between threads.
    """

    name: ClassVar[str] = "transaction"

    def __init__(self, base: StorageBackend, namespace: str, max_writes: int, max_bytes: int) -> None:
        self.base = base
        self.namespace = namespace
        self.max_writes = max_writes
        self.max_bytes = max_bytes
        self.clock = base.clock
        self.op_retention_ms = base.op_retention_ms
        self._view: dict[bytes, KeyState | None] = {}
        self._stored: dict[bytes, KeyState | None] = {}
        self._conditioned: set[bytes] = set()
        #: op id -> result: recorded in the store (probed) or buffered here; a repeat answers from it.
        self._ops: dict[str, int] = {}
        #: key -> (op id, stored counter value) of the keys whose commit write is an increment with an op id.
        self._op_keys: dict[bytes, tuple[str, int]] = {}
        #: op id -> (key, result) of the op ids the commit records apart from their key's write (a RECORD).
        self._records: dict[str, tuple[bytes, int]] = {}
        self._bytes = 0
        self._floor = PROVISIONAL_VERSIONS

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]  # the base backend's, per instance
        return self.base.capabilities

    @classmethod
    def open(cls, url: str, options: Any) -> StorageBackend:
        raise InternalError("a transaction's buffer is not a backend that can be opened by URL")

    # -- state ---------------------------------------------------------------

    @property
    def pending_writes(self) -> int:
        return len(self._view)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def reset(self) -> None:
        """Forget every buffered write and every read: the next call starts a new transaction."""
        self._view.clear()
        self._stored.clear()
        self._conditioned.clear()
        self._ops.clear()
        self._op_keys.clear()
        self._records.clear()
        self._bytes = 0
        self._floor = PROVISIONAL_VERSIONS

    def _check(self, namespace: str) -> None:
        if namespace != self.namespace:
            raise InternalError(f"a transaction of {self.namespace!r} was asked about namespace {namespace!r}")

    def _stored_row(self, key: bytes) -> KeyState | None:
        """The stored live row of *key* (with its value), read once per transaction."""
        if key in self._stored:
            return self._stored[key]
        row = self.base.get_entry(self.namespace, key)
        self._stored[key] = row
        return row

    def _current(self, key: bytes) -> KeyState | None:
        """The row the transaction sees for *key* (expired rows included)."""
        if key in self._view:
            return self._view[key]
        return self._stored_row(key)

    def _live(self, row: KeyState | None) -> bool:
        return row is not None and (row.expires_at is None or row.expires_at > self.clock())

    def _buffered_in(self, start: bytes, end: bytes | None) -> list[bytes]:
        return sorted(key for key in self._view if start <= key and (end is None or key < end))

    # -- reads -------------------------------------------------------------------

    def get(self, namespace: str, key: bytes) -> bytes | None:
        self._check(namespace)
        if key in self._view:
            row = self._view[key]
            return row.value if row is not None and self._live(row) else None
        return self.base.get(namespace, key)

    def get_entry(self, namespace: str, key: bytes) -> KeyState | None:
        self._check(namespace)
        row = self._current(key)
        return row if self._live(row) else None

    def get_many(self, namespace: str, keys: Sequence[bytes]) -> list[bytes | None]:
        self._check(namespace)
        unbuffered = [key for key in keys if key not in self._view]
        stored = dict(zip(unbuffered, self.base.get_many(namespace, unbuffered) if unbuffered else [], strict=True))
        return [self.get(namespace, key) if key in self._view else stored[key] for key in keys]

    def has(self, namespace: str, key: bytes) -> bool:
        self._check(namespace)
        if key in self._view:
            return self._live(self._view[key])
        return self.base.has(namespace, key)

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        """The stored pairs with the buffer laid over them, in key order, at most *limit*.

        Each buffered key in the range can hide at most one stored pair, so
        reading *limit* plus that many stored pairs is enough.
        """
        self._check(namespace)
        buffered = self._buffered_in(start, end)
        merged = {key: value for key, value in self.base.items(namespace, start, end, limit + len(buffered))}
        for key in buffered:
            row = self._view[key]
            if row is not None and row.value is not None and self._live(row):
                merged[key] = row.value
            else:
                merged.pop(key, None)
        return sorted(merged.items())[:limit]

    def keys(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
        self._check(namespace)
        buffered = self._buffered_in(start, end)
        merged = set(self.base.keys(namespace, start, end, limit + len(buffered)))
        for key in buffered:
            if self._live(self._view[key]):
                merged.add(key)
            else:
                merged.discard(key)
        return sorted(merged)[:limit]

    def usage(self, namespace: str) -> Usage:
        """The stored usage plus the buffer's net change (an estimate: see the module docs)."""
        self._check(namespace)
        stored = self.base.usage(namespace)
        size = keys = 0
        for key, row in self._view.items():
            old = self._stored.get(key)
            size += _size(key, row) - _size(key, old)
            keys += (row is not None) - (old is not None)
        return Usage(max(0, stored.bytes + size), max(0, stored.keys + keys))

    def _space(self, limit: int | None) -> SpaceState:
        """What the planner is told of the namespace: the estimated usage (only when a quota applies)."""
        if limit is None:
            return SpaceState(floor=self._floor)
        usage = self.usage(self.namespace)
        return SpaceState(usage.bytes, usage.keys, self._floor)

    # -- writes (into the buffer) ------------------------------------------------

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        """Plan *writes* against the buffer and buffer the result.

        *limit* is checked against the estimated usage, so a write that
        would pass the quota on what the transaction sees fails at once (as
        outside a transaction); the commit checks it again, exactly.
        """
        self._check(namespace)
        if any(write.op_id is not None for write in writes):
            return self._increment_once(namespace, writes, limit)
        fresh = [write.key for write in writes if write.key not in self._view]
        if len(self._view) + len(fresh) > self.max_writes:
            raise TooManyKeys(
                f"the transaction would write {len(self._view) + len(fresh)} keys; its limit is "
                f"{self.max_writes} keys per transaction: write fewer keys per invocation (or raise the limit)"
            )
        old = [self._current(write.key) for write in writes]
        decided = plan(namespace, writes, old, self._space(limit), limit, self.clock())
        rows: dict[bytes, KeyState | None] = {write.key: row for write, row in zip(writes, old, strict=True)}
        after = dict(rows)
        for put in decided.puts:
            value = put.value
            if value is None:  # a TOUCH keeps the value
                previous = rows[put.key]
                value = b"" if previous is None or previous.value is None else previous.value
            after[put.key] = KeyState(len(value), put.version, put.expires_at, value)
        for key in decided.deletes:
            after[key] = None
        for write in writes:  # a check (planner.check) that changed nothing is a condition, not a write
            if write.kind is _SWEEP and write.if_version is not None and write.key not in self._view:
                if after[write.key] is rows[write.key]:
                    del after[write.key]
        grown = sum(_size(key, row) - _size(key, self._view.get(key)) for key, row in after.items())
        if self._bytes + grown > self.max_bytes:
            raise ValueTooLarge(
                f"the transaction would buffer {self._bytes + grown} bytes of keys and values; its limit is "
                f"{self.max_bytes} bytes per transaction: write less per invocation (or raise the limit)"
            )
        for write in writes:
            reads = write.kind is _INCREMENT or write.kind is _TOUCH or write.if_version is not None
            if reads and write.key not in self._view:
                self._conditioned.add(write.key)  # decided on the stored state: commit only if it still holds
        self._view.update(after)
        self._bytes += grown
        self._floor = max(self._floor, decided.space.floor)
        if self._op_keys:
            for key in [key for key in self._op_keys if key in after and after[key] is not rows[key]]:
                # changed after its op-id increment: the commit writes its final state and records apart
                op_id, _ = self._op_keys.pop(key)
                self._records[op_id] = (key, self._ops[op_id])
        return decided

    def _increment_once(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        """An increment with an op id (see "Operation ids" in the module docs): at most once, store included."""
        write = writes[0]
        key, op_id = write.key, write.op_id
        if len(writes) != 1 or write.kind is not _INCREMENT or op_id is None:
            raise InvalidArgument("inside a transaction only a single increment may carry an op id")
        known = self._ops.get(op_id)
        if known is None:
            stored = self._stored_row(key)  # read before the probe: a record made after it changes this row
            known = recorded_result(self.base, namespace, key, op_id)
            if known is None:
                return self._buffer_increment(namespace, write, op_id, stored, limit)
            self._ops[op_id] = known
        return Plan([], [], SpaceState(), False, [known], [self.get_entry(namespace, key) is not None], [], [])

    def _buffer_increment(
        self, namespace: str, write: Write, op_id: str, stored: KeyState | None, limit: int | None
    ) -> Plan:
        """Buffer an increment whose op id the store has not recorded (see "Operation ids" in the module docs)."""
        key = write.key
        only = key not in self._view  # the key's first change in the transaction (so far its only one)
        decided = self.apply(namespace, (write._replace(op_id=None),), limit)
        self._conditioned.add(key)  # committed only if the row read before the probe still holds
        result = decided.results[0]
        self._ops[op_id] = result
        if only:  # the commit write is this increment carrying the op id, unless the key changes again
            base = 0 if stored is None or stored.value is None else decode_counter(stored.value, key)
            self._op_keys[key] = (op_id, base)
        else:  # the commit writes the key's final state and records the op id apart
            self._records[op_id] = (key, result)
        return decided

    def delete_range(
        self, namespace: str, start: bytes, end: bytes | None, *, expired_only: bool = False, limit: int | None = None
    ) -> Plan:
        """Delete the keys the transaction sees in the range, key by key (a sweep runs on the store at once)."""
        self._check(namespace)
        if expired_only:
            return self.base.delete_range(namespace, start, end, expired_only=True, limit=limit)
        room = self.max_writes - len(self._view) + len(self._buffered_in(start, end))
        found = self.keys(namespace, start, end, room + 1)
        if len(found) > room:
            raise TooManyKeys(
                f"a range delete inside a transaction deletes key by key, and more than {room} keys match: "
                f"the transaction's limit is {self.max_writes} keys; delete narrower ranges, or outside a transaction"
            )
        writes = [Write(key, WriteKind.DELETE) for key in found]
        if not writes:
            return Plan([], [], SpaceState(), False, [], [], [], [])
        return self.apply(namespace, writes, None)

    def clear(self, namespace: str) -> None:
        self.delete_range(namespace, b"", None)

    def namespaces(self) -> list[str]:
        return self.base.namespaces()

    # -- commit ------------------------------------------------------------------

    def commit_writes(self) -> list[Write]:
        """The buffer as one write per key, with the conditions of the keys read before written.

        Then one :attr:`~airssys_storage.planner.WriteKind.RECORD` per op id
        recorded apart from its key's write (see "Operation ids").
        """
        writes = []
        for key, row in self._view.items():
            stored = self._stored.get(key)
            condition = (0 if stored is None else stored.version) if key in self._conditioned else None
            if key in self._op_keys:  # the stored counter plus what the transaction added, recording the op id
                op_id, base = self._op_keys[key]
                number = decode_counter(row.value or b"", key) if row is not None else base
                writes.append(Write(key, _INCREMENT, b"", None, condition, number - base, op_id))
            elif row is None:
                if stored is None and condition is None:
                    continue  # known absent, written and deleted again: nothing to do
                writes.append(Write(key, WriteKind.DELETE, if_version=condition))
            else:
                writes.append(Write(key, WriteKind.PUT, row.value or b"", row.expires_at, condition))
        for key in self._conditioned - self._view.keys():  # only checked (an atomic batch's check)
            stored = self._stored.get(key)
            writes.append(check(key, 0 if stored is None else stored.version))
        for op_id, (key, result) in self._records.items():
            writes.append(Write(key, _RECORD, b"", None, None, result, op_id))
        return writes


class Transaction(ComponentStorage):
    """A :class:`~airssys_storage.ComponentStorage` whose writes wait in a buffer for :meth:`commit`.

    Made by :meth:`ComponentStorage.transaction`; see the module docs for
    the semantics. Same methods, permissions, key and value limits as the
    storage it was made from. Use it as a context manager (commit on a clean
    exit, rollback on an exception), or call :meth:`commit` / :meth:`rollback`.
    Not thread-safe: one transaction belongs to one caller (a guest instance).
    """

    __slots__ = ("_overlay", "_parent")

    def __init__(
        self, storage: ComponentStorage, *, max_writes: int = DEFAULT_MAX_WRITES, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        for name, value in (("max_writes", max_writes), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name} must be a positive int, got {value!r}")
        super().__init__(storage._manager, storage._state)
        self._parent = storage
        self._overlay = _Overlay(storage._backend, storage._ns, max_writes, max_bytes)
        self._backend = self._overlay

    @property
    def pending_writes(self) -> int:
        """Keys the transaction has written so far (the writes its commit will make, at most)."""
        return self._overlay.pending_writes

    @property
    def pending_bytes(self) -> int:
        """Bytes of keys and values buffered so far."""
        return self._overlay.pending_bytes

    def commit(self) -> int:
        """Apply every buffered write in one atomic commit under the quota; returns the keys written.

        Raises :class:`~airssys_storage.QuotaExceeded` (the commit would pass
        the quota, after sweeping expired keys),
        :class:`~airssys_storage.PreconditionFailed` (another writer changed a
        key this transaction read for an atomic operation, or recorded an op
        id this transaction records: rerun it), or the
        backend's errors; then nothing was written. Either way the buffer is
        emptied.
        """
        try:
            writes = self._overlay.commit_writes()
            if writes:
                self._parent._commit(writes)
            return sum(write.kind is not _RECORD for write in writes)
        finally:
            self._overlay.reset()

    def rollback(self) -> None:
        """Discard every buffered write. Idempotent."""
        self._overlay.reset()

    def _bad_key(self, found: list[bytes]) -> StoreDamaged:
        return self._parent._bad_key(found)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def __repr__(self) -> str:
        return f"<Transaction of {self._ns!r}: {self.pending_writes} keys buffered>"
