"""Redraw docs/explorer.png, the README's picture of the explorer's components page.

Run from a clone with the extras installed (``pip install -e '.[explorer-test]'
./plugins/airssys-storage-memory``) and Debian's chromium::

    python docs/explorer_screenshot.py docs/explorer.png
"""

from __future__ import annotations

import sys
import threading

import uvicorn
from playwright.sync_api import sync_playwright

from airssys_storage.exchange import operator_settings, operator_storage
from airssys_storage.explorer.app import ExplorerConfig, create_app
from airssys_storage.settings import StorageSettings
from airssys_storage.storage import StorageManager

#: component id -> (keys, value bytes, quota in bytes or None for unlimited)
COMPONENTS = {
    "inventory": (5000, 30, 400_000),
    "sessions": (840, 180, 170_000),
    "user-prefs": (120, 60, 1_048_576),
    "image-cache": (64, 3900, 262_144),
    "audit-log": (2000, 90, None),
}


def main(out: str) -> None:
    with StorageManager.from_settings(operator_settings(StorageSettings(url="memory://"))) as manager:
        for cid, (count, size, _) in COMPONENTS.items():
            storage = operator_storage(manager, cid)
            items = [(f"{cid[:4]}:{i:05d}", b"x" * size) for i in range(count)]
            for start in range(0, count, 100):
                storage.set_many(items[start : start + 100])
        quotas = {cid: quota for cid, (_, _, quota) in COMPONENTS.items()}
        app = create_app(manager, ExplorerConfig(quotas=quotas, store_label="sqlite:////var/lib/app/store.db"))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            threading.Event().wait(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 900, "height": 330})
            page.goto(f"http://127.0.0.1:{port}/")
            page.screenshot(path=out)
            browser.close()
        server.should_exit = True
        thread.join()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/explorer.png")
