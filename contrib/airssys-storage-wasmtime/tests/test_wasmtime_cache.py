"""The on-disk compile cache: keyed by wasmtime version and the guest's sha256, private, signed, best effort."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from airssys_storage_wasmtime import Host, _cache, default_cache_dir
from airssys_storage_wasmtime._cache import KEY_FILE, MAGIC, CompileCache
from airssys_storage_wasmtime.host import CACHE_DIR_ENV
from wasmtime.component import Component
from wasmtime_helpers import COUNTER, FIXTURES

from airssys_storage import Manifest, StorageManager, StorageSettings

BENCH_TEXT = (FIXTURES / "bench.wat").read_bytes()
ECHO_TEXT = (FIXTURES / "echo.wat").read_bytes()
VICTIM = (COUNTER / "counter.wasm").read_bytes()
#: The counter, changed to count in steps of a million: what an attacker would like the victim to run.
EVIL = (COUNTER / "counter.wat").read_text().replace("(i64.const 1))", "(i64.const 1000000))").encode()
CACHE_LOGGER = "airssys_storage.wasmtime.cache"


def cached_file(host: Host, source: bytes) -> Path:
    assert host.cache_dir is not None
    return host.cache_dir / f"{hashlib.sha256(source).hexdigest()}.cwasm"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_counter(host: Host) -> Any:
    """The victim's first run of the counter on a fresh store (1 when the counter's own code runs)."""
    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        storage = manager.component(Manifest(id="counter", access="read-write", max_size="1KB"))
        return host.run(VICTIM, storage)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == CACHE_LOGGER and r.levelno == logging.WARNING]


class Compilations:
    """Counts compilations and cache loads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.compiled = 0
        self.loaded = 0
        original_init = Component.__init__
        original_load = _cache._deserialize

        def init(component: Component, *args: Any) -> None:
            self.compiled += 1
            original_init(component, *args)

        def load(*args: Any) -> Any:
            self.loaded += 1
            return original_load(*args)

        monkeypatch.setattr(Component, "__init__", init)
        monkeypatch.setattr(_cache, "_deserialize", load)


# -- layout and reuse -------------------------------------------------------------


def test_the_cache_is_keyed_by_wasmtime_version_and_sha256(tmp_path: Path) -> None:
    host = Host(cache_dir=tmp_path)
    host.load(BENCH_TEXT)
    expected = tmp_path / f"wasmtime-{host.wasmtime_version}" / f"{hashlib.sha256(BENCH_TEXT).hexdigest()}.cwasm"
    assert cached_file(host, BENCH_TEXT) == expected
    assert expected.is_file()
    assert sorted(p.name for p in expected.parent.iterdir()) == sorted([expected.name, KEY_FILE])  # no temp files


def test_everything_the_cache_creates_is_private(tmp_path: Path) -> None:
    root = tmp_path / "missing" / "parents" / "cache"
    host = Host(cache_dir=root)
    host.load(BENCH_TEXT)
    assert host.cache_dir is not None
    for directory in (tmp_path / "missing", tmp_path / "missing" / "parents", root, host.cache_dir):
        assert mode(directory) == 0o700, directory
    assert mode(cached_file(host, BENCH_TEXT)) == 0o600
    assert mode(host.cache_dir / KEY_FILE) == 0o600
    assert len((host.cache_dir / KEY_FILE).read_bytes()) == 32


def test_a_second_load_uses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counts = Compilations(monkeypatch)
    Host(cache_dir=tmp_path).load(BENCH_TEXT)
    guest = Host(cache_dir=tmp_path).load(BENCH_TEXT)
    assert (counts.compiled, counts.loaded) == (1, 1)
    assert "bench-has" in guest.exports


def test_an_entry_is_signed(tmp_path: Path) -> None:
    host = Host(cache_dir=tmp_path)
    host.load(BENCH_TEXT)
    entry = cached_file(host, BENCH_TEXT).read_bytes()
    assert entry.startswith(MAGIC)
    artifact = entry[len(MAGIC) + 32 :]
    assert Component.deserialize(host.engine, artifact) is not None  # the rest is wasmtime's own serialisation


# -- entries that do not verify ------------------------------------------------------


