"""The export format, import and migration as a Python API, in-process on memory:// (and any persistent backend)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator

import pytest
from cli_helpers import ADVERSARIAL, read_all, sample_data

from airssys_storage import (
    Access,
    ComponentStorage,
    Entry,
    KeyNotFound,
    Manifest,
    PreconditionFailed,
    QuotaExceeded,
    StorageManager,
    StorageSettings,
)
from airssys_storage.backend import Usage
from airssys_storage.exchange import (
    FORMAT_NAME,
    ExportFormatError,
    VerificationError,
    copy_component,
    export_component,
    import_component,
    migrate,
    operator_settings,
    operator_storage,
    plan_migration,
    read_export_component,
    validate_export,
)
from airssys_storage.testing import FakeClock


def memory_manager(**settings: object) -> StorageManager:
    return StorageManager.from_settings(operator_settings(StorageSettings(url="memory://", **settings)))  # type: ignore[arg-type]


@pytest.fixture
def source() -> Iterator[StorageManager]:
    with memory_manager() as manager:
        yield manager


@pytest.fixture
def target() -> Iterator[StorageManager]:
    with memory_manager() as manager:
        yield manager


def fill(manager: StorageManager, component: str, data: dict[str, bytes]) -> None:
    storage = operator_storage(manager, component)
    items = list(data.items())
    for start in range(0, len(items), 100):
        storage.set_many(items[start : start + 100])


def export_bytes(manager: StorageManager, component: str) -> bytes:
    out = io.BytesIO()
    export_component(operator_storage(manager, component), out)
    return out.getvalue()


def lines(*objects: object) -> bytes:
    return b"".join(json.dumps(obj).encode() + b"\n" for obj in objects)


HEADER = {"format": FORMAT_NAME, "version": 1, "component": "app"}
V2 = {**HEADER, "version": 2}


def record(key: str, value: bytes) -> dict[str, str]:
    return {"key": key, "value": base64.b64encode(value).decode()}


def end(records: int, size: int) -> dict[str, object]:
    return {"end": {"records": records, "bytes": size}}


# -- the format --------------------------------------------------------------


def test_export_is_the_documented_format(source: StorageManager) -> None:
    fill(source, "app", {"config/theme": b"dark", "user:1": b""})
    assert export_bytes(source, "app") == (
        b'{"format":"airssys-storage-export","version":2,"component":"app"}\n'
        b'{"key":"config/theme","value":"ZGFyaw=="}\n'
        b'{"key":"user:1","value":""}\n'
        b'{"end":{"records":2,"bytes":22}}\n'
    )


def test_export_orders_keys_bytewise_and_is_ascii(source: StorageManager) -> None:
    fill(source, "app", ADVERSARIAL)
    text = export_bytes(source, "app")
    text.decode("ascii")  # escapes keep the file pure ASCII
    keys = [json.loads(line)["key"] for line in text.splitlines()[1:-1]]
    assert keys == sorted(ADVERSARIAL, key=str.encode)


def test_round_trip_is_byte_identical(source: StorageManager, target: StorageManager) -> None:
    data = sample_data()
    fill(source, "app", data)
    first = export_bytes(source, "app")
    result = import_component(operator_storage(target, "app"), io.BytesIO(first))
    assert (result.records, result.written) == (len(data), len(data))
    assert read_all(operator_storage(target, "app")) == data
    assert export_bytes(target, "app") == first
    assert operator_storage(target, "app").usage() == operator_storage(source, "app").usage()


def test_import_into_another_component_and_read_the_header(source: StorageManager, target: StorageManager) -> None:
    fill(source, "app", {"k": b"v"})
    file = io.BytesIO(export_bytes(source, "app"))
    assert read_export_component(file) == "app"
    file.seek(0)
    import_component(operator_storage(target, "copy"), file)
    assert operator_storage(target, "copy").get("k") == b"v"
    assert operator_storage(target, "app").get("k") is None


def test_reimport_writes_only_what_changed_and_keeps_other_keys(target: StorageManager) -> None:
    fill(target, "app", {"k1": b"old", "mine": b"kept"})
    file = lines(HEADER, record("k1", b"new"), record("k2", b"x"), end(2, 2 + 3 + 2 + 1))
    assert import_component(operator_storage(target, "app"), io.BytesIO(file)).written == 2
    assert import_component(operator_storage(target, "app"), io.BytesIO(file)).written == 0
    assert read_all(operator_storage(target, "app")) == {"k1": b"new", "k2": b"x", "mine": b"kept"}


def test_replace_clears_first_and_verifies(target: StorageManager) -> None:
    fill(target, "app", {"mine": b"gone"})
    file = lines(HEADER, record("k", b"v"), end(1, 2))
    import_component(operator_storage(target, "app"), io.BytesIO(file), replace=True)
    assert read_all(operator_storage(target, "app")) == {"k": b"v"}


def test_import_writes_in_batches_of_max_batch_ops() -> None:
    with memory_manager(max_batch_ops=7) as manager:
        storage = operator_storage(manager, "app")
        calls: list[int] = []
        data = {f"k{i:03d}": b"v" for i in range(30)}
        file = lines(HEADER, *(record(k, v) for k, v in data.items()), end(30, sum(len(k) + 1 for k in data)))

        class Counting:
            def __getattr__(self, name: str) -> object:
                return getattr(storage, name)

            def _restore_many(self, entries: list[tuple[str, bytes, int | None]]) -> None:
                calls.append(len(entries))
                storage._restore_many(entries)

        import_component(Counting(), io.BytesIO(file))  # type: ignore[arg-type]
        assert calls == [7, 7, 7, 7, 2]
        assert read_all(storage) == data


# -- bad files: rejected with the line number, nothing written --------------------

GOOD = [HEADER, record("a", b"1"), record("b", b"22"), end(2, 1 + 1 + 1 + 2)]

BAD_FILES = {
    "empty": (b"", 1, "empty"),
    "csv": (b"a,b,c\n1,2,3\n", 1, "not valid JSON"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00", 1, "not UTF-8"),
    "foreign json": (lines({"format": "other"}, record("a", b"1")), 1, "not an airssys-storage export"),
    "future version": (lines({**HEADER, "version": 3}, *GOOD[1:]), 1, "version 3 is not supported"),
    "bool version": (lines({**HEADER, "version": True}, *GOOD[1:]), 1, "not supported"),
    "bad component id": (lines({**HEADER, "component": "App:1"}, *GOOD[1:]), 1, "component.id"),
    "truncated": (lines(*GOOD[:3]), 4, "truncated"),
    "cut mid-line": (lines(*GOOD)[:-10], 4, "not valid JSON"),
    "bad base64": (lines(HEADER, record("a", b"1"), {"key": "b", "value": "!!"}, GOOD[3]), 3, "base64"),
    "non-string value": (lines(HEADER, {"key": "a", "value": 5}, GOOD[3]), 2, "base64 string"),
    "extra field": (lines(HEADER, {**record("a", b"1"), "ttl": 5}, GOOD[3]), 2, "expected a record"),
    # expires_at_ms: version 2 only, a positive int64 of milliseconds, never null
    "expiry in a version 1 file": (
        lines({**HEADER, "version": 1}, {**record("a", b"1"), "expires_at_ms": 5}, end(1, 2)),
        2,
        "expected a record",
    ),
    "null expiry": (lines(V2, {**record("a", b"1"), "expires_at_ms": None}, end(1, 2)), 2, "not None"),
    "float expiry": (lines(V2, {**record("a", b"1"), "expires_at_ms": 5.0}, end(1, 2)), 2, "not 5.0"),
    "zero expiry": (lines(V2, {**record("a", b"1"), "expires_at_ms": 0}, end(1, 2)), 2, "from 1 to"),
    "expiry past int64": (lines(V2, {**record("a", b"1"), "expires_at_ms": 2**63}, end(1, 2)), 2, "from 1 to"),
    "control char in key": (lines(HEADER, record("a\nb", b"1"), GOOD[3]), 2, "control character"),
    "lone surrogate key": (lines(HEADER, {"key": "\ud800", "value": ""}, GOOD[3]), 2, "surrogate"),
    "empty key": (lines(HEADER, record("", b"1"), GOOD[3]), 2, "empty"),
    "key too long": (lines(HEADER, record("x" * 257, b"1"), GOOD[3]), 2, "257 bytes"),
    "value too large": (lines(HEADER, record("a", bytes(1024 * 1024 + 1)), GOOD[3]), 2, "1048577 bytes"),
    "duplicate key": (
        lines(HEADER, record("a", b"1"), record("a", b"2"), end(2, 4)),
        3,
        "appears twice (first on line 2)",
    ),
    "wrong count": (lines(*GOOD[:3], end(3, 5)), 4, "announces 3 records"),
    "wrong bytes": (lines(*GOOD[:3], end(2, 6)), 4, "of 6 bytes"),
    "data after end": (lines(*GOOD, record("c", b"3")), 5, "after the end line"),
    "two exports": (lines(*GOOD) + lines(*GOOD), 5, "after the end line"),
    "blank line": (lines(*GOOD[:2]) + b"\n" + lines(*GOOD[2:]), 3, "not valid JSON"),
    "end not an object": (lines(*GOOD[:3], {"end": 2}), 4, "end line must be"),
    "huge line": (lines(HEADER) + b'{"key":"a","value":"' + b"A" * 3_000_000, 2, "longer than"),
    # docs/cli.md: the version is the integer 1, and the end line's counts are integers
    "float version": (lines({**HEADER, "version": 1.0}, *GOOD[1:]), 1, "version 1.0 is not supported"),
    "bool records": (lines(HEADER, record("a", b"1"), end(True, 2)), 3, "records must be an integer, not bool"),
    "float bytes": (lines(*GOOD[:3], end(2, 5.0)), 4, "bytes must be an integer, not float"),  # type: ignore[arg-type]
    "repeated field": (
        lines(HEADER) + b'{"key":"a","value":"MQ==","key":"b"}\n' + lines(end(1, 2)),
        2,
        "the JSON field 'key' appears twice",
    ),
    "repeated header field": (
        b'{"format":"airssys-storage-export","version":1,"component":"app","component":"b"}\n' + lines(*GOOD[1:]),
        1,
        "appears twice",
    ),
}


@pytest.mark.parametrize("content, line, message", BAD_FILES.values(), ids=list(BAD_FILES))
def test_bad_file_is_rejected_with_its_line_before_anything_is_written(
    target: StorageManager, content: bytes, line: int, message: str
) -> None:
    storage = operator_storage(target, "app")
    storage.set("existing", b"stays")
    with pytest.raises(ExportFormatError) as caught:
        import_component(storage, io.BytesIO(content), replace=True)
    assert caught.value.line == line
    assert caught.value.message.startswith(f"line {line}: ")
    assert message in caught.value.message
    assert caught.value.code == "invalid-export-file"
    assert read_all(storage) == {"existing": b"stays"}


def test_good_lines_pass_validation(target: StorageManager) -> None:
    info = validate_export(io.BytesIO(lines(*GOOD)), operator_storage(target, "app"))
    assert (info.component, info.records, info.bytes) == ("app", 2, 5)


def test_unknown_header_fields_are_ignored_and_crlf_is_accepted(target: StorageManager) -> None:
    content = lines({**HEADER, "exported_by": "someone"}, *GOOD[1:]).replace(b"\n", b"\r\n")
    assert validate_export(io.BytesIO(content), operator_storage(target, "app")).records == 2


def test_target_limits_apply_to_the_file() -> None:
    with memory_manager(max_key_bytes=4) as manager:
        file = lines(HEADER, record("short", b""), end(1, 5))
        with pytest.raises(ExportFormatError, match="line 2: key 'short'"):
            import_component(operator_storage(manager, "app"), io.BytesIO(file))


# -- quota -------------------------------------------------------------------


def quota_manager(limit: int) -> StorageManager:
    return StorageManager.from_settings(operator_settings(StorageSettings(url="memory://"), quota=limit))


def test_import_over_quota_fails_before_writing() -> None:
    with quota_manager(10) as manager:
        storage = operator_storage(manager, "app")
        storage.set("k", b"123")  # 4 bytes
        file = lines(HEADER, record("a", b"1234"), record("b", b"1"), end(2, 7))
        with pytest.raises(QuotaExceeded, match="nothing was written"):
            import_component(storage, io.BytesIO(file))
        assert read_all(storage) == {"k": b"123"}


def test_import_counts_overwrites_exactly_against_the_quota() -> None:
    with quota_manager(12) as manager:
        storage = operator_storage(manager, "app")
        fill(manager, "app", {"a": b"12345", "b": b"1234"})  # 11 bytes
        # The file alone (6 bytes) plus the usage (11) passes 12, but shrinking a and b nets -5: it fits.
        file = lines(HEADER, record("a", b"1"), record("b", b"1"), record("c", b"1"), end(3, 6))
        import_component(storage, io.BytesIO(file))
        assert storage.usage().bytes == 6
        with pytest.raises(QuotaExceeded):
            import_component(storage, io.BytesIO(lines(HEADER, record("d", b"1234567"), end(1, 8))))


def test_replace_is_checked_against_the_file_alone() -> None:
    with quota_manager(10) as manager:
        storage = operator_storage(manager, "app")
        storage.set("k", b"12345678")  # 9 of 10 bytes
        import_component(storage, io.BytesIO(lines(HEADER, record("a", b"1234"), end(1, 5))), replace=True)
        assert read_all(storage) == {"a": b"1234"}


def test_a_real_manifest_quota_is_enforced_through_the_normal_handle() -> None:
    # Python callers may import with a component's ordinary handle: its permissions and quota apply.
    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        storage = manager.component(Manifest(id="app", access=Access.READ_WRITE, max_size=16))
        with pytest.raises(QuotaExceeded):
            import_component(storage, io.BytesIO(lines(HEADER, record("a", b"x" * 20), end(1, 21))))


# -- migration ---------------------------------------------------------------


def test_migrate_copies_every_component_and_verifies(source: StorageManager, target: StorageManager) -> None:
    fill(source, "one", sample_data(50))
    fill(source, "two", ADVERSARIAL)
    seen: list[int] = []
    results = migrate(source, target, progress=seen.append)
    assert [r.component for r in results] == ["one", "two"]
    assert all(r.verified for r in results)
    assert sum(seen) == len(sample_data(50)) + len(ADVERSARIAL)
    for cid in ("one", "two"):
        assert read_all(operator_storage(target, cid)) == read_all(operator_storage(source, cid))


def test_migrate_resumes_after_an_interruption(source: StorageManager, target: StorageManager) -> None:
    data = sample_data(400)
    fill(source, "app", data)
    done: list[int] = []

    def interrupt(count: int) -> None:
        done.append(count)
        if len(done) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate(source, target, progress=interrupt)
    partial = operator_storage(target, "app").usage().keys
    assert 0 < partial < len(data)
    [result] = migrate(source, target)
    assert result.verified and result.unchanged == partial and result.written == len(data) - partial
    assert read_all(operator_storage(target, "app")) == data


def test_migrate_detects_and_prunes_extra_target_keys(source: StorageManager, target: StorageManager) -> None:
    fill(source, "app", {"k": b"v"})
    fill(target, "app", {"k": b"old", "stale": b"x"})
    with pytest.raises(VerificationError, match="rerun with --prune"):
        migrate(source, target)
    [result] = migrate(source, target, prune=True)
    assert result.deleted == 1 and result.verified
    assert read_all(operator_storage(target, "app")) == {"k": b"v"}


def test_migrate_prune_empties_components_cleared_in_the_source(source: StorageManager, target: StorageManager) -> None:
    fill(source, "app", {"k1": b"1", "k2": b"2"})
    fill(source, "other", {"k": b"v"})
    migrate(source, target)
    operator_storage(source, "app").clear()
    results = migrate(source, target, prune=True)
    assert sorted(r.component for r in results) == ["app", "other"]
    assert read_all(operator_storage(target, "app")) == {}
    assert target.backend.namespaces() == ["other"]


def test_plan_migration_names_the_components_and_refuses_unknown_ones(
    source: StorageManager, target: StorageManager
) -> None:
    fill(source, "app", {"k1": b"1", "k2": b"2"})
    fill(target, "only-target", {"k": b"v"})
    assert plan_migration(source, target).components == ["app"]
    plan = plan_migration(source, target, prune=True)
    assert plan.components == ["app", "only-target"] and plan.keys == 2
    with pytest.raises(KeyNotFound, match="'ghost' holds no keys in the source"):
        plan_migration(source, target, ["app", "ghost"])
    with pytest.raises(KeyNotFound, match="'only-target' holds no keys"):
        plan_migration(source, target, ["only-target"])
    # With --prune, a component only the target holds is emptied, not refused.
    planned: list[int] = []
    [result] = migrate(source, target, ["only-target"], prune=True, on_planned=lambda p: planned.append(p.keys))
    assert planned == [0] and result.deleted == 1 and result.verified


def test_copy_component_between_ids(source: StorageManager, target: StorageManager) -> None:
    fill(source, "app", {"k": b"v"})
    result = copy_component(operator_storage(source, "app"), operator_storage(target, "other"))
    assert result.verified and result.written == 1


def test_operator_handles_are_unlimited_admins(source: StorageManager) -> None:
    storage = operator_storage(source, "app")
    assert storage.quota is None and storage.manifest.access is Access.ADMIN
    storage.set_many([(f"k{i}", bytes(1024 * 1024)) for i in range(60)])  # 60 MiB: past any manifest default
    storage.clear()


# -- expiry and versions (contract v2) -----------------------------------------------


def clocked_manager(clock: FakeClock, quota: int | None = None) -> StorageManager:
    """An operator manager on memory:// whose expiry clock is *clock*."""
    return StorageManager.from_settings(operator_settings(StorageSettings(url="memory://"), quota=quota), clock=clock)


