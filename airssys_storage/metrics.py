"""Metrics and tracing: per component and operation counts, bytes, errors and latencies; exporters.

Off by default. With the setting ``metrics = true`` (environment
``AIRSSYS_STORAGE_METRICS=true``) a :class:`~airssys_storage.StorageManager`
hands out a counting subclass of :class:`~airssys_storage.ComponentStorage`
instead of the plain class, so with metrics off every operation runs exactly
the uninstrumented code (no flag is tested per call). ``metrics_latency =
true`` adds a latency histogram per operation, ``tracing = true`` an
OpenTelemetry span per operation (both need ``metrics = true``).

What is counted, per component and operation (the :class:`~airssys_storage.Operation`
value, e.g. ``get``, ``set-many``, ``get-ttl``; ``usage()`` and ``size()``
count as ``size``): calls (``count``, failed ones included), failures by
error code (``errors``, e.g. ``permission-denied``, ``quota-exceeded``),
``bytes_read`` (bytes of the values returned) and ``bytes_written`` (bytes of
the values stored; keys are not counted), and with ``metrics_latency`` the
seconds each call took. Per component, read when a snapshot is taken: bytes
used, keys, quota and percent used, and the soft quota crossings
(:mod:`airssys_storage.quota_warnings`). Operations inside a
:class:`~airssys_storage.Transaction` are not counted; its commit is (as the
write batch it applies, ``transaction-commit``).

Counts are kept in plain Python integers without a lock (a lock would double
the cost): exact in one thread; with several threads on one component a
count can miss an increment when a thread switch falls inside it (CPython
switches threads every 5 ms), which a rate graph never shows.

Exporters (optional extras):

* :meth:`StorageManager.metrics` (always there): a JSON-serialisable snapshot, see :func:`snapshot`.
* Prometheus (``pip install 'airssys-storage[metrics]'``, prometheus-client):
  :func:`prometheus_app` (an ASGI app), :func:`prometheus_text` (the exposition
  text), :func:`prometheus_collector` (to register in a host's own registry).
* OpenTelemetry (``pip install 'airssys-storage[otel]'``, opentelemetry-api;
  a no-op unless the host installs an SDK): observable instruments on the
  global meter provider, registered when the first manager with metrics on
  opens, and spans with ``tracing = true``. Attribute names follow the
  OpenTelemetry database semantic conventions: ``db.system.name`` (the
  engine: ``sqlite``, ``postgresql``, ``memory`` …), ``db.namespace`` (the
  component id), ``db.operation.name`` (the operation) and ``error.type``
  (the error code).

Fork: the OpenTelemetry SDK does not reset the locks of its span exporters
and histogram aggregations in a forked child, so a process that forks while
another of its threads is inside a traced operation can leave the child
waiting forever on its first span. With ``tracing = true`` fork worker
processes before starting threads that use the storage (as pre-fork servers
do), or use the ``forkserver``/``spawn`` start methods.

The metric names, labels and units are listed in the README ("Metrics").
"""

from __future__ import annotations

import bisect
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigurationError, QuotaExceeded, StorageError
from .operations import Operation
from .storage import ComponentStorage, _internal

if TYPE_CHECKING:
    from .storage import StorageManager

__all__ = [
    "LATENCY_BUCKETS",
    "OperationStats",
    "prometheus_app",
    "prometheus_collector",
    "prometheus_text",
    "snapshot",
]

#: Upper bounds of the latency histogram's buckets, in seconds (a last bucket counts what lies above).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: The operation name of a transaction's commit.
TRANSACTION_COMMIT = "transaction-commit"
OPERATION_NAMES: tuple[str, ...] = (*(operation.value for operation in Operation), TRANSACTION_COMMIT)

# Managers with metrics on, for the exporters (weakly: a closed, dropped manager leaves).
_managers: weakref.WeakSet[StorageManager] = weakref.WeakSet()
_otel_lock = threading.Lock()
_otel_registered = False


