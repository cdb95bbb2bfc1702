"""A pytest plugin: no test leaves a multiprocessing child running after it ends.

multiprocessing joins every non-daemon child when the interpreter exits, so
one hung child (a deadlocked forked writer, a race worker that never got its
signal) keeps pytest from exiting after its summary, and a CI run waits
until its time limit. With this plugin (``pytest -p
airssys_storage.testing.reaper``, as this project's pytest settings do) a
child still running 5 seconds after its test ends is killed and the test
errors, naming it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import pytest

__all__ = ["reap_child_processes"]

#: Seconds a test's leftover children get to finish on their own before they are killed.
GRACE_SECONDS = 5.0


@pytest.fixture(autouse=True)
def reap_child_processes() -> Iterator[None]:
    """Kill the multiprocessing children a test started and left running; error the test if there were any."""
    before = set(multiprocessing.active_children())
    yield
    left = [child for child in multiprocessing.active_children() if child not in before]
    for child in left:
        child.join(GRACE_SECONDS)
    hung = [child for child in left if child.is_alive()]
    for child in hung:
        child.kill()
        child.join(10)
    if hung:
        names = ", ".join(f"{child.name} (pid {child.pid})" for child in hung)
        pytest.fail(f"the test left child processes running; killed them: {names}", pytrace=False)
