"""The public API: :class:`StorageManager` and :class:`ComponentStorage`.

The per-operation path is one straight call chain: a set-membership test for
the permission (decided when the manifest was loaded), key and value
validation, then one backend call. No hook, no policy lookup, no lock and no
ORM on it: every backend call is atomic (see :mod:`airssys_storage.backend`),
which is what makes the operations of one component behave as if they ran one
at a time (the seed's actor model), without paying for a second lock.

What a write does (quota, versions, expiry, compare-and-swap conditions,
counters, operation ids) is decided by :func:`airssys_storage.planner.plan`
inside the backend's atomic section; this module only validates the
arguments and builds the :class:`~airssys_storage.planner.Write` list.
"""

from __future__ import annotations

import base64
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar, overload

from .audit import audit
from .backend import (
    CONTROL_CHARACTERS,
    StorageBackend,
    Usage,
    bad_key_error,
    key_problem,
    key_successor,
    wall_clock_ms,
)
from .changes import MAX_SEQ, ChangeEvent, monotonic, record_matches, replay
from .errors import (
    ChangeGap,
    ConfigurationError,
    InternalError,
    InvalidArgument,
    InvalidKey,
    KeyNotFound,
    PermissionDenied,
    PluginError,
    PreconditionFailed,
    QuotaExceeded,
    StorageError,
    StoreDamaged,
    TooManyKeys,
    ValueTooLarge,
)
from .manifest import Manifest
from .operations import Operation
from .planner import MAX_VERSION, KeyState, Plan, Write, WriteKind
from .plugins import PluginRegistry, check_plugin_options, redact_url
from .policies import PermissionPolicy, QuotaStrategy

if TYPE_CHECKING:
    from .atomic import AtomicBatch
    from .hostmeta import HostMetadata

    # Imported where settings are read: pydantic costs more than a whole CLI `get` (issue 9).
    from .quota_warnings import QuotaWarning, SoftQuota
    from .settings import StorageSettings
    from .transaction import Transaction

__all__ = ["ComponentStorage", "Entry", "Limits", "StorageManager", "check_settings", "encode_key"]

log = logging.getLogger("airssys_storage")

# C0 and C1 control characters (Unicode category Cc), NUL included.
_CURSOR_TAG = b"\x01"
DEFAULT_SCAN_LIMIT = 1000
#: Rows one step of the background sweeper removes at most (one atomic step each).
SWEEP_STEP = 1000
#: The longest operation id, in bytes of UTF-8.
MAX_OP_ID_BYTES = 256
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
#: The latest expiry a row can hold, in milliseconds since the epoch (the backends store a signed 64-bit int).
MAX_EXPIRES_AT_MS = _INT64_MAX
_T = TypeVar("_T")
_PUT, _DELETE, _INCREMENT, _TOUCH = WriteKind.PUT, WriteKind.DELETE, WriteKind.INCREMENT, WriteKind.TOUCH
# Writes are built with tuple.__new__ in Write's field order (key, kind, value, expires_at, if_version,
# delta, op_id): half the time of Write(...) with keywords and defaults (as the planner does).
_new = tuple.__new__
#: The types of the usual batch (see ComponentStorage._plain_pairs).
_STR, _BYTES = {str}, {bytes}
#: Operation -> its value, and members used on hot paths: attribute access on an Enum costs ~60 ns.
_VALUES = {operation: operation.value for operation in Operation}
_COMPARE_AND_SWAP, _INCREMENT_OP = Operation.COMPARE_AND_SWAP, Operation.INCREMENT


class Entry(NamedTuple):
    """A live key's value with its version and expiry (:meth:`ComponentStorage.get_entry`)."""

    value: bytes
    #: Unsigned 64-bit, strictly increasing over the key's whole history (delete and re-create included).
    version: int
    #: When the key expires, in seconds since the Unix epoch; ``None``: never.
    expires_at: float | None


@dataclass(frozen=True)
class Limits:
    """The limits in force for one component and what its backend honours (:meth:`ComponentStorage.limits`).

    Sizes are in bytes. ``bytes_used`` and ``keys`` count expired keys until
    they are swept (as :meth:`ComponentStorage.usage` does).
    """

    #: Longest key, in bytes of UTF-8.
    max_key_bytes: int
    #: Largest value, in bytes.
    max_value_bytes: int
    #: Most keys one query (keys, range) returns.
    max_keys_per_query: int
    #: Most operations in one batch (get_many, set_many, delete_many).
    max_batch_ops: int
    #: The byte quota; ``None``: unlimited.
    quota: int | None
    bytes_used: int
    keys: int
    #: ``quota - bytes_used`` (never below 0); ``None`` when unlimited.
    bytes_remaining: int | None
    #: Writes survive closing and reopening the store.
    persistent: bool
    #: Several processes may use the store at once.
    multi_process: bool
    #: Increment and compare-and-swap are single engine statements (informational: all are exact).
    native_atomics: bool
    #: How long an increment's ``op_id`` is remembered, in seconds.
    op_id_retention_seconds: float