class OperationStats:
    """The counters of one operation of one component (see the module docs for their meaning)."""

    __slots__ = ("bytes_read", "bytes_written", "count", "errors", "latency_counts", "latency_sum")

    def __init__(self) -> None:
        self.count = 0
        self.errors: dict[str, int] = {}
        self.bytes_read = 0
        self.bytes_written = 0
        #: Calls per bucket of :data:`LATENCY_BUCKETS`, not cumulative; the last one counts those above.
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def fail(self, code: str) -> None:
        self.count += 1
        self.errors[code] = self.errors.get(code, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "errors": dict(self.errors),
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "latency_seconds": {
                "buckets": list(LATENCY_BUCKETS),
                "counts": list(self.latency_counts),
                "sum": self.latency_sum,
            },
        }


class _ManagerMetrics:
    """What one manager counts: component id -> operation name -> :class:`OperationStats`."""

    def __init__(self, manager: StorageManager) -> None:
        settings = manager.settings
        self.latency = bool(settings.metrics_latency or settings.tracing)
        self.tracing = bool(settings.tracing)
        self.components: dict[str, dict[str, OperationStats]] = {}
        self.lock = threading.Lock()
        url = settings.resolved_url
        self.system = url.split(":", 1)[0].split("+", 1)[0]  # sqlite, postgresql, mysql, memory, leveldb …
        from .plugins import redact_url

        self.store = redact_url(url)
        self.tracer: Any = None
        self.duration: Any = None
        if self.tracing:
            self.tracer, self.duration = _otel_tracer()

    def stats_for(self, component: str) -> dict[str, OperationStats]:
        with self.lock:
            found = self.components.get(component)
            if found is None:
                found = self.components[component] = {name: OperationStats() for name in OPERATION_NAMES}
            return found


def attach(manager: StorageManager) -> None:
    """Turn metrics on for *manager* (called by its constructor with ``settings.metrics`` true)."""
    metrics = _ManagerMetrics(manager)
    manager._metrics = metrics
    manager._storage_class = (
        _TracedStorage if metrics.tracing else _TimedStorage if metrics.latency else _CountingStorage
    )
    _managers.add(manager)
    _register_otel_instruments()


def snapshot(manager: StorageManager) -> dict[str, Any]:
    """:meth:`StorageManager.metrics`: the counters and gauges of *manager*'s components now.

    Shape (every number an int unless said)::

        {"enabled": bool,                 # settings.metrics
         "taken_at": float,               # seconds since the epoch
         "components": {component_id: {
             "operations": {operation: {"count", "errors": {code: n}, "bytes_read", "bytes_written",
                                        "latency_seconds": {"buckets": [upper bound, s …],
                                                            "counts": [n per bucket …, n above the last],
                                                            "sum": float seconds}}},
             "usage": {"bytes", "keys", "quota": int | None, "percent": float | None},
             "quota_warnings": {percent as str: crossings}}}}

    ``operations`` is empty with metrics off; ``usage`` is read from the
    backend's counters (O(1) per component, expired keys included until
    swept); ``percent`` is ``None`` without a quota (and 100.0 for a quota of
    0). Latency counts stay 0 without ``metrics_latency``. Components are
    those opened through *manager*.
    """
    from .storage import _wrapped

    metrics: _ManagerMetrics | None = manager._metrics
    taken_at = time.time()
    components: dict[str, Any] = {}
    backend = manager.backend
    for component in manager.component_ids():
        state = manager._components[component]
        usage = _wrapped(backend.usage, component)
        quota = state.quota
        percent = None if quota is None else (100.0 if quota == 0 else usage.bytes * 100 / quota)
        stats = {} if metrics is None else metrics.components.get(component, {})
        soft = state.soft
        components[component] = {
            "operations": {name: op.as_dict() for name, op in stats.items()},
            "usage": {"bytes": usage.bytes, "keys": usage.keys, "quota": quota, "percent": percent},
            "quota_warnings": {}
            if soft is None
            else {f"{p:g}": n for p, n in zip(soft.percents, soft.crossings, strict=True)},
        }
    return {"enabled": metrics is not None, "taken_at": taken_at, "components": components}


