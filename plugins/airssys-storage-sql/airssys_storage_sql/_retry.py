"""Retry settings of the SQL backend, in one place: how often and how long a conflicting write is repeated.

A write transaction that the engine rolled back for a conflict (a deadlock,
a serialization failure) is run again from the start, after a short jittered
sleep; so is switching a new SQLite file to WAL while another process holds
it. Nothing else is retried: a read on a dead connection is repeated once on
a new one (see :meth:`SQLBackend._query`), a write never blindly.
"""

from __future__ import annotations

import random
import time

#: Attempts for a write that failed on a deadlock / serialization conflict.
MAX_ATTEMPTS = 8
#: The first retry sleeps up to this many seconds; each further one up to twice as long.
FIRST_DELAY = 0.002


def backoff(attempt: int) -> None:
    """Sleep a little before retry number *attempt* (0-based) of a conflicting write (jittered, bounded)."""
    time.sleep(random.uniform(0, FIRST_DELAY * 2**attempt))
