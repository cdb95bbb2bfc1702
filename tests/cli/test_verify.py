"""`airssys-storage verify [--repair]`: a thin wrapper over StorageBackend.verify, exit 6 when wrong."""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Run, Store

from airssys_storage import StorageBackend

MakeStore = Callable[[str], Store]


def error_line(stderr: str) -> str:
    """The one error line a failed verify ends its stderr with (after its status line), no traceback."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("airssys-storage: error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def write_around(store: Store, sql: str, params: tuple[Any, ...], kv: Callable[[StorageBackend], None]) -> None:
    """Write behind the backend's back: *sql* ({data}, {usage}: the tables) on SQL, else ``kv(backend)``."""
    with store.manager() as manager:
        backend: StorageBackend = manager.backend
        if backend.name == "sql":
            t = backend._tables  # type: ignore[attr-defined]
            statement = backend._sql(sql.format(data=t.data, usage=t.usage))  # type: ignore[attr-defined]
            backend._run("tamper", backend._execute, statement, params)  # type: ignore[attr-defined]
        else:
            kv(backend)


def sql_only(backend: StorageBackend) -> None:
    raise AssertionError(f"this write around the backend is SQL only, not for {backend.name}")


def put_row(backend: Any, namespace: str, key: bytes, value: bytes) -> None:
    """Store row *key* = *value* (version 1, no expiry) of *namespace* in a key-value backend's own layout."""
    if backend.name == "leveldb":
        from airssys_storage_leveldb.layout import encode_row, namespace_prefix

        backend._db.put(namespace_prefix(namespace) + key, encode_row(1, None, value))
    elif backend.name == "rocksdb":
        from airssys_storage_rocksdb.layout import encode_namespace, encode_row

        backend._db.put(encode_namespace(namespace) + key, encode_row(1, None, value))
    elif backend.name == "lmdb":
        from airssys_storage_lmdb.layout import ROW
        from airssys_storage_lmdb.layout import namespace_prefix as lmdb_prefix

        shared = backend._shared
        with shared.env.begin(write=True) as txn:
            txn.put(lmdb_prefix(namespace) + key, ROW.pack(1, 0) + value, db=shared.data)
    else:  # redis: the row (meta:value), its place in the ordered index, and a counter row naming the namespace
        rows, index, _, counter = backend._names(namespace)[:4]
        backend._call("tamper", True, b"HSET", rows, key, b"1:" + value)
        backend._call("tamper", True, b"ZADD", index, 0, key)
        backend._call("tamper", True, b"HSETNX", counter, b"f", 0)


def set_counter(backend: Any, namespace: str, used_bytes: int) -> None:
    """Overwrite *namespace*'s usage counter (bytes) in a key-value backend, keeping its key count."""
    keys = backend.usage(namespace).keys
    if backend.name == "leveldb":
        from airssys_storage_leveldb.layout import COUNTER, counter_key

        backend._db.put(counter_key(namespace), COUNTER.pack(used_bytes, keys, 0, 0))  # bytes, keys, floor, expiring
    elif backend.name == "rocksdb":
        from airssys_storage_rocksdb.layout import COUNTER as ROCKSDB_COUNTER

        backend._engine._counters_cf.put(namespace.encode(), ROCKSDB_COUNTER.pack(used_bytes, keys, 0, 0))
    elif backend.name == "lmdb":
        from airssys_storage_lmdb.layout import COUNTER as LMDB_COUNTER

        shared = backend._shared
        with shared.env.begin(write=True) as txn:
            txn.put(namespace.encode(), LMDB_COUNTER.pack(used_bytes, keys, 0), db=shared.usage)  # bytes, keys, floor
    else:  # redis
        backend._call("tamper", True, b"HSET", backend._names(namespace)[3], b"b", used_bytes)


