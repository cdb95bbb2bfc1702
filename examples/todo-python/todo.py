"""A to-do list kept in airssys-storage: a sorted map of items and a counter for their ids.

    python todo.py add "buy milk"      # prints: added 1: buy milk
    python todo.py done 1              # prints: done 1: buy milk
    python todo.py list                # one line per item, by id: "[x] 1 buy milk"

The store is the one configured for airssys-storage (``AIRSSYS_STORAGE_URL``;
by default the embedded SQLite file under the user's data directory), the
component id ``todo``. Ids come from an atomic counter (``increment``), so two
runs at once never share an id; the items live in a ``StorageTreeMap``
keyed by id, so ``list`` pages through them in order.
"""

from __future__ import annotations

import sys

from airssys_storage import Manifest, StorageManager
from airssys_storage.collections import StorageTreeMap


def main(argv: list[str]) -> int:
    with StorageManager.from_settings() as manager:
        storage = manager.component(Manifest(id="todo", access="read-write"))
        items: StorageTreeMap[int, dict[str, object]] = StorageTreeMap(storage, "items/")
        match argv:
            case ["add", text]:
                number = storage.increment("next-id")
                items[number] = {"text": text, "done": False}
                print(f"added {number}: {text}")
            case ["done", number] if number.isdigit():
                item = items.get(int(number))
                if item is None:
                    print(f"no item {number}", file=sys.stderr)
                    return 1
                items[int(number)] = {**item, "done": True}
                print(f"done {number}: {item['text']}")
            case ["list"]:
                for number, item in items.items():
                    print(f"[{'x' if item['done'] else ' '}] {number} {item['text']}")
                print(f"{len(items)} items, last id {items.last()[0] if items else 0}")
            case _:
                print('usage: todo.py add "text" | done <id> | list', file=sys.stderr)
                return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
