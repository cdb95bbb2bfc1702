"""The on-disk compile cache: keyed by wasmtime version and the guest's sha256, best effort."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from airssys_storage_wasmtime import Host, default_cache_dir
from airssys_storage_wasmtime.host import CACHE_DIR_ENV
from wasmtime.component import Component
from wasmtime_helpers import FIXTURES

BENCH_TEXT = (FIXTURES / "bench.wat").read_bytes()


def cached_file(host: Host, source: bytes) -> Path:
    assert host.cache_dir is not None
    return host.cache_dir / f"{hashlib.sha256(source).hexdigest()}.cwasm"


class Compilations:
    """Counts compilations and cache loads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.compiled = 0
        self.loaded = 0
        original_init = Component.__init__
        original_load = Component.deserialize_file.__func__  # type: ignore[attr-defined]

        def init(component: Component, *args: Any) -> None:
            self.compiled += 1
            original_init(component, *args)

        def load(cls: type[Component], *args: Any) -> Component:
            self.loaded += 1
            return original_load(cls, *args)  # type: ignore[no-any-return]

        monkeypatch.setattr(Component, "__init__", init)
        monkeypatch.setattr(Component, "deserialize_file", classmethod(load))


def test_the_cache_is_keyed_by_wasmtime_version_and_sha256(tmp_path: Path) -> None:
    host = Host(cache_dir=tmp_path)
    host.load(BENCH_TEXT)
    expected = tmp_path / f"wasmtime-{host.wasmtime_version}" / f"{hashlib.sha256(BENCH_TEXT).hexdigest()}.cwasm"
    assert cached_file(host, BENCH_TEXT) == expected
    assert expected.is_file()
    assert (expected.parent.stat().st_mode & 0o777) == 0o700


def test_a_second_load_uses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counts = Compilations(monkeypatch)
    Host(cache_dir=tmp_path).load(BENCH_TEXT)
    guest = Host(cache_dir=tmp_path).load(BENCH_TEXT)
    assert (counts.compiled, counts.loaded) == (1, 1)
    assert "bench-has" in guest.exports


def test_a_damaged_cache_file_is_compiled_again_and_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host(cache_dir=tmp_path)
    path = cached_file(host, BENCH_TEXT)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a compiled component")
    counts = Compilations(monkeypatch)
    guest = host.load(BENCH_TEXT)
    assert counts.compiled == 1 and "bench-get" in guest.exports
    assert path.read_bytes() != b"not a compiled component"
    Host(cache_dir=tmp_path).load(BENCH_TEXT)
    assert counts.compiled == 1


def test_an_unwritable_cache_does_not_fail_the_load(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    guest = Host(cache_dir=blocker).load(BENCH_TEXT)
    assert "bench-set" in guest.exports


def test_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    host = Host(cache=False)
    assert host.cache_dir is None
    host.load(BENCH_TEXT)
    assert list(tmp_path.iterdir()) == []


def test_the_default_directory_and_its_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_dir() == Path.home() / ".cache" / "airssys-storage" / "wasmtime"
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    host = Host()
    host.load(BENCH_TEXT)
    assert cached_file(host, BENCH_TEXT).is_relative_to(tmp_path / "elsewhere")