def tamper(store: Store, component: str, used_bytes: int) -> None:
    """Overwrite *component*'s usage counter behind the backend's back (a stray UPDATE, a bad restore)."""
    write_around(
        store,
        "UPDATE {usage} SET used_bytes = ? WHERE ns = ?",
        (used_bytes, component),
        lambda backend: set_counter(backend, component, used_bytes),
    )


#: The persistent backends whose verify recounts usage and finds undecodable keys (all but memory://).
KEY_VALUE = ["leveldb", "rocksdb", "lmdb", "redis"]
ALL = ["sqlite", *KEY_VALUE, "postgresql", "mariadb"]


@pytest.mark.parametrize("name", ALL)
def test_verify_finds_and_repairs_a_tampered_counter(cli: Run, make_store: MakeStore, name: str) -> None:
    store = make_store(name)
    app = store.component("app")
    store.write(app, {"hello": b"1234567"})  # 12 bytes
    assert cli("verify", *store.args()).exit_code == 0
    tamper(store, app, 1_000_012)

    found = cli("verify", *store.args())
    assert found.exit_code == 6
    assert "disagree with the data" in error_line(found.stderr)
    assert "airssys-storage verify --repair --url" in found.stderr
    assert "1000012" in found.stdout and app in found.stdout

    as_json = cli("verify", *store.args(), "--json")
    assert as_json.exit_code == 6
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["repaired"] is False
    [mismatch] = [m for m in report["mismatches"] if m["namespace"] == app]
    assert mismatch["stored"] == {"bytes": 1_000_012, "keys": 1} and mismatch["actual"] == {"bytes": 12, "keys": 1}

    fixed = cli("verify", "--repair", *store.args(), "--json")
    assert fixed.exit_code == 0, fixed.stderr
    assert json.loads(fixed.stdout)["repaired"] is True
    with store.manager() as manager:
        assert manager.backend.usage(app).bytes == 12
    again = cli("verify", *store.args())
    assert again.exit_code == 0, again.stderr
    assert store.read(app) == {"hello": b"1234567"}