def expiries(storage: ComponentStorage) -> dict[str, int | None]:
    """Every live key's exact expiry in ms (None: never)."""
    keys = storage.keys()
    return {key: row.expires_at for key, row in zip(keys, storage._entry_rows(keys), strict=True) if row}


def test_export_import_and_migrate_carry_the_exact_expiry() -> None:
    """Tester input 1: `set("ttl_long", b"2", ttl=3600)` exported as just key and value; migrate gave no expiry."""
    clock = FakeClock(start_ms=1_700_000_000_123)
    with clocked_manager(clock) as source, clocked_manager(clock) as target:
        storage = operator_storage(source, "mig")
        storage.set("plain", b"1")
        storage.set("ttl_long", b"2", ttl=3600)
        storage.set("ttl_odd", b"3", ttl=0.0015)  # 2 ms after rounding up
        expected = {"plain": None, "ttl_long": 1_700_003_600_123, "ttl_odd": 1_700_000_000_125}
        assert expiries(storage) == expected
        exported = export_bytes(source, "mig")
        assert b'{"key":"ttl_long","value":"Mg==","expires_at_ms":1700003600123}\n' in exported
        assert b'{"key":"plain","value":"MQ=="}\n' in exported
        clock.advance(0.001)  # the import's clock has moved on: the expiry must not be re-based on it
        imported = operator_storage(target, "imported")
        assert import_component(imported, io.BytesIO(exported)).written == 3
        assert expiries(imported) == expected
        assert export_bytes(target, "imported").split(b"\n", 1)[1] == exported.split(b"\n", 1)[1]
        (result,) = migrate(source, target, ["mig"])
        assert result.verified and result.written == 3
        assert expiries(operator_storage(target, "mig")) == expected
        assert operator_storage(target, "mig").get_entry("ttl_long") == Entry(b"2", 1, 1_700_003_600.123)


