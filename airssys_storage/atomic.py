"""Atomic write batches with checks: several keys changed in one commit, only if every check holds.

::

    entry = storage.get_entry("users/7")
    versions = (
        storage.atomic()
        .check("users/7", entry.version)           # still the version read (0: must be absent)
        .set("users/7", b'{"name": "Ada"}')
        .increment("users!count", 1)
        .delete("users/7/draft")
        .commit()                                   # {"users/7": 12, "users!count": 40, "users/7/draft": 0}
    )

The shape is Deno KV's ``atomic()`` (``check`` / ``set`` / ``delete`` /
``sum``, then ``commit``), with this package's versions in place of
versionstamps and a raised :class:`~airssys_storage.PreconditionFailed` in
place of ``{ok: false}``. :meth:`AtomicBatch.commit` is one call of the
backend's ``apply``: every check and change is decided by
:func:`airssys_storage.planner.plan` in one atomic section, so either all of
it happens or none of it does, no reader ever sees part of it, and a process
killed at any point leaves the keys all before or all after the batch.

Rules
-----
Checks
    ``check(key, version)``: ``version`` 0 means the key must be absent (or
    expired), ``n`` that it must be live at version ``n``, ``None`` adds no
    check (so a caller can pass an optional version through). A check on a
    key the batch also changes becomes that change's condition; a check on
    any other key changes nothing (:func:`airssys_storage.planner.check`).
    Two checks of one key must agree.
Changes
    ``set`` (with an optional ``ttl`` in seconds, counted from the commit;
    without one an old expiry is removed), ``delete`` (a missing key is no
    error) and ``increment`` (the counter rule of
    :meth:`~airssys_storage.ComponentStorage.increment`, without op ids).
    Each key is changed at most once per batch.
Limits
    At most ``max_batch_ops`` distinct keys (checked and changed) per batch,
    keys and values within ``max_key_bytes`` / ``max_value_bytes``; the quota
    is checked once for the whole batch against its net change in bytes,
    after sweeping expired keys if refused (as for every write).
Permission
    Operation ``commit`` (``storage-commit`` in the WIT): read-write access.
    A per-key permission policy is asked about every key of the batch.
"""

from __future__ import annotations

from .errors import InvalidArgument
from .operations import Operation
from .planner import MAX_VERSION, Write, WriteKind, check
from .storage import ComponentStorage, _as_bytes, _too_large, encode_key

__all__ = ["AtomicBatch"]

_PUT, _DELETE, _INCREMENT = WriteKind.PUT, WriteKind.DELETE, WriteKind.INCREMENT
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_new = tuple.__new__  # Write in field order (key, kind, value, expires_at, if_version, delta, op_id), as storage.py