# -- the instrumented storage classes ----------------------------------------------------


def _value_bytes(values: Iterable[bytes | None]) -> int:
    return sum(len(value) for value in values if value is not None)


def _pair_bytes(pairs: Iterable[tuple[str, bytes]]) -> int:
    return sum(len(pair[1]) for pair in pairs)


#: method name -> (operation name, bytes read from the result, bytes written from (args, kwargs, result)).
_Read = Callable[[Any], int]
_Written = Callable[[tuple[Any, ...], dict[str, Any], Any], int]
_METHODS: dict[str, tuple[str, _Read | None, _Written | None]] = {
    "get": ("get", lambda value: 0 if value is None else len(value), None),
    "set": ("set", None, lambda args, kwargs, _: len(args[1] if len(args) > 1 else kwargs["value"])),
    "delete": ("delete", None, None),
    "has": ("has", None, None),
    "keys": ("keys", None, None),
    "size": ("size", None, None),
    "usage": ("size", None, None),
    "clear": ("clear", None, None),
    "get_many": ("get-many", _value_bytes, None),
    "set_many": ("set-many", None, lambda args, kwargs, _: _items_bytes(args[0] if args else kwargs["items"])),
    "delete_many": ("delete-many", None, None),
    "range": ("range", _pair_bytes, None),
    "scan": ("scan", lambda page: _pair_bytes(page[0]), None),
    "get_entry": ("get-entry", lambda entry: 0 if entry is None else len(entry.value), None),
    "compare_and_swap": (
        "compare-and-swap",
        None,
        lambda args, kwargs, _: len(args[1] if len(args) > 1 else kwargs["value"]),
    ),
    "set_if_absent": (
        "set-if-absent",
        None,
        lambda args, kwargs, stored: len(args[1] if len(args) > 1 else kwargs["value"]) if stored else 0,
    ),
    "delete_if": ("delete-if", None, None),
    "increment": ("increment", None, None),
    "expire": ("expire", None, None),
    "persist": ("persist", None, None),
    "ttl": ("get-ttl", None, None),
    "purge_expired": ("purge-expired", None, None),
    "delete_prefix": ("delete-prefix", None, None),
    "delete_range": ("delete-range", None, None),
    "limits": ("limits", None, None),
}


_ITEMS_VIEW: type[Any] = type({}.items())
_T = TypeVar("_T")


def _items_bytes(items: Any) -> int:
    """Value bytes of set_many's *items* (already validated: the call succeeded); a one-shot iterator: 0."""
    kind = type(items)
    if kind is not list and kind is not tuple:  # the common case skips the ABC check
        if isinstance(items, Mapping):
            items = items.items()
        elif not isinstance(items, (list, tuple, _ITEMS_VIEW)):
            return 0
    return sum([len(pair[1]) for pair in items])


def _counting(method: Callable[..., Any], name: str, read: _Read | None, written: _Written | None) -> Any:
    def counted(self: _CountingStorage, *args: Any, **kwargs: Any) -> Any:
        stats = self._ops[name]
        try:
            result = method(self, *args, **kwargs)
        except StorageError as exc:
            stats.fail(exc.code)
            raise
        stats.count += 1
        if read is not None:
            stats.bytes_read += read(result)
        if written is not None:
            stats.bytes_written += written(args, kwargs, result)
        return result

    return counted


def _timing(method: Callable[..., Any], name: str, read: _Read | None, written: _Written | None) -> Any:
    def timed(self: _CountingStorage, *args: Any, **kwargs: Any) -> Any:
        stats = self._ops[name]
        start = perf_counter()
        try:
            result = method(self, *args, **kwargs)
        except StorageError as exc:
            _observe(stats, perf_counter() - start)
            stats.fail(exc.code)
            raise
        _observe(stats, perf_counter() - start)
        stats.count += 1
        if read is not None:
            stats.bytes_read += read(result)
        if written is not None:
            stats.bytes_written += written(args, kwargs, result)
        return result

    return timed


