"""The explorer in a real headless Chromium (Debian's package), driven by Playwright.

Loads every page, pages through 5,000 keys, opens a value, and checks that a
write without the token is refused and one with it succeeds. Screenshots are
saved as test artifacts ($AIRSSYS_STORAGE_TEST_ARTIFACTS, else the test's tmp
dir) and checked for content: page text, and pixels of the usage bar.

Uses the system's chromium (``/usr/bin/chromium``, or
$AIRSSYS_STORAGE_TEST_CHROMIUM); Playwright's own browser download is never
used (hosts are often offline). Without chromium or Playwright the test skips
with the reason, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from explorer_helpers import TOKEN, running_in_ci
from starlette.applications import Starlette

from airssys_storage.exchange import operator_settings, operator_storage
from airssys_storage.explorer.app import ExplorerConfig, create_app
from airssys_storage.settings import StorageSettings
from airssys_storage.storage import StorageManager

KEYS = 5000
PAGE = 500


def _chromium() -> str:
    chosen = os.environ.get("AIRSSYS_STORAGE_TEST_CHROMIUM")
    found = chosen or shutil.which("chromium") or shutil.which("chromium-browser")
    reason = ""
    if found is None:
        reason = "no chromium on PATH: apt-get install -y chromium (Debian's package; .ci/run installs it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "Playwright for Python is missing: pip install -e '.[explorer-test]'"
    if reason:
        if running_in_ci():
            pytest.fail(f"the browser test cannot run under CI: {reason}")
        pytest.skip(reason)
    assert found is not None
    return found


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, StorageManager, Starlette]]:
    """The explorer (writes allowed with the token) on a SQLite store with 5,000 keys, on a free port."""
    import uvicorn

    settings = operator_settings(StorageSettings(url=f"sqlite:///{tmp_path / 'store.db'}"))
    with StorageManager.from_settings(settings) as manager:
        storage = operator_storage(manager, "inventory")
        batch = storage.limits().max_batch_ops
        items = [(f"item:{i:05d}", f'{{"id": {i}, "name": "item {i}"}}'.encode()) for i in range(KEYS)]
        for start in range(0, KEYS, batch):
            storage.set_many(items[start : start + batch])
        sessions = operator_storage(manager, "sessions", changes=True)  # the one component with a change feed
        sessions.set("session:1", b"\x00\x01binary\xff", ttl=3600)
        sessions.set("session:2", b"two")
        sessions.delete("session:2")
        config = ExplorerConfig(
            allow_writes=True,
            token=TOKEN,
            quotas={"inventory": 400_000},
            changes={"sessions": True},
            store_label="sqlite:///…/store.db",
        )
        app = create_app(manager, config)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                pytest.fail("the explorer's server did not start")
            threading.Event().wait(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}", manager, app
        finally:
            server.should_exit = True
            thread.join()


def _colour_share(path: Path, colour: tuple[int, int, int]) -> float:
    """The share of pixels in the PNG at *path* within a small distance of *colour*."""
    from PIL import Image

    with Image.open(path) as image:
        pixels = list(image.convert("RGB").get_flattened_data())
    close = sum(1 for p in pixels if sum(abs(a - b) for a, b in zip(p, colour, strict=True)) < 30)
    return close / len(pixels)


def test_explorer_in_chromium(server: tuple[str, StorageManager, Starlette], artifacts: Path) -> None:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    base, manager, app = server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 560})
            _components_page(page, base, artifacts)
            _page_through_keys(page, base, artifacts)
            _value_page(page, base, artifacts)
            _writes(page, base, artifacts, manager)
            _change_feed(page, base, artifacts)
            _charts_page(page, base, artifacts, manager, app)
        finally:
            browser.close()


def _components_page(page: Any, base: str, artifacts: Path) -> None:
    page.goto(base + "/")
    assert page.title() == "airssys-storage explorer"
    rows = page.locator("table.components tbody tr")
    assert rows.count() == 2
    assert "5000" in rows.nth(0).inner_text() and "inventory" in rows.nth(0).inner_text()
    bar = page.locator(".bar span").first
    assert float(bar.evaluate("el => el.getBoundingClientRect().width")) > 0
    shot = artifacts / "components.png"
    page.screenshot(path=str(shot))
    # The usage bar's green (#16a34a) and the header's dark (#111827) are on the picture.
    assert _colour_share(shot, (0x16, 0xA3, 0x4A)) > 0.0005
    assert _colour_share(shot, (0x11, 0x18, 0x27)) > 0.02


def _page_through_keys(page: Any, base: str, artifacts: Path) -> None:
    page.goto(f"{base}/components/inventory?limit={PAGE}")
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        seen += page.locator("a.key").all_inner_texts()
        if pages == 2:
            page.screenshot(path=str(artifacts / "keys.png"))
        following = page.locator("#next-page")
        if following.count() == 0:
            break
        following.click()
        page.wait_for_load_state()
    assert pages == KEYS // PAGE
    assert seen == [f"item:{i:05d}" for i in range(KEYS)]
    assert "last page" in page.inner_text(".pager")
    # The prefix filter.
    page.goto(f"{base}/components/inventory")
    page.fill("input[name=prefix]", "item:0420")
    page.click("form.filter button")
    assert page.locator("a.key").all_inner_texts() == [f"item:0420{d}" for d in range(10)]


def _value_page(page: Any, base: str, artifacts: Path) -> None:
    page.click("text=item:04207")
    page.wait_for_url("**/keys/item%3A04207")
    assert '"name": "item 4207"' in page.inner_text("#value")
    assert page.inner_text("#version").isdigit()
    assert page.inner_text("#expiry") == "never"
    page.click(".views >> text=hex")
    assert "7b 22 69 64 22" in page.inner_text("#value")
    page.goto(f"{base}/components/sessions/keys/session%3A1")
    assert "00 01 62 69 6e" in page.inner_text("#value")  # binary: hex by default
    assert page.inner_text("#expiry").startswith("in ")
    page.screenshot(path=str(artifacts / "value.png"))


def _writes(page: Any, base: str, artifacts: Path, manager: StorageManager) -> None:
    storage = operator_storage(manager, "inventory")
    page.goto(f"{base}/components/inventory")
    form = page.locator("#set-form")
    form.locator("input[name=key]").fill("note")
    form.locator("textarea[name=value]").fill("written from the browser")
    form.locator("input[name=token]").fill("not-the-token-000000")
    form.locator("button").click()
    assert "unauthorized" in page.inner_text("h1")
    page.screenshot(path=str(artifacts / "refused.png"))
    assert storage.get("note") is None
    page.goto(f"{base}/components/inventory")
    form = page.locator("#set-form")
    form.locator("input[name=key]").fill("note")
    form.locator("textarea[name=value]").fill("written from the browser")
    form.locator("input[name=token]").fill(TOKEN)
    form.locator("button").click()
    page.wait_for_url("**/keys/note?notice=*")
    assert "stored 'note'" in page.inner_text(".notice")
    assert page.inner_text("#value") == "written from the browser"
    assert storage.get("note") == b"written from the browser"
    page.screenshot(path=str(artifacts / "written.png"))
    # Delete it again from the value page.
    page.locator("#delete-form input[name=token]").fill(TOKEN)
    page.locator("#delete-form button").click()
    assert "deleted 'note'" in page.inner_text(".notice")
    assert storage.get("note") is None


def _change_feed(page: Any, base: str, artifacts: Path) -> None:
    page.goto(f"{base}/components/sessions")
    page.click("#change-feed >> text=all recent changes")
    page.wait_for_url("**/components/sessions/changes")
    rows = [row.split("\t")[:4] for row in page.locator("table.changes tbody tr").all_inner_texts()]
    assert [row[:3] for row in rows] == [
        ["3", "delete", "session:2"],
        ["2", "set", "session:2"],
        ["1", "set", "session:1"],
    ]
    assert all(row[3].isdigit() for row in rows)  # the versions
    page.screenshot(path=str(artifacts / "changes.png"))
    page.goto(f"{base}/components/inventory")
    assert "change feed of component 'inventory' is off" in page.inner_text("#feed-off")


def _charts_page(page: Any, base: str, artifacts: Path, manager: StorageManager, app: Starlette) -> None:
    page.goto(base + "/charts")
    metrics = getattr(manager, "metrics", None)
    if metrics is None or not metrics().get("enabled"):
        assert "metrics are off" in page.inner_text("main")
    page.wait_for_function("document.getElementById('charts').dataset.available !== undefined")
    assert page.locator("svg.chart").count() == 3
    page.screenshot(path=str(artifacts / "charts-off.png"))
    # Snapshots in the agreed shape of StorageManager.metrics(), sampled into the ring buffer.
    counts = iter([(100.0, 0), (105.0, 40), (110.0, 65), (115.0, 140)])

    def snapshot() -> dict[str, Any]:
        taken_at, count = next(counts)
        operation = {
            "count": count,
            "errors": {"quota-exceeded": count // 20},
            "bytes_read": 90 * count,
            "bytes_written": 30 * count,
            "latency_seconds": {"buckets": [], "counts": [], "sum": 0.0},
        }
        return {"enabled": True, "taken_at": taken_at, "components": {"inventory": {"operations": {"get": operation}}}}

    sampled: list[dict[str, Any]] = []
    sampler = app.state.explorer.sampler
    manager.metrics = lambda: sampled[-1]  # type: ignore[attr-defined]  # the agreed interface, faked
    for _ in range(4):
        sampled.append(snapshot())
        sampler.sample()
    page.goto(base + "/charts?component=inventory")
    assert "metrics are off" not in page.inner_text("main")
    page.wait_for_function("document.getElementById('charts').dataset.available === 'true'")
    assert page.locator("svg.chart path.s0").count() == 3 and page.locator("svg.chart path.s1").count() == 1
    shot = artifacts / "charts.png"
    page.screenshot(path=str(shot), full_page=True)
    assert _colour_share(shot, (0x25, 0x63, 0xEB)) > 0.001  # the lines' blue (#2563eb)
