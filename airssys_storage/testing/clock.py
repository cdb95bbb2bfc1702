"""A clock the tests move by hand, so expiry is tested without sleeping."""

from __future__ import annotations

import math
import threading

from ..backend import wall_clock_ms

__all__ = ["FakeClock"]


class FakeClock:
    """A millisecond clock for :meth:`StorageManager.from_settings` ``(clock=...)``; moves only when told.

    ``clock()`` returns the time in whole milliseconds since the Unix epoch,
    starting at *start_ms* (default: the wall clock when it is made, so
    expiry times look real). :meth:`advance` moves it forward; it never goes
    back. Safe to read and advance from several threads.
    """

    def __init__(self, start_ms: int | None = None) -> None:
        self._now = wall_clock_ms() if start_ms is None else int(start_ms)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        return self._now

    def advance(self, seconds: float) -> int:
        """Move the clock *seconds* forward (rounded up to whole milliseconds); returns the new time in ms."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a FakeClock only moves forward by a finite number of seconds, got {seconds!r}")
        with self._lock:
            self._now += math.ceil(seconds * 1000)
            return self._now

    def advance_to(self, ms: int) -> int:
        """Move the clock to *ms* (milliseconds since the epoch) if that is later; returns the time in ms.

        Exact, unlike :meth:`advance` with a float number of seconds (``0.003 * 1000`` is not 3).
        """
        with self._lock:
            self._now = max(self._now, int(ms))
            return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self._now})"