def test_verify_memory_store_is_sound(cli: Run) -> None:
    result = cli("verify", "--url", "memory://", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True


def hinted_command(stderr: str) -> list[str]:
    """The arguments of the ``airssys-storage verify --repair …`` command a failed verify names."""
    line = error_line(stderr)
    command = line[line.index("`airssys-storage verify --repair") + 1 :]
    return shlex.split(command[: command.index("`")])[1:]


@pytest.mark.parametrize("name", ["sqlite", "postgresql", "mariadb", "redis"])
def test_verify_hint_names_the_same_store_with_its_table_prefix(cli: Run, make_store: MakeStore, name: str) -> None:
    """The issue's input: a store under table_prefix 'p_' (Redis: its key_prefix); running the repair command
    verify names fixes *it*."""
    store = make_store(name)
    if not store.backend.shared:
        store = dataclasses.replace(store, options={"table_prefix": "p_"})
    app = store.component("app")
    store.write(app, {"hello": b"1234567"})
    tamper(store, app, 1_000_012)

    found = cli("verify", *store.args())
    assert found.exit_code == 6
    args = hinted_command(found.stderr)
    option = store.backend.prefix_option
    assert json.loads(args[args.index("--backend-options") + 1]) == {option: store.options[option]}

    fixed = cli(*args, "--json")
    assert fixed.exit_code == 0, fixed.stderr
    assert [m["namespace"] for m in json.loads(fixed.stdout)["mismatches"]] == [app]
    with store.manager() as manager:
        assert manager.backend.usage(app).bytes == 12
    assert cli("verify", *store.args()).exit_code == 0


def store_bad_key(store: Store, component: str, raw: bytes) -> None:
    """Store key *raw* for *component* around the core (the issue's sqlite3 INSERT / LevelDB put)."""
    write_around(
        store,
        "INSERT INTO {data} (ns, k, v) VALUES (?, ?, ?)",
        (component, raw, b"v"),
        lambda backend: put_row(backend, component, raw, b"v"),
    )


@pytest.mark.parametrize("name", ALL)
def test_verify_finds_and_repair_removes_an_undecodable_key(cli: Run, make_store: MakeStore, name: str) -> None:
    """The issue's input: key X'FF00' (SQL) / b'\\xff\\xfe' (key-value engines) stored behind the core's back."""
    store = make_store(name)
    app = store.component("app")
    store.write(app, {"good": b"12"})
    raw = b"\xff\xfe" if name in KEY_VALUE else b"\xff\x00"
    store_bad_key(store, app, raw)

    listed = cli("keys", "-c", app, *store.args())
    assert listed.exit_code == 5, listed.stderr
    assert (
        raw.hex() in listed.stderr
        and "airssys-storage verify" in listed.stderr
        and "this is a bug" not in listed.stderr
    )
    assert "airssys-storage verify --repair --url" in listed.stderr
    if store.options:  # the hint names the same tables (Redis: the same key prefix)
        option = store.backend.prefix_option
        assert f'"{option}":"{store.options[option]}"' in listed.stderr
    exported = cli("export", "-c", app, *store.args())
    assert exported.exit_code == 5 and raw.hex() in exported.stderr

    found = cli("verify", *store.args())
    assert found.exit_code == 6, found.stderr
    assert raw.hex() in found.stdout and "break the key rules" in error_line(found.stderr)
    report = json.loads(cli("verify", *store.args(), "--json").stdout)
    assert [(b["namespace"], b["key_hex"]) for b in report["bad_keys"]] == [(app, raw.hex())]

    fixed = cli("verify", "--repair", *store.args())
    assert fixed.exit_code == 0, fixed.stderr
    assert "removed 1 key(s)" in fixed.stderr and raw.hex() in fixed.stdout
    assert store.read(app) == {"good": b"12"}
    with store.manager() as manager:
        assert manager.backend.usage(app).bytes == 6
    assert cli("verify", *store.args()).exit_code == 0
    assert cli("keys", "-c", app, *store.args()).exit_code == 0


def test_repair_removes_an_undecodable_leveldb_key(cli: Run, make_store: MakeStore) -> None:
    """`airssys-storage repair` (LevelDB) no longer counts the issue's b'\\xff\\xfe' key into usage: it removes it."""
    store = make_store("leveldb")
    store.write("app", {"good": b"12"})
    store_bad_key(store, "app", b"\xff\xfe")
    done = cli("repair", *store.args(), "--json")
    assert done.exit_code == 0, done.stderr
    report = json.loads(done.stdout)["report"]
    assert report["keys"] == 1 and report["bytes"] == 6
    assert report["bad_keys_removed"] == ["component 'app', key x'fffe' (not valid UTF-8)"]
    assert store.read("app") == {"good": b"12"}
    assert cli("verify", *store.args()).exit_code == 0


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


def _damage_sqlite(where: Path, store: Store) -> None:
    path = Path(store.url.removeprefix("sqlite:///"))
    data = bytearray(path.read_bytes())
    data[4096 * 20 + 8 : 4096 * 20 + 60] = b"\xff" * 52  # a b-tree page of the data table (past the roots)
    path.write_bytes(bytes(data))


def _damage_leveldb(part: str) -> Callable[[Path, Store], None]:
    def damage(where: Path, store: Store) -> None:
        path = Path(store.url.removeprefix("leveldb://"))
        if part == "CURRENT":
            (path / "CURRENT").write_text("garbage\n")
        elif part == "log":
            _flip(max(path.glob("*.log")), len(max(path.glob("*.log")).read_bytes()) // 2)
        else:
            import plyvel

            db = plyvel.DB(str(path))
            db.compact_range()  # the records move into a table file
            db.close()
            _flip(max(path.glob("*.ldb")), 100_000)

    return damage


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("sqlite", _damage_sqlite),
        ("leveldb", _damage_leveldb("log")),
        ("leveldb", _damage_leveldb("CURRENT")),
        ("leveldb", _damage_leveldb("ldb")),
    ],
    ids=["sqlite-page", "leveldb-log", "leveldb-CURRENT", "leveldb-ldb"],
)
def test_verify_exits_6_for_damage_found_at_open_or_recount(
    cli: Run, make_store: MakeStore, tmp_path: Path, name: str, damage: Callable[[Path, Store], None]
) -> None:
    """The issue's inputs: damage that stops the open or the recount is still damage (exit 6, not 5), and a
    verify that could not recount never claims '0 keys'."""
    store = make_store(name)
    store.write("app", {f"k{i:05d}": b"v" * 100 for i in range(3000)})
    damage(tmp_path, store)
    found = cli("verify", *store.args())
    assert found.exit_code == 6, found.stderr
    line = error_line(found.stderr)
    assert "damaged" in line or "corrupted" in line
    assert " 0 keys" not in found.stderr + found.stdout
    as_json = cli("verify", *store.args(), "--json")
    assert as_json.exit_code == 6
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["problems"]
    assert report["backend"] == ("sql" if name == "sqlite" else "leveldb")
    assert report["keys"] is None or report["keys"] > 0


