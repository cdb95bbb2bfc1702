"""The change feed's push channel on Redis: ``SUBSCRIBE`` on one connection, in a daemon thread.

Each commit that appends events ``PUBLISH``es the change log's key name on
the store's channel (``commit.lua``, inside the commit's script, so the
message goes out as the commit becomes visible). The listener turns each
message into a same-process wake-up (:meth:`StorageBackend.notify_changes`);
the woken watchers then pull. Pub/sub is fire-and-forget, so a message lost
with a dropped connection delays a watcher by at most the backend's poll
interval (raised to :data:`ChangeListener.SAFETY_POLL_SECONDS` while
subscribed, back to the setting ``changes_poll_seconds`` while not), never
loses an event. A dropped connection is reopened after a second.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import RedisBackend


class ChangeListener:
    """Subscribes to a store's change channel and wakes the backend's watchers (see the module docs)."""

    #: The poll interval while subscribed, in seconds (a safety net for a lost message or connection).
    SAFETY_POLL_SECONDS = 1.0

    def __init__(self, backend: RedisBackend, connection_kwargs: dict[str, Any], channel: bytes) -> None:
        self._backend = backend
        self._kwargs = dict(connection_kwargs, health_check_interval=0)
        self._channel = channel
        #: The poll interval the settings asked for, restored while not subscribed.
        self._poll = backend.change_poll_seconds
        self._head = len(backend.options.key_prefix.encode()) + 1
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="airssys-storage redis change listener", daemon=True)

    def start(self) -> None:
        """Start the thread and wait (up to the connect timeout, at most 5 s) until it subscribed or failed."""
        self._thread.start()
        self._ready.wait(min(5.0, self._kwargs.get("socket_connect_timeout") or 5.0))

    def _run(self) -> None:
        import redis

        backend = self._backend
        while not self._stopped.is_set():
            pool = redis.ConnectionPool(**self._kwargs)
            pubsub = redis.Redis(connection_pool=pool).pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self._channel)
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        backend.change_poll_seconds = max(self._poll or 0.0, self.SAFETY_POLL_SECONDS)
                        self._ready.set()
                    elif message["type"] == "message":
                        data = message["data"]  # the change log's key: <prefix>{<component>}:c
                        backend.notify_changes(data[self._head : -3].decode(errors="replace"))
            except Exception:  # the watchers fall back to polling; try again in a second
                backend.change_poll_seconds = self._poll
                self._ready.set()
                self._stopped.wait(1.0)
            finally:
                try:
                    pubsub.close()
                    pool.disconnect()
                except Exception:  # being thrown away
                    pass
        backend.change_poll_seconds = self._poll

    def stop(self) -> None:
        """Stop listening (the thread ends within half a second)."""
        self._stopped.set()