def test_identical_means_same_value_and_same_expiry() -> None:
    """Tester input 1 (reverse): the target's `live` had ttl=3600, the file's none: it was counted identical."""
    clock = FakeClock(start_ms=1_700_000_000_000)
    with clocked_manager(clock) as target:
        storage = operator_storage(target, "app")
        storage.set("live", b"1", ttl=3600)
        storage.set("same", b"2", ttl=60)
        same_expiry = storage.get_entry("same")
        assert same_expiry is not None and same_expiry.expires_at is not None
        file = lines(
            V2,
            record("live", b"1"),
            {**record("same", b"2"), "expires_at_ms": round(same_expiry.expires_at * 1000)},
            end(2, 4 + 1 + 4 + 1),
        )
        result = import_component(storage, io.BytesIO(file))
        assert (result.written, result.expired) == (1, 0)
        assert storage.ttl("live") is None
        clock.advance(7200)
        assert storage.get("live") == b"1"
        result = import_component(storage, io.BytesIO(file))  # `live` identical now; `same` expired: skipped
        assert (result.written, result.expired) == (0, 1)
        assert storage.get("same") is None


def test_a_record_expired_at_import_time_is_not_written() -> None:
    clock = FakeClock(start_ms=1_700_000_000_000)
    with clocked_manager(clock) as target:
        storage = operator_storage(target, "app")
        storage.set("kept", b"mine")
        file = lines(
            V2,
            {**record("gone", b"x"), "expires_at_ms": 1_700_000_000_000},  # expires exactly now: expired
            {**record("kept", b"y"), "expires_at_ms": 1_600_000_000_000},
            {**record("soon", b"z"), "expires_at_ms": 1_700_000_000_001},
            end(3, 15),
        )
        result = import_component(storage, io.BytesIO(file))
        assert (result.records, result.written, result.expired) == (3, 1, 2)
        # an expired record is like a key absent from the file: the target's own key stays
        assert read_all(storage) == {"kept": b"mine", "soon": b"z"}
        assert storage.usage() == Usage(4 + 4 + 4 + 1, 2)
        result = import_component(storage, io.BytesIO(file), replace=True)  # verification counts live data only
        assert (result.written, result.expired) == (1, 2)
        assert read_all(storage) == {"soon": b"z"}


