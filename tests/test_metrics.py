"""Metrics (issue 15): counters, bytes, error codes, latency histograms, the snapshot and the exporters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from airssys_storage import (
    Access,
    ComponentStorage,
    Manifest,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    StorageManager,
    StorageSettings,
)
from airssys_storage import metrics as metrics_module
from airssys_storage._settings_fast import read_plain
from airssys_storage.testing import BackendConformance


def manager_with(**settings: Any) -> StorageManager:
    return StorageManager.from_settings(StorageSettings(url="memory://", **settings))


@pytest.fixture
def counted() -> Iterator[StorageManager]:
    with manager_with(metrics=True) as manager:
        yield manager


def ops(manager: StorageManager, component: str = "app") -> dict[str, Any]:
    found: dict[str, Any] = manager.metrics()["components"][component]["operations"]
    return found


def test_metrics_are_off_by_default_and_the_plain_class_serves() -> None:
    with manager_with() as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE, 1000))
        assert type(store) is ComponentStorage
        store.set("k", b"vv")
        taken = manager.metrics()
    assert taken["enabled"] is False
    assert taken["components"]["app"]["operations"] == {}
    assert taken["components"]["app"]["usage"] == {"bytes": 3, "keys": 1, "quota": 1000, "percent": 0.3}
    json.dumps(taken)


def test_the_environment_turns_metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRSSYS_STORAGE_URL", "memory://")
    monkeypatch.setenv("AIRSSYS_STORAGE_METRICS", "true")
    assert StorageSettings().metrics is True
    plain = read_plain()
    assert plain is not None and plain.metrics is True  # the CLI's fast path agrees
    with StorageManager.from_settings() as manager:
        assert manager.metrics()["enabled"] is True
        assert isinstance(manager.component(Manifest("app", Access.READ_ONLY)), metrics_module._CountingStorage)


@pytest.mark.parametrize("value", ["yes", "1", "on"])
def test_metrics_take_true_or_false_only(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from airssys_storage import ConfigurationError

    monkeypatch.setenv("AIRSSYS_STORAGE_METRICS", value)
    with pytest.raises(ConfigurationError, match="metrics"):
        StorageSettings()
    assert read_plain() is None  # the fast path leaves the verdict to the model


def test_counts_bytes_and_error_codes(counted: StorageManager) -> None:
    store = counted.component(Manifest("app", Access.READ_WRITE, 100))
    store.set("a", b"12345")
    store.set("b", bytearray(b"xyz"))
    assert store.get("a") == b"12345"
    assert store.get("missing") is None
    store.set_many({"c": b"1", "d": b"22"})
    assert store.get_many(["a", "c", "zz"]) == [b"12345", b"1", None]
    assert store.scan()[0][0] == ("a", b"12345")
    assert store.compare_and_swap("a", b"abc", version=1) == 2
    assert store.set_if_absent("a", b"nope") is False
    store.delete("b")
    assert store.has("a")
    assert store.increment("n", 5) == 5
    with pytest.raises(PermissionDenied):
        store.clear()
    with pytest.raises(QuotaExceeded):
        store.set("big", b"x" * 200)
    with pytest.raises(StorageError) as info:
        store.get("bad\nkey")
    assert info.value.code == "invalid-key"
    with store.transaction() as tx:
        tx.set("t", b"1234")
    found = ops(counted)
    assert found["set"]["count"] == 3
    assert found["set"]["bytes_written"] == 8  # the refused write stored nothing
    assert found["set"]["errors"] == {"quota-exceeded": 1}
    assert found["get"]["count"] == 3 and found["get"]["bytes_read"] == 5
    assert found["get"]["errors"] == {"invalid-key": 1}
    assert found["set-many"]["count"] == 1 and found["set-many"]["bytes_written"] == 3
    assert found["get-many"]["bytes_read"] == 6
    assert found["scan"]["bytes_read"] == 5 + 3 + 1 + 2
    assert found["compare-and-swap"]["bytes_written"] == 3
    assert found["set-if-absent"] == {**found["set-if-absent"], "count": 1, "bytes_written": 0}
    assert found["delete"]["count"] == found["has"]["count"] == found["increment"]["count"] == 1
    assert found["clear"] == {**found["clear"], "count": 1, "errors": {"permission-denied": 1}}
    assert found["transaction-commit"]["count"] == 1 and found["transaction-commit"]["bytes_written"] == 4
    assert found["keys"]["count"] == 0
    latency = found["get"]["latency_seconds"]
    assert latency["buckets"] == list(metrics_module.LATENCY_BUCKETS)
    assert latency["counts"] == [0] * (len(metrics_module.LATENCY_BUCKETS) + 1)  # no histograms asked
    usage = counted.metrics()["components"]["app"]["usage"]
    assert usage["quota"] == 100 and usage["keys"] == 5 and usage["percent"] == usage["bytes"]
    json.dumps(counted.metrics())


def test_the_written_out_get_has_and_set_count_as_the_base_methods(
    counted: StorageManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A set refused for quota until a sweep makes room succeeds once; raw backend errors count as internal-error."""
    import time

    store = counted.component(Manifest("app", Access.READ_WRITE, 100))
    store.set("old", b"o" * 60, ttl=0.05)
    time.sleep(0.1)
    assert store.set("new", b"n" * 60) >= 1  # refused by the backend, then swept and stored by the base method
    assert store.get("old") is None and store.has("new")
    backend = counted.backend
    for name in ("get", "has", "put_one"):
        monkeypatch.setattr(backend, name, lambda *args: (_ for _ in ()).throw(RuntimeError("disk on fire")))
    for call in (lambda: store.get("new"), lambda: store.has("new"), lambda: store.set("new", b"x")):
        with pytest.raises(StorageError, match="disk on fire") as info:
            call()
        assert info.value.code == "internal-error"
    found = ops(counted)
    assert found["set"] == {**found["set"], "count": 3, "bytes_written": 120, "errors": {"internal-error": 1}}
    assert found["get"] == {**found["get"], "count": 2, "bytes_read": 0, "errors": {"internal-error": 1}}
    assert found["has"] == {**found["has"], "count": 2, "errors": {"internal-error": 1}}


