"""Delivering a component's change feed to its ``on-changes`` export (world ``change-subscriber``).

A component subscribes in its manifest::

    [permissions.storage]
    access = "read-write"
    changes = true
    subscribe = ["orders/"]      # "" subscribes to every key

and exports ``airssys:wasm/change-handler@0.1.0#on-changes`` (or a bare
``on-changes`` of the same type). :meth:`Host.deliver_changes
<airssys_storage_wasmtime.Host.deliver_changes>` (one pass, e.g. after a
commit or from a loop driven by :meth:`ComponentStorage.watch
<airssys_storage.ComponentStorage.watch>`) hands each subscription's pending
events to the handler in batches.

Guarantees
    *At least once, in order*, per subscription: a subscription's cursor (the
    seq it has delivered up to) is stored in host metadata
    (:mod:`airssys_storage.hostmeta`, owner ``"wasmtime"``: in the same store
    as the data, outside the component's keys and quota) and moves only after
    the handler returned ok. A host that stops between the handler's return
    and the cursor's write delivers that batch again after its restart.
    Batch boundaries may differ on redelivery after a restart (a batch
    starts at the cursor and may hold more events).

Failures
    A handler that returns ``err`` or traps (or hits a sandbox limit) gets
    the same batch again at once — in a fresh instance after a trap — up to
    *max_attempts* attempts in all, counted across passes and host restarts
    (the count is stored with the cursor). After the last attempt the batch
    is *dead-lettered*: logged at ERROR on ``airssys_storage_wasmtime.subscriptions``,
    recorded in host metadata (:func:`dead_letters`), and skipped (the cursor
    moves past it). A subscription whose cursor fell behind the feed's
    retention (``gap``) records a dead letter for the lost seqs and goes on
    from the oldest retained event.

Errors raised to the caller (:class:`~airssys_storage.StorageError`):
``invalid-config`` when the component keeps no feed or its guest exports no
handler; ``permission-denied`` when it may not read; storage failures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airssys_storage import (
    ChangeGap,
    ConfigurationError,
    InternalError,
    InvalidArgument,
    PreconditionFailed,
    StorageError,
)

from ._calls import event_record, fit_events
from .errors import GuestError

if TYPE_CHECKING:
    from collections.abc import Callable

    from airssys_storage import ChangeEvent, ComponentStorage
    from airssys_storage.hostmeta import HostMetadata

    from .host import Guest, GuestInstance, Host
    from .limits import SandboxLimits

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_ATTEMPTS",
    "HANDLER_EXPORT",
    "METADATA_OWNER",
    "DeadLetter",
    "DeliveryReport",
    "dead_letters",
    "deliver_changes",
    "serve_changes",
    "subscription_state",
]

log = logging.getLogger(__name__)

#: The export the host delivers to (a bare ``on-changes`` export is accepted too).
HANDLER_EXPORT = "airssys:wasm/change-handler@0.1.0#on-changes"
#: The owner of the host metadata that holds cursors and dead letters.
METADATA_OWNER = "wasmtime"
#: Events per call of ``on-changes`` (at most; fewer when the feed has fewer pending).
DEFAULT_BATCH_SIZE = 100
#: Attempts per batch (the first delivery included) before it is dead-lettered.
DEFAULT_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class DeadLetter:
    """A batch the handler never accepted (or seqs lost to retention), recorded for operators."""

    component: str
    #: The subscription's prefix (``""``: every key).
    prefix: str
    first_seq: int
    last_seq: int
    #: Events in the batch (0 for a gap).
    events: int
    attempts: int
    #: The last failure: the handler's err string, the trap's message, or the gap.
    error: str
    #: When it was recorded, in milliseconds since the Unix epoch.
    at_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "prefix": self.prefix,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "events": self.events,
            "attempts": self.attempts,
            "error": self.error,
            "at_ms": self.at_ms,
        }


@dataclass
class DeliveryReport:
    """What one :func:`deliver_changes` pass did."""

    component: str
    #: Events the handler accepted.
    delivered: int = 0
    #: Calls of the handler that returned ok.
    batches: int = 0
    #: Calls that failed (err or trap) and were retried or dead-lettered.
    failures: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: Each subscription's cursor after the pass (prefix -> seq).
    cursors: dict[str, int] = field(default_factory=dict)


def _subscription_key(component: str, prefix: str) -> str:
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:32]
    return f"changes/{component}/cursor/{digest}"


def _dead_letter_key(component: str, prefix: str, first_seq: int) -> str:
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:16]
    return f"changes/{component}/dead/{first_seq:020d}-{digest}"


def subscription_state(metadata: HostMetadata, component: str, prefix: str) -> dict[str, Any]:
    """The stored state of one subscription: ``cursor`` (seq delivered up to), ``attempts`` of the pending batch."""
    return _read_state(metadata, _subscription_key(component, prefix), prefix)[0]


def _read_state(metadata: HostMetadata, key: str, prefix: str) -> tuple[dict[str, Any], int]:
    """The subscription's state and its record's version (0: none stored yet)."""
    stored = metadata.get_versioned(key)
    if stored is None:
        return {"prefix": prefix, "cursor": 0, "attempts": 0}, 0
    try:
        state = json.loads(stored[0])
    except ValueError:
        state = None
    if not isinstance(state, dict):
        raise InternalError(f"host metadata {metadata.owner}/{key} is no subscription state: {stored[0]!r}")
    return state, stored[1]


def dead_letters(metadata: HostMetadata, component: str, limit: int = 1000) -> list[DeadLetter]:
    """The dead letters recorded for *component*, oldest seq first (at most *limit*)."""
    found = []
    for _key, raw in metadata.items(f"changes/{component}/dead/", limit):
        data = json.loads(raw)
        found.append(DeadLetter(**data))
    return found


def _handler_export(guest: Guest) -> str:
    for name in (HANDLER_EXPORT, "on-changes"):
        if name in guest.exports:
            return name
    raise ConfigurationError(
        f"guest {guest.name!r} subscribes to changes but exports no {HANDLER_EXPORT} (nor on-changes): build it "
        "against the world change-subscriber of the shipped WIT"
    )


class _Deliverer:
    def __init__(
        self,
        host: Host,
        guest: Guest,
        storage: ComponentStorage,
        metadata: HostMetadata,
        limits: SandboxLimits | None,
        max_attempts: int,
        instance: Callable[[], GuestInstance] | None,
    ) -> None:
        self.host, self.guest, self.storage, self.metadata = host, guest, storage, metadata
        self.limits = limits
        self.max_attempts = max_attempts
        self.export = _handler_export(guest)
        self.instance: GuestInstance | None = None
        self.component = storage.component_id
        self.provided = instance

    def close(self) -> None:
        if self.instance is not None and self.provided is None:
            self.instance.close()

    def call(self, events: list[ChangeEvent]) -> str | None:
        """Deliver *events* once: ``None`` if the handler returned ok, else why not."""
        from wasmtime.component import Record

        from ._codec import split_result

        if self.instance is None or self.instance.discarded:
            try:
                if self.provided is not None:
                    self.instance = self.provided()
                else:
                    self.instance = self.host.instantiate(self.guest, self.storage, limits=self.limits)
            except GuestError as exc:
                return f"instantiation failed: {exc}"
        records = []
        for event in events:
            record = Record()
            for name, value in event_record(event).items():
                setattr(record, name, value)
            records.append(record)
        try:
            result = self.instance.call(self.export, records)
        except GuestError as exc:  # trap, time or memory limit: the instance is discarded
            return f"trapped: {exc}"
        except StorageError as exc:  # a transactional component's commit was refused
            return f"{exc.code}: {exc}"
        is_ok, payload = split_result(self.guest.export_types[self.export].result, result)
        return None if is_ok else f"err: {payload}"

    def dead_letter(self, prefix: str, first: int, last: int, events: int, attempts: int, error: str) -> DeadLetter:
        letter = DeadLetter(self.component, prefix, first, last, events, attempts, error, int(time.time() * 1000))
        self.metadata.set_json(_dead_letter_key(self.component, prefix, first), letter.as_dict())
        log.error(
            "change delivery to component %r (subscription %r) gave up on seqs %d..%d after %d attempt(s): %s",
            self.component,
            prefix,
            first,
            last,
            attempts,
            error,
        )
        return letter


def deliver_changes(
    host: Host,
    guest: Guest,
    storage: ComponentStorage,
    metadata: HostMetadata,
    *,
    limits: SandboxLimits | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    max_batches: int | None = None,
    instance: Callable[[], GuestInstance] | None = None,
) -> DeliveryReport:
    """Deliver every pending change of each subscription of *storage*'s manifest to *guest*'s handler.

    One pass: returns when every subscription is caught up (or after
    *max_batches* handler calls per subscription). See the module docs for
    the guarantees. *batch_size* is the most events per call (lowered to
    the storage's ``max_keys_per_query``); it and *max_attempts* must be
    >= 1 (else ``invalid-argument``). *instance* returns the live instance
    to call (a runtime's one instance of the component; called again after
    a trap discarded it); by default the pass instantiates its own.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise InvalidArgument(f"max_attempts must be an int >= 1, got {max_attempts!r}")
    batch_size = min(batch_size, storage.settings.max_keys_per_query)
    report = DeliveryReport(storage.component_id)
    prefixes = storage.manifest.subscribe
    if not prefixes:
        return report
    deliverer = _Deliverer(host, guest, storage, metadata, limits, max_attempts, instance)
    try:
        for prefix in prefixes:
            _deliver_one(deliverer, prefix, batch_size, max_batches, report)
    finally:
        deliverer.close()
    return report


class _Superseded(Exception):
    """Another deliverer wrote the subscription's state since this one read it."""


def _deliver_one(
    deliverer: _Deliverer, prefix: str, batch_size: int, max_batches: int | None, report: DeliveryReport
) -> None:
    storage, metadata, component = deliverer.storage, deliverer.metadata, deliverer.component
    key = _subscription_key(component, prefix)
    state, version = _read_state(metadata, key, prefix)
    cursor, attempts = int(state.get("cursor", 0)), int(state.get("attempts", 0))

    def save() -> None:
        # Compare-and-swap on the record's version: a second deliverer of the same subscription (another
        # process) stops this one instead of moving the cursor back.
        nonlocal version
        value = json.dumps({"prefix": prefix, "cursor": cursor, "attempts": attempts}, sort_keys=True)
        try:
            version = metadata.set_if(key, value.encode(), version)
        except PreconditionFailed:
            raise _Superseded from None

    calls = 0
    max_bytes = (deliverer.limits or deliverer.host.limits).max_call_bytes
    try:
        # One pass delivers what was committed when it started (*end*): a handler whose own writes match its
        # subscription would otherwise keep the pass (and the component's lock) forever.
        oldest, end = storage.change_bounds()
        if cursor == 0:
            # A new subscription starts at the component's first change; ``changes(0)`` would start at the oldest
            # one retained and skip a trimmed start silently, so a trimmed start is a gap like any other.
            if oldest > 1:
                letter = deliverer.dead_letter(prefix, 1, oldest - 1, 0, 0, "gap: the feed no longer retains them")
                report.dead_letters.append(letter)
                cursor, attempts = oldest - 1, 0
                save()
        while (max_batches is None or calls < max_batches) and cursor < end:
            try:
                events, after = storage.changes(cursor, prefix or None, batch_size)
                events, after = fit_events(events, after, max_bytes)
            except ChangeGap as gap:
                lost = gap.oldest - 1
                report.dead_letters.append(deliverer.dead_letter(prefix, cursor + 1, lost, 0, 0, f"gap: {gap.message}"))
                cursor, attempts = lost, 0
                save()
                continue
            if not events:
                if after != cursor:  # the prefix filter skipped events: move on without a call
                    cursor = after
                    save()
                break
            while True:
                calls += 1
                error = deliverer.call(events)
                if error is None:
                    cursor, attempts = after, 0
                    save()
                    report.delivered += len(events)
                    report.batches += 1
                    break
                attempts += 1
                report.failures += 1
                log.warning(
                    "change delivery to component %r (subscription %r, seqs %d..%d) failed (attempt %d of %d): %s",
                    component,
                    prefix,
                    events[0].seq,
                    events[-1].seq,
                    attempts,
                    deliverer.max_attempts,
                    error,
                )
                if attempts >= deliverer.max_attempts:
                    report.dead_letters.append(
                        deliverer.dead_letter(prefix, events[0].seq, events[-1].seq, len(events), attempts, error)
                    )
                    cursor, attempts = after, 0
                    save()
                    break
                save()  # the attempt count survives a restart
                if max_batches is not None and calls >= max_batches:
                    break
    except _Superseded:
        log.warning(
            "change delivery to component %r (subscription %r) stopped: another deliverer moved its cursor "
            "(run the deliveries of a component in one host process)",
            component,
            prefix,
        )
        cursor = int(_read_state(metadata, key, prefix)[0].get("cursor", cursor))
    report.cursors[prefix] = cursor


def serve_changes(
    host: Host,
    guest: Guest,
    storage: ComponentStorage,
    metadata: HostMetadata,
    *,
    stop: threading.Event | None = None,
    idle_timeout: float | None = None,
    **options: Any,
) -> DeliveryReport:
    """Deliver changes as they are committed: :func:`deliver_changes` passes, woken by :meth:`ComponentStorage.watch`.

    Runs until *stop* is set (checked at least once a second) or no change
    came for *idle_timeout* seconds (``None``: never), and returns the
    passes' reports summed. *options* are :func:`deliver_changes`'s.
    Commits of this process wake it at once; other processes' as
    :meth:`~airssys_storage.ComponentStorage.watch` says (polling on
    SQLite and MariaDB, NOTIFY on PostgreSQL).
    """
    total = DeliveryReport(storage.component_id)
    idle_since = time.monotonic()
    while stop is None or not stop.is_set():
        report = deliver_changes(host, guest, storage, metadata, **options)
        total.delivered += report.delivered
        total.batches += report.batches
        total.failures += report.failures
        total.dead_letters.extend(report.dead_letters)
        total.cursors.update(report.cursors)
        if report.batches or report.failures:
            idle_since = time.monotonic()
        wait = 1.0
        if idle_timeout is not None:
            wait = min(wait, idle_timeout - (time.monotonic() - idle_since))
            if wait <= 0:
                break
        seen = storage.snapshot_seq()
        for _event in storage.watch(seen, timeout=wait):
            break  # something was committed: deliver it
    return total
