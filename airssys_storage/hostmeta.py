"""Host metadata: small records a host keeps next to the components' data, outside every component.

A host (e.g. the WebAssembly host's change-feed subscriptions) needs durable
state about a component — a delivery cursor, a dead-letter report — that
must survive a restart, live in the same store as the data, and yet never
show up in the component's listings nor count against its quota.

It lives in the backend namespace :data:`HOST_NAMESPACE` (``"_host"``), which
no component can open: component ids start with a lower-case letter
(:data:`~airssys_storage.manifest.COMPONENT_ID_PATTERN`). Each owner (a host
kind, e.g. ``"wasmtime"``) gets its own key prefix ``<owner>/``. The
namespace has no quota, no change feed and no permission checks: only host
code holding the :class:`~airssys_storage.StorageManager` reaches it
(:meth:`StorageManager.host_metadata`). Operator listings of components skip it.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .errors import InternalError, InvalidArgument, InvalidKey, StorageError

if TYPE_CHECKING:
    from .backend import StorageBackend

__all__ = ["HOST_NAMESPACE", "HostMetadata", "is_host_namespace"]

#: The backend namespace of host metadata (not a valid component id, so no component can own it).
HOST_NAMESPACE = "_host"
_OWNER_PATTERN = r"[a-z][a-z0-9_-]{0,62}"
_OWNER = re.compile(_OWNER_PATTERN + r"\Z")


def is_host_namespace(namespace: str) -> bool:
    """Whether *namespace* holds host metadata rather than a component's data (listings skip it)."""
    return namespace == HOST_NAMESPACE


class HostMetadata:
    """One owner's records in :data:`HOST_NAMESPACE`: keys are ``str``, values ``bytes`` (or JSON).

    Every write is one atomic backend commit (durable as the backend is).
    Errors are :class:`~airssys_storage.StorageError`: ``invalid-key`` for a
    key that is empty, has control characters or is too long for the
    backend's key limit with the ``<owner>/`` prefix; ``internal-error`` for
    a failing backend or a stored JSON value that does not parse.
    """

    def __init__(self, backend: StorageBackend, owner: str, max_key_bytes: int) -> None:
        if not isinstance(owner, str) or _OWNER.match(owner) is None:
            raise InvalidArgument(f"host metadata owner {owner!r} must match ^{_OWNER_PATTERN}$")
        self._backend = backend
        self.owner = owner
        self._prefix = f"{owner}/".encode()
        self._max_key = max_key_bytes

    def _key(self, key: str) -> bytes:
        if not isinstance(key, str) or not key or not key.isprintable():
            raise InvalidKey(f"host metadata key {key!r} must be a non-empty printable string")
        raw = self._prefix + key.encode()
        if len(raw) > self._max_key:
            raise InvalidKey(f"host metadata key {key!r} is {len(raw)} bytes with its prefix, over {self._max_key}")
        return raw

    def get(self, key: str) -> bytes | None:
        """The value under *key*, or ``None``."""
        value: bytes | None = _call(self._backend.get, HOST_NAMESPACE, self._key(key))
        return value

    def set(self, key: str, value: bytes) -> None:
        """Store *value* under *key* (one atomic commit)."""
        _call(self._backend.put_one, HOST_NAMESPACE, self._key(key), bytes(value), None)

    def get_versioned(self, key: str) -> tuple[bytes, int] | None:
        """``(value, version)`` of *key*, or ``None``: the version to pass to :meth:`set_if`."""
        state = _call(self._backend.get_entry, HOST_NAMESPACE, self._key(key))
        if state is None:
            return None
        return bytes(state.value or b""), int(state.version)

    def set_if(self, key: str, value: bytes, version: int) -> int:
        """Store *value* under *key* only if its version is still *version* (0: absent); returns the new version.

        Otherwise nothing is written and ``precondition-failed``
        (:class:`~airssys_storage.PreconditionFailed`) is raised: another
        writer changed the record since it was read.
        """
        from .planner import Write, WriteKind

        raw = self._key(key)
        plan = _call(
            self._backend.apply, HOST_NAMESPACE, (Write(raw, WriteKind.PUT, bytes(value), None, version),), None
        )
        return int(plan.results[0])

    def delete(self, key: str) -> bool:
        """Remove *key*; returns whether it existed."""
        return bool(_call(self._backend.delete_one, HOST_NAMESPACE, self._key(key)))

    def items(self, prefix: str = "", limit: int = 1000) -> list[tuple[str, bytes]]:
        """Up to *limit* ``(key, value)`` pairs whose key starts with *prefix*, ordered by key bytes."""
        start = self._prefix + prefix.encode()
        end = _successor(start)
        found = _call(self._backend.items, HOST_NAMESPACE, start, end, limit)
        cut = len(self._prefix)
        return [(key[cut:].decode(), value) for key, value in found]

    def get_json(self, key: str) -> Any:
        """The JSON value under *key*, or ``None``."""
        raw = self.get(key)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise InternalError(f"host metadata {self.owner}/{key} is not valid JSON: {exc}") from None

    def set_json(self, key: str, value: Any) -> None:
        """Store *value* as compact JSON under *key*."""
        self.set(key, json.dumps(value, separators=(",", ":"), sort_keys=True).encode())

    def __repr__(self) -> str:
        return f"<HostMetadata {self.owner!r}>"


def _successor(prefix: bytes) -> bytes | None:
    """The lowest byte string above every string starting with *prefix* (``None``: unbounded)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _call(method: Any, *args: Any) -> Any:
    try:
        return method(*args)
    except StorageError:
        raise
    except Exception as exc:
        raise InternalError(f"host metadata: {type(exc).__name__}: {exc}") from exc
