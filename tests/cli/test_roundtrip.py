"""Export / import and migrate between every pair of installed backends, through the command line.

memory:// lives in one process, so its pairs run in-process: the test's own
memory manager exports and imports with :mod:`airssys_storage.exchange`, the
persistent side goes through the command line.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import BACKENDS, Run, Store, sample_data

from airssys_storage import StorageManager, StorageSettings
from airssys_storage.backend import wall_clock_ms
from airssys_storage.exchange import export_component, import_component, operator_settings, operator_storage

MakeStore = Callable[[str], Store]
NAMES = list(BACKENDS)
PAIRS = [(a, b) for a in NAMES for b in NAMES]


def expiring(store: Store, component: str) -> int:
    """Give *component* a key expiring in an hour and an expired key not yet swept; returns the hour's expiry."""
    now = wall_clock_ms()
    store.write_expiring(component, {"ttl_long": (b"2", now + 3_600_000), "zz-expired": (b"gone", now - 1000)})
    return now + 3_600_000


def records(export: bytes) -> bytes:
    """An export without its header line (which names the component)."""
    return export.split(b"\n", 1)[1]


@pytest.mark.parametrize("source_name, target_name", PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_export_import_round_trip(
    cli: Run, make_store: MakeStore, tmp_path: Path, source_name: str, target_name: str
) -> None:
    source, target = make_store(source_name), make_store(target_name)
    component = source.component("app")
    # Same server and tables would mean the same data: import under another id there.
    same = source.url == target.url and source.options == target.options
    copy = target.component("copy") if same else component
    target.used.add(copy)
    data = sample_data()
    source.write(component, data)
    expiry = expiring(source, component)
    data["ttl_long"] = b"2"

    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    result = cli("export", *source.args(), "-c", component, "-o", str(first))
    assert result.exit_code == 0, result.stderr
    assert f'{{"key":"ttl_long","value":"Mg==","expires_at_ms":{expiry}}}'.encode() in first.read_bytes()
    assert b"zz-expired" not in first.read_bytes()
    result = cli("import", str(first), *target.args(), "-c", copy)
    assert result.exit_code == 0, result.stderr
    assert target.read(copy) == data
    assert target.expiries(copy) == {key: expiry if key == "ttl_long" else None for key in data}
    result = cli("export", *target.args(), "-c", copy, "-o", str(second))
    assert result.exit_code == 0, result.stderr
    if copy == component:
        assert second.read_bytes() == first.read_bytes()
    else:
        assert records(second.read_bytes()) == records(first.read_bytes())


@pytest.mark.parametrize("name", NAMES)
def test_memory_round_trip(cli: Run, make_store: MakeStore, tmp_path: Path, name: str) -> None:
    store = make_store(name)
    component = store.component("app")
    data = sample_data()
    with StorageManager.from_settings(operator_settings(StorageSettings(url="memory://"))) as memory:
        storage = operator_storage(memory, component)
        storage.set_many(list(data.items())[:100])
        storage.set_many(list(data.items())[100:200])
        storage.set_many(list(data.items())[200:])
        exported = io.BytesIO()
        export_component(storage, exported)
        # memory -> persistent through the command line, and back
        (tmp_path / "memory.jsonl").write_bytes(exported.getvalue())
        assert cli("import", str(tmp_path / "memory.jsonl"), *store.args()).exit_code == 0
        result = cli("export", *store.args(), "-c", component)
        assert result.exit_code == 0, result.stderr
        assert result.stdout_bytes == exported.getvalue()
        back = operator_storage(memory, "back")
        import_component(back, io.BytesIO(result.stdout_bytes))
        again = io.BytesIO()
        export_component(back, again)
        assert records(again.getvalue()) == records(exported.getvalue())


@pytest.mark.parametrize("source_name, target_name", PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_migrate(cli: Run, make_store: MakeStore, source_name: str, target_name: str) -> None:
    source, target = make_store(source_name), make_store(target_name)
    one, two = source.component("one"), source.component("two")
    target.used.update({one, two})
    data = sample_data(120)
    source.write(one, data)
    expiry = expiring(source, one)  # the expired row counts in the source's usage: verification must not
    data["ttl_long"] = b"2"
    source.write(two, {"x": b"1"})
    target.write(one, {"stale": b"only in the target"})
    route = [*source.args("--from", "--from-options"), *target.args("--to", "--to-options")]
    picked = ["-c", one, "-c", two]

    # An extra key in the target fails verification (exit 6) after copying everything...
    result = cli("migrate", *route, *picked)
    assert result.exit_code == 6, result.stderr
    assert "rerun with --prune" in result.stderr
    assert target.read(two) == {"x": b"1"}
    # ...and --prune makes the target mirror the source; a re-run writes nothing.
    result = cli("migrate", *route, *picked, "--prune", "--json")
    assert result.exit_code == 0, result.stderr
    report = {row["component"]: row for row in json.loads(result.stdout)}
    assert report[one]["deleted"] == 1 and report[one]["verified"]
    assert target.read(one) == data and target.read(two) == {"x": b"1"}
    assert target.expiries(one) == {key: expiry if key == "ttl_long" else None for key in data}
    assert source.expiries(one)["ttl_long"] == expiry
    result = cli("migrate", *route, *picked, "--json")
    assert [row["written"] for row in json.loads(result.stdout)] == [0, 0]


def test_migrate_every_component_of_a_private_store(cli: Run, make_store: MakeStore) -> None:
    source = make_store("leveldb")
    target = make_store("sqlite")
    for cid in ("alpha", "beta", "gamma"):
        source.write(cid, {f"{cid}/{i}": bytes([i]) * i for i in range(30)})
    result = cli("migrate", "--from", source.url, "--to", target.url)
    assert result.exit_code == 0, result.stderr
    assert "migrated 3 components (90 keys, 90 written)" in result.stderr
    for cid in ("alpha", "beta", "gamma"):
        assert target.read(cid) == source.read(cid)


def test_migrate_prune_empties_components_cleared_in_the_source(cli: Run, make_store: MakeStore) -> None:
    """Issue 9: `migrate --prune` computed its own component list and kept target-only components."""
    source = make_store("leveldb")
    target = make_store("sqlite")
    source.write("alpha", {"a": b"1"})
    source.write("beta", {f"b{i}": b"2" for i in range(5)})
    assert cli("migrate", "--from", source.url, "--to", target.url).exit_code == 0
    assert cli("clear", "-c", "beta", "--yes", "--url", source.url).exit_code == 0
    result = cli("migrate", "--from", source.url, "--to", target.url, "--prune", "--json")
    assert result.exit_code == 0, result.stderr
    report = {row["component"]: row for row in json.loads(result.stdout)}
    assert report["beta"]["deleted"] == 5 and report["beta"]["verified"] and report["beta"]["keys"] == 0
    assert target.read("beta") == {} and target.read("alpha") == {"a": b"1"}
    # Without --prune the cleared component is not listed, so verification cannot pass silently either.
    source.write("gamma", {"g": b"3"})
    result = cli("migrate", "--from", source.url, "--to", target.url, "-c", "beta", "--prune")
    assert result.exit_code == 1 and "'beta' holds no keys" in result.stderr


def test_migrate_errors(cli: Run, make_store: MakeStore) -> None:
    source = make_store("leveldb")
    result = cli("migrate", "--from", source.url, "--to", source.url)
    assert result.exit_code == 2 and "same store" in result.stderr
    other = make_store("leveldb")
    result = cli("migrate", "--from", source.url, "--to", other.url, "-c", "ghost")
    assert result.exit_code == 1 and "'ghost' holds no keys" in result.stderr
    result = cli("migrate", "--from", "nosuch://", "--to", other.url)
    assert result.exit_code == 3 and "installed schemes:" in result.stderr