def test_counters_are_shared_by_the_handles_of_one_component(counted: StorageManager) -> None:
    first = counted.component(Manifest("app", Access.READ_WRITE))
    second = counted.component(Manifest("app", Access.READ_WRITE))
    first.set("k", b"v")
    second.set("k", b"w")
    counted.component(Manifest("other", Access.READ_ONLY)).get("k")
    assert ops(counted)["set"]["count"] == 2
    assert ops(counted, "other")["get"]["count"] == 1


def test_latency_histogram_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([0.0, 0.003, 10.0, 10.00002, 20.0, 31.0])
    monkeypatch.setattr(metrics_module, "perf_counter", lambda: next(ticks))
    with manager_with(metrics=True, metrics_latency=True) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        store.set("k", b"v")  # 3 ms
        store.get("k")  # 20 µs
        with pytest.raises(PermissionDenied):
            store.clear()  # 11 s: above every bound, an error still timed
        found = ops(manager)
    buckets = list(metrics_module.LATENCY_BUCKETS)

    def expect(seconds: float) -> list[int]:
        counts = [0] * (len(buckets) + 1)
        counts[next((i for i, bound in enumerate(buckets) if seconds <= bound), len(buckets))] += 1
        return counts

    assert found["set"]["latency_seconds"]["counts"] == expect(0.003)
    assert found["get"]["latency_seconds"]["counts"] == expect(0.00002)
    assert found["clear"]["latency_seconds"]["counts"][-1] == 1
    assert found["set"]["latency_seconds"]["sum"] == pytest.approx(0.003)


def test_prometheus_text_names_labels_and_histograms() -> None:
    pytest.importorskip("prometheus_client", reason="the 'metrics' extra (prometheus-client) is not installed")
    with manager_with(metrics=True, metrics_latency=True) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE, 1000))
        store.set("k", b"12345")
        store.get("k")
        with pytest.raises(PermissionDenied):
            store.clear()
        text = metrics_module.prometheus_text(manager)
    labels = 'component="app",operation="set",store="memory://"'
    assert f"airssys_storage_operations_total{{{labels}}} 1.0" in text
    assert f"airssys_storage_written_bytes_total{{{labels}}} 5.0" in text
    assert 'airssys_storage_read_bytes_total{component="app",operation="get",store="memory://"} 5.0' in text
    assert (
        'airssys_storage_operation_errors_total{code="permission-denied",component="app",operation="clear",'
        'store="memory://"} 1.0'
    ) in text
    assert 'airssys_storage_usage_bytes{component="app",store="memory://"} 6.0' in text
    assert 'airssys_storage_keys{component="app",store="memory://"} 1.0' in text
    assert 'airssys_storage_quota_bytes{component="app",store="memory://"} 1000.0' in text
    assert 'airssys_storage_quota_used_ratio{component="app",store="memory://"} 0.006' in text
    assert 'airssys_storage_quota_warnings_total{component="app",store="memory://",threshold="80"} 0.0' in text
    bucket = 'component="app",le="+Inf",operation="set",store="memory://"'
    assert f"airssys_storage_operation_duration_seconds_bucket{{{bucket}}} 1.0" in text
    assert f"airssys_storage_operation_duration_seconds_count{{{labels}}} 1.0" in text
    assert "# TYPE airssys_storage_operation_duration_seconds histogram" in text


def test_prometheus_app_serves_the_exposition() -> None:
    pytest.importorskip("prometheus_client", reason="the 'metrics' extra (prometheus-client) is not installed")
    with manager_with(metrics=True) as manager:
        manager.component(Manifest("app", Access.READ_WRITE)).set("k", b"v")
        app = metrics_module.prometheus_app(manager)
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []}
        asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    body = b"".join(message.get("body", b"") for message in sent[1:]).decode()
    assert 'airssys_storage_operations_total{component="app",operation="set",store="memory://"} 1.0' in body


