"""Writes the schema 1 fixture ``schema1/`` with the code of commit 8fd57f0 (the last one writing schema 1).

Run it with that tree first on the path (the calls below are the contract v1 ones)::

    git worktree add --detach OLD 8fd57f0
    PYTHONPATH=OLD:OLD/plugins/airssys-storage-leveldb python make_schema1.py DIR

``test_leveldb_v2.py`` rebuilds the expected contents with :func:`expected`.
"""

from __future__ import annotations

import sys
from typing import Any


def expected() -> dict[str, dict[bytes, bytes]]:
    """What the fixture holds: namespace -> key -> value."""
    data: dict[str, dict[bytes, bytes]] = {}
    for ns, n in (("app", 120), ("other", 30)):
        data[ns] = {b"k%03d" % i: (b"%s-%d:" % (ns.encode(), i)) * (i % 7) for i in range(n)}
    for i in range(0, 120, 10):
        del data["app"][b"k%03d" % i]
    data["app"]["ключ/ü".encode()] = b"\x00\xff binary \x01"
    return data


def main(path: str) -> None:
    from airssys_storage_leveldb import LevelDBBackend

    backend: Any = LevelDBBackend.open(f"leveldb://{path}", {})
    for ns, n in (("app", 120), ("other", 30), ("gone", 5)):
        backend.commit(ns, [(b"k%03d" % i, (b"%s-%d:" % (ns.encode(), i)) * (i % 7)) for i in range(n)], None)
    backend.commit("app", [(b"k%03d" % i, None) for i in range(0, 120, 10)], None)
    backend.commit("gone", [(b"k%03d" % i, None) for i in range(5)], None)  # an emptied namespace: counter (0, 0)
    backend.commit_one("app", "ключ/ü".encode(), b"\x00\xff binary \x01", None)
    backend.close()


if __name__ == "__main__":
    main(sys.argv[1])