def test_a_planted_artifact_is_not_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The reported attack: another component's compiled code stored under the victim's hash."""
    attacker = Host(cache_dir=tmp_path)
    attacker.load(EVIL)
    victim_entry = cached_file(attacker, VICTIM)
    victim_entry.write_bytes(cached_file(attacker, EVIL).read_bytes())  # genuinely signed, for the other guest
    assert run_counter(Host(cache_dir=tmp_path)) == 1
    assert any(str(victim_entry) in message and "does not verify" in message for message in warnings_of(caplog))
    caplog.clear()
    assert run_counter(Host(cache_dir=tmp_path)) == 1  # the entry was replaced by the victim's own code
    assert warnings_of(caplog) == []


def test_a_planted_unsigned_artifact_is_not_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Raw wasmtime output (what the cache held before entries were signed) under the victim's hash."""
    host = Host(cache_dir=tmp_path)
    entry = cached_file(host, VICTIM)
    entry.parent.mkdir(mode=0o700, parents=True)
    entry.write_bytes(Component(host.engine, EVIL).serialize())
    assert run_counter(host) == 1
    assert any("does not verify" in message for message in warnings_of(caplog))


def test_an_entry_signed_with_another_key_is_not_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    host = Host(cache_dir=tmp_path / "mine")
    elsewhere = Host(cache_dir=tmp_path / "theirs")
    elsewhere.load(EVIL)
    entry = cached_file(host, VICTIM)
    entry.parent.mkdir(mode=0o700, parents=True)
    entry.write_bytes(cached_file(elsewhere, EVIL).read_bytes())
    assert run_counter(host) == 1
    assert any("does not verify" in message for message in warnings_of(caplog))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda entry: b"not a compiled component", id="garbage"),
        pytest.param(lambda entry: entry[: len(entry) // 2], id="truncated"),
        pytest.param(lambda entry: entry[: len(MAGIC) + 32], id="header-only"),
        pytest.param(lambda entry: b"", id="empty"),
        pytest.param(lambda entry: entry[:-1] + bytes([entry[-1] ^ 1]), id="one-bit-flipped"),
    ],
)
def test_a_damaged_entry_is_compiled_again_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, damage: Any
) -> None:
    Host(cache_dir=tmp_path).load(BENCH_TEXT)
    host = Host(cache_dir=tmp_path)
    path = cached_file(host, BENCH_TEXT)
    good = path.read_bytes()
    path.write_bytes(damage(good))
    counts = Compilations(monkeypatch)
    guest = host.load(BENCH_TEXT)
    assert (counts.compiled, counts.loaded) == (1, 0) and "bench-get" in guest.exports
    assert any(str(path) in message for message in warnings_of(caplog))
    assert path.read_bytes().startswith(MAGIC)
    Host(cache_dir=tmp_path).load(BENCH_TEXT)
    assert (counts.compiled, counts.loaded) == (1, 1)


def test_an_unreadable_entry_is_compiled(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    host = Host(cache_dir=tmp_path)
    path = cached_file(host, BENCH_TEXT)
    path.mkdir(parents=True)  # a directory where the entry should be: reading it fails
    guest = host.load(BENCH_TEXT)
    assert "bench-get" in guest.exports
    messages = warnings_of(caplog)
    assert any("cannot read the compile cache entry" in m for m in messages), messages
    assert any("cannot write the compile cache entry" in m for m in messages), messages


# -- directories that are not private --------------------------------------------------


def refused(caplog: pytest.LogCaptureFixture, directory: Path | None, *fragments: str) -> None:
    messages = warnings_of(caplog)
    assert len(messages) == 1, messages
    assert f"not using the compile cache {directory}, it is not private" in messages[0]
    for fragment in fragments:
        assert fragment in messages[0], messages[0]


@pytest.mark.parametrize("bits", [0o020, 0o002, 0o777, 0o1777])
def test_a_cache_directory_writable_by_others_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bits: int
) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, 0o700 | bits)
    host = Host(cache_dir=directory)
    entry = cached_file(host, VICTIM)
    entry.parent.mkdir(mode=0o700)
    entry.write_bytes(Component(host.engine, EVIL).serialize())  # planted while the directory was open
    assert run_counter(host) == 1
    refused(caplog, host.cache_dir, f"{directory} is writable by its group or by others", "chmod go-w")
    assert not (entry.parent / KEY_FILE).exists()  # nothing is written to it either
    assert mode(directory) == 0o700 | bits  # nor are its permissions changed


