"""Stores and ``os.fork()``: one at-fork hook for every backend that holds engine state.

A forked child inherits the parent's memory: open database handles, sockets,
locks that another thread held at the moment of the fork. Using any of them
in the child silently corrupts data (two processes writing through one
LevelDB handle) or hangs (a lock that nobody will release). Backends that
hold such state derive from :class:`ForkAware` and call :func:`track` when
they open; the hooks below run around every ``os.fork()`` (including
``multiprocessing``'s ``fork`` start method), at no cost on any other path:

- ``before_fork`` in the forking thread, just before the fork (e.g. take a
  lock so that the child's copy is not caught halfway through a commit);
- ``after_fork_in_parent`` in the parent (release what ``before_fork`` took);
- ``after_fork_in_child`` in the child (replace inherited handles with fresh
  ones, or with a stand-in that refuses every call with a clear error).

The hooks are installed once, on the first :func:`track`; objects are held
weakly, so tracking keeps nothing alive.
"""

from __future__ import annotations

import os
import threading
import weakref

__all__ = ["ForkAware", "track"]


class ForkAware:
    """Mix-in with no-op fork hooks; override the ones a backend needs (see the module docs)."""

    def before_fork(self) -> None:
        """In the parent, just before the fork (must not block for long: it delays the fork)."""

    def after_fork_in_parent(self) -> None:
        """In the parent, just after the fork."""

    def after_fork_in_child(self) -> None:
        """In the child, just after the fork, before anything else runs there."""


_live: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_install_lock = threading.Lock()
_installed = False
# The objects before_fork ran on, so that exactly those get the after-hooks.
_forking: list[ForkAware] = []


def _before() -> None:
    # Sorted by id: a fixed order, so two objects' locks are always taken in the same order.
    _forking[:] = sorted(_live, key=id)
    for obj in _forking:
        obj.before_fork()


def _after_in_parent() -> None:
    for obj in reversed(_forking):
        obj.after_fork_in_parent()
    _forking.clear()


def _after_in_child() -> None:
    global _install_lock
    _install_lock = threading.Lock()  # another thread may have held it at fork time
    for obj in reversed(_forking):
        obj.after_fork_in_child()
    _forking.clear()


def track(obj: ForkAware) -> None:
    """Run *obj*'s fork hooks around every later ``os.fork()`` of this process (while *obj* lives)."""
    global _installed
    _live.add(obj)
    if not _installed:
        with _install_lock:
            if not _installed and hasattr(os, "register_at_fork"):
                os.register_at_fork(before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child)
                _installed = True
