"""Every route of the explorer through Starlette's test client: pages, the JSON API, writes, refusals."""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import types
from typing import Any

import pytest
from explorer_helpers import TOKEN, MakeClient
from starlette.testclient import TestClient

from airssys_storage.cli.serve import allowed_hosts
from airssys_storage.errors import ConfigurationError
from airssys_storage.exchange import operator_storage
from airssys_storage.explorer.app import ExplorerConfig, create_app
from airssys_storage.explorer.sampler import MetricsSampler
from airssys_storage.explorer.store import ServedQuota, open_store
from airssys_storage.settings import StorageSettings
from airssys_storage.storage import StorageManager

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def csrf_of(client: TestClient, path: str) -> str:
    """The CSRF token of the forms on the page at *path* (the page also sets the session cookie)."""
    page = client.get(path)
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


# -- pages -------------------------------------------------------------------------


def test_components_page_lists_usage_quota_and_keys(make_client: MakeClient) -> None:
    client = make_client(quotas={"app": 400, "empty": None})
    page = client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    text = page.text
    for component in ("app", "other", "empty"):
        assert f'href="/components/{component}"' in text
    assert "unlimited" in text and "unknown" in text  # empty: a manifest without max quota; other: no manifest
    used = len(b"config/themedark") + len(b'doc.json{"b": [1, 2], "a": "x"}') + len(b"blob") + 256
    percent = 100 * used / 400
    assert f"{percent:.1f} %" in text
    assert 'class="bar' in text
    assert "read-only" in text


def test_api_components_mirrors_the_page(make_client: MakeClient, manager: StorageManager) -> None:
    client = make_client(quotas={"app": 1000})
    body = client.get("/api/components").json()
    rows = {row["component"]: row for row in body["components"]}
    assert set(rows) == {"app", "other"}
    usage = operator_storage(manager, "app").usage()
    assert rows["app"] == {
        "component": "app",
        "keys": 3,
        "bytes": usage.bytes,
        "quota_known": True,
        "quota_bytes": 1000,
        "used_percent": round(100 * usage.bytes / 1000, 2),
    }
    assert rows["other"]["quota_known"] is False and rows["other"]["used_percent"] is None
    assert client.get("/api/components/app").json() == rows["app"]