def test_sqlite_rows_stored_as_text_are_damage_that_repair_removes(cli: Run, make_store: MakeStore) -> None:
    """Second outside trial: a TEXT key or a TEXT value (SQLite takes any type) made verify exit 5 with a
    TypeError; now verify reports both rows (exit 6) and --repair removes them."""
    store = make_store("sqlite")
    store.write("app", {"good": b"12"})
    write_around(store, "INSERT INTO {data} (ns, k, v) VALUES (?, ?, ?)", ("app", "textkey", b"\x01"), sql_only)
    write_around(store, "INSERT INTO {data} (ns, k, v) VALUES (?, ?, ?)", ("app", b"k9", "textval"), sql_only)
    found = cli("verify", *store.args())
    assert found.exit_code == 6, found.stderr
    report = json.loads(cli("verify", *store.args(), "--json").stdout)
    assert sorted(b["key_hex"] for b in report["bad_keys"]) == sorted([b"textkey".hex(), b"k9".hex()])
    fixed = cli("verify", "--repair", *store.args())
    assert fixed.exit_code == 0, fixed.stderr
    assert store.read("app") == {"good": b"12"}
    assert cli("verify", *store.args()).exit_code == 0
    assert cli("export", "-c", "app", *store.args()).exit_code == 0


@pytest.mark.parametrize("name", ["sqlite", *KEY_VALUE])
def test_a_namespace_that_is_no_component_id_is_damage_and_stats_leaves_it_out(
    cli: Run, make_store: MakeStore, name: str
) -> None:
    """Second outside trial: data under namespace 'Bad NS!' (written around the core) passed verify, and
    stats then failed with exit 3. Verify now reports it; stats warns and lists the real components."""
    store = make_store(name)
    store.write("app", {"good": b"12"})

    write_around(
        store,
        "INSERT INTO {data} (ns, k, v) VALUES (?, ?, ?)",
        ("Bad NS!", b"a", b"\x01"),
        lambda backend: put_row(backend, "Bad NS!", b"a", b"\x01"),
    )
    found = cli("verify", *store.args())
    assert found.exit_code == 6, found.stderr
    assert "'Bad NS!'" in found.stdout + found.stderr and "no valid component id" in found.stdout + found.stderr
    assert cli("verify", "--repair", *store.args()).exit_code == 6  # counters fixed; the namespace stays damage
    stats = cli("stats", "--json", *store.args())
    assert stats.exit_code == 0, stats.stderr
    assert [c["component"] for c in json.loads(stats.stdout)["components"]] == ["app"]
    assert "'Bad NS!'" in stats.stderr


def _versions(store: Store, component: str) -> dict[str, int]:
    with store.manager() as manager:
        backend = manager.backend
        return {
            key.decode(): entry.version
            for key in backend.keys(component, b"", None, 1000)
            if (entry := backend.get_entry(component, key)) is not None
        }


