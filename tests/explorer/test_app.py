"""Every route of the explorer through Starlette's test client: pages, the JSON API, writes, refusals."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from explorer_helpers import TOKEN, MakeClient
from starlette.testclient import TestClient

from airssys_storage.audit import key_for_audit
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
    assert "change feed of component &#39;app&#39; is off" in second.text  # app keeps no feed: the note says so


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
    assert [r["event"] for r in records if r["event"] != "explorer-write"] == ["clear"]  # the core's own record
    records = [r for r in records if r["event"] == "explorer-write"]
    # keys are shown as the setting audit_keys says (default: a BLAKE2b hash, not the key itself)
    assert [(r["operation"], r.get("key"), r["outcome"]) for r in records] == [
        ("set", key_for_audit("dir/new key", "hash"), "ok"),
        ("set", key_for_audit("dir/new key", "hash"), "ok"),
        ("set", key_for_audit("t", "hash"), "ok"),
        ("delete", key_for_audit("blob", "hash"), "ok"),
        ("delete", key_for_audit("blob", "hash"), "ok"),
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


def test_prometheus_endpoint_serves_the_core_exporter() -> None:
    pytest.importorskip("prometheus_client", reason="the Prometheus exporter needs airssys-storage[metrics]")
    with open_store(StorageSettings(url="memory://", metrics=True), {}, existing=False) as manager:
        with TestClient(create_app(manager, ExplorerConfig(sample_interval=3600))) as client:
            operator_storage(manager, "app").set("k", b"v")
            response = client.get("/metrics")
    assert response.status_code == 200
    assert 'airssys_storage_operations_total{component="app",operation="set"' in response.text


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
    assert allowed_hosts("10.0.0.5") == ["10.0.0.5"]


def test_a_wildcard_bind_answers_only_loopback_own_and_allowed_names(manager: StorageManager) -> None:
    # Outside report: with --host 0.0.0.0 any Host was answered (DNS rebinding reached the store).
    import socket

    hosts = allowed_hosts("0.0.0.0", ("explorer.lan",))
    assert {"127.0.0.1", "localhost", socket.gethostname().lower(), "explorer.lan"} <= set(hosts)
    with TestClient(create_app(manager, ExplorerConfig(allowed_hosts=hosts)), base_url="http://127.0.0.1:8470") as c:
        for name in ("127.0.0.1:8470", "localhost", f"{socket.gethostname()}:8470", "explorer.lan:8470"):
            assert c.get("/api/components", headers={"Host": name}).status_code == 200, name
        assert c.get("/api/components", headers={"Host": "evil.com"}).status_code == 400


def test_every_response_carries_the_security_headers(make_client: MakeClient) -> None:
    client = make_client()
    for path in ("/", "/api/components", "/static/explorer.css", "/nowhere"):
        headers = client.get(path).headers
        assert headers["x-frame-options"] == "DENY", path
        assert headers["x-content-type-options"] == "nosniff", path
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert "script-src 'self'" in headers["content-security-policy"], path
    for name in ("components.html", "keys.html", "value.html", "charts.html", "base.html", "error.html"):
        template = (Path(create_app.__code__.co_filename).parent / "templates" / name).read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)|\son[a-z]+=", template), f"inline script in {name}"


def test_a_put_above_the_value_limit_is_refused_before_it_is_read(
    make_client: MakeClient, manager: StorageManager
) -> None:
    # Outside report: a 300 MB PUT was buffered whole (650 MB peak) before the 413.
    client = make_client(allow_writes=True)
    limit = manager.settings.max_value_bytes
    declared = client.put(
        "/api/components/app/keys/big", content=b"", headers={**AUTH, "Content-Length": str(limit + 1)}
    )
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "value-too-large"
    # A chunked body (no Content-Length), sent straight to the ASGI app: the test client would read it all first.
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": b"x" * (limit // 4), "more_body": read < 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": "/api/components/app/keys/big",
        "raw_path": b"/api/components/app/keys/big",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", AUTH["Authorization"].encode())],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    asyncio.run(client.app(scope, receive, send))
    assert sent[0]["status"] == 413 and b"value-too-large" in sent[1]["body"]
    assert read == 5  # the reading stopped one chunk past the limit, not after 1000 chunks
    assert operator_storage(manager, "app").get("big") is None
    assert client.put("/api/components/app/keys/ok", content=b"x" * limit, headers=AUTH).status_code == 200


def test_an_import_above_its_cap_is_refused(manager: StorageManager) -> None:
    config = ExplorerConfig(allow_writes=True, token=TOKEN, max_import_bytes=500, sample_interval=3600)
    with TestClient(create_app(manager, config)) as client:
        exported = client.get("/api/components/app/export").content
        assert len(exported) > 500
        api = client.post("/api/components/other/import", content=exported, headers=AUTH)
        assert api.status_code == 413 and api.json()["error"]["code"] == "request-too-large"
        csrf = csrf_of(client, "/components/other")
        form = client.post(
            "/components/other/import",
            data={"token": TOKEN, "csrf": csrf},
            files={"file": ("app.jsonl", exported)},
        )
        assert form.status_code == 413 and "request-too-large" in form.text
    assert operator_storage(manager, "other").keys() == ["k"]


def test_a_form_from_a_foreign_referer_without_origin_is_refused(
    make_client: MakeClient, manager: StorageManager
) -> None:
    client = make_client(allow_writes=True)
    csrf = csrf_of(client, "/components/app")
    data = {"key": "f", "value": "v", "token": TOKEN, "csrf": csrf}
    foreign = client.post("/components/app/set", data=data, headers={"Referer": "http://evil.example/page"})
    assert foreign.status_code == 403 and "csrf-failed" in foreign.text
    assert operator_storage(manager, "app").get("f") is None
    own = client.post(
        "/components/app/set",
        data=data,
        headers={"Referer": "http://testserver/components/app"},
        follow_redirects=False,
    )
    assert own.status_code == 303 and operator_storage(manager, "app").get("f") == b"v"


def test_paths_that_are_no_utf8_and_slashed_components_get_json_errors(make_client: MakeClient) -> None:
    client = make_client(allow_writes=True)
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(method, "/api/components/app/keys/%ff%fe", headers=AUTH, content=b"v")
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid-key", method
    assert client.get("/components/app/keys/%ff%fe").status_code == 400
    assert client.get("/api/components/a%ffb").json()["error"]["code"] == "invalid-key"
    slashed = client.get("/api/components/a%2Fb/keys/x")
    assert slashed.status_code == 404 and slashed.json()["error"]["code"] == "not-found"
    assert client.get("/api/components/a%2Fb").json()["error"]["code"] == "not-found"
    wrong_method = client.patch("/api/components/app/keys/x")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method-not-allowed"
    assert client.get("/api/components/app/keys/caf%C3%A9").status_code == 404  # valid UTF-8: just missing


@pytest.mark.parametrize("replace", ["maybe", "yes", ""])
def test_import_replace_takes_only_true_false_1_0(make_client: MakeClient, replace: str) -> None:
    client = make_client(allow_writes=True)
    exported = client.get("/api/components/app/export").content
    response = client.post(f"/api/components/app/import?replace={replace}", content=exported, headers=AUTH)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid-argument"
    for accepted in ("true", "FALSE", "1", "0"):
        done = client.post(f"/api/components/app/import?replace={accepted}", content=exported, headers=AUTH)
        assert done.status_code == 200, accepted


def test_refused_writes_without_the_token_are_logged_as_anonymous(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(allow_writes=True)
    with caplog.at_level(logging.INFO, logger="airssys_storage.audit"):
        client.put("/api/components/app/keys/x", content=b"v")
        client.put("/api/components/app/keys/x", content=b"v", headers={"Authorization": "Bearer wrong-0123456789"})
        client.put("/api/components/app/keys/x", content=b"v", headers=AUTH)
        client.delete("/api/components/app/keys/missing-key", headers=AUTH)
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "airssys_storage.audit"]
    assert [(r["outcome"], r["who"]) for r in records] == [
        ("refused", "anonymous from testclient"),
        ("refused", "anonymous from testclient"),
        ("ok", "explorer token holder from testclient"),
        ("ok", "explorer token holder from testclient"),
    ]
