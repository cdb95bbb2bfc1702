"""The change feed's tail in the explorer: the page, the keys page's section, the JSON API, the note when off."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import pytest
from explorer_helpers import TOKEN, MakeClient
from starlette.testclient import TestClient

from airssys_storage.exchange import operator_settings, operator_storage
from airssys_storage.explorer.app import ExplorerConfig, create_app
from airssys_storage.settings import StorageSettings
from airssys_storage.storage import StorageManager

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def fill_feed(manager: StorageManager) -> None:
    """Component ``feed`` with its change feed on and six events: 3 sets, an overwrite, a delete, a range delete."""
    feed = operator_storage(manager, "feed", changes=True)
    feed.set("a", b"1")
    feed.set("b", b"22")
    feed.set("c/x", b"333")
    feed.set("a", b"4444")
    feed.delete("b")
    feed.delete_range("c/", "c0")
    feed.set("keep", b"k")


def test_api_tail_lists_the_last_events_in_seq_order(make_client: MakeClient, manager: StorageManager) -> None:
    fill_feed(manager)
    client = make_client(changes={"feed": True})
    body = client.get("/api/components/feed/changes").json()
    assert body["enabled"] is True
    assert body["last_seq"] == 7 and body["next_since"] == 7
    events = body["events"]
    assert [(e["seq"], e["op"], e["key"]) for e in events] == [
        (1, "set", "a"),
        (2, "set", "b"),
        (3, "set", "c/x"),
        (4, "set", "a"),
        (5, "delete", "b"),
        (6, "delete-range", "c/"),
        (7, "set", "keep"),
    ]
    assert events[3]["version"] > events[0]["version"]
    assert events[5]["end"] == "c0"
    assert events[0]["at_iso"].endswith("Z") and isinstance(events[0]["at"], int)
    # The last N, then the events after a cursor.
    tail = client.get("/api/components/feed/changes", params={"limit": 2}).json()
    assert [e["seq"] for e in tail["events"]] == [6, 7]
    after = client.get("/api/components/feed/changes", params={"since": 3, "limit": 2}).json()
    assert [e["seq"] for e in after["events"]] == [4, 5] and after["next_since"] == 5
    assert client.get("/api/components/feed/changes", params={"since": 7}).json()["events"] == []


def test_changes_page_and_keys_page_show_the_tail(make_client: MakeClient, manager: StorageManager) -> None:
    fill_feed(manager)
    client = make_client(changes={"feed": True})
    page = client.get("/components/feed/changes", params={"limit": 3})
    assert page.status_code == 200
    rows = re.findall(r'<tr><td class="num">(\d+)</td><td>([a-z-]+)</td>', page.text)
    assert rows == [("7", "set"), ("6", "delete-range"), ("5", "delete")]  # newest first
    assert "last seq 7" in page.text
    keys = client.get("/components/feed")
    assert keys.status_code == 200
    section = keys.text.split('id="change-feed"', 1)[1]
    assert 'href="/components/feed/changes"' in section
    assert [seq for seq, _ in re.findall(r'<tr><td class="num">(\d+)</td><td>([a-z-]+)</td>', section)] == [
        str(n) for n in range(7, 0, -1)
    ]
    newer = client.get("/components/feed/changes", params={"since": 2, "limit": 2})
    assert 'id="newer"' in newer.text and "since=4" in newer.text
    assert "events after seq 2" in newer.text


def test_a_component_without_the_feed_gets_a_note(make_client: MakeClient, manager: StorageManager) -> None:
    fill_feed(manager)
    client = make_client(changes={"feed": False})  # its manifest turns the feed off
    body = client.get("/api/components/app/changes").json()
    assert body["enabled"] is False and body["events"] == []
    assert "permissions.storage.changes = true" in body["note"]
    page = client.get("/components/app/changes")
    assert page.status_code == 200 and 'id="feed-off"' in page.text and "is off" in page.text
    assert 'id="feed-off"' in client.get("/components/feed").text
    assert client.get("/api/components/feed/changes").json()["enabled"] is False


def test_a_backend_without_a_feed_shows_the_note(make_client: MakeClient, manager: StorageManager) -> None:
    backend = manager.backend
    backend.capabilities = dataclasses.replace(backend.capabilities, change_feed=False)  # as LevelDB's
    client = make_client(changes={"app": True})  # a manifest asking for a feed the backend cannot keep
    body = client.get("/api/components/app/changes").json()
    assert body["enabled"] is False and "keeps no change feed" in body["note"]
    assert client.get("/components/app").status_code == 200


def test_bad_arguments_and_unknown_components(make_client: MakeClient, manager: StorageManager) -> None:
    fill_feed(manager)
    client = make_client(changes={"feed": True})
    for params in ({"since": "x"}, {"since": "-1"}, {"limit": "0"}, {"limit": "1001"}, {"since": "99"}):
        bad = client.get("/api/components/feed/changes", params=params)
        assert bad.status_code == 400, params
        assert bad.json()["error"]["code"] == "invalid-argument"
    assert client.get("/components/feed/changes", params={"since": "x"}).status_code == 400
    missing = client.get("/api/components/nosuch/changes")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "component-not-found"


def test_the_changes_routes_are_read_only(make_client: MakeClient, manager: StorageManager) -> None:
    fill_feed(manager)
    client = make_client(allow_writes=True, changes={"feed": True})
    for method in ("POST", "PUT", "DELETE"):
        refused = client.request(method, "/api/components/feed/changes", headers=AUTH)
        assert refused.status_code == 405, method
    # A write through the explorer is logged in the feed like any other.
    assert client.put("/api/components/feed/keys/new", content=b"v", headers=AUTH).status_code == 200
    last = client.get("/api/components/feed/changes", params={"limit": 1}).json()["events"]
    assert [(e["seq"], e["op"], e["key"], e["value_bytes"]) for e in last] == [(8, "set", "new", None)]


@pytest.fixture
def short_log() -> Iterator[StorageManager]:
    """A store whose change log keeps only the newest 5 events (trimmed in steps)."""
    settings = operator_settings(StorageSettings(url="memory://", changes_retain_events=5))
    with StorageManager.from_settings(settings) as opened:
        feed = operator_storage(opened, "feed", changes=True)
        for i in range(20):
            feed.set(f"k{i:02d}", b"v")
        yield opened


def test_a_trimmed_log_shows_what_is_retained_and_a_stale_cursor_is_410(short_log: StorageManager) -> None:
    config = ExplorerConfig(changes={"feed": True}, sample_interval=3600)
    with TestClient(create_app(short_log, config)) as client:
        body = client.get("/api/components/feed/changes").json()
        seqs = [e["seq"] for e in body["events"]]
        assert seqs and seqs[-1] == 20 and seqs == list(range(seqs[0], 21)) and len(seqs) < 20
        stale = client.get("/api/components/feed/changes", params={"since": 1})
        assert stale.status_code == 410 and stale.json()["error"]["code"] == "gap"


def test_an_operator_handle_leaves_the_hosts_feed_on() -> None:
    """Opening a component as operator (the explorer, a CLI command on the host's manager) keeps its feed on."""
    from airssys_storage import Access, Manifest

    with StorageManager.from_settings(StorageSettings(url="memory://")) as shared:
        host = shared.component(Manifest(id="app", access=Access.READ_WRITE, changes=True))
        host.set("before", b"1")
        operator = operator_storage(shared, "app")  # the settings' default is changes_default = false
        host.set("after", b"2")
        events, _ = operator.changes(0)
        assert [event.key for event in events] == ["before", "after"]
