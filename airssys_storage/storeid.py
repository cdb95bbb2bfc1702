"""Which embedded engine wrote a store directory, found without writing anything.

Every embedded backend (LevelDB, RocksDB, LMDB) writes a marker file
``AIRSSYS-STORE`` into its directory when it opens the store for writing::

    airssys-storage store
    engine=leveldb

A store written before the marker existed is recognised by the files its
engine leaves (RocksDB: ``OPTIONS-*`` or ``IDENTITY``; LMDB: ``data.mdb`` or
``lock.mdb``; LevelDB: ``CURRENT``, ``MANIFEST-*`` or ``*.ldb`` and none of
RocksDB's files). :func:`require_engine` refuses a store of another engine
before a backend opens or repairs it, so no engine ever writes its files into
another engine's store.
"""

from __future__ import annotations

import contextlib
import os

from airssys_storage.errors import ConfigurationError

__all__ = ["ENGINES", "MARKER", "detect_engine", "require_engine", "write_marker"]

#: The marker file's name inside a store directory.
MARKER = "AIRSSYS-STORE"
#: Engine name -> (product name in messages, URL scheme).
ENGINES = {"leveldb": ("LevelDB", "leveldb"), "rocksdb": ("RocksDB", "rocksdb"), "lmdb": ("LMDB", "lmdb")}
_HEADER = "airssys-storage store"


def _from_marker(path: str) -> str | None:
    try:
        with open(os.path.join(path, MARKER), encoding="utf-8") as file:
            text = file.read(4096)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "engine" and value.strip() in ENGINES:
            return value.strip()
    return None


def detect_engine(path: str) -> str | None:
    """The engine (``"leveldb"``, ``"rocksdb"``, ``"lmdb"``) whose store is at *path*, or ``None``.

    ``None`` when *path* does not exist, is not a directory, or holds no file
    an engine leaves. Reads the marker file first, then the engines'
    fingerprints; never writes.
    """
    engine = _from_marker(path)
    if engine is not None:
        return engine
    try:
        names = os.listdir(path)
    except OSError:
        return None
    if "data.mdb" in names or "lock.mdb" in names:
        return "lmdb"
    if "IDENTITY" in names or "rocksdict-config.json" in names or any(n.startswith("OPTIONS-") for n in names):
        return "rocksdb"
    if "CURRENT" in names or any(n.startswith("MANIFEST-") or n.endswith(".ldb") for n in names):
        return "leveldb"
    return None


def require_engine(path: str, engine: str) -> None:
    """Raise :class:`~airssys_storage.ConfigurationError` when *path* holds a store of another engine than *engine*.

    The message names the engine found and the URL to use instead
    (``…/lv holds a LevelDB store: use leveldb:///…/lv``). Never writes.
    """
    found = detect_engine(path)
    if found is None or found == engine:
        return
    product, _ = ENGINES[engine]
    other, scheme = ENGINES[found]
    raise ConfigurationError(
        f"cannot use {path} as a {product} store: it holds a {other} store; use {scheme}://{path} "
        f"(a {product} backend never opens, repairs or writes another engine's store)"
    )


def write_marker(path: str, engine: str) -> None:
    """Write *path*'s marker file naming *engine* if it is missing (atomically: a temporary file renamed)."""
    target = os.path.join(path, MARKER)
    if os.path.exists(target):
        return
    temporary = f"{target}.tmp-{os.getpid()}"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(f"{_HEADER}\nengine={engine}\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ConfigurationError(
            f"cannot write the store marker {target}: {exc.strerror or exc}; check the directory's permissions"
        ) from None
