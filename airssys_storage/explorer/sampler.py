"""Metrics over time: a ring buffer of :meth:`StorageManager.metrics` snapshots, sampled in the server.

The core's snapshot (``StorageManager.metrics()``, when the installed version
has it) holds cumulative counters per component and operation::

    {"enabled": bool, "taken_at": float,  # seconds since the epoch
     "components": {id: {"operations": {name: {"count": int, "errors": {code: int},
                                               "bytes_read": int, "bytes_written": int,
                                               "latency_seconds": {...}}}}}}

:class:`MetricsSampler` keeps the last *capacity* snapshots' totals and turns
them into per-interval deltas for the charts (operations, bytes read and
written, errors). Without ``metrics()`` (or with metrics off) it reports
``available: False`` and the pages say "metrics are off".
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["MetricsSampler", "Sample", "metrics_snapshot", "totals"]

#: The series the charts draw, in the order of :class:`Sample`'s counters.
SERIES = ("operations", "errors", "bytes_read", "bytes_written")


@dataclass(frozen=True)
class Sample:
    """Cumulative totals at one moment, over all components or one."""

    #: Seconds since the epoch.
    taken_at: float
    #: component id -> series name -> cumulative total.
    components: dict[str, dict[str, int]]


def metrics_snapshot(manager: Any) -> dict[str, Any] | None:
    """``manager.metrics()``, or ``None`` when this version of the core has none or they are off."""
    method: Callable[[], Any] | None = getattr(manager, "metrics", None)
    if method is None:
        return None
    snapshot = method()
    if not isinstance(snapshot, dict) or not snapshot.get("enabled"):
        return None
    return snapshot


def totals(snapshot: dict[str, Any]) -> Sample:
    """The cumulative series of *snapshot* per component (see the module docs for its shape)."""
    components: dict[str, dict[str, int]] = {}
    for cid, component in (snapshot.get("components") or {}).items():
        sums = dict.fromkeys(SERIES, 0)
        for operation in (component.get("operations") or {}).values():
            sums["operations"] += int(operation.get("count", 0))
            sums["errors"] += sum(int(n) for n in (operation.get("errors") or {}).values())
            sums["bytes_read"] += int(operation.get("bytes_read", 0))
            sums["bytes_written"] += int(operation.get("bytes_written", 0))
        components[str(cid)] = sums
    return Sample(float(snapshot.get("taken_at") or time.time()), components)


class MetricsSampler:
    """The last *capacity* samples of *manager*'s metrics; :meth:`sample` is called every interval.

    Thread-safe: the server samples from a background task while requests read.
    """

    def __init__(self, manager: Any, capacity: int = 360) -> None:
        self._manager = manager
        self._samples: deque[Sample] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """Whether the store reports metrics (the core has ``metrics()`` and they are on)."""
        return metrics_snapshot(self._manager) is not None

    def sample(self) -> Sample | None:
        """Take one snapshot into the ring buffer; ``None`` when metrics are off."""
        snapshot = metrics_snapshot(self._manager)
        if snapshot is None:
            return None
        found = totals(snapshot)
        with self._lock:
            self._samples.append(found)
        return found

    def history(self, component: str | None = None) -> dict[str, Any]:
        """Per-interval deltas for the charts: ``{"available", "points": [{"t", series...}]}``.

        ``t`` is the end of the interval in seconds since the epoch; each
        series is the increase over the interval (operations, errors, bytes),
        over every component or only *component*. A counter that went down
        (the store was reopened) counts from zero again.
        """
        with self._lock:
            samples = list(self._samples)
        points: list[dict[str, Any]] = []
        previous: dict[str, int] | None = None
        for sample in samples:
            current = _sum(sample, component)
            if previous is not None:
                point: dict[str, Any] = {"t": sample.taken_at}
                for name in SERIES:
                    delta = current[name] - previous[name]
                    point[name] = delta if delta >= 0 else current[name]
                points.append(point)
            previous = current
        return {"available": self.available, "series": list(SERIES), "points": points}


def _sum(sample: Sample, component: str | None) -> dict[str, int]:
    chosen = sample.components.values() if component is None else [sample.components.get(component, {})]
    return {name: sum(found.get(name, 0) for found in chosen) for name in SERIES}