def _tracing(method: Callable[..., Any], name: str, read: _Read | None, written: _Written | None) -> Any:
    timed = _timing(method, name, read, written)

    def traced(self: _CountingStorage, *args: Any, **kwargs: Any) -> Any:
        metrics: _ManagerMetrics = self._manager._metrics
        attributes = {"db.system.name": metrics.system, "db.namespace": self._ns, "db.operation.name": name}
        start = perf_counter()
        with metrics.tracer.start_as_current_span(
            f"{name} {self._ns}", kind=_SPAN_KIND_CLIENT, attributes=attributes, record_exception=False
        ) as span:
            try:
                return timed(self, *args, **kwargs)
            except StorageError as exc:
                attributes = {**attributes, "error.type": exc.code}
                span.set_attribute("error.type", exc.code)
                span.set_status(_error_status(exc))
                raise
            finally:
                metrics.duration.record(perf_counter() - start, attributes)

    return traced


def _observe(stats: OperationStats, seconds: float) -> None:
    stats.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
    stats.latency_sum += seconds


class _CountingStorage(ComponentStorage):
    """ComponentStorage that counts its operations (metrics on); see the module docs."""

    __slots__ = ("_ops", "_s_delete", "_s_get", "_s_has", "_s_set")
    _wrap = staticmethod(_counting)

    def __init__(self, manager: StorageManager, state: Any) -> None:
        super().__init__(manager, state)
        self._ops = ops = manager._metrics.stats_for(self._ns)
        self._s_get, self._s_set, self._s_has, self._s_delete = ops["get"], ops["set"], ops["has"], ops["delete"]

    # The hottest calls count without the generic wrapper's *args, dict lookup and byte-counting
    # callbacks. get, has and set go further: their common case (the operation allowed without a
    # per-key policy, a key that needs no more than the inline check of storage.py, and for set a
    # bytes value within the limit and no ttl) calls the backend here, without a second Python frame
    # (the frame was most of the counters' cost: issue 15, benchmarks/bench_metrics.py). Every other
    # case, and a set refused for quota (retried through the base method, which sweeps first: the
    # refused put wrote nothing), takes the base method, counted once.
    def get(self, key: str) -> bytes | None:
        stats = self._s_get
        if "get" in self._state.fast_allowed and (
            type(key) is str and key.isprintable() and 0 < len(raw := key.encode()) <= self._max_key
        ):
            try:
                value = self._backend.get(self._ns, raw)
            except Exception as exc:
                raise _failed(stats, exc)  # noqa: B904 - _failed sets the cause as the base method does
        else:
            value = _counted(stats, _get, self, key)
        stats.count += 1
        if value is not None:
            stats.bytes_read += len(value)
        return value

    def set(self, key: str, value: bytes | bytearray | memoryview, ttl: float | None = None) -> int:  # type: ignore[override]
        stats = self._s_set
        state = self._state
        if (
            ttl is None
            and "set" in state.fast_allowed
            and type(value) is bytes
            and len(value) <= self._max_value
            and (type(key) is str and key.isprintable() and 0 < len(raw := key.encode()) <= self._max_key)
        ):
            try:
                version = self._backend.put_one(self._ns, raw, value, state.limit)
            except QuotaExceeded:  # nothing was written: the base method sweeps and retries
                version = _counted(stats, _set, self, key, value, ttl)
            except Exception as exc:
                raise _failed(stats, exc)  # noqa: B904 - as in get
        else:
            version = _counted(stats, _set, self, key, value, ttl)
        stats.count += 1
        stats.bytes_written += len(value)
        return version

    def has(self, key: str) -> bool:
        stats = self._s_has
        plain = type(key) is str and key.isprintable() and 0 < len(raw := key.encode()) <= self._max_key
        if not plain or "has" not in self._state.fast_allowed:
            found = _counted(stats, _has, self, key)
        else:
            try:
                found = self._backend.has(self._ns, raw)
            except Exception as exc:
                raise _failed(stats, exc)  # noqa: B904 - as in get
        stats.count += 1
        return found

    def delete(self, key: str) -> bool:
        stats = self._s_delete
        try:
            existed = _delete(self, key)
        except StorageError as exc:
            stats.fail(exc.code)
            raise
        stats.count += 1
        return existed

    def _commit(self, writes: Any) -> Any:
        """A transaction's commit (Transaction.commit calls its parent's _commit)."""
        stats = self._ops[TRANSACTION_COMMIT]
        try:
            plan = ComponentStorage._apply(self, writes)
        except StorageError as exc:
            stats.fail(exc.code)
            raise
        stats.count += 1
        stats.bytes_written += sum(len(put.value) for put in plan.puts if put.value is not None)
        return plan


