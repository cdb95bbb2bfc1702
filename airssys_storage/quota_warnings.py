"""Soft quotas: a warning when a component's usage crosses a threshold, once per crossing; nothing evicted.

Thresholds are percentages of the component's quota: the setting
``quota_warnings`` (default ``[80, 95]``), replaced for one component by its
manifest's ``permissions.storage.quota-warnings``. Threshold *p* of a quota of
*q* bytes lies at ``floor(q * p / 100)`` bytes; usage *crosses* it when a
write takes usage above it. Each crossing, once, after the write committed:

* one log record, WARNING, on the logger ``airssys_storage.quota`` (its
  ``quota_warning`` attribute holds the :class:`QuotaWarning` as a dict);
* one increment of the component's crossing counter for that threshold
  (``quota_warnings`` in :meth:`StorageManager.metrics`,
  ``airssys_storage_quota_warnings_total`` in Prometheus);
* a call of the host's :attr:`StorageManager.on_quota_warning`, if set.

A threshold is re-armed when usage falls back to or below it, and the next
upward crossing warns again. Re-arming is exact after every operation that
can lower usage: ``delete``, ``delete_many``, ``delete_if``,
``delete_prefix``, ``delete_range``, ``clear``, ``purge_expired`` and the
sweeps, and every batch (``set_many``, a transaction's commit, writes with a
TTL) — each reads the usage counter once (O(1)) *only while* some threshold
is passed (``ComponentStorage._rearm``). The one path that is not exact is
an overwrite to a smaller value through the single-key fast path (``set`` or
``compare_and_swap`` without a TTL, the backend's ``put_one``, which returns
no usage): that drop is seen within :data:`RECHECK_WRITES` writes. The hard quota is untouched: a write past it
still fails with ``quota-exceeded``, and nothing is ever evicted.

How it costs nothing per write: the backends are given the next armed
threshold as the commit's byte limit (``_ComponentState.limit``), so the one
commit planner (:func:`airssys_storage.planner.plan`, its guard rule) notices
the crossing inside the commit it already makes. The write it refuses is
retried at once under the real quota, and its crossing noted. While some
threshold is passed, the component's state turns into :class:`_WatchedState`,
whose ``limit`` reads the usage counter (O(1)) before every
:data:`RECHECK_WRITES`-th write to catch the smaller overwrites above
(reading it before each write cost more than the write on memory://);
a component below every threshold pays nothing. Writes buffered in a
transaction are checked when it commits.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import QuotaExceeded
from .storage import ComponentStorage, _ComponentState, _wrapped

if TYPE_CHECKING:
    from .manifest import Manifest
    from .storage import StorageManager

__all__ = ["RECHECK_WRITES", "QuotaWarning", "SoftQuota"]

#: While usage is above a threshold, the usage counter is read before every this many writes, to re-arm
#: the thresholds that a smaller overwrite by ``set`` (put_one) took usage back below; deletes, batches and
#: sweeps re-arm at once.
RECHECK_WRITES = 32

log = logging.getLogger("airssys_storage.quota")
_T = TypeVar("_T")
# The base class's slot for `limit`, which _WatchedState's property shadows.
_LIMIT_SLOT: Any = _ComponentState.__dict__["limit"]


@dataclass(frozen=True)
class QuotaWarning:
    """One upward crossing of a soft quota threshold (what :attr:`StorageManager.on_quota_warning` receives)."""

    component: str
    #: The threshold, in percent of the quota.
    threshold_percent: float
    #: The threshold in bytes: ``floor(quota_bytes * threshold_percent / 100)``.
    threshold_bytes: int
    #: Bytes used after the write that crossed it.
    used_bytes: int
    quota_bytes: int


class SoftQuota:
    """The thresholds of one component and which of them usage has passed (``level``: how many)."""

    __slots__ = (
        "component",
        "countdown",
        "crossings",
        "guard",
        "level",
        "lock",
        "manager",
        "marks",
        "percents",
        "quota",
    )

    def __init__(self, manager: StorageManager, component: str, quota: int, percents: tuple[float, ...]) -> None:
        self.manager = manager
        self.component = component
        self.quota = quota
        self.percents = percents
        #: Thresholds in bytes, ascending (as the percentages are).
        self.marks = tuple(math.floor(quota * percent / 100) for percent in percents)
        #: Upward crossings seen per threshold, since the manifest set them.
        self.crossings = [0] * len(percents)
        #: How many thresholds usage is above (they are disarmed until it falls back below).
        self.level = 0
        self.lock = threading.Lock()
        #: Writes until the next re-arming check (while some threshold is passed).
        self.countdown = RECHECK_WRITES
        #: The limit to give the backend: the next armed threshold, or the quota when all are passed.
        self.guard = self._guard()

    def _guard(self) -> int:
        """The limit to give the backend: the next armed threshold, or the quota when all are passed."""
        return self.marks[self.level] if self.level < len(self.marks) else self.quota

    def observe(self, state: _ComponentState) -> None:
        """Read the usage counter; warn for thresholds it crossed upward, re-arm those it fell back below."""
        used = _wrapped(self.manager.backend.usage, self.component).bytes
        with self.lock:
            if state.soft is not self:
                return  # the manifest was reloaded meanwhile
            level = bisect.bisect_left(self.marks, used)  # how many marks lie below `used`
            crossed = range(self.level, level)
            for index in crossed:
                self.crossings[index] += 1
            self.level = level
            self.countdown = RECHECK_WRITES
            self.guard = self._guard()
            _LIMIT_SLOT.__set__(state, self.guard)
            state.__class__ = _WatchedState if level else _ComponentState
        for index in crossed:
            self._warn(index, used)

    def _warn(self, index: int, used: int) -> None:
        warning = QuotaWarning(self.component, self.percents[index], self.marks[index], used, self.quota)
        log.warning(
            "component %r crossed %s%% of its quota: %d of %d bytes used (threshold %d bytes); "
            "delete data or raise its quota before writes fail with quota-exceeded",
            self.component,
            f"{warning.threshold_percent:g}",
            used,
            self.quota,
            warning.threshold_bytes,
            extra={"quota_warning": asdict(warning)},
        )
        callback = self.manager.on_quota_warning
        if callback is not None:
            try:
                callback(warning)
            except Exception:  # the write is committed: a failing callback must not turn it into an error
                log.exception("on_quota_warning callback failed for component %r", self.component)


class _WatchedState(_ComponentState):
    """A component's state while usage is above some threshold: ``limit`` re-arms before each write."""

    __slots__ = ()

    @property  # type: ignore[override]
    def limit(self) -> int | None:
        soft: SoftQuota = self.soft  # type: ignore[assignment]  # never None in this class (see arm())
        soft.countdown -= 1  # unlocked: a lost decrement only delays the check by a write
        if soft.countdown <= 0:
            soft.observe(self)  # may turn this back into a plain _ComponentState
        return soft.guard

    @limit.setter
    def limit(self, value: int | None) -> None:
        _LIMIT_SLOT.__set__(self, value)