class _ComponentState:
    """Per-component state shared by every handle of one id; replaced in place on reload."""

    __slots__ = (
        "allowed",
        "fast_allowed",
        "key_policies",
        "limit",
        "limit_source",
        "manifest",
        "quota",
        "soft",
        "static_allowed",
    )

    def __init__(self) -> None:
        self.manifest: Manifest
        self.allowed: frozenset[str] = frozenset()
        self.static_allowed: frozenset[str] = frozenset()
        # Operations decided without asking a per-key policy: the hot path's one check.
        self.fast_allowed: frozenset[str] = frozenset()
        # Operation value -> the per-key policies asked on each call of it (only those declaring it).
        self.key_policies: dict[str, tuple[PermissionPolicy, ...]] = {}
        # The byte limit the backends are given: the quota, or the next soft quota threshold
        # (airssys_storage.quota_warnings: a write crossing it is refused, noted, and retried under the quota).
        self.limit: int | None = 0
        #: The component's byte quota (``None``: unlimited).
        self.quota: int | None = 0
        self.soft: SoftQuota | None = None
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
        *,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.registry = registry
        #: The time in whole milliseconds since the Unix epoch, as expiry sees it (the wall clock unless
        #: a clock was passed, e.g. :class:`airssys_storage.testing.FakeClock`); the backend reads the same.
        self.clock: Callable[[], int] = wall_clock_ms if clock is None else clock
        backend.clock = self.clock
        backend.op_retention_ms = math.ceil(settings.op_id_retention_seconds * 1000)
        if backend.capabilities.multi_process:
            backend.change_poll_seconds = settings.changes_poll_seconds
        self._policies = tuple(policies)
        self._quota_strategy = quota_strategy
        self._components: dict[str, _ComponentState] = {}
        #: Called once per upward crossing of a soft quota threshold, after the write that crossed it
        #: (see :mod:`airssys_storage.quota_warnings`); exceptions it raises are logged and dropped.
        self.on_quota_warning: Callable[[QuotaWarning], None] | None = None
        # What component() hands out: ComponentStorage, or its counting subclass with metrics on.
        self._storage_class: type[ComponentStorage] = ComponentStorage
        self._metrics: Any = None
        if settings.metrics:
            from .metrics import attach

            attach(self)
        self._lock = threading.Lock()
        self._closed = False
        self._stop_sweeping = threading.Event()
        self._sweeper: threading.Thread | None = None
        if settings.expiry_sweep_interval is not None:
            self._sweeper = threading.Thread(
                target=self._sweep_loop,
                args=(settings.expiry_sweep_interval,),
                name="airssys-storage expiry sweeper",
                daemon=True,
            )
            self._sweeper.start()

    @classmethod
    def from_settings(
        cls,
        settings: StorageSettings | None = None,
        registry: PluginRegistry | None = None,
        *,
        existing: bool = False,
        clock: Callable[[], int] | None = None,
    ) -> StorageManager:
        """Load plugins, open the backend named by ``settings.url`` and resolve policies and quota.

        With no *settings*, they are read now from the environment and the
        settings file (see :mod:`airssys_storage.settings`). The backend
        creates a missing store; with *existing* (for callers that only
        read), a URL where :meth:`StorageBackend.exists` finds no store
        raises :class:`ConfigurationError` ("no store at …; check the URL")
        and nothing is created. *clock* returns the time in whole
        milliseconds since the Unix epoch, for expiry (default: the wall
        clock); tests pass :class:`airssys_storage.testing.FakeClock` to
        move time without sleeping. With ``settings.expiry_sweep_interval``
        set, the manager starts its background sweeper (see :meth:`purge_expired`).
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
        options = backend_cls.parse_options(settings.backend_options)
        if existing and backend_cls.exists(url, options) is False:
            raise ConfigurationError(
                f"no store at {redact_url(url)}: nothing was created, since this command only reads; "
                "check the URL (--url, AIRSSYS_STORAGE_URL or the settings file)"
            )
        if settings.url is None:
            _prepare_default_location(url)
        try:
            backend = backend_cls.open(url, options)
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
        try:
            return cls(settings, backend, policies, quota_strategy, registry, clock=clock)
        except BaseException:  # e.g. tracing = true without opentelemetry-api
            backend.close()
            raise

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
            elif state.manifest != manifest:
                audit("manifest-reloaded", manifest.id, None, access=manifest.access.value, quota=manifest.quota)
            self._apply_manifest(state, manifest)  # raises before anything is registered
            if fresh:
                self._components[manifest.id] = state
        return self._storage_class(self, state)

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
        self._apply_feed(manifest)
        state.manifest = manifest
        state.limit_source = str(source)
        state.static_allowed = frozenset(static_allowed - vetoed)
        state.allowed = frozenset(candidates - vetoed)
        state.key_policies = key_policies
        state.fast_allowed = state.allowed - set(key_policies)
        from .quota_warnings import arm

        arm(self, state, manifest, limit)  # sets state.quota, state.soft and state.limit

    def metrics(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot of the counters and usage (:func:`airssys_storage.metrics.snapshot`).

        Operation counters need the setting ``metrics = true`` (``enabled``
        says whether it is on); usage, quota and soft quota crossings are
        always there. Reads each component's usage counter (O(1)).
        """
        from .metrics import snapshot

        return snapshot(self)

    def _apply_feed(self, manifest: Manifest) -> None:
        """Turn the component's change feed on or off in the backend, as its manifest or the settings say."""
        settings = self.settings
        wanted = settings.changes_default if manifest.changes is None else manifest.changes
        if wanted:
            from .changes import FeedConfig

            seconds = settings.changes_retain_seconds
            self.backend.enable_changes(
                manifest.id,
                FeedConfig(
                    retain_events=settings.changes_retain_events,
                    retain_ms=None if seconds is None else math.ceil(seconds * 1000),
                    capture_values=settings.changes_capture_values,
                    max_value_bytes=settings.changes_max_value_bytes,
                ),
            )
        elif manifest.id in self.backend.feeds:
            self.backend.enable_changes(manifest.id, None)

    def host_metadata(self, owner: str) -> HostMetadata:
        """Durable records of the host kind *owner* (e.g. ``"wasmtime"``), outside every component.

        See :mod:`airssys_storage.hostmeta`: they live in a namespace no
        component can open, so they appear in no component's listing and
        count against no quota. ``invalid-argument`` for an *owner* not
        matching ``^[a-z][a-z0-9_-]{0,62}$``.
        """
        from .hostmeta import HostMetadata

        self._check_open()
        return HostMetadata(self.backend, owner, self.settings.max_key_bytes)

    def component_ids(self) -> list[str]:
        """Ids of the components opened through this manager."""
        return sorted(self._components)

    def purge_expired(self, step: int = SWEEP_STEP) -> int:
        """Remove the expired keys of every component in the store, releasing their quota; returns how many.

        Works in atomic steps of at most *step* rows, so writers wait at most
        one step; stops early when the manager is closing. What the background
        sweeper (setting ``expiry_sweep_interval``) runs each interval.
        """
        self._check_open()
        backend = self.backend
        removed = 0
        for namespace in _wrapped(backend.namespaces):
            while not self._stop_sweeping.is_set():
                swept = sum(_wrapped(backend.delete_range, namespace, b"", None, expired_only=True, limit=step).results)
                removed += swept
                if swept < step:
                    break
        return removed

    def _sweep_loop(self, interval: float) -> None:
        """The background sweeper: :meth:`purge_expired` every *interval* seconds until :meth:`close`."""
        while not self._stop_sweeping.wait(interval):
            try:
                self.purge_expired()
            except StorageError as exc:  # the next interval tries again; a host must not lose its sweeper
                if self._stop_sweeping.is_set():
                    return
                log.warning("expiry sweeper: %s (code %s); retrying in %s s", exc, exc.code, interval)

    def close(self) -> None:
        """Stop the background sweeper (waiting for its current step) and close the backend. Idempotent."""
        if not self._closed:
            self._stop_sweeping.set()
            if self._sweeper is not None and self._sweeper is not threading.current_thread():
                self._sweeper.join()
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
    ``plugin_options`` (:func:`~airssys_storage.plugins.check_plugin_options`)
    and ``backend_options`` (:meth:`StorageBackend.parse_options`): the
    validation the manager and every CLI data command run.
    Returns the errors (each a :class:`PluginError` or
    :class:`ConfigurationError` naming the fix); an empty list means the
    settings are usable. What only the URL reveals (a driver, an option
    that does not apply to the engine) and reachability are checked only
    when the backend opens.
    """
    if registry is None:
        registry = PluginRegistry.load(blocked=settings.blocked_plugins)
    lookups: list[Callable[[], object]] = [
        *(partial(registry.policy, name) for name in settings.policies),
        partial(registry.quota_strategy, settings.quota_strategy),
        partial(_check_backend_options, registry, settings),
        partial(check_plugin_options, registry, settings),
    ]
    problems: list[StorageError] = []
    for lookup in lookups:
        try:
            lookup()
        except StorageError as exc:
            problems.append(exc)
    return problems


def _check_backend_options(registry: PluginRegistry, settings: StorageSettings) -> None:
    """The URL's backend is installed and accepts ``settings.backend_options``."""
    registry.backend_for_url(settings.resolved_url).parse_options(settings.backend_options)


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
    """One component's private key-value storage: the seed's API plus batches, scans and per-key state.

    Keys are ``str`` (1 to ``max_key_bytes`` bytes of UTF-8, no control
    characters); values are ``bytes`` (``bytearray`` and ``memoryview``
    accepted). Listings are ordered by the keys' UTF-8 bytes. Every key has
    a version (returned by writes, see :meth:`get_entry`) and may have an
    expiry (``ttl`` in seconds); an expired key is absent for every read and
    condition, and counts in :meth:`usage` until it is swept. Checks run in
    the order permission, validation, quota, backend.
    """

    __slots__ = (
        "_backend",
        "_clock",
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
        self._clock = manager.clock
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
        return self._state.quota

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

    # ttl is keyword-only for type checkers (the overloads). The implementation takes it as an
    # ordinary parameter: a keyword-only one keeps CPython 3.11 from specialising the call, which
    # costs ~30 ns on the hottest write (measured with benchmarks/bench_memory.py).
    @overload
    def set(self, key: str, value: bytes | bytearray | memoryview) -> int: ...
    @overload
    def set(self, key: str, value: bytes | bytearray | memoryview, *, ttl: float | None) -> int: ...
    def set(self, key: str, value: bytes | bytearray | memoryview, ttl: float | None = None) -> int:
        """Store *value* under *key*, replacing any old value (charged new - old bytes); returns the new version.

        *ttl* (keyword-only): seconds until the key expires (``None``: never;
        a set without it removes an old expiry). Errors: ``permission-denied``,
        ``invalid-key``, ``value-too-large``, ``invalid-argument`` (ttl),
        ``quota-exceeded`` (after sweeping the component's expired keys).
        """
        state = self._state
        if "set" not in state.fast_allowed:
            self._authorize(Operation.SET, key)
        if not (type(key) is str and key.isprintable() and 0 < len(raw := key.encode()) <= self._max_key):
            raw = encode_key(key, self._max_key)  # see get()
        if type(value) is not bytes:
            value = _as_bytes(value)
        if len(value) > self._max_value:
            raise _too_large(value, self._max_value)
        if ttl is not None:
            return self._apply((_new(Write, (raw, _PUT, value, self._expires_at(ttl), None, 0, None)),)).results[0]
        try:
            return self._backend.put_one(self._ns, raw, value, state.limit)
        except QuotaExceeded as exc:
            return self._retry_after_sweep(exc, self._backend.put_one, raw, value, state.limit)
        except StorageError:
            raise
        except Exception as exc:
            raise _internal(exc) from exc

    def delete(self, key: str) -> bool:
        """Delete *key*; returns whether it existed (an expired key is removed too, and gives ``False``)."""
        state = self._state
        if "delete" not in state.fast_allowed:
            self._authorize(Operation.DELETE, key)
        raw = encode_key(key, self._max_key)
        try:
            deleted = self._backend.delete_one(self._ns, raw)
        except StorageError:
            raise
        except Exception as exc:
            raise _internal(exc) from exc
        if deleted and state.soft is not None and state.soft.level:
            self._rearm()
        return deleted

    def has(self, key: str) -> bool:
        """Whether *key* exists (and has not expired)."""
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
        """Bytes used: the sum of UTF-8 key bytes plus value bytes (O(1); expired keys count until swept)."""
        return self.usage().bytes

    def usage(self) -> Usage:
        """Bytes used and number of keys (O(1); expired keys count until swept, see :meth:`purge_expired`)."""
        self._authorize(Operation.SIZE, None)
        return self._call(self._backend.usage)

    def clear(self) -> None:
        """Delete every key of this component (admin only)."""
        self._authorize(Operation.CLEAR, None)
        self._call(self._backend.clear)
        self._rearm()
        audit("clear", self._ns, "clear")

    # -- batches (atomic, at most max_batch_ops) ----------------------------

    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        """The values of *keys* in order, ``None`` for missing ones."""
        keys = self._key_list(keys, Operation.GET_MANY)
        raws = [encode_key(key, self._max_key) for key in keys]
        return self._call(self._backend.get_many, raws)

    def set_many(self, items: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *, ttl: float | None = None) -> None:
        """Store every pair atomically: all or nothing, charged the net delta once.

        When a key appears twice in *items*, the last value wins. *ttl*
        (seconds, ``None``: never) applies to every key of the batch; without
        it, old expiries are removed. Errors as :meth:`set`, and
        ``too-many-keys`` past ``max_batch_ops``.
        """
        pairs = self._as_list(items.items() if isinstance(items, Mapping) else items, Operation.SET_MANY)
        # The keys are listed for the permission check only when a per-key policy asks about them;
        # otherwise _check_batch needs the count alone.
        listed = Operation.SET_MANY.value in self._state.key_policies
        keys = [pair[0] if isinstance(pair, tuple) and pair else None for pair in pairs] if listed else pairs
        self._check_batch(Operation.SET_MANY, keys)
        # Exact tuples of two (the common case) are checked in C; anything else pair by pair.
        if not (set(map(type, pairs)) <= {tuple} and set(map(len, pairs)) <= {2}):
            for pair in pairs:
                if not isinstance(pair, tuple) or len(pair) != 2:
                    raise InvalidArgument(f"set_many takes (key, value) pairs or a mapping, got {pair!r}")
        if ttl is None:
            plain = self._plain_pairs(pairs)
            if plain is not None:
                self._put_many(*plain)
                return
        writes = self._put_writes(pairs, repeat(None if ttl is None else self._expires_at(ttl)))
        if writes:
            self._apply(writes)

    def _plain_pairs(self, pairs: list[tuple[Any, Any]]) -> tuple[list[bytes], list[bytes]] | None:
        """The encoded keys and the values of the usual batch of pairs, checked by C loops; ``None`` otherwise.

        The usual batch: at least two pairs, every key a printable ``str`` and
        every value ``bytes``, within the limits. A key given twice keeps its
        first place and its last value, as :meth:`_put_writes` does (distinct
        strings encode to distinct bytes). The checks run as ``map()`` over
        the whole batch (about a third of the per-pair loop's cost); anything
        else (``None``) takes :meth:`_put_writes`, which raises the error of
        the first bad pair.
        """
        if len(pairs) < 2:
            return None
        try:
            unique = dict(pairs)
        except TypeError:  # an unhashable key: _put_writes names it
            return None
        if set(map(type, unique)) != _STR or "" in unique or not all(map(str.isprintable, unique)):
            return None
        values = list(unique.values())
        if set(map(type, values)) != _BYTES or max(map(len, values)) > self._max_value:
            return None
        keys = list(map(str.encode, unique))
        if max(map(len, keys)) > self._max_key:
            return None
        return keys, values

    def _put_many(self, keys: list[bytes], values: list[bytes]) -> None:
        """:meth:`_apply` of plain puts of distinct *keys* (no expiry) through the backend's ``put_many``."""
        state = self._state
        limit = state.limit
        backend = self._backend
        try:
            backend.put_many(self._ns, keys, values, limit)
        except QuotaExceeded as exc:
            self._retry_after_sweep(exc, backend.put_many, keys, values, limit)
        except StorageError:
            raise
        except Exception as exc:
            raise _internal(exc) from exc
        if state.soft is not None and state.soft.level:  # a batch may shrink values: re-arm exactly
            self._rearm()

    def _put_writes(self, pairs: Iterable[tuple[Any, Any]], expiries: Iterable[int | None]) -> list[Write]:
        """The PUT writes of ``(key, value)`` pairs with their ``expires_at`` (ms | None), key and value validated.

        When a key appears twice, the last pair wins (as in :meth:`set_many`).
        """
        changes: dict[bytes, Write] = {}
        max_key, max_value = self._max_key, self._max_value
        for (key, value), expires_at in zip(pairs, expiries):  # noqa: B905 - expiries may be repeat()
            if not (type(key) is str and key.isprintable() and 0 < len(raw := key.encode()) <= max_key):
                raw = encode_key(key, max_key)  # see get()
            if type(value) is not bytes:
                value = _as_bytes(value)
            if len(value) > max_value:
                raise _too_large(value, max_value)
            changes[raw] = _new(Write, (raw, _PUT, value, expires_at, None, 0, None))
        return list(changes.values())

    # -- package-internal: exact rows for export, import and migration (airssys_storage.exchange) --

    def _entry_rows(self, keys: Sequence[str]) -> list[KeyState | None]:
        """The live rows of *keys* (value, version, expiry in ms since the epoch), ``None`` for absent ones.

        Each key needs ``get-entry`` permission. Unlike :meth:`get_entry`, the
        expiry stays the exact integer of milliseconds the backend stores.
        """
        rows: list[KeyState | None] = []
        for key in keys:
            self._check(Operation.GET_ENTRY, key)
            row = self._call(self._backend.get_entry, encode_key(key, self._max_key))
            if row is not None and row.value is None:
                raise InternalError(f"backend {self._backend.name!r} returned an entry without its value")
            rows.append(row)
        return rows

    def _restore_many(self, entries: Sequence[tuple[str, bytes, int | None]]) -> None:
        """Store ``(key, value, expires_at)`` triples atomically, each with its own absolute expiry.

        *expires_at*: milliseconds since the epoch (1 to :data:`MAX_EXPIRES_AT_MS`)
        or ``None`` (never). :meth:`set_many` with a relative ttl cannot carry an
        expiry exactly (the clock moves between reading it and writing), so an
        import or migration writes the source's expiry through this. Same
        permission (``set-many``), limits, quota and errors as :meth:`set_many`.
        """
        self._check_batch(Operation.SET_MANY, [key for key, _, _ in entries])
        for key, _, expires_at in entries:
            if expires_at is not None and (type(expires_at) is not int or not 0 < expires_at <= MAX_EXPIRES_AT_MS):
                raise InvalidArgument(
                    f"expiry of key {key!r} must be None or an int of milliseconds since the epoch from 1 to "
                    f"{MAX_EXPIRES_AT_MS}, got {expires_at!r}"
                )
        writes = self._put_writes([(key, value) for key, value, _ in entries], [when for _, _, when in entries])
        if writes:
            self._apply(writes)

    def delete_many(self, keys: Iterable[str]) -> int:
        """Delete *keys* atomically; returns how many existed (live)."""
        keys = self._key_list(keys, Operation.DELETE_MANY)
        raws = dict.fromkeys(encode_key(key, self._max_key) for key in keys)
        if not raws:
            return 0
        return sum(self._apply([_new(Write, (raw, _DELETE, b"", None, None, 0, None)) for raw in raws]).results)

    # -- versions and atomics --------------------------------------------------

    def get_entry(self, key: str) -> Entry | None:
        """The live *key*'s value, version and expiry (:class:`Entry`), or ``None``.

        Needs read-only access (operation ``get-entry``).
        """
        row = self._entry_rows((key,))[0]
        if row is None or row.value is None:  # the value is checked by _entry_rows
            return None
        return Entry(row.value, row.version, None if row.expires_at is None else row.expires_at / 1000)

    def compare_and_swap(
        self, key: str, value: bytes | bytearray | memoryview, *, version: int | None, ttl: float | None = None
    ) -> int:
        """Store *value* only if *key* is at *version* now (``None``: only if it is absent); returns the new version.

        Otherwise raises ``precondition-failed`` (:class:`PreconditionFailed`)
        and writes nothing: read the entry again and retry. *ttl* as in
        :meth:`set`. Needs read-write (``compare-and-swap``).
        """
        raw, value = self._check_put(_COMPARE_AND_SWAP, key, value)
        condition = 0 if version is None else _check_version(version)
        if ttl is not None:
            return self._apply((_new(Write, (raw, _PUT, value, self._expires_at(ttl), condition, 0, None)),)).results[0]
        # Without a ttl: the backend's single-key path (as set() takes put_one).
        limit = self._state.limit
        try:
            return self._backend.compare_and_swap_one(self._ns, raw, value, condition, limit)
        except QuotaExceeded as exc:
            return self._retry_after_sweep(exc, self._backend.compare_and_swap_one, raw, value, condition, limit)
        except StorageError:
            raise
        except Exception as exc:
            raise _internal(exc) from exc

    def set_if_absent(self, key: str, value: bytes | bytearray | memoryview, *, ttl: float | None = None) -> bool:
        """Store *value* only if *key* is absent (or expired); returns whether it was stored.

        Needs read-write (``set-if-absent``); errors as :meth:`set`.
        """
        raw, value = self._check_put(Operation.SET_IF_ABSENT, key, value)
        expires_at = None if ttl is None else self._expires_at(ttl)
        try:
            self._apply((_new(Write, (raw, _PUT, value, expires_at, 0, 0, None)),))
        except PreconditionFailed:
            return False
        return True

    def delete_if(self, key: str, *, version: int) -> bool:
        """Delete *key* only if it is live at *version*; returns whether it was deleted.

        Needs read-write (``delete-if``).
        """
        self._check(Operation.DELETE_IF, key)
        raw = encode_key(key, self._max_key)
        condition = _check_version(version)
        try:
            return self._apply((_new(Write, (raw, _DELETE, b"", None, condition, 0, None)),)).results[0] == 1
        except PreconditionFailed:
            return False

    def increment(self, key: str, delta: int = 1, *, op_id: str | None = None) -> int:
        """Add *delta* to the counter under *key* atomically; returns its new value.

        A counter's value is the decimal ASCII of a signed 64-bit integer (a
        missing or expired key counts as 0; a live key keeps its expiry).
        Errors: ``invalid-argument`` when the key holds something else or the
        result leaves the signed 64-bit range (nothing is written),
        ``quota-exceeded``. With *op_id* (1 to 256 bytes of printable UTF-8,
        chosen by the caller), repeating the same id on the same key within
        ``op_id_retention_seconds`` (default 600) returns the first result
        and applies nothing, so a caller whose reply was lost can retry; ids
        are remembered per key (one request id may serve several counters),
        also across delete and clear (a retry still returns the first result).
        Needs read-write (``increment``).
        """
        self._check(_INCREMENT_OP, key)
        raw = encode_key(key, self._max_key)
        if type(delta) is not int:
            raise InvalidArgument(f"delta must be an int, not {type(delta).__name__}")
        if not _INT64_MIN <= delta <= _INT64_MAX:
            raise InvalidArgument(f"delta {delta} is outside the signed 64-bit range [-2**63, 2**63 - 1]")
        if op_id is not None:
            _check_op_id(op_id)
            return self._apply(
                (_new(Write, (raw, _INCREMENT, b"", None, None, delta, _op_record_id(raw, op_id))),)
            ).results[0]
        # Without an op_id: the backend's single-key path (as set() takes put_one).
        limit = self._state.limit
        try:
            return self._backend.increment_one(self._ns, raw, delta, limit)
        except QuotaExceeded as exc:
            return self._retry_after_sweep(exc, self._backend.increment_one, raw, delta, limit)
        except StorageError:
            raise
        except Exception as exc:
            raise _internal(exc) from exc

    # -- expiry ----------------------------------------------------------------

    def expire(self, key: str, ttl: float) -> bool:
        """Make live *key* expire *ttl* seconds from now; returns ``False`` (nothing done) if it is absent.

        Needs read-write (``expire``); ``invalid-argument`` for a bad ttl.
        """
        self._check(Operation.EXPIRE, key)
        raw = encode_key(key, self._max_key)
        if ttl is None:
            raise InvalidArgument("expire() needs a ttl in seconds; to remove an expiry call persist(key)")
        return self._apply((_new(Write, (raw, _TOUCH, b"", self._expires_at(ttl), None, 0, None)),)).results[0] != 0

    def persist(self, key: str) -> bool:
        """Remove live *key*'s expiry; returns whether the key was live. Needs read-write (``persist``)."""
        self._check(Operation.PERSIST, key)
        raw = encode_key(key, self._max_key)
        return self._apply((_new(Write, (raw, _TOUCH, b"", None, None, 0, None)),)).results[0] != 0

    def ttl(self, key: str) -> float | None:
        """Seconds until live *key* expires (``None``: never).

        Raises ``key-not-found`` (:class:`KeyNotFound`) when the key is
        absent or expired. Needs read-only access (``get-ttl``).
        """
        self._check(Operation.GET_TTL, key)
        row = self._call(self._backend.get_entry, encode_key(key, self._max_key))
        if row is None:
            raise KeyNotFound(f"key {key!r} of component {self._ns!r} does not exist (or has expired)")
        if row.expires_at is None:
            return None
        return max(0.0, (row.expires_at - self._clock()) / 1000)

    def purge_expired(self, limit: int | None = None) -> int:
        """Remove expired keys now, releasing their quota; returns how many were removed.

        At most *limit* (``None``: all) in one atomic step. Expired keys are
        already invisible to every read; this only frees their bytes (a write
        that would exceed the quota sweeps them itself). Needs read-write
        (``purge-expired``).
        """
        self._authorize(Operation.PURGE_EXPIRED, None)
        if limit is not None and (type(limit) is not int or not 1 <= limit <= _INT64_MAX):
            raise InvalidArgument(f"limit must be an int from 1 to 2**63 - 1, or None (no limit), got {limit!r}")
        return self._sweep(limit)

    # -- range deletes -----------------------------------------------------------

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with *prefix* in one atomic step; returns how many live keys went.

        An empty prefix is refused (``invalid-argument``): deleting everything
        is :meth:`clear`, which needs admin. Needs read-write (``delete-prefix``).
        """
        if prefix == "":
            self._authorize(Operation.DELETE_PREFIX, prefix)
            raise InvalidArgument(
                "delete_prefix('') would delete every key: pass a non-empty prefix, or call clear() "
                "(which needs admin access) to empty the component"
            )
        self._authorize(Operation.DELETE_PREFIX, prefix)
        raw = encode_key(prefix, self._max_key)
        deleted = self._delete_range(Operation.DELETE_PREFIX, raw, key_successor(raw))
        audit(
            "delete-prefix", self._ns, "delete-prefix", key=prefix, key_mode=self.settings.audit_keys, deleted=deleted
        )
        return deleted

    def delete_range(self, start: str, end: str) -> int:
        """Delete every key with ``start <= key < end`` (bytewise) in one atomic step; returns how many live keys went.

        ``start >= end`` deletes nothing. Needs read-write (``delete-range``).
        """
        self._authorize(Operation.DELETE_RANGE, start)
        low, high = encode_key(start, self._max_key), encode_key(end, self._max_key)
        if low >= high:
            return 0
        deleted = self._delete_range(Operation.DELETE_RANGE, low, high)
        audit("delete-range", self._ns, "delete-range", key=start, key_mode=self.settings.audit_keys, deleted=deleted)
        return deleted

    # -- limits ------------------------------------------------------------------

    def limits(self) -> Limits:
        """The limits in force for this component, its usage and its backend's capabilities (:class:`Limits`).

        Needs read-only access (``limits``).
        """
        self._authorize(Operation.LIMITS, None)
        usage = self._call(self._backend.usage)
        quota = self._state.quota
        capabilities = self._backend.capabilities
        return Limits(
            max_key_bytes=self._max_key,
            max_value_bytes=self._max_value,
            max_keys_per_query=self._max_query,
            max_batch_ops=self._max_batch,
            quota=quota,
            bytes_used=usage.bytes,
            keys=usage.keys,
            bytes_remaining=None if quota is None else max(0, quota - usage.bytes),
            persistent=capabilities.persistent,
            multi_process=capabilities.multi_process,
            native_atomics=capabilities.native_atomics,
            op_id_retention_seconds=self.settings.op_id_retention_seconds,
        )

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

    # -- change feed (airssys_storage.changes) -----------------------------------

    def changes(
        self, since: int = 0, prefix: str | None = None, limit: int | None = None
    ) -> tuple[list[ChangeEvent], int]:
        """The component's changes after seq *since*, in commit order, and the cursor to pass next.

        Returns ``(events, next_since)``: at most *limit* (default 1000, or
        ``max_keys_per_query`` if lower) events with ``seq >
        since`` (those concerning keys starting with *prefix*, see
        :func:`~airssys_storage.changes.record_matches`), and the seq to
        resume from (the last seq looked at, so a prefix reader moves on
        even when nothing matched; *since* when nothing is new). ``since=0``
        starts at the oldest retained event. Seqs are dense and strictly
        increasing per component, so a reader that resumes from the cursor
        sees every event exactly once.

        Errors: ``permission-denied`` (needs read access: ``changes``);
        ``invalid-config`` when the component's feed is off
        (``permissions.storage.changes``); ``invalid-argument`` for a bad
        *since*/*limit* or a *since* beyond the last seq; ``gap``
        (:class:`~airssys_storage.ChangeGap`, with ``oldest``) when events
        after *since* are no longer retained: resynchronise with :meth:`resync`.
        """
        self._authorize(Operation.CHANGES, prefix)
        self._check_feed()
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            raise InvalidArgument(f"since must be a seq (an int >= 0), got {since!r}")
        if since > MAX_SEQ:  # no seq is that large (engines store seqs as signed 64-bit integers)
            raise InvalidArgument(
                f"since={since} is beyond the last change of component {self._ns!r} (seqs end at 2**63 - 1): "
                "the cursor belongs to another store or component; resynchronise with resync()"
            )
        limit = min(DEFAULT_SCAN_LIMIT, self._max_query) if limit is None else self._limit(limit)
        start, end = self._prefix_range(prefix)
        batch = self._call(self._backend.read_changes, since, limit)
        if since > batch.last:
            raise InvalidArgument(
                f"since={since} is beyond the last change ({batch.last}) of component {self._ns!r}: the cursor "
                "belongs to another store or component; resynchronise with resync()"
            )
        if since and since < batch.oldest - 1:
            raise ChangeGap(
                f"the changes of component {self._ns!r} after seq {since} are no longer retained (the oldest is "
                f"{batch.oldest}; settings changes_retain_events / changes_retain_seconds): resynchronise with "
                "resync() and continue from the seq it returns",
                oldest=batch.oldest,
            )
        records = batch.records
        if not records:
            return [], since
        try:
            events = [
                ChangeEvent(
                    r.seq, r.key.decode(), r.op, r.version, r.at, r.value, None if r.end is None else r.end.decode()
                )
                for r in records
                if start == b"" or record_matches(r.key, r.op, r.end, start, end)
            ]
        except UnicodeDecodeError:
            raise self._bad_key([r.key for r in records]) from None
        return events, records[-1].seq

    def snapshot_seq(self) -> int:
        """The seq of the component's last change (0: none yet): what a scan started now is at least as new as.

        Needs read access (``changes``); ``invalid-config`` when the feed is off.
        """
        self._authorize(Operation.CHANGES, None)
        self._check_feed()
        return self._call(self._backend.change_bounds)[1]

    def change_bounds(self) -> tuple[int, int]:
        """``(oldest retained seq, last seq)`` of the component's change log; ``(1, 0)`` before its first change.

        A reader that must not miss the log's start (a new subscription) checks
        that the oldest is 1: ``changes(0)`` starts at the oldest *retained*
        event. Needs read access (``changes``); ``invalid-config`` when the feed is off.
        """
        self._authorize(Operation.CHANGES, None)
        self._check_feed()
        oldest, last = self._call(self._backend.change_bounds)
        return int(oldest), int(last)

    def resync(self, prefix: str | None = None) -> tuple[dict[str, bytes], int]:
        """The component's live keys under *prefix* with their values, and the seq that state is at.

        How a reader that got a ``gap`` starts again: take the state, then
        call :meth:`changes` with the returned seq. It is :meth:`snapshot_seq`,
        a full :meth:`scan`, then the events after that seq replayed
        (:func:`~airssys_storage.changes.replay`) up to the log's end, so the
        state is exactly the one at the returned seq when ``set`` events carry
        values (``changes_capture_values``); a ``set`` without its value is
        completed by reading the key, which may be newer (the later event
        then sets it again). Needs ``changes`` and ``scan``.
        """
        seq = self.snapshot_seq()
        state: dict[str, bytes | None] = {}
        cursor: str | None = None
        while True:
            page, cursor = self.scan(prefix, cursor)
            state.update(page)
            if cursor is None:
                break
        while True:
            events, after = self.changes(seq, prefix)
            if not events and after == seq:
                break
            replay(state, events)
            seq = after
        missing = [key for key, value in state.items() if value is None]
        for first in range(0, len(missing), self._max_batch):
            chunk = missing[first : first + self._max_batch]
            state.update(zip(chunk, self.get_many(chunk), strict=True))
        return {key: value for key, value in state.items() if value is not None}, seq

    def watch(self, since: int = 0, prefix: str | None = None, timeout: float | None = None) -> Iterator[ChangeEvent]:
        """The component's changes after *since*, as they are committed: a blocking iterator built on :meth:`changes`.

        Ends when no event came for *timeout* seconds (``None``: never).
        Commits of this process wake it at once; on SQLite and MariaDB it
        checks for other processes' commits every ``changes_poll_seconds``;
        on PostgreSQL a ``NOTIFY`` wakes it, on Redis a pub/sub message. Keep ``event.seq`` as the
        cursor: a reader restarted from it misses nothing (at least once).
        Errors: those of :meth:`changes`; ``invalid-argument`` for a *timeout*
        that is not ``None`` or a finite number of seconds >= 0.
        """
        _check_timeout(timeout)
        self.changes(since, prefix, 1)  # check permission, feed and cursor before the first wait
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            events, after = self.changes(since, prefix)
            yield from events
            if after != since:
                since = after
                if events and timeout is not None:
                    deadline = monotonic() + timeout
                continue
            wait = 1.0 if deadline is None else deadline - monotonic()
            if wait <= 0:
                return
            self._call(self._backend.wait_for_changes, since, min(wait, 1.0))

    async def awatch(
        self, since: int = 0, prefix: str | None = None, timeout: float | None = None
    ) -> AsyncIterator[ChangeEvent]:
        """:meth:`watch` as an asyncio async iterator (the waits run in a worker thread)."""
        import asyncio

        _check_timeout(timeout)
        await asyncio.to_thread(self.changes, since, prefix, 1)
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            events, after = await asyncio.to_thread(self.changes, since, prefix)
            for event in events:
                yield event
            if after != since:
                since = after
                if events and timeout is not None:
                    deadline = monotonic() + timeout
                continue
            wait = 1.0 if deadline is None else deadline - monotonic()
            if wait <= 0:
                return
            await asyncio.to_thread(self._call, self._backend.wait_for_changes, since, min(wait, 1.0))

    def _check_feed(self) -> None:
        if self._ns not in self._backend.feeds:
            raise ConfigurationError(
                f"component {self._ns!r} keeps no change feed: set permissions.storage.changes = true in its "
                "manifest (or the setting changes_default = true) and reload it"
            )

    # -- atomic write batches ------------------------------------------------------

    def atomic(self) -> AtomicBatch:
        """A multi-key write batch with checks (:class:`~airssys_storage.atomic.AtomicBatch`), Deno KV's ``atomic()``.

        ``storage.atomic().check(key, version).set(key, value).increment(counter, 1).commit()``
        applies every change in one atomic backend commit if every check holds
        (``version`` 0: the key must be absent), and returns each changed key's
        new version; otherwise it raises ``precondition-failed`` naming the
        key and writes nothing. See :mod:`airssys_storage.atomic` for the
        rules. Needs read-write (operation ``commit``; ``permission-denied``
        here, before anything is built, unless a per-key policy decides).
        """
        state = self._state
        if "commit" not in state.fast_allowed and "commit" not in state.key_policies:
            self._authorize(Operation.COMMIT, None)  # raises: the operation is not allowed
        return (_ATOMIC_BATCH or _atomic_batch_class())(self)

    # -- transactions ------------------------------------------------------------

    def transaction(self, *, max_writes: int | None = None, max_bytes: int | None = None) -> Transaction:
        """A :class:`~airssys_storage.transaction.Transaction` over this storage: writes buffered until commit.

        *max_writes* (distinct keys, default 10,000) and *max_bytes* (bytes of
        buffered keys and values, default 16 MiB) bound the buffer; see
        :mod:`airssys_storage.transaction` for read-your-writes, the one
        atomic commit, its quota check and its optimistic conditions.
        ``invalid-argument`` for a limit that is not a positive int.
        """
        from .transaction import DEFAULT_MAX_BYTES, DEFAULT_MAX_WRITES, Transaction

        return Transaction(
            self,
            max_writes=DEFAULT_MAX_WRITES if max_writes is None else max_writes,
            max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes,
        )

    # -- slow paths and helpers ----------------------------------------------

    def _authorize(self, operation: Operation, key: str | None) -> None:
        state = self._state
        if operation.value not in state.allowed:
            self._deny(operation, "its permissions do not allow it", key)
        policies = state.key_policies.get(operation.value)
        if policies:
            votes = [_ask(policy, state.manifest, operation, key) for policy in policies]
            if False in votes:
                policy = policies[votes.index(False)]
                self._deny(operation, f"policy {policy.name!r} denied it", key, name_key=True)
            if True not in votes and operation.value not in state.static_allowed:
                self._deny(operation, "no policy allowed it", key)

    def _deny(self, operation: Operation, why: str, key: str | None, *, name_key: bool = False) -> NoReturn:
        """Raise ``permission-denied`` (its message names the key with *name_key*), noted in the audit trail."""
        manifest = self._state.manifest
        audit(
            "permission-denied",
            self._ns,
            operation.value,
            key=key if isinstance(key, str) else None,
            key_mode=self.settings.audit_keys,
            reason=why,
            level=logging.WARNING,
            access=manifest.access.value,
        )
        if name_key:
            why = f"{why} for key {key!r}"
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

    def _check(self, operation: Operation, key: str | None) -> None:
        """The permission check of a single-key operation (the per-key policies only when some vote)."""
        if _VALUES[operation] not in self._state.fast_allowed:  # an enum's .value costs ~60 ns
            self._authorize(operation, key)

    def _check_put(self, operation: Operation, key: str, value: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
        """Permission, then the key and value of a write: the key's bytes and the value as ``bytes``."""
        self._check(operation, key)
        raw = encode_key(key, self._max_key)
        if type(value) is not bytes:
            value = _as_bytes(value)
        if len(value) > self._max_value:
            raise _too_large(value, self._max_value)
        return raw, value

    def _expires_at(self, ttl: float) -> int:
        """The absolute expiry (ms since the epoch) of a key written now with *ttl* seconds to live."""
        if type(ttl) is bool or not isinstance(ttl, (int, float)):
            raise InvalidArgument(f"ttl is a number of seconds (int or float), not {type(ttl).__name__}")
        if not (math.isfinite(ttl) and ttl > 0):
            raise InvalidArgument(
                f"ttl must be a finite number of seconds above 0, got {ttl!r}; to remove an expiry use persist(), "
                "or set() without ttl"
            )
        millis = ttl * 1000  # inf for a float ttl above ~1.8e305: refused below, never passed to ceil()
        if not millis <= MAX_EXPIRES_AT_MS or (expires_at := self._clock() + math.ceil(millis)) > MAX_EXPIRES_AT_MS:
            raise InvalidArgument(f"ttl {ttl!r} s is too long: the expiry must fall before 2**63 - 1 ms since 1970")
        return expires_at

    def _apply(self, writes: Sequence[Write]) -> Plan:
        """Apply *writes* atomically under the component's quota (sweeping expired keys once if refused)."""
        state = self._state
        limit = state.limit
        try:
            plan = self._backend.apply(self._ns, writes, limit)
        except QuotaExceeded as exc:
            return self._retry_after_sweep(exc, self._backend.apply, writes, limit)
        except StorageError:
            raise
        except Exception as exc:
            raise _internal(exc) from exc
        if state.soft is not None and state.soft.level:  # a batch may delete or shrink values: re-arm exactly
            self._rearm()
        return plan

    def _rearm(self) -> None:
        """Usage may have fallen: re-arm the soft quota thresholds it fell back to or below.

        Costs nothing while usage is below every threshold (``soft.level`` is
        0); above one, one O(1) usage read (see :mod:`.quota_warnings`).
        """
        state = self._state
        soft = state.soft
        if soft is not None and soft.level and self._backend is self._manager.backend:
            soft.observe(state)

    #: What a transaction's commit calls (the metrics' counting subclass counts it as ``transaction-commit``).
    _commit = _apply

    def _retry_after_sweep(self, refused: QuotaExceeded, method: Callable[..., _T], *args: Any) -> _T:
        """A write refused for quota: sweep the component's expired keys and, if any went, try once more.

        So a write is never refused because of expired data. The error names
        what set the limit (the backend cannot know; the quota strategy can).
        """
        state = self._state
        if args[-1] != state.quota:  # the guard of a soft quota threshold refused it, not the quota
            from .quota_warnings import cross

            return cross(self, method, args)
        source = state.limit_source
        if not self._sweep(None):
            raise self._refused(refused.with_source(source)) from None
        try:
            return self._call(method, *args)
        except QuotaExceeded as exc:
            raise self._refused(exc.with_source(source)) from None

    def _refused(self, exc: QuotaExceeded) -> QuotaExceeded:
        """*exc*, noted in the audit trail with the public operation refused (``None`` if none is found)."""
        audit(
            "quota-exceeded",
            self._ns,
            _refused_operation(self),
            reason=exc.detail,
            level=logging.WARNING,
            quota=self._state.quota,
        )
        return exc

    def _sweep(self, limit: int | None) -> int:
        """Remove up to *limit* (``None``: all) expired rows of the component; returns how many."""
        swept = sum(self._call(self._backend.delete_range, b"", None, expired_only=True, limit=limit).results)
        if swept:
            self._rearm()
        return swept

    def _delete_range(self, operation: Operation, start: bytes, end: bytes | None) -> int:
        """Delete the live and expired keys in ``[start, end)`` atomically; returns how many were live.

        When per-key policies vote on *operation*, each key found is asked
        about first (one denied key refuses the call) and exactly the keys
        asked about are deleted, in one atomic batch of up to
        ``max_keys_per_query`` keys.
        """
        if operation.value not in self._state.key_policies:
            deleted = sum(self._call(self._backend.delete_range, start, end).results)
            self._rearm()  # expired keys may have gone too, so even when no live key did
            return deleted
        found = self._call(self._backend.keys, start, end, self._max_query + 1)
        if len(found) > self._max_query:
            raise TooManyKeys(
                f"{operation.wit_name} would delete more than {self._max_query} keys of component {self._ns!r}, "
                "each of which its per-key permission policies must allow: delete narrower prefixes or ranges"
            )
        try:
            names = [raw.decode() for raw in found]
        except UnicodeDecodeError:
            raise self._bad_key(found) from None
        for name in names:
            self._authorize(operation, name)
        if not found:
            return 0
        return sum(self._apply([_new(Write, (raw, _DELETE, b"", None, None, 0, None)) for raw in found]).results)

    def _call(self, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return _wrapped(method, self._ns, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<ComponentStorage {self._ns!r} on {self._backend.name}>"


_ATOMIC_BATCH: type[AtomicBatch] | None = None


def _atomic_batch_class() -> type[AtomicBatch]:
    """:class:`~airssys_storage.atomic.AtomicBatch`, imported on first use (atomic.py imports this module)."""
    global _ATOMIC_BATCH
    from .atomic import AtomicBatch

    _ATOMIC_BATCH = AtomicBatch
    return AtomicBatch


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


def _wrapped(method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Call a backend method; any exception but a :class:`StorageError` becomes an ``internal-error``."""
    try:
        return method(*args, **kwargs)
    except StorageError:
        raise
    except Exception as exc:
        raise _internal(exc) from exc


def _check_version(version: object) -> int:
    """A compare-and-swap version: an int from 1 to 2**64 - 1 (``invalid-argument`` otherwise)."""
    if type(version) is not int:
        raise InvalidArgument(
            f"version must be an int (from get_entry() or a write), not {type(version).__name__}; "
            "pass version=None for 'must be absent'"
        )
    if not 1 <= version <= MAX_VERSION:
        raise InvalidArgument(
            f"version must be from 1 to 2**64 - 1, got {version}; pass version=None for 'must be absent'"
        )
    return version


def _op_record_id(key: bytes, op_id: str) -> str:
    """The id under which the backend records the result of *op_id* on *key*: one per (key, op_id).

    Keyed by the key too, so that a caller reusing one request id for several
    counters gets each of them applied once (not the first counter's result
    for all). A digest keeps the record small (32 hex characters) whatever
    the lengths of key and id; a collision needs 2**64 ids per key.
    """
    import hashlib  # only on this path: it loads OpenSSL, which a CLI read does not need

    return hashlib.blake2b(len(key).to_bytes(2, "big") + key + op_id.encode(), digest_size=16).hexdigest()


def _check_op_id(op_id: object) -> None:
    """An operation id: a str of 1 to 256 bytes of printable UTF-8 (``invalid-argument`` otherwise)."""
    if type(op_id) is not str:
        raise InvalidArgument(f"op_id must be a str, not {type(op_id).__name__}")
    try:
        size = len(op_id.encode())
    except UnicodeEncodeError:
        raise InvalidArgument(f"op_id {op_id!r} is not valid Unicode (it contains a lone surrogate)") from None
    if not 0 < size <= MAX_OP_ID_BYTES:
        raise InvalidArgument(f"op_id must be 1 to {MAX_OP_ID_BYTES} bytes of UTF-8, got {size} bytes")
    if not op_id.isprintable():
        raise InvalidArgument(f"op_id {op_id!r} contains a non-printable character (a control character, ...)")


def _as_bytes(value: object) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgument(f"values are bytes (or bytearray/memoryview), not {type(value).__name__}")


def _too_large(value: bytes, maximum: int) -> ValueTooLarge:
    return ValueTooLarge(f"value is {len(value)} bytes; the maximum is {maximum} bytes")


def _internal(exc: Exception) -> InternalError:
    return InternalError(f"storage backend failed: {type(exc).__name__}: {exc}")


def _refused_operation(storage: object) -> str | None:
    """The :class:`Operation` value of the public method of *storage* on the call stack (outermost), or ``None``.

    Only on the (rare) quota-refusal path: the write paths do not carry their
    operation name down to the backend call, and passing it would cost every
    write; the caller's frame names it (``set_many`` -> ``set-many``, a
    transaction's commit -> ``None``).
    """
    import sys

    found: str | None = None
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_locals.get("self") is storage:
            name = frame.f_code.co_name.replace("_", "-")
            if name in _OPERATION_NAMES:
                found = name
        frame = frame.f_back  # type: ignore[assignment]
    return found


_OPERATION_NAMES = frozenset(operation.value for operation in Operation)


def _check_timeout(timeout: object) -> None:
    """``watch``/``awatch``'s *timeout*: ``None`` or a finite number of seconds >= 0, else ``invalid-argument``."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 <= timeout < math.inf:
        raise InvalidArgument(f"timeout must be None or a finite number of seconds >= 0, got {timeout!r}")