def test_a_version_1_file_still_imports_without_expiry() -> None:
    clock = FakeClock()
    with clocked_manager(clock) as target:
        storage = operator_storage(target, "app")
        storage.set("a", b"old", ttl=10)
        assert import_component(storage, io.BytesIO(lines(*GOOD))).written == 2
        assert expiries(storage) == {"a": None, "b": None}


def test_migrate_verifies_with_expired_keys_not_yet_swept_and_leaves_the_source_alone() -> None:
    """Tester input 2: 4 keys in the source's counters, 1 expired unswept: migrate failed with exit 6."""
    clock = FakeClock(start_ms=1_700_000_000_000)
    with clocked_manager(clock) as source, clocked_manager(clock) as target:
        storage = operator_storage(source, "mig")
        storage.set_many([("a", b"1"), ("b", b"22")])
        storage.set("ttl_long", b"2", ttl=3600)
        storage.set("short", b"012345678", ttl=1)
        clock.advance(2)
        before = storage.usage()
        assert before == Usage(28, 4)
        (result,) = migrate(source, target, ["mig"])
        assert result.verified and (result.written, result.expired) == (3, 0)
        assert result.source == result.target == Usage(14, 3)
        assert storage.usage() == before  # not swept: a migration never writes to its source
        # the target's own expired rows are not counted either; pruning removes the stale one
        operator_storage(target, "mig").set("stale", b"s", ttl=1)
        clock.advance(2)
        (result,) = migrate(source, target, ["mig"])
        assert result.verified and result.written == 0 and result.unchanged == 3