def test_keys_page_and_api_page_with_a_cursor(make_client: MakeClient, manager: StorageManager) -> None:
    storage = operator_storage(manager, "app")
    storage.set_many([(f"item/{i:03d}", b"x" * i) for i in range(25)])
    client = make_client()
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"prefix": "item/", "limit": 10}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/api/components/app/keys", params=params).json()
        assert body["prefix"] == "item/"
        seen += [row["key"] for row in body["keys"]]
        assert all(row["bytes"] == int(row["key"][5:]) for row in body["keys"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"item/{i:03d}" for i in range(25)]
    page = client.get("/components/app", params={"prefix": "item/", "limit": 10})
    assert page.status_code == 200
    assert page.text.count('class="key"') == 10
    next_link = re.search(r'id="next-page" href="([^"]+)"', page.text)
    assert next_link
    second = client.get(next_link.group(1).replace("&amp;", "&"))
    assert "item/010" in second.text and "item/009" not in second.text
    assert 'id="change-feed" hidden' in second.text  # the slot for the change feed's tail, hidden for now


def test_bad_cursor_and_bad_limit_are_400(make_client: MakeClient) -> None:
    client = make_client()
    bad = client.get("/api/components/app/keys", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid-argument"
    assert "cursor" in bad.json()["error"]["message"]
    # A cursor of another prefix's scan.
    cursor = client.get("/api/components/app/keys", params={"limit": 1}).json()["next_cursor"]
    other = client.get("/api/components/app/keys", params={"prefix": "zzz", "cursor": cursor})
    assert other.status_code == 400
    assert client.get("/api/components/app/keys", params={"limit": "0"}).status_code == 400
    assert client.get("/api/components/app/keys", params={"limit": "many"}).status_code == 400
    page = client.get("/components/app", params={"cursor": "not-a-cursor"})
    assert page.status_code == 400 and "invalid-argument" in page.text


def test_missing_component_is_404(make_client: MakeClient) -> None:
    client = make_client()
    for path in ("/api/components/nope", "/api/components/nope/keys", "/api/components/nope/keys/k"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "component-not-found"
    assert client.get("/api/components/Not_An_Id/keys").status_code == 404
    page = client.get("/components/nope")
    assert page.status_code == 404 and "component-not-found" in page.text
    assert client.get("/components/nope/export").status_code == 404


def test_value_page_text_json_and_hex(make_client: MakeClient, manager: StorageManager) -> None:
    client = make_client()
    text = client.get("/components/app/keys/config/theme")
    assert text.status_code == 200 and ">dark</pre>" in text.text
    assert re.search(r'id="version">\d+<', text.text)
    assert 'id="expiry">never<' in text.text
    pretty = client.get("/components/app/keys/doc.json").text
    assert "&#34;b&#34;: [\n    1," in pretty  # pretty JSON (escaped quotes), the default view for JSON
    assert "&#34;b&#34;: [1, 2]" in client.get("/components/app/keys/doc.json", params={"view": "text"}).text
    hexed = client.get("/components/app/keys/doc.json", params={"view": "hex"}).text
    assert "00000000  7b 22 62 22" in hexed
    expiring = client.get("/components/other/keys/k").text
    ttl = float(re.search(r'id="expiry">in ([0-9.]+) s<', expiring).group(1))  # type: ignore[union-attr]
    assert 0 < ttl <= 3600
    missing = client.get("/components/app/keys/absent")
    assert missing.status_code == 404 and "key-not-found" in missing.text


def test_binary_value_is_shown_in_hex_and_served_raw(make_client: MakeClient) -> None:
    client = make_client()
    page = client.get("/components/app/keys/blob")
    assert page.status_code == 200
    assert 'class="value hex"' in page.text
    assert "00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  ................" in page.text
    assert "?view=text" not in page.text  # not UTF-8 text: no text view offered
    raw = client.get("/api/components/app/keys/blob")
    assert raw.status_code == 200
    assert raw.content == bytes(range(256))
    assert raw.headers["content-type"] == "application/octet-stream"
    assert int(raw.headers["x-version"]) >= 1
    assert "x-expires-at" not in raw.headers
    expiring = client.get("/api/components/other/keys/k")
    assert 0 < float(expiring.headers["x-ttl-seconds"]) <= 3600
    assert client.get("/api/components/app/keys/absent").status_code == 404


def test_export_download_is_the_export_format(make_client: MakeClient) -> None:
    client = make_client()
    for path in ("/components/app/export", "/api/components/app/export"):
        response = client.get(path)
        assert response.status_code == 200
        assert 'filename="app.jsonl"' in response.headers["content-disposition"]
        lines = [json.loads(line) for line in response.content.splitlines()]
        assert lines[0] == {"format": "airssys-storage-export", "version": 2, "component": "app"}
        assert [line["key"] for line in lines[1:-1]] == ["blob", "config/theme", "doc.json"]
        assert base64.b64decode(lines[1]["value"]) == bytes(range(256))
        assert lines[-1]["end"]["records"] == 3


def test_static_assets_ship_with_the_package(make_client: MakeClient) -> None:
    client = make_client()
    css = client.get("/static/explorer.css")
    assert css.status_code == 200 and ".bar" in css.text
    script = client.get("/static/charts.js")
    assert script.status_code == 200 and "createElementNS" in script.text
    assert "http" not in re.sub(r"http://www\.w3\.org/2000/svg", "", script.text)  # no CDN, no remote fetch


# -- writes ------------------------------------------------------------------------


def test_read_only_explorer_refuses_every_write(make_client: MakeClient, manager: StorageManager) -> None:
    client = make_client()
    refused = [
        client.put("/api/components/app/keys/new", content=b"v", headers=AUTH),
        client.delete("/api/components/app/keys/blob", headers=AUTH),
        client.post("/api/components/app/clear", headers=AUTH),
        client.post("/api/components/app/import", content=b"", headers=AUTH),
    ]
    for response in refused:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "read-only"
        assert "--allow-writes" in response.json()["error"]["message"]
    assert operator_storage(manager, "app").usage().keys == 3
    assert 'id="set-form"' not in client.get("/components/app").text  # no write forms when read-only


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", "Bearer "])
def test_api_writes_without_the_token_are_refused(
    make_client: MakeClient, manager: StorageManager, header: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(allow_writes=True)
    headers = {} if header is None else {"Authorization": header}
    with caplog.at_level(logging.INFO, logger="airssys_storage.audit"):
        responses = [
            client.put("/api/components/app/keys/new", content=b"v", headers=headers),
            client.delete("/api/components/app/keys/blob", headers=headers),
            client.post("/api/components/app/clear", headers=headers),
        ]
    for response in responses:
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    storage = operator_storage(manager, "app")
    assert storage.get("new") is None and storage.usage().keys == 3
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "airssys_storage.audit"]
    assert [r["operation"] for r in records] == ["set", "delete", "clear"]
    assert {r["outcome"] for r in records} == {"refused"} and {r["code"] for r in records} == {"unauthorized"}


def test_api_writes_with_the_token(
    make_client: MakeClient, manager: StorageManager, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(allow_writes=True)
    storage = operator_storage(manager, "app")
    with caplog.at_level(logging.INFO, logger="airssys_storage.audit"):
        put = client.put("/api/components/app/keys/dir%2Fnew%20key", content=b"\x00\xffraw", headers=AUTH)
        assert put.status_code == 200
        assert put.json() == {"component": "app", "key": "dir/new key", "version": 1, "bytes": 5}
        assert storage.get("dir/new key") == b"\x00\xffraw"
        again = client.put("/api/components/app/keys/dir/new key", content=b"2", headers=AUTH)
        assert again.json()["version"] == 2
        ttl = client.put("/api/components/fresh/keys/t", params={"ttl": "60"}, content=b"x", headers=AUTH)
        assert ttl.status_code == 200  # a new component is created by its first key
        assert 0 < (operator_storage(manager, "fresh").ttl("t") or 0) <= 60
        deleted = client.delete("/api/components/app/keys/blob", headers=AUTH)
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
        assert client.delete("/api/components/app/keys/blob", headers=AUTH).status_code == 404
        assert client.post("/api/components/app/clear", headers=AUTH).json() == {"component": "app", "cleared": True}
    assert storage.usage().keys == 0
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "airssys_storage.audit"]
    assert [(r["operation"], r["key"], r["outcome"]) for r in records] == [
        ("set", "dir/new key", "ok"),
        ("set", "dir/new key", "ok"),
        ("set", "t", "ok"),
        ("delete", "blob", "ok"),
        ("delete", "blob", "ok"),
        ("clear", None, "ok"),
    ]
    assert records[0]["component"] == "app" and "token holder" in records[0]["who"]


def test_api_write_errors_come_from_the_core(make_client: MakeClient) -> None:
    client = make_client(allow_writes=True)
    control = client.put("/api/components/app/keys/bad%01key", content=b"v", headers=AUTH)
    assert control.status_code == 400 and control.json()["error"]["code"] == "invalid-key"
    large = client.put("/api/components/app/keys/big", content=b"x" * (1024 * 1024 + 1), headers=AUTH)
    assert large.status_code == 413 and large.json()["error"]["code"] == "value-too-large"
    bad_ttl = client.put("/api/components/app/keys/k", params={"ttl": "soon"}, content=b"v", headers=AUTH)
    assert bad_ttl.status_code == 400


def test_api_import_round_trips_an_export(make_client: MakeClient, manager: StorageManager) -> None:
    client = make_client(allow_writes=True)
    exported = client.get("/api/components/app/export").content
    refused = client.post("/api/components/copy/import", content=exported)
    assert refused.status_code == 401
    done = client.post("/api/components/copy/import", content=exported, headers=AUTH)
    assert done.status_code == 200
    assert done.json()["records"] == 3 and done.json()["written"] == 3
    assert operator_storage(manager, "copy").get("blob") == bytes(range(256))
    broken = client.post("/api/components/copy/import", content=exported[:-5], headers=AUTH)
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid-export-file"


def test_forms_need_csrf_and_the_token(make_client: MakeClient, manager: StorageManager) -> None:
    client = make_client(allow_writes=True)
    storage = operator_storage(manager, "app")
    csrf = csrf_of(client, "/components/app")
    no_csrf = client.post("/components/app/set", data={"key": "f", "value": "v", "token": TOKEN})
    assert no_csrf.status_code == 403 and "csrf-failed" in no_csrf.text
    foreign = client.post(
        "/components/app/set",
        data={"key": "f", "value": "v", "token": TOKEN, "csrf": csrf},
        headers={"Origin": "http://evil.example"},
    )
    assert foreign.status_code == 403
    no_token = client.post("/components/app/set", data={"key": "f", "value": "v", "csrf": csrf})
    assert no_token.status_code == 401 and "unauthorized" in no_token.text
    assert storage.get("f") is None
    done = client.post(
        "/components/app/set",
        data={"key": "f/x", "value": "hello", "ttl": "", "token": TOKEN, "csrf": csrf},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"].startswith("/components/app/keys/f%2Fx?notice=")
    assert storage.get("f/x") == b"hello"
    assert "stored" in client.get(done.headers["location"]).text
    # Another session's CSRF token does not pass.
    stranger = TestClient(client.app)
    stranger_csrf = csrf_of(stranger, "/components/app")
    stolen = client.post("/components/app/delete", data={"key": "f/x", "token": TOKEN, "csrf": stranger_csrf})
    assert stolen.status_code == 403
    deleted = client.post("/components/app/delete", data={"key": "f/x", "token": TOKEN, "csrf": csrf})
    assert deleted.status_code == 200 and "deleted" in deleted.text
    assert storage.get("f/x") is None


def test_form_import_and_clear(make_client: MakeClient, manager: StorageManager) -> None:
    client = make_client(allow_writes=True)
    exported = client.get("/components/app/export").content
    csrf = csrf_of(client, "/components/app")
    imported = client.post(
        "/components/other/import",
        data={"token": TOKEN, "csrf": csrf, "replace": "on"},
        files={"file": ("app.jsonl", exported, "application/x-ndjson")},
    )
    assert imported.status_code == 200 and "imported 3 keys" in imported.text
    other = operator_storage(manager, "other")
    assert sorted(other.keys()) == ["blob", "config/theme", "doc.json"]  # replace: "k" is gone
    wrong = client.post("/components/other/clear", data={"token": "nope", "csrf": csrf})
    assert wrong.status_code == 401 and other.usage().keys == 3
    cleared = client.post("/components/other/clear", data={"token": TOKEN, "csrf": csrf})
    assert cleared.status_code == 200 and "cleared component" in cleared.text
    assert other.usage().keys == 0


# -- metrics -----------------------------------------------------------------------


def test_charts_say_metrics_are_off_without_them(make_client: MakeClient) -> None:
    client = make_client()
    page = client.get("/charts")
    assert page.status_code == 200 and "metrics are off" in page.text
    body = client.get("/api/metrics").json()
    assert body["available"] is False and body["snapshot"] is None and body["points"] == []
    prometheus = client.get("/metrics")
    assert prometheus.status_code == 404 and "prometheus" in prometheus.text.lower()


def _snapshot(taken_at: float, count: int, errors: int, read: int) -> dict[str, Any]:
    operation = {
        "count": count,
        "errors": {"quota-exceeded": errors},
        "bytes_read": read,
        "bytes_written": 2 * read,
        "latency_seconds": {"buckets": [0.001, 0.01], "counts": [count, 0], "sum": 0.0},
    }
    return {
        "enabled": True,
        "taken_at": taken_at,
        "components": {"app": {"operations": {"get": operation}}, "other": {"operations": {"set": operation}}},
    }


def test_charts_draw_deltas_of_metrics_snapshots(
    make_client: MakeClient, manager: StorageManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshots = iter([_snapshot(100.0, 10, 0, 50), _snapshot(105.0, 25, 2, 80), _snapshot(110.0, 3, 0, 5)])
    current: dict[str, Any] = {}

    def metrics() -> dict[str, Any]:
        return current

    monkeypatch.setattr(manager, "metrics", metrics, raising=False)
    current.update(next(snapshots))
    client = make_client()  # samples once at start-up
    sampler: MetricsSampler = client.app.state.explorer.sampler  # type: ignore[attr-defined]
    for snapshot in snapshots:
        current.update(snapshot)
        sampler.sample()
    body = client.get("/api/metrics", params={"component": "app"}).json()
    assert body["available"] is True
    assert body["snapshot"]["taken_at"] == 110.0
    assert body["points"] == [
        {"t": 105.0, "operations": 15, "errors": 2, "bytes_read": 30, "bytes_written": 60},
        # The counters went down (the store was reopened): the interval counts from zero.
        {"t": 110.0, "operations": 3, "errors": 0, "bytes_read": 5, "bytes_written": 10},
    ]
    everything = client.get("/api/metrics").json()["points"]
    assert everything[0]["operations"] == 30
    assert "metrics are off" not in client.get("/charts").text


def test_prometheus_endpoint_serves_the_core_exporter(make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    exposition = "# TYPE airssys_storage_operations_total counter\nairssys_storage_operations_total 3\n"

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": exposition.encode()})

    core_metrics = types.ModuleType("airssys_storage.metrics")
    core_metrics.prometheus_app = lambda: asgi_app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "airssys_storage.metrics", core_metrics)
    monkeypatch.setitem(sys.modules, "prometheus_client", types.ModuleType("prometheus_client"))
    response = make_client().get("/metrics")
    assert response.status_code == 200
    assert response.text == exposition


def test_a_writable_config_needs_a_token() -> None:
    with pytest.raises(ConfigurationError, match="needs a token"):
        ExplorerConfig(allow_writes=True)


def test_writes_obey_the_quota_of_a_served_manifest() -> None:
    quotas = {"app": ServedQuota(limit=100, source="it is max-size in the manifest of 'app' (serve --manifest)")}
    with open_store(StorageSettings(url="memory://"), quotas, existing=False) as manager:
        config = ExplorerConfig(allow_writes=True, token=TOKEN, quotas={"app": 100})
        with TestClient(create_app(manager, config)) as client:
            assert client.put("/api/components/app/keys/a", content=b"x" * 50, headers=AUTH).status_code == 200
            refused = client.put("/api/components/app/keys/b", content=b"x" * 60, headers=AUTH)
            assert refused.status_code == 507
            error = refused.json()["error"]
            assert error["code"] == "quota-exceeded" and "max-size in the manifest of 'app'" in error["message"]
            # A component without a served manifest: an operator write, not quota-limited.
            big = client.put("/api/components/other/keys/b", content=b"x" * 100_000, headers=AUTH)
            assert big.status_code == 200
            exported = client.get("/api/components/other/export").content
            too_much = client.post("/api/components/app/import", content=exported, headers=AUTH)
            assert too_much.status_code == 507 and "nothing was written" in too_much.json()["error"]["message"]
            row = client.get("/api/components/app").json()
            assert (row["quota_bytes"], row["bytes"], row["used_percent"]) == (100, 51, 51.0)
        assert operator_storage(manager, "app").keys() == ["a"]


def test_only_the_served_host_names_are_answered(manager: StorageManager) -> None:
    # A page of another site that rebinds its name to 127.0.0.1 sends its own name as Host: refused.
    config = ExplorerConfig(allowed_hosts=allowed_hosts("127.0.0.1"))
    with TestClient(create_app(manager, config), base_url="http://127.0.0.1:8470") as client:
        assert client.get("/api/components").status_code == 200
        assert client.get("/api/components", headers={"Host": "localhost:8470"}).status_code == 200
        assert client.get("/api/components", headers={"Host": "attacker.example"}).status_code == 400
    assert allowed_hosts("0.0.0.0") is None and allowed_hosts("10.0.0.5") == ["10.0.0.5"]