_get, _has, _delete = ComponentStorage.get, ComponentStorage.has, ComponentStorage.delete
_set: Callable[..., int] = ComponentStorage.set


def _failed(stats: OperationStats, exc: Exception) -> StorageError:
    """What a base method raises for the backend's *exc* (a raw one becomes ``internal-error``), counted."""
    if isinstance(exc, StorageError):
        stats.fail(exc.code)
        return exc
    error = _internal(exc)
    error.__cause__ = exc  # as `raise _internal(exc) from exc`
    stats.fail(error.code)
    return error


def _counted(stats: OperationStats, method: Callable[..., _T], *args: Any) -> _T:
    """*method*(*args*), its failure counted (its success is counted by the caller)."""
    try:
        return method(*args)
    except StorageError as exc:
        stats.fail(exc.code)
        raise


class _TimedStorage(_CountingStorage):
    """Counts and latency histograms (``metrics_latency``)."""

    __slots__ = ()
    _wrap = staticmethod(_timing)


class _TracedStorage(_CountingStorage):
    """Counts, latency histograms and an OpenTelemetry span per operation (``tracing``)."""

    __slots__ = ()
    _wrap = staticmethod(_tracing)


def _install(cls: type[_CountingStorage], skip: frozenset[str]) -> None:
    for attribute, (name, read, written) in _METHODS.items():
        if attribute not in skip:
            setattr(cls, attribute, cls._wrap(getattr(ComponentStorage, attribute), name, read, written))


_install(_CountingStorage, frozenset({"get", "set", "has", "delete"}))
_install(_TimedStorage, frozenset())
_install(_TracedStorage, frozenset())


# -- OpenTelemetry -------------------------------------------------------------------------

_SPAN_KIND_CLIENT: Any = None


def _otel_tracer() -> tuple[Any, Any]:
    """The tracer and the ``db.client.operation.duration`` histogram (``tracing = true``)."""
    global _SPAN_KIND_CLIENT
    try:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry import trace
    except ImportError:
        raise ConfigurationError(
            "tracing = true needs opentelemetry-api: pip install 'airssys-storage[otel]' "
            "(and an OpenTelemetry SDK to export the spans), or set tracing = false"
        ) from None
    from . import __version__

    _SPAN_KIND_CLIENT = trace.SpanKind.CLIENT
    tracer = trace.get_tracer("airssys_storage", __version__)
    duration = otel_metrics.get_meter("airssys_storage", __version__).create_histogram(
        "db.client.operation.duration",
        unit="s",
        description="Duration of airssys-storage operations (tracing = true)",
        explicit_bucket_boundaries_advisory=list(LATENCY_BUCKETS),
    )
    return tracer, duration


def _error_status(exc: StorageError) -> Any:
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR, exc.code)