def test_copy_skips_a_key_that_expires_between_read_and_write() -> None:
    clock = FakeClock(start_ms=1_700_000_000_000)
    with clocked_manager(clock) as source, clocked_manager(clock) as target:
        operator_storage(source, "app").set("brief", b"x", ttl=0.001)
        operator_storage(source, "app").set("long", b"y", ttl=60)
        source_storage = operator_storage(source, "app")

        class Late:
            """The source, with the clock moving on right after each read of the entries."""

            def __getattr__(self, name: str) -> object:
                return getattr(source_storage, name)

            def _entry_rows(self, keys: list[str]) -> object:
                rows = source_storage._entry_rows(keys)
                clock.advance(0.001)
                return rows

        result = copy_component(Late(), operator_storage(target, "app"))  # type: ignore[arg-type]
        assert (result.written, result.expired, result.unchanged) == (1, 1, 0)
        assert result.verified and result.target == Usage(5, 1)


def test_import_quota_projection_counts_live_data_only() -> None:
    """Tester input 2's kind in the quota check: expired rows and records must not count."""
    clock = FakeClock(start_ms=1_700_000_000_000)
    with clocked_manager(clock, quota=20) as target:
        storage = operator_storage(target, "app")
        assert storage.quota == 20
        storage.set("old", b"0123456789", ttl=1)  # 13 bytes, expired below but still in usage
        clock.advance(2)
        file = lines(
            V2,
            record("k", b"0123456789"),  # 11 bytes
            {**record("dead", b"0123456789"), "expires_at_ms": 1_600_000_000_000},  # 14 bytes, expired
            end(2, 25),
        )
        result = import_component(storage, io.BytesIO(file))
        assert (result.written, result.expired) == (1, 1)
        assert read_all(storage) == {"k": b"0123456789"}
        with pytest.raises(QuotaExceeded, match="to 22 bytes"):  # live data only: 11 + 11
            import_component(storage, io.BytesIO(lines(V2, record("k2", b"012345678"), end(1, 11))))
        result = import_component(storage, io.BytesIO(file), replace=True)
        assert (result.written, result.expired) == (1, 1)


def test_versions_restart_on_the_target() -> None:
    """Versions are per store (README): a migrated key starts at version 1; a stale CAS version fails there."""
    with memory_manager() as source, memory_manager() as target:
        storage = operator_storage(source, "app")
        for value in (b"1", b"2", b"3"):
            storage.set("k", value)
        assert storage.get_entry("k") == Entry(b"3", 3, None)
        migrate(source, target)
        moved = operator_storage(target, "app")
        assert moved.get_entry("k") == Entry(b"3", 1, None)
        with pytest.raises(PreconditionFailed):
            moved.compare_and_swap("k", b"4", version=3)
