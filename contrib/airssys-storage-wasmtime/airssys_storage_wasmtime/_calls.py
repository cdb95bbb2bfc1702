"""The state interfaces (atomics, expiry, range delete, limits) on a component's storage.

The WIT speaks milliseconds and records; :class:`~airssys_storage.ComponentStorage`
speaks seconds and Python objects. :class:`StateCalls` converts between the
two and nothing else: permissions, validation and every error are the
storage's (a :class:`~airssys_storage.StorageError` reaches the guest as a
``state-error`` value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airssys_storage import ChangeEvent

__all__ = ["Case", "ChangeCalls", "StateCalls", "event_record", "ms_from_seconds", "seconds_from_ms"]


@dataclass(frozen=True, slots=True)
class Case:
    """A WIT variant value (``_codec.VariantOf``): the case's name and its payload (``None`` for a case without one)."""

    name: str
    payload: Any = None


def seconds_from_ms(ms: int) -> float:
    """A WIT ``ttl-ms`` as the storage's ttl in seconds, such that the storage's ``ceil(ttl * 1000)`` is *ms*.

    ``ms / 1000`` is sometimes the float just above the exact quotient (2007 ms
    would live 2008 ms); the float below it then rounds back to *ms*. 0 stays
    0 (the storage refuses it as invalid-argument).
    """
    seconds = ms / 1000
    if math.ceil(seconds * 1000) > ms:
        seconds = math.nextafter(seconds, 0.0)
    return seconds


def ms_from_seconds(seconds: float) -> int:
    """Seconds (a ttl left, or a moment since the epoch) as whole milliseconds.

    The storage keeps expiry in whole milliseconds, so rounding recovers them exactly.
    """
    return max(0, round(seconds * 1000))


class StateCalls:
    """The functions of storage-atomics, storage-expiry, storage-range-delete and storage-limits.

    *storage* is a :class:`~airssys_storage.ComponentStorage` (or any object
    with its methods). Each method takes the lifted WIT arguments and returns
    the value to lower.
    """

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    # -- storage-atomics ----------------------------------------------------------

    def get_entry(self, key: str) -> dict[str, Any] | None:
        """``entry`` record (expiry in ms since the epoch), or ``None`` when missing or expired."""
        entry = self.storage.get_entry(key)
        if entry is None:
            return None
        expires = None if entry.expires_at is None else ms_from_seconds(entry.expires_at)
        return {"value": entry.value, "version": entry.version, "expires-at-ms": expires}

    def compare_and_swap(self, key: str, value: bytes, version: int | None) -> int:
        return int(self.storage.compare_and_swap(key, value, version=version))

    def set_if_absent(self, key: str, value: bytes) -> bool:
        return bool(self.storage.set_if_absent(key, value))

    def delete_if(self, key: str, version: int) -> bool:
        return bool(self.storage.delete_if(key, version=version))

    def increment(self, key: str, delta: int, op_id: str | None) -> int:
        return int(self.storage.increment(key, delta, op_id=op_id))

    def commit(self, checks: list[tuple[str, int]], mutations: list[Case]) -> list[int]:
        """``storage-commit``: one :meth:`ComponentStorage.atomic` batch; the versions in mutation order."""
        batch = self.storage.atomic()
        for key, version in checks:
            batch.check(key, version)
        for mutation in mutations:
            payload = mutation.payload
            if mutation.name == "set":
                key, value, ttl_ms = payload
                batch.set(key, value, ttl=None if ttl_ms is None else seconds_from_ms(ttl_ms))
            elif mutation.name == "delete":
                batch.delete(payload)
            else:
                batch.increment(*payload)
        return [int(version) for version in batch.commit().values()]

    # -- storage-expiry -------------------------------------------------------------

    def set_with_ttl(self, key: str, value: bytes, ttl_ms: int) -> int:
        return int(self.storage.set(key, value, ttl=seconds_from_ms(ttl_ms)))

    def get_ttl(self, key: str) -> int | None:
        """Milliseconds left (``None``: no expiry); a missing key is the storage's key-not-found."""
        left = self.storage.ttl(key)
        return None if left is None else ms_from_seconds(left)

    def expire(self, key: str, ttl_ms: int) -> bool:
        return bool(self.storage.expire(key, seconds_from_ms(ttl_ms)))

    def persist(self, key: str) -> bool:
        return bool(self.storage.persist(key))

    # -- storage-range-delete -----------------------------------------------------------

    def delete_prefix(self, prefix: str) -> int:
        return int(self.storage.delete_prefix(prefix))

    def delete_range(self, start: str, end: str) -> int:
        return int(self.storage.delete_range(start, end))

    # -- storage-limits -----------------------------------------------------------------

    def limits(self) -> dict[str, Any]:
        """The ``limits`` record of the WIT from the storage's :class:`~airssys_storage.Limits`."""
        limits = self.storage.limits()
        return {
            "max-key-bytes": limits.max_key_bytes,
            "max-value-bytes": limits.max_value_bytes,
            "max-keys-per-query": limits.max_keys_per_query,
            "max-batch-ops": limits.max_batch_ops,
            "quota-bytes": limits.quota,
            "used-bytes": limits.bytes_used,
            "keys": limits.keys,
            "persistent": limits.persistent,
            "multi-process": limits.multi_process,
        }


def event_record(event: ChangeEvent) -> dict[str, Any]:
    """A :class:`~airssys_storage.ChangeEvent` as the WIT ``change-event`` record."""
    record: dict[str, Any] = event._asdict()
    del record["at"]  # the WIT record has no commit time
    return record


def _event_bytes(event: ChangeEvent) -> int:
    return len(event.key) + len(event.end or "") + len(event.value or b"") + 32


def fit_events(events: list[ChangeEvent], after: int, max_bytes: int) -> tuple[list[ChangeEvent], int]:
    """The first of *events* whose keys and values fit in *max_bytes* (at least one), and the cursor after them.

    How one call, pulled (``changes``) or pushed (``on-changes``), stays
    within the sandbox's ``max_call_bytes``: the rest comes with the next call.
    """
    total = 0
    for count, event in enumerate(events):
        total += _event_bytes(event)
        if total > max_bytes and count:
            return events[:count], events[count - 1].seq
    return events, after


class ChangeCalls:
    """The functions of storage-changes on a component's storage (the committed feed, never a transaction).

    *max_bytes* (the sandbox's ``max_call_bytes``) bounds the keys and values
    of one ``changes`` result: the host returns fewer events (at least one)
    and a cursor after the last one returned, so the guest pages on. A
    *limit* above the storage's ``max_keys_per_query`` is lowered to it.
    """

    def __init__(self, storage: Any, max_bytes: int) -> None:
        self.storage = storage
        self.max_bytes = max_bytes

    def changes(self, since: int, prefix: str | None, limit: int) -> tuple[list[dict[str, Any]], int]:
        settings = getattr(self.storage, "settings", None)
        most = getattr(settings, "max_keys_per_query", None)
        if isinstance(most, int) and limit > most:
            limit = most
        events, after = self.storage.changes(since, prefix, limit)
        events, after = fit_events(events, after, self.max_bytes)
        return [event_record(event) for event in events], after

    def snapshot_seq(self) -> int:
        return int(self.storage.snapshot_seq())
