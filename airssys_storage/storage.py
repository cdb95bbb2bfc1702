"""The public API: :class:`StorageManager` and :class:`ComponentStorage`.

The per-operation path is one straight call chain: a set-membership test for
the permission (decided when the manifest was loaded), key and value
validation, then one backend call. No hook, no policy lookup, no lock and no
ORM on it: every backend call is atomic (see :mod:`airssys_storage.backend`),
which is what makes the operations of one component behave as if they ran one
at a time (the seed's actor model), without paying for a second lock.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from .backend import CONTROL_CHARACTERS, Change, StorageBackend, Usage, bad_key_error, key_problem, key_successor
from .errors import (
    ConfigurationError,
    InternalError,
    InvalidArgument,
    InvalidKey,
    PermissionDenied,
    PluginError,
    QuotaExceeded,
    StorageError,
    StoreDamaged,
    TooManyKeys,
    ValueTooLarge,
)
from .manifest import Manifest
from .operations import Operation
from .plugins import PluginRegistry, check_plugin_options, redact_url
from .policies import PermissionPolicy, QuotaStrategy

if TYPE_CHECKING:
    # Imported where settings are read: pydantic costs more than a whole CLI `get` (issue 9).
    from .settings import StorageSettings

__all__ = ["ComponentStorage", "StorageManager", "check_settings", "encode_key"]

# C0 and C1 control characters (Unicode category Cc), NUL included.
_CURSOR_TAG = b"\x01"
DEFAULT_SCAN_LIMIT = 1000
_T = TypeVar("_T")


class _ComponentState:
    """Per-component state shared by every handle of one id; replaced in place on reload."""

    __slots__ = ("allowed", "fast_allowed", "key_policies", "limit", "limit_source", "manifest", "static_allowed")

    def __init__(self) -> None:
        self.manifest: Manifest
        self.allowed: frozenset[str] = frozenset()
        self.static_allowed: frozenset[str] = frozenset()
        # Operations decided without asking a per-key policy: the hot path's one check.
        self.fast_allowed: frozenset[str] = frozenset()
        # Operation value -> the per-key policies asked on each call of it (only those declaring it).
        self.key_policies: dict[str, tuple[PermissionPolicy, ...]] = {}
        self.limit: int | None = 0
        # What set the limit and how to raise it (QuotaStrategy.describe_limit), for quota-exceeded messages.
        self.limit_source = ""


class StorageManager:
    """Opens the configured backend and hands out one :class:`ComponentStorage` per component.

    Use :meth:`from_settings`; close it (or use it as a context manager) to
    release the backend.
    """

    def __init__(
        self,
        settings: StorageSettings,
        backend: StorageBackend,
        policies: Sequence[PermissionPolicy],
        quota_strategy: QuotaStrategy,
        registry: PluginRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.registry = registry
        self._policies = tuple(policies)
        self._quota_strategy = quota_strategy
        self._components: dict[str, _ComponentState] = {}
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: StorageSettings | None = None,
        registry: PluginRegistry | None = None,
        *,
        existing: bool = False,
    ) -> StorageManager:
        """Load plugins, open the backend named by ``settings.url`` and resolve policies and quota.

        With no *settings*, they are read now from the environment and the
        settings file (see :mod:`airssys_storage.settings`). The backend
        creates a missing store; with *existing* (for callers that only
        read), a URL where :meth:`StorageBackend.exists` finds no store
        raises :class:`ConfigurationError` ("no store at …; check the URL")
        and nothing is created.
        """
        if settings is None:
            from .settings import StorageSettings

            settings = StorageSettings()
        if registry is None:
            registry = PluginRegistry.load(blocked=settings.blocked_plugins)
        policies = registry.create_policies(settings)
        quota_strategy = registry.create_quota_strategy(settings)
        url = settings.resolved_url
        backend_cls = registry.backend_for_url(url)
        if existing and backend_cls.exists(url, settings.backend_options) is False:
            raise ConfigurationError(
                f"no store at {redact_url(url)}: nothing was created, since this command only reads; "
                "check the URL (--url, AIRSSYS_STORAGE_URL or the settings file)"
            )
        if settings.url is None:
            _prepare_default_location(url)
        try:
            backend = backend_cls.open(url, settings.backend_options)
        except StorageError:
            raise
        except ModuleNotFoundError as exc:
            # A backend that does not name its missing driver itself: still a setup problem, not a failure.
            raise ConfigurationError(
                f"cannot open backend {backend_cls.name!r}: the Python module {exc.name!r} it needs is not "
                f"installed ({exc}); install it (`pip install` the driver, see the backend's README)"
            ) from exc
        except Exception as exc:
            raise InternalError(f"cannot open backend {backend_cls.name!r}: {type(exc).__name__}: {exc}") from exc
        try:
            backend.check_limits(settings.max_key_bytes, settings.max_value_bytes)
        except BaseException as exc:
            backend.close()
            if isinstance(exc, Exception) and not isinstance(exc, StorageError):
                raise InternalError(
                    f"backend {backend_cls.name!r} failed checking the key and value limits: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            raise
        return cls(settings, backend, policies, quota_strategy, registry)

    def component(self, manifest: Manifest) -> ComponentStorage:
        """The storage of the component *manifest* describes.

        Calling it again for the same id with a changed manifest reloads its
        permissions and quota; handles given out earlier follow the change.
        """
        if not isinstance(manifest, Manifest):
            raise InvalidArgument(f"component() takes a Manifest, not {type(manifest).__name__}")
        self._check_open()
        with self._lock:
            state = self._components.get(manifest.id)
            fresh = state is None
            if state is None:
                state = _ComponentState()
            self._apply_manifest(state, manifest)  # raises before anything is registered
            if fresh:
                self._components[manifest.id] = state
        return ComponentStorage(self, state)

    def _apply_manifest(self, state: _ComponentState, manifest: Manifest) -> None:
        static_allowed: set[str] = set()
        vetoed: set[str] = set()
        per_call: dict[str, list[PermissionPolicy]] = {}
        for policy in self._policies:
            declared = policy.operations
            for operation in Operation:
                if declared is not None and operation not in declared:
                    continue  # not asked: abstains
                if policy.uses_key:
                    per_call.setdefault(operation.value, []).append(policy)
                    continue
                vote = _ask(policy, manifest, operation, None)
                if vote is False:
                    vetoed.add(operation.value)
                elif vote is True:
                    static_allowed.add(operation.value)
        key_policies = {operation: tuple(policies) for operation, policies in per_call.items()}
        # An operation a per-key policy votes on may be allowed per call, so it stays a candidate.
        candidates = static_allowed | set(key_policies)
        try:
            limit = self._quota_strategy.limit_for(manifest)
        except StorageError:
            raise
        except Exception as exc:
            raise PluginError(
                f"quota strategy {self._quota_strategy.name!r} failed for {manifest.id!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise PluginError(
                f"quota strategy {self._quota_strategy.name!r} returned {limit!r} for "
                f"{manifest.id!r}; it must return a non-negative int or None"
            )
        try:
            source = self._quota_strategy.describe_limit(manifest)
        except Exception:  # only a message: fall back to naming the strategy
            source = QuotaStrategy.describe_limit(self._quota_strategy, manifest)
        state.manifest = manifest
        state.limit_source = str(source)
        state.static_allowed = frozenset(static_allowed - vetoed)
        state.allowed = frozenset(candidates - vetoed)
        state.key_policies = key_policies
        state.fast_allowed = state.allowed - set(key_policies)
        state.limit = limit

    def component_ids(self) -> list[str]:
        """Ids of the components opened through this manager."""
        return sorted(self._components)

    def close(self) -> None:
        """Close the backend. Idempotent."""
        if not self._closed:
            self._closed = True
            self.backend.close()

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgument("the StorageManager is closed")

    def __enter__(self) -> StorageManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_settings(settings: StorageSettings, registry: PluginRegistry | None = None) -> list[StorageError]:
    """What :meth:`StorageManager.from_settings` would refuse in *settings*, without opening anything.

    Checks that every policy, the quota strategy and a backend for the URL's
    scheme are installed (with *registry*, else the plugins installed now),
    and ``plugin_options`` (:func:`~airssys_storage.plugins.check_plugin_options`,
    the validation the manager and every CLI data command run).
    Returns the errors (each a :class:`PluginError` or
    :class:`ConfigurationError` naming the fix); an empty list means the
    settings are usable. The backend's options and reachability are
    checked only when it opens.
    """
    if registry is None:
        registry = PluginRegistry.load(blocked=settings.blocked_plugins)
    lookups: list[Callable[[], object]] = [
        *(partial(registry.policy, name) for name in settings.policies),
        partial(registry.quota_strategy, settings.quota_strategy),
        partial(registry.backend_for_url, settings.resolved_url),
    ]
    lookups.append(partial(check_plugin_options, registry, settings))
    problems: list[StorageError] = []
    for lookup in lookups:
        try:
            lookup()
        except StorageError as exc:
            problems.append(exc)
    return problems


def _ask(policy: PermissionPolicy, manifest: Manifest, operation: Operation, key: str | None) -> bool | None:
    """A policy's vote; a policy that fails is a plugin error (and the operation does not run)."""
    try:
        return policy.check(manifest, operation, key)
    except StorageError:
        raise
    except Exception as exc:
        raise PluginError(
            f"permission policy {policy.name!r} failed on {operation.wit_name} for {manifest.id!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _prepare_default_location(url: str) -> None:
    """Create the default data directory (and its missing parents) private to the user: mode 0700."""
    from .files import make_private_dirs

    directory = Path(url.split(":///", 1)[1]).parent
    try:
        make_private_dirs(directory)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the default data directory {str(directory)!r}: {exc.strerror or exc}; "
            "make it creatable, or set url (AIRSSYS_STORAGE_URL) to a location you can write"
        ) from None