@pytest.mark.parametrize("name", ["sqlite", "postgresql", "mariadb"])
def test_rows_with_a_bad_version_or_expiry_are_damage_that_repair_fixes(
    cli: Run, make_store: MakeStore, name: str
) -> None:
    """Third outside trial: versions and expiries damaged in the table (SQLite: the tester's exact input; the
    servers' BIGINT columns only take out-of-range integers) passed verify, while reads failed with a TypeError
    and writes continued from the bad versions. Verify reports every such row (exit 6); --repair gives a bad
    version a fresh one above every version of the component, and removes a row whose expiry is bad."""
    store = make_store(name)
    app = store.component("app")
    store.write(app, {k: b"v" + k.encode() for k in "abcdefghi"})
    store.write(app, {"a": b"va2", "i": b"vi2"})  # versions up to 2 (the component's highest before the damage)
    if name == "sqlite":
        damage = [
            ("exp = 'soon'", "d"),
            ("exp = X'00'", "h"),
            ("ver = -5", "b"),
            ("ver = 'abc'", "c"),
            ("ver = 18446744073709551615", "g"),
            ("ver = 'x', exp = 2.5", "f"),  # both (not the tester's): removed, and a fresh version for the floor
        ]
    else:
        damage = [("exp = 0", "d"), ("exp = -7", "h"), ("ver = -5", "b"), ("ver = 0", "c"), ("ver = -1", "g")]
        damage.append(("ver = -2, exp = -3", "f"))
    for assignment, key in damage:
        write_around(store, f"UPDATE {{data}} SET {assignment} WHERE ns = ? AND k = ?", (app, key.encode()), sql_only)

    found = cli("verify", *store.args())
    assert found.exit_code == 6, found.stderr
    assert "6 row(s) have a version or expiry out of range" in error_line(found.stderr)
    report = json.loads(cli("verify", *store.args(), "--json").stdout)
    assert report["ok"] is False
    rows = {bytes.fromhex(r["key_hex"]).decode(): r for r in report["bad_rows"]}
    assert sorted(rows) == ["b", "c", "d", "f", "g", "h"] and {r["namespace"] for r in rows.values()} == {app}
    assert rows["b"]["problem"] == "version -5 is not an integer in 1..9223372036854775807"
    # Fresh versions above the highest sound one (2), in key order; rows with a bad expiry are removed.
    assert [rows[k]["fix"] for k in "bcg"] == ["given version 3", "given version 4", "given version 6"]
    assert rows["f"]["fix"] == "removed as expired (the version floor becomes at least 5)" and rows["f"]["removed"]
    assert rows["d"]["removed"] and rows["h"]["removed"] and "expiry" in rows["d"]["problem"]
    assert rows["d"]["fix"] == "removed as expired (the version floor becomes at least 1)"
    assert report["keys"] == 6 and report["bytes"] == 6 * 3 + 2  # d, f and h leave the totals

    fixed = cli("verify", "--repair", *store.args())
    assert fixed.exit_code == 0, fixed.stderr
    assert "fixed 6 row(s)" in fixed.stderr
    assert cli("verify", *store.args()).exit_code == 0
    assert cli("export", "-c", app, *store.args()).exit_code == 0
    assert sorted(store.read(app)) == ["a", "b", "c", "e", "g", "i"]
    assert _versions(store, app) == {"a": 2, "b": 3, "c": 4, "e": 1, "g": 6, "i": 2}
    with store.manager() as manager:
        backend = manager.backend
        assert backend.usage(app).keys == 6
        store.write(app, {"b": b"new", "d": b"back"})
        assert backend.get_entry(app, b"b").version == 4  # type: ignore[union-attr]
        # d's version (1) and f's fresh one (5) raised the floor as any removal does: keys come back above it.
        assert backend.get_entry(app, b"d").version == 6  # type: ignore[union-attr]  # f's fresh 5 is the floor
    assert cli("verify", "--repair", *store.args()).exit_code == 0
