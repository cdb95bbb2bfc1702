"""Host metadata (airssys_storage.hostmeta): durable host records outside every component."""

from __future__ import annotations

from pathlib import Path

import pytest

from airssys_storage import InvalidArgument, InvalidKey, Manifest, ManifestError, StorageManager, StorageSettings
from airssys_storage.hostmeta import HOST_NAMESPACE, is_host_namespace


def test_records_persist_outside_every_component(tmp_path: Path) -> None:
    settings = StorageSettings(url=f"sqlite:///{tmp_path / 'store.db'}")
    with StorageManager.from_settings(settings) as manager:
        storage = manager.component(Manifest(id="app", access="read-write", max_size=100))
        storage.set("k", b"v")
        meta = manager.host_metadata("wasmtime")
        meta.set_json("changes/app/cursor", {"cursor": 7})
        meta.set("changes/app/raw", b"x" * 500)  # over the component's quota: not its bytes
        other = manager.host_metadata("other")
        other.set("changes/app/cursor", b"theirs")
        assert storage.keys() == ["k"]
        assert storage.usage().bytes == 2
    with StorageManager.from_settings(settings) as manager:
        meta = manager.host_metadata("wasmtime")
        assert meta.get_json("changes/app/cursor") == {"cursor": 7}
        assert [key for key, _ in meta.items("changes/")] == ["changes/app/cursor", "changes/app/raw"]
        assert manager.host_metadata("other").get("changes/app/cursor") == b"theirs"
        assert meta.delete("changes/app/raw") and not meta.delete("changes/app/raw")
        assert meta.get("missing") is None and meta.get_json("missing") is None
        assert is_host_namespace(HOST_NAMESPACE) and HOST_NAMESPACE in manager.backend.namespaces()


def test_no_component_can_open_the_host_namespace_and_bad_names_are_refused() -> None:
    with pytest.raises(ManifestError, match=r"component\.id"):
        Manifest(id=HOST_NAMESPACE)
    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        with pytest.raises(InvalidArgument):
            manager.host_metadata("Not/Valid")
        meta = manager.host_metadata("wasmtime")
        for bad in ("", "a\nb", "x" * 1000):
            with pytest.raises(InvalidKey):
                meta.set(bad, b"")


def test_verify_and_migrate_leave_host_metadata_alone(tmp_path: Path) -> None:
    from airssys_storage.exchange import migrate

    source_settings = StorageSettings(url=f"sqlite:///{tmp_path / 'source.db'}")
    with StorageManager.from_settings(source_settings) as source:
        source.component(Manifest(id="app", access="read-write")).set("k", b"v")
        source.host_metadata("wasmtime").set("changes/app/cursor", b"{}")
        report = source.backend.verify()
        assert report.problems == () and not report.mismatches
        with StorageManager.from_settings(StorageSettings(url=f"sqlite:///{tmp_path / 'target.db'}")) as target:
            assert [result.component for result in migrate(source, target)] == ["app"]
            assert target.host_metadata("wasmtime").get("changes/app/cursor") is None  # seqs of another store


def test_set_if_writes_only_over_the_version_it_read() -> None:
    from airssys_storage import PreconditionFailed

    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        meta = manager.host_metadata("wasmtime")
        first = meta.set_if("cursor", b"1", 0)  # 0: must be absent
        assert meta.get_versioned("cursor") == (b"1", first)
        second = meta.set_if("cursor", b"2", first)
        with pytest.raises(PreconditionFailed):
            meta.set_if("cursor", b"stale", first)
        with pytest.raises(PreconditionFailed):
            meta.set_if("cursor", b"new", 0)
        assert meta.get_versioned("cursor") == (b"2", second)
        assert meta.get_versioned("missing") is None