class ComponentStorage:
    """One component's private key-value storage: the seed's API plus batches and scans.

    Keys are ``str`` (1 to ``max_key_bytes`` bytes of UTF-8, no control
    characters); values are ``bytes`` (``bytearray`` and ``memoryview``
    accepted). Listings are ordered by the keys' UTF-8 bytes.
    """

    __slots__ = (
        "_backend",
        "_manager",
        "_max_batch",
        "_max_key",
        "_max_query",
        "_max_value",
        "_ns",
        "_state",
    )

    def __init__(self, manager: StorageManager, state: _ComponentState) -> None:
        settings = manager.settings
        self._manager = manager
        self._state = state
        self._backend = manager.backend
        self._ns = state.manifest.id
        self._max_key = settings.max_key_bytes
        self._max_value = settings.max_value_bytes
        self._max_query = settings.max_keys_per_query
        self._max_batch = settings.max_batch_ops

    @property
    def component_id(self) -> str:
        return self._ns

    @property
    def settings(self) -> StorageSettings:
        """The settings in force (limits: ``max_key_bytes``, ``max_batch_ops`` …)."""
        return self._manager.settings

    @property
    def manifest(self) -> Manifest:
        """The manifest in force (follows reloads)."""
        return self._state.manifest

    @property
    def quota(self) -> int | None:
        """The byte limit in force (``None`` = unlimited)."""
        return self._state.limit

    @property
    def quota_source(self) -> str:
        """What set :attr:`quota` and how to raise it (the quota strategy's ``describe_limit``), for messages."""
        return self._state.limit_source

    # -- the seed's seven operations ----------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value stored under *key*, or ``None``."""
        state = self._state
        if "get" not in state.fast_allowed:
            self._authorize(Operation.GET, key)
        # encode_key's fast path inlined in get and set, the two hottest calls (~40 ns each).
        if not (type(key) is str and key.isprintable() and 0 < len(raw := key.encode()) <= self._max_key):
            raw = encode_key(key, self._max_key)
        try:
            return self._backend.get(self._ns, raw)
        except StorageError:
            raise
        except Exception as exc:
            raise _internal(exc) from exc

    def set(self, key: str, value: bytes | bytearray | memoryview) -> None:
        """Store *value* under *key*, replacing any old value (charged new - old bytes)."""
        state = self._state
        if "set" not in state.fast_allowed:
            self._authorize(Operation.SET, key)
        if not (type(key) is str and key.isprintable() and 0 < len(raw := key.encode()) <= self._max_key):
            raw = encode_key(key, self._max_key)  # see get()
        if type(value) is not bytes:
            value = _as_bytes(value)
        if len(value) > self._max_value:
            raise _too_large(value, self._max_value)
        try:
            self._backend.commit_one(self._ns, raw, value, state.limit)
        except QuotaExceeded as exc:  # the backend cannot know what set the limit; the strategy can
            raise exc.with_source(state.limit_source) from None
        except StorageError:
            raise
        except Exception as exc:
            raise _internal(exc) from exc

    def delete(self, key: str) -> bool:
        """Delete *key*; returns whether it existed."""
        state = self._state
        if "delete" not in state.fast_allowed:
            self._authorize(Operation.DELETE, key)
        raw = encode_key(key, self._max_key)
        try:
            return self._backend.commit_one(self._ns, raw, None, state.limit)
        except StorageError:
            raise
        except Exception as exc:
            raise _internal(exc) from exc

    def has(self, key: str) -> bool:
        """Whether *key* exists."""
        state = self._state
        if "has" not in state.fast_allowed:
            self._authorize(Operation.HAS, key)
        raw = encode_key(key, self._max_key)
        try:
            return self._backend.has(self._ns, raw)
        except StorageError:
            raise
        except Exception as exc:
            raise _internal(exc) from exc

    def keys(self, prefix: str | None = None) -> list[str]:
        """All keys starting with *prefix* (all keys for ``None`` or ``""``), bytewise sorted.

        Fails with ``too-many-keys`` past ``max_keys_per_query``, never
        truncating: use :meth:`scan` to page through more.
        """
        self._authorize(Operation.KEYS, prefix)
        start, end = self._prefix_range(prefix)
        found = self._call(self._backend.keys, start, end, self._max_query + 1)
        if len(found) > self._max_query:
            raise TooManyKeys(
                f"more than {self._max_query} keys match prefix {prefix!r} in component "
                f"{self._ns!r}; page through them with scan(prefix, cursor, limit)"
            )
        try:
            keys = [key.decode() for key in found]
        except UnicodeDecodeError:
            raise self._bad_key(found) from None
        if "keys" in self._state.key_policies:
            keys = [key for key in keys if self._visible(Operation.KEYS, key)]
        return keys

    def size(self) -> int:
        """Bytes used: the sum of UTF-8 key bytes plus value bytes (O(1))."""
        return self.usage().bytes

    def usage(self) -> Usage:
        """Bytes used and number of keys (O(1))."""
        self._authorize(Operation.SIZE, None)
        return self._call(self._backend.usage)

    def clear(self) -> None:
        """Delete every key of this component (admin only)."""
        self._authorize(Operation.CLEAR, None)
        self._call(self._backend.clear)

    # -- batches (atomic, at most max_batch_ops) ----------------------------

    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        """The values of *keys* in order, ``None`` for missing ones."""
        keys = self._key_list(keys, Operation.GET_MANY)
        raws = [encode_key(key, self._max_key) for key in keys]
        return self._call(self._backend.get_many, raws)

    def set_many(self, items: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> None:
        """Store every pair atomically: all or nothing, charged the net delta once.

        When a key appears twice in *items*, the last value wins.
        """
        pairs = self._as_list(items.items() if isinstance(items, Mapping) else items, Operation.SET_MANY)
        self._check_batch(Operation.SET_MANY, [pair[0] if isinstance(pair, tuple) and pair else None for pair in pairs])
        changes: dict[bytes, bytes | None] = {}
        max_key, max_value = self._max_key, self._max_value
        for pair in pairs:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise InvalidArgument(f"set_many takes (key, value) pairs or a mapping, got {pair!r}")
            key, value = pair
            if not (type(key) is str and key.isprintable() and 0 < len(raw := key.encode()) <= max_key):
                raw = encode_key(key, max_key)  # see get()
            if type(value) is not bytes:
                value = _as_bytes(value)
            if len(value) > max_value:
                raise _too_large(value, max_value)
            changes[raw] = value
        self._commit(list(changes.items()))

    def delete_many(self, keys: Iterable[str]) -> int:
        """Delete *keys* atomically; returns how many existed."""
        keys = self._key_list(keys, Operation.DELETE_MANY)
        changes: dict[bytes, bytes | None] = dict.fromkeys((encode_key(key, self._max_key) for key in keys), None)
        return self._commit(list(changes.items()))

    # -- ranges and scans ----------------------------------------------------

    def range(self, start: str, end: str, limit: int | None = None) -> list[tuple[str, bytes]]:
        """Pairs with ``start <= key < end`` (bytewise), at most *limit*.

        Without a limit, more than ``max_keys_per_query`` pairs is a
        ``too-many-keys`` error (use :meth:`scan`).
        """
        self._authorize(Operation.RANGE, start)
        low, high = encode_key(start, self._max_key), encode_key(end, self._max_key)
        if low >= high:
            return []
        wanted = self._max_query + 1 if limit is None else self._limit(limit)
        found = self._call(self._backend.items, low, high, wanted)
        if limit is None and len(found) > self._max_query:
            raise TooManyKeys(
                f"more than {self._max_query} keys lie in [{start!r}, {end!r}) in component "
                f"{self._ns!r}; pass a limit or page through them with scan()"
            )
        return self._decoded(Operation.RANGE, found)

    def scan(
        self, prefix: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> tuple[list[tuple[str, bytes]], str | None]:
        """One page of pairs whose key starts with *prefix*, and the cursor of the next page.

        Pass the returned cursor back (with the same prefix) for the next
        page; ``None`` means there is none. Every key present for the whole
        scan is returned exactly once, even when keys are written in between.
        The default *limit* is 1000 (or ``max_keys_per_query`` if lower).
        """
        self._authorize(Operation.SCAN, prefix)
        start, end = self._prefix_range(prefix)
        limit = min(DEFAULT_SCAN_LIMIT, self._max_query) if limit is None else self._limit(limit)
        if cursor is not None:
            start = self._decode_cursor(cursor, start, end)
        found = self._call(self._backend.items, start, end, limit + 1)
        next_cursor = None
        if len(found) > limit:
            del found[limit:]
            next_cursor = base64.urlsafe_b64encode(_CURSOR_TAG + found[-1][0]).decode("ascii")
        return self._decoded(Operation.SCAN, found), next_cursor

    # -- slow paths and helpers ----------------------------------------------

    def _authorize(self, operation: Operation, key: str | None) -> None:
        state = self._state
        if operation.value not in state.allowed:
            self._deny(operation, "its permissions do not allow it")
        policies = state.key_policies.get(operation.value)
        if policies:
            votes = [_ask(policy, state.manifest, operation, key) for policy in policies]
            if False in votes:
                policy = policies[votes.index(False)]
                self._deny(operation, f"policy {policy.name!r} denied it for key {key!r}")
            if True not in votes and operation.value not in state.static_allowed:
                self._deny(operation, "no policy allowed it")

    def _deny(self, operation: Operation, why: str) -> NoReturn:
        manifest = self._state.manifest
        raise PermissionDenied(
            f"component {self._ns!r} (access {manifest.access.value!r}) may not call {operation.wit_name}: {why}"
        )

    def _prefix_range(self, prefix: str | None) -> tuple[bytes, bytes | None]:
        if prefix is None or prefix == "":
            return b"", None
        raw = encode_key(prefix, self._max_key)
        return raw, key_successor(raw)

    def _limit(self, limit: int) -> int:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= self._max_query:
            raise InvalidArgument(f"limit must be an int from 1 to {self._max_query}, got {limit!r}")
        return limit

    def _decode_cursor(self, cursor: str, start: bytes, end: bytes | None) -> bytes:
        try:
            raw = base64.urlsafe_b64decode(cursor.encode("ascii"))
        except (ValueError, AttributeError, UnicodeEncodeError):
            raw = b""
        if not raw.startswith(_CURSOR_TAG) or len(raw) < 2:
            raise InvalidArgument(f"cursor {cursor!r} is not a cursor returned by scan()")
        last = raw[1:]
        if last < start or (end is not None and last >= end):
            raise InvalidArgument(f"cursor {cursor!r} belongs to a scan with another prefix")
        return last + b"\x00"

    def _key_list(self, keys: Iterable[str], operation: Operation) -> list[str]:
        if isinstance(keys, (str, bytes)):
            self._authorize(operation, None)
            raise InvalidArgument(f"{operation.wit_name} takes a list of keys, not a single {type(keys).__name__}")
        key_list = self._as_list(keys, operation)
        self._check_batch(operation, key_list)
        return key_list

    def _as_list(self, items: Iterable[Any], operation: Operation) -> list[Any]:
        try:
            return list(items)
        except TypeError:
            self._authorize(operation, None)
            raise InvalidArgument(f"{operation.wit_name} takes a list, not {type(items).__name__}") from None

    def _check_batch(self, operation: Operation, keys: list[Any]) -> None:
        """Permission (a per-key policy is asked about every key), then the batch size."""
        if operation.value in self._state.key_policies and keys:
            for key in keys:
                self._authorize(operation, key if isinstance(key, str) else None)
        else:
            self._authorize(operation, None)
        if len(keys) > self._max_batch:
            raise TooManyKeys(
                f"{operation.wit_name} got {len(keys)} operations; the maximum per batch is "
                f"{self._max_batch}: split it into several batches"
            )

    def _decoded(self, operation: Operation, found: list[tuple[bytes, bytes]]) -> list[tuple[str, bytes]]:
        try:
            items = [(key.decode(), value) for key, value in found]
        except UnicodeDecodeError:
            raise self._bad_key([key for key, _ in found]) from None
        if operation.value in self._state.key_policies:
            items = [item for item in items if self._visible(operation, item[0])]
        return items

    def _bad_key(self, found: list[bytes]) -> StoreDamaged:
        """The error for a listing that met a stored key that is not UTF-8 (named in hex)."""
        bad = next((key for key in found if key_problem(key) is not None), found[0])
        settings = self.settings
        selecting = self._backend.selecting_options(settings.backend_options)
        return bad_key_error(self._ns, bad, settings.resolved_url, selecting)

    def _visible(self, operation: Operation, key: str) -> bool:
        """Whether per-key policies let a listing show *key* (listings hide what they deny)."""
        state = self._state
        votes = [_ask(policy, state.manifest, operation, key) for policy in state.key_policies[operation.value]]
        return False not in votes and (True in votes or operation.value in state.static_allowed)

    def _commit(self, changes: list[Change]) -> int:
        if not changes:
            return 0
        try:
            return self._call(self._backend.commit, changes, self._state.limit)
        except QuotaExceeded as exc:
            raise exc.with_source(self._state.limit_source) from None

    def _call(self, method: Callable[..., _T], *args: Any) -> _T:
        try:
            return method(self._ns, *args)
        except StorageError:
            raise
        except Exception as exc:
            raise _internal(exc) from exc

    def __repr__(self) -> str:
        return f"<ComponentStorage {self._ns!r} on {self._backend.name}>"


def encode_key(key: str, max_bytes: int) -> bytes:
    """A valid key's UTF-8 bytes; anything else raises InvalidKey."""
    # Printable strings hold no control characters and no lone surrogates
    # (category Cs is not printable), so encode() cannot fail on this path.
    if type(key) is str and key.isprintable():
        raw = key.encode()
        if 0 < len(raw) <= max_bytes:
            return raw
    return _encode_unusual_key(key, max_bytes)


def _encode_unusual_key(key: object, max_bytes: int) -> bytes:
    """Keys with non-printable characters (e.g. U+00A0, which is allowed) or errors."""
    if type(key) is not str:
        raise InvalidKey(f"keys are str, not {type(key).__name__}")
    try:
        raw = key.encode()
    except UnicodeEncodeError:
        raise InvalidKey(f"key {key!r} is not valid Unicode (it contains a lone surrogate)") from None
    if not raw:
        raise InvalidKey(f"key is empty: keys are 1 to {max_bytes} bytes of UTF-8")
    if len(raw) > max_bytes:
        raise InvalidKey(f"key {key[:32]!r}... is {len(raw)} bytes of UTF-8; the maximum is {max_bytes} bytes")
    if CONTROL_CHARACTERS.search(key) is not None:
        raise InvalidKey(f"key {key!r} contains a control character (NUL, newline, ...): remove it")
    return raw


def _as_bytes(value: object) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgument(f"values are bytes (or bytearray/memoryview), not {type(value).__name__}")


def _too_large(value: bytes, maximum: int) -> ValueTooLarge:
    return ValueTooLarge(f"value is {len(value)} bytes; the maximum is {maximum} bytes")


def _internal(exc: Exception) -> InternalError:
    return InternalError(f"storage backend failed: {type(exc).__name__}: {exc}")