def _register_otel_instruments() -> None:
    """Observable OpenTelemetry instruments over every manager with metrics on (once per process).

    Nothing when opentelemetry-api is not installed; with the API alone they
    are no-ops; an SDK's meter provider (set before or after) reads them.
    """
    global _otel_registered
    with _otel_lock:
        if _otel_registered:
            return
        import importlib.util

        if importlib.util.find_spec("opentelemetry") is None:
            return
        from opentelemetry.metrics import CallbackOptions, Observation, get_meter

        from . import __version__

        meter = get_meter("airssys_storage", __version__)
        cache: dict[str, Any] = {}

        def snapshots() -> list[tuple[_ManagerMetrics, dict[str, Any]]]:
            # One snapshot per collection serves every instrument (each reads the usage counters).
            now = time.monotonic()
            if cache.get("at", -1.0) < now - 0.5:
                cache["at"], cache["value"] = now, [(m._metrics, snapshot(m)) for m in list(_managers) if not m._closed]
            taken: list[tuple[_ManagerMetrics, dict[str, Any]]] = cache["value"]
            return taken

        def operations(field: str) -> Callable[[CallbackOptions], Iterator[Observation]]:
            def observe(options: CallbackOptions) -> Iterator[Observation]:
                for metrics, taken in snapshots():
                    for component, data in taken["components"].items():
                        for name, op in data["operations"].items():
                            if op["count"]:
                                attributes = _otel_attributes(metrics, component, name)
                                yield Observation(op[field], attributes)

            return observe

        def errors(options: CallbackOptions) -> Iterator[Observation]:
            for metrics, taken in snapshots():
                for component, data in taken["components"].items():
                    for name, op in data["operations"].items():
                        for code, count in op["errors"].items():
                            yield Observation(count, {**_otel_attributes(metrics, component, name), "error.type": code})

        def usage(field: str, scale: float = 1.0) -> Callable[[CallbackOptions], Iterator[Observation]]:
            def observe(options: CallbackOptions) -> Iterator[Observation]:
                for metrics, taken in snapshots():
                    for component, data in taken["components"].items():
                        value = data["usage"][field]
                        if value is not None:
                            attributes = {"db.system.name": metrics.system, "db.namespace": component}
                            yield Observation(value * scale, attributes)

            return observe

        def warnings(options: CallbackOptions) -> Iterator[Observation]:
            for metrics, taken in snapshots():
                for component, data in taken["components"].items():
                    for percent, count in data["quota_warnings"].items():
                        attributes = {"db.system.name": metrics.system, "db.namespace": component, "threshold": percent}
                        yield Observation(count, attributes)

        meter.create_observable_counter(
            "airssys_storage.operations", [operations("count")], unit="{operation}", description="Operations called"
        )
        meter.create_observable_counter(
            "airssys_storage.operation.errors", [errors], unit="{operation}", description="Operations failed, by code"
        )
        meter.create_observable_counter(
            "airssys_storage.io.read", [operations("bytes_read")], unit="By", description="Bytes of values returned"
        )
        meter.create_observable_counter(
            "airssys_storage.io.written", [operations("bytes_written")], unit="By", description="Bytes of values stored"
        )
        meter.create_observable_gauge("airssys_storage.usage", [usage("bytes")], unit="By", description="Bytes used")
        meter.create_observable_gauge("airssys_storage.keys", [usage("keys")], unit="{key}", description="Keys stored")
        meter.create_observable_gauge("airssys_storage.quota", [usage("quota")], unit="By", description="Byte quota")
        meter.create_observable_gauge(
            "airssys_storage.quota.utilization", [usage("percent", 0.01)], unit="1", description="Used / quota"
        )
        meter.create_observable_counter(
            "airssys_storage.quota.warnings", [warnings], unit="{crossing}", description="Soft quota crossings"
        )
        _otel_registered = True


def _otel_attributes(metrics: _ManagerMetrics, component: str, operation: str) -> dict[str, str]:
    return {"db.system.name": metrics.system, "db.namespace": component, "db.operation.name": operation}


# -- Prometheus ----------------------------------------------------------------------------


def prometheus_collector(manager: StorageManager | None = None) -> Any:
    """A prometheus-client collector of *manager*'s metrics (``None``: every manager with metrics on).

    Register it in a host's own ``CollectorRegistry``. ``configuration``
    error when prometheus-client is not installed (the ``metrics`` extra).
    """
    _prometheus()
    return _Collector(manager)