class AtomicBatch:
    """A multi-key write batch with checks, committed in one atomic step (:meth:`ComponentStorage.atomic`).

    Every method but :meth:`commit` returns the batch, so calls chain. Keys
    and values are validated as each call is made (``invalid-key``,
    ``value-too-large``, ``invalid-argument``); permission, the batch size,
    the checks and the quota when it commits. A batch commits once; build a
    new one (``storage.atomic()``) to retry. Not thread-safe.
    """

    __slots__ = ("_changes", "_checks", "_committed", "_max_key", "_max_value", "_puts_only", "_storage")

    def __init__(self, storage: ComponentStorage) -> None:
        self._storage = storage
        self._max_key = storage._max_key
        self._max_value = storage._max_value
        # key -> (its UTF-8 bytes, kind, value, ttl in seconds or None, delta), in call order
        self._changes: dict[str, tuple[bytes, WriteKind, bytes, float | None, int]] = {}
        # key -> (its UTF-8 bytes, the version it must be at: 0 absent)
        self._checks: dict[str, tuple[bytes, int]] = {}
        self._committed = False
        self._puts_only = True  # no delete or increment so far

    def __len__(self) -> int:
        """The distinct keys the batch checks or changes (what counts against ``max_batch_ops``)."""
        return len(self._changes.keys() | self._checks.keys())

    def check(self, key: str, version: int | None) -> AtomicBatch:
        """Commit only if *key* is at *version*: ``0`` absent (or expired), ``n`` live at ``n``; ``None``: no check.

        ``invalid-argument`` for a version that is not an int from 0 to
        2**64 - 1, or that differs from an earlier check of the same key;
        ``invalid-key``.
        """
        if self._committed:
            raise _committed()
        if version is None:
            return self
        if type(version) is not int or not 0 <= version <= MAX_VERSION:
            raise InvalidArgument(
                f"a check's version is an int from 0 (the key must be absent) to 2**64 - 1, or None (no check), "
                f"got {version!r}"
            )
        earlier = self._checks.get(key)
        if earlier is None:
            # encode_key's fast path inlined here and in set() (a collection's change makes 2-4 of these calls)
            if not (type(key) is str and key.isprintable() and 0 < len(raw := key.encode()) <= self._max_key):
                raw = encode_key(key, self._max_key)
            self._checks[key] = (raw, version)
        elif earlier[1] != version:
            raise InvalidArgument(
                f"key {key!r} is checked twice in one atomic batch, at version {earlier[1]} and at {version}: "
                "the batch could never commit; check each key once"
            )
        return self

    def set(self, key: str, value: bytes | bytearray | memoryview, *, ttl: float | None = None) -> AtomicBatch:
        """Store *value* under *key* when the batch commits.

        *ttl*: seconds until the key expires, counted from the commit
        (``None``: never; without it an old expiry is removed). Errors:
        ``invalid-key``, ``value-too-large``, ``invalid-argument`` (ttl, or
        the key already changed in this batch).
        """
        if self._committed:
            raise _committed()
        if not (type(key) is str and key.isprintable() and 0 < len(raw := key.encode()) <= self._max_key):
            raw = encode_key(key, self._max_key)
        if type(value) is not bytes:
            value = _as_bytes(value)
        if len(value) > self._max_value:
            raise _too_large(value, self._max_value)
        if ttl is not None:
            self._storage._expires_at(ttl)  # validated now, computed at the commit
        changes = self._changes
        if key in changes:
            raise _changed_twice(key)
        changes[key] = (raw, _PUT, value, ttl, 0)
        return self

    def delete(self, key: str) -> AtomicBatch:
        """Delete *key* when the batch commits (a missing key is no error).

        ``invalid-key``; ``invalid-argument`` as :meth:`set`.
        """
        if self._committed:
            raise _committed()
        raw = encode_key(key, self._max_key)
        if key in self._changes:
            raise _changed_twice(key)
        self._changes[key] = (raw, _DELETE, b"", None, 0)
        self._puts_only = False
        return self

    def increment(self, key: str, delta: int = 1) -> AtomicBatch:
        """Add *delta* (a signed 64-bit int) to the counter under *key* when the batch commits.

        The counter rule of :meth:`ComponentStorage.increment` (decimal ASCII of
        a signed 64-bit integer, a missing key counts as 0, a live key keeps
        its expiry); a key holding something else, or a result outside the
        signed 64-bit range, makes the commit fail with ``invalid-argument``
        and write nothing. Deno KV calls this ``sum``.
        """
        if self._committed:
            raise _committed()
        if type(delta) is not int or not _INT64_MIN <= delta <= _INT64_MAX:
            raise InvalidArgument(f"delta must be an int in the signed 64-bit range, got {delta!r}")
        raw = encode_key(key, self._max_key)
        if key in self._changes:
            raise _changed_twice(key)
        self._changes[key] = (raw, _INCREMENT, b"", None, delta)
        self._puts_only = False
        return self

    def commit(self) -> dict[str, int]:
        """Apply every change if every check holds, all in one atomic step; returns each changed key's version.

        The result maps every key given to :meth:`set`, :meth:`delete` or
        :meth:`increment`, in call order, to its version after the commit (0
        for a deleted key). Errors, after which nothing was written:
        ``precondition-failed`` (:class:`~airssys_storage.PreconditionFailed`,
        its message naming the key whose check failed and its state),
        ``permission-denied`` (operation ``commit``), ``too-many-keys`` (more
        than ``max_batch_ops`` keys), ``quota-exceeded``, ``invalid-argument``
        (an increment of a non-counter, or an overflow). A committed batch
        cannot be committed again (``invalid-argument``).
        """
        if self._committed:
            raise _committed()
        self._committed = True
        storage, changes, checks = self._storage, self._changes, self._checks
        writes: list[Write] = []
        get_check = checks.get
        guarded = 0  # checks of changed keys (they become the changes' conditions)
        for key, (raw, kind, value, ttl, delta) in changes.items():
            checked = get_check(key)
            if checked is not None:
                guarded += 1
            expires_at = None if ttl is None else storage._expires_at(ttl)
            writes.append(
                _new(Write, (raw, kind, value, expires_at, None if checked is None else checked[1], delta, None))
            )
        if guarded < len(checks):
            for key, (raw, version) in checks.items():
                if key not in changes:
                    writes.append(check(raw, version))
        state = storage._state
        if "commit" in state.key_policies or "commit" not in state.fast_allowed or len(writes) > storage._max_batch:
            storage._check_batch(Operation.COMMIT, [*changes, *(key for key in checks if key not in changes)])
        if not writes:
            return {}
        plan = storage._apply(writes)
        if self._puts_only:  # results[i] answers writes[i], a PUT with its new version (the checks follow)
            return dict(zip(changes, plan.results))  # noqa: B905
        versions = {put[0]: put[2] for put in plan.puts}  # Put: key, value, version, expires_at
        return {key: versions.get(change[0], 0) for key, change in changes.items()}

    def __repr__(self) -> str:
        state = "committed" if self._committed else f"{len(self._changes)} changes, {len(self._checks)} checks"
        return f"<AtomicBatch of {self._storage.component_id!r}: {state}>"


def _committed() -> InvalidArgument:
    return InvalidArgument("this atomic batch was committed already: start a new one with storage.atomic()")


def _changed_twice(key: str) -> InvalidArgument:
    return InvalidArgument(f"key {key!r} is changed twice in one atomic batch: change each key at most once per batch")