def arm(manager: StorageManager, state: _ComponentState, manifest: Manifest, quota: int | None) -> None:
    """Set *state*'s quota, thresholds and limit for *manifest* (thresholds passed before stay passed)."""
    percents = manifest.quota_warnings
    if percents is None:
        percents = tuple(manager.settings.quota_warnings)
    old = state.soft
    soft = None
    if quota and percents:
        soft = SoftQuota(manager, manifest.id, quota, tuple(percents))
        if old is not None and old.marks == soft.marks:
            soft.crossings, soft.level = old.crossings, old.level
            soft.guard = soft._guard()
    state.__class__ = _ComponentState  # first: a _WatchedState must never see soft = None
    state.quota = quota
    state.soft = soft
    state.limit = quota if soft is None else soft.guard
    if soft is not None and soft.level:
        state.__class__ = _WatchedState


def cross(storage: ComponentStorage, method: Callable[..., _T], args: tuple[Any, ...]) -> _T:
    """A write the guard of a threshold refused: apply it under the quota, then note what it crossed.

    *args* are the backend call's arguments after the namespace, the limit last.
    """
    state = storage._state
    args = (*args[:-1], state.quota)
    soft = state.soft
    if soft is None or storage._backend is not storage._manager.backend:
        # A stale guard after a reload, or a transaction's buffer (its commit crosses, or not).
        return _write(storage, method, args)
    try:
        result = _write(storage, method, args)
    except QuotaExceeded:
        soft.observe(state)  # usage may already be above thresholds it never saw crossed (e.g. at start)
        raise
    soft.observe(state)
    return result


def _write(storage: ComponentStorage, method: Callable[..., _T], args: tuple[Any, ...]) -> _T:
    try:
        return storage._call(method, *args)
    except QuotaExceeded as exc:
        return storage._retry_after_sweep(exc, method, *args)