def test_the_version_directory_is_checked_too(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    host = Host(cache_dir=tmp_path)
    assert host.cache_dir is not None
    host.cache_dir.mkdir()
    os.chmod(host.cache_dir, 0o777)
    assert "bench-get" in host.load(BENCH_TEXT).exports
    refused(caplog, host.cache_dir, "is writable by its group or by others")


class FakeOwners:
    """os.stat reports another owner for chosen paths (the tests run as one user, often root)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.owners: dict[str, int] = {}
        real_stat = os.stat

        def fake_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            result = real_stat(path, *args, **kwargs)
            owner = self.owners.get(os.fspath(path))
            if owner is None:
                return result
            fields = list(result)
            fields[stat.ST_UID] = owner
            return os.stat_result(fields)

        monkeypatch.setattr(os, "stat", fake_stat)

    def own(self, path: Path, uid: int) -> None:
        self.owners[str(path)] = uid


OTHER_USER = os.getuid() + 4242


def test_a_cache_directory_owned_by_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    host = Host(cache_dir=tmp_path)
    assert host.cache_dir is not None
    host.cache_dir.mkdir(mode=0o700)
    FakeOwners(monkeypatch).own(host.cache_dir, OTHER_USER)
    assert run_counter(host) == 1
    refused(caplog, host.cache_dir, f"is owned by user id {OTHER_USER}, not by you")
    assert list(host.cache_dir.iterdir()) == []


def test_a_parent_owned_by_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    parent = tmp_path / "theirs"
    parent.mkdir()
    FakeOwners(monkeypatch).own(parent, OTHER_USER)
    host = Host(cache_dir=parent / "cache")
    assert "bench-get" in host.load(BENCH_TEXT).exports
    refused(caplog, host.cache_dir, f"its parent directory {parent} is owned by user id {OTHER_USER}")


def test_a_parent_writable_by_others_is_refused_unless_sticky(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    parent = tmp_path / "open"
    parent.mkdir()
    os.chmod(parent, 0o777)
    host = Host(cache_dir=parent / "cache")
    host.load(BENCH_TEXT)
    refused(caplog, host.cache_dir, f"its parent directory {parent} is writable", f"chmod go-w {parent}")
    caplog.clear()
    os.chmod(parent, 0o1777)  # like /tmp: others cannot rename or delete what is not theirs
    host = Host(cache_dir=parent / "cache")
    host.load(BENCH_TEXT)
    assert warnings_of(caplog) == []
    assert cached_file(host, BENCH_TEXT).is_file()


def test_a_symbolic_link_is_checked_where_it_points(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    (tmp_path / "link").symlink_to(shared)
    host = Host(cache_dir=tmp_path / "link")
    host.load(BENCH_TEXT)
    refused(caplog, host.cache_dir, f"{shared} is writable")


# -- the key ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "key_mode", "problem"),
    [(b"k" * 32, 0o644, "others may access it (mode 644)"), (b"short", 0o600, "it holds 5 bytes instead of 32")],
)
def test_a_key_that_cannot_be_trusted_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, key_mode: int, problem: str
) -> None:
    host = Host(cache_dir=tmp_path)
    host.load(BENCH_TEXT)
    assert host.cache_dir is not None
    key = host.cache_dir / KEY_FILE
    key.write_bytes(content)
    os.chmod(key, key_mode)
    Host(cache_dir=tmp_path).load(BENCH_TEXT)
    messages = warnings_of(caplog)
    assert any(f"replacing the compile cache key {key}: {problem}" in m for m in messages), messages
    assert any("does not verify" in m for m in messages), messages  # signed with the old key
    assert mode(key) == 0o600 and len(key.read_bytes()) == 32 and key.read_bytes() != content


def test_hosts_starting_together_share_one_key(tmp_path: Path) -> None:
    version = Host(cache=False).wasmtime_version
    caches: list[CompileCache | None] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        caches.append(CompileCache.open(tmp_path, version))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    keys = {cache._key for cache in caches if cache is not None}
    assert len(caches) == 8 and len(keys) == 1
    assert keys == {(CompileCache.directory_for(tmp_path, version) / KEY_FILE).read_bytes()}


# -- no cache, and where it is ------------------------------------------------------------


def test_an_unwritable_cache_does_not_fail_the_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    guest = Host(cache_dir=blocker).load(BENCH_TEXT)
    assert "bench-set" in guest.exports
    assert any(f"not using the compile cache {blocker}" in m for m in warnings_of(caplog))


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


def test_the_default_directory_is_created_private(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host()
    host.load(ECHO_TEXT)
    cache_home = Path.home() / ".cache"  # XDG_CACHE_HOME of the isolated test environment
    for directory in (cache_home, cache_home / "airssys-storage", default_cache_dir(), host.cache_dir):
        assert directory is not None and mode(directory) == 0o700, directory
