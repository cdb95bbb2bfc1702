"""A change-feed reader run as its own process by test_sql_feed.py (so the test can SIGKILL it).

It watches one component from the cursor saved in a file, appends each event's
seq to an output file, then saves the event's seq as the new cursor (write and
rename): at-least-once, so a reader killed anywhere and restarted from its
cursor misses nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from airssys_storage import Access, Manifest, StorageManager, StorageSettings


def main(settings_json: str, component: str, cursor_path: str, out_path: str) -> None:
    cursor = Path(cursor_path)
    since = int(cursor.read_text()) if cursor.exists() else 0
    with StorageManager.from_settings(StorageSettings(**json.loads(settings_json))) as manager:
        store = manager.component(Manifest(component, Access.READ_ONLY, changes=True))
        with open(out_path, "a", encoding="ascii") as out:
            for event in store.watch(since):
                out.write(f"{event.seq}\n")
                out.flush()
                temporary = cursor.with_suffix(".tmp")
                temporary.write_text(str(event.seq))
                os.replace(temporary, cursor)


if __name__ == "__main__":
    main(*sys.argv[1:5])