def prometheus_app(manager: StorageManager | None = None) -> Any:
    """An ASGI app serving the Prometheus exposition of *manager* (``None``: every manager with metrics on).

    prometheus-client's ``make_asgi_app`` over a registry holding only
    :func:`prometheus_collector`; mount it in a host's server (Starlette
    ``Mount("/metrics", app)``, FastAPI ``app.mount``) or serve it with uvicorn.
    """
    prometheus_client = _prometheus()
    return prometheus_client.make_asgi_app(registry=_registry(manager))


def prometheus_text(manager: StorageManager | None = None) -> str:
    """The Prometheus text exposition (format 0.0.4) of *manager* (``None``: every manager with metrics on)."""
    prometheus_client = _prometheus()
    text: bytes = prometheus_client.generate_latest(_registry(manager))
    return text.decode()


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigurationError(
            "the Prometheus exporter needs prometheus-client: pip install 'airssys-storage[metrics]'"
        ) from None
    return prometheus_client


def _registry(manager: StorageManager | None) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(manager))
    return registry


class _Collector:
    """Builds the metric families from :func:`snapshot` at each scrape."""

    def __init__(self, manager: StorageManager | None) -> None:
        self._manager = None if manager is None else weakref.ref(manager)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        if self._manager is None:
            managers = [m for m in list(_managers) if not m._closed]
        else:
            found = self._manager()
            managers = [] if found is None or found._closed else [found]
        managers = [m for m in managers if m._metrics is not None]  # metrics off: nothing to expose
        op_labels = ["store", "component", "operation"]
        calls = CounterMetricFamily(
            "airssys_storage_operations", "Operations called (failed ones included)", labels=op_labels
        )
        errors = CounterMetricFamily(
            "airssys_storage_operation_errors", "Operations failed, by error code", labels=[*op_labels, "code"]
        )
        read = CounterMetricFamily("airssys_storage_read_bytes", "Bytes of values returned", labels=op_labels)
        written = CounterMetricFamily("airssys_storage_written_bytes", "Bytes of values stored", labels=op_labels)
        latency = HistogramMetricFamily(
            "airssys_storage_operation_duration_seconds", "Operation latency (metrics_latency = true)", labels=op_labels
        )
        labels = ["store", "component"]
        used = GaugeMetricFamily("airssys_storage_usage_bytes", "Bytes used (keys + values)", labels=labels)
        keys = GaugeMetricFamily("airssys_storage_keys", "Keys stored (expired ones until swept)", labels=labels)
        quota = GaugeMetricFamily("airssys_storage_quota_bytes", "Byte quota (absent: unlimited)", labels=labels)
        ratio = GaugeMetricFamily("airssys_storage_quota_used_ratio", "Bytes used / quota (0 to 1)", labels=labels)
        crossings = CounterMetricFamily(
            "airssys_storage_quota_warnings", "Upward crossings of soft quota thresholds", labels=[*labels, "threshold"]
        )
        for manager in managers:
            metrics: _ManagerMetrics = manager._metrics
            store = metrics.store
            for component, data in snapshot(manager)["components"].items():
                for name, op in data["operations"].items():
                    if not op["count"]:
                        continue
                    values = [store, component, name]
                    calls.add_metric(values, op["count"])
                    for code, count in op["errors"].items():
                        errors.add_metric([*values, code], count)
                    read.add_metric(values, op["bytes_read"])
                    written.add_metric(values, op["bytes_written"])
                    if metrics.latency:
                        histogram = op["latency_seconds"]
                        cumulative, buckets = 0, []
                        for bound, count in zip(
                            [*histogram["buckets"], float("inf")], histogram["counts"], strict=True
                        ):
                            cumulative += count
                            buckets.append((_bound(bound), cumulative))
                        latency.add_metric(values, buckets, histogram["sum"])
                usage = data["usage"]
                used.add_metric([store, component], usage["bytes"])
                keys.add_metric([store, component], usage["keys"])
                if usage["quota"] is not None:
                    quota.add_metric([store, component], usage["quota"])
                    ratio.add_metric([store, component], usage["percent"] / 100)
                for percent, count in data["quota_warnings"].items():
                    crossings.add_metric([store, component, percent], count)
        yield from (calls, errors, read, written, latency, used, keys, quota, ratio, crossings)


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