def test_the_process_wide_exporter_sees_every_manager_with_metrics() -> None:
    pytest.importorskip("prometheus_client", reason="the 'metrics' extra (prometheus-client) is not installed")
    with manager_with(metrics=True) as first, manager_with() as second:
        first.component(Manifest("seen", Access.READ_WRITE)).set("k", b"v")
        second.component(Manifest("unseen", Access.READ_WRITE)).set("k", b"v")
        text = metrics_module.prometheus_text()
    assert 'component="seen"' in text and 'component="unseen"' not in text


# -- OpenTelemetry, with the SDK's in-memory exporter and reader --------------------------

_OTEL: dict[str, Any] = {}


def otel() -> dict[str, Any]:
    """The SDK's in-memory span exporter and metric reader, installed once per process as the global providers."""
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed")
    if not _OTEL:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        _OTEL.update(exporter=exporter, reader=reader)
    _OTEL["exporter"].clear()
    return _OTEL


def test_opentelemetry_spans_follow_the_database_conventions() -> None:
    found = otel()
    with manager_with(metrics=True, tracing=True) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        store.set("k", b"v")
        with pytest.raises(PermissionDenied):
            store.clear()
    spans = {span.name: span for span in found["exporter"].get_finished_spans()}
    assert set(spans) == {"set app", "clear app"}
    assert dict(spans["set app"].attributes) == {
        "db.system.name": "memory",
        "db.namespace": "app",
        "db.operation.name": "set",
    }
    assert spans["set app"].kind.name == "CLIENT"
    assert spans["clear app"].attributes["error.type"] == "permission-denied"
    assert spans["clear app"].status.status_code.name == "ERROR"


def test_opentelemetry_metrics_read_the_counters() -> None:
    found = otel()
    with manager_with(metrics=True, tracing=True) as manager:
        store = manager.component(Manifest("otelapp", Access.READ_WRITE, 1000))
        store.set("k", b"12345")
        data = found["reader"].get_metrics_data()
    points: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)

    def value(name: str, **attributes: str) -> Any:
        for point in points[name]:
            if all(point.attributes.get(k.replace("_", ".")) == v for k, v in attributes.items()):
                return point
        raise AssertionError(f"no {name} point with {attributes}: {points.get(name)}")

    assert value("airssys_storage.operations", db_namespace="otelapp", db_operation_name="set").value == 1
    assert value("airssys_storage.io.written", db_namespace="otelapp", db_operation_name="set").value == 5
    assert value("airssys_storage.usage", db_namespace="otelapp").value == 6
    assert value("airssys_storage.quota", db_namespace="otelapp").value == 1000
    assert value("db.client.operation.duration", db_namespace="otelapp", db_operation_name="set").count == 1


def test_tracing_without_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from airssys_storage import ConfigurationError

    real_import = builtins.__import__

    def refuse(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(ConfigurationError, match=r"airssys-storage\[otel\]"):
        manager_with(metrics=True, tracing=True)


# -- the instrumented classes behave exactly as the plain one: the conformance suite -------


class TestConformanceWithCounters(BackendConformance):
    """The shared backend suite through the counting class (memory://)."""

    @pytest.fixture
    def storage_url(self) -> str:
        return "memory://"

    @pytest.fixture
    def storage_settings(self, storage_url: str, backend_options: dict[str, Any]) -> StorageSettings:
        return StorageSettings(
            url=storage_url, max_keys_per_query=self.max_keys_per_query, max_batch_ops=self.max_batch_ops, metrics=True
        )


class TestConformanceWithSpans(TestConformanceWithCounters):
    """The shared backend suite through the timed and traced class (memory://)."""

    model_examples = 50

    @pytest.fixture
    def storage_settings(self, storage_url: str, backend_options: dict[str, Any]) -> StorageSettings:
        pytest.importorskip("opentelemetry", reason="the 'otel' extra (opentelemetry-api) is not installed")
        return StorageSettings(
            url=storage_url,
            max_keys_per_query=self.max_keys_per_query,
            max_batch_ops=self.max_batch_ops,
            metrics=True,
            tracing=True,
        )

    # The OpenTelemetry SDK's InMemorySpanExporter and its histogram aggregations hold plain
    # threading.Locks that it does not reset at fork: a child forked while the churn thread is
    # inside a span's export inherits the lock held and hangs on its first span (seen in CI).
    # That is the SDK's fork hazard, not the backend's; the fork contract of the traced class
    # runs when no SDK is installed, and of memory:// in its own suite.
    @pytest.fixture(autouse=True)
    def _no_fork_under_the_sdk(self, request: pytest.FixtureRequest) -> None:
        if _OTEL and "fork" in request.node.name:
            pytest.skip("the OpenTelemetry SDK's in-memory exporter is not fork-safe (a lock held at fork)")
