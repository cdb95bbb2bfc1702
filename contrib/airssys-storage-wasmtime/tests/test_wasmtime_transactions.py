"""Invocation transactions: a ``transactional`` component's writes commit when an export succeeds, else vanish."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
from airssys_storage_wasmtime import ComponentRuntime, Guest, GuestError, GuestTimeout, GuestTrap, Host, SandboxLimits
from click.testing import CliRunner
from wasmtime.component import Variant
from wasmtime_helpers import FIXTURES

from airssys_storage import ComponentStorage, Manifest, QuotaExceeded, StorageManager

OK, ERR, TRAP, SPIN, GROW, WAIT = range(6)
TRANSACTIONAL = Manifest(id="tx", access="read-write", max_size="4KB", transactional=True)


@pytest.fixture(scope="session")
def guest(host: Host) -> Guest:
    return host.load(FIXTURES / "transaction.wat")


@pytest.fixture
def runtime(manager: StorageManager, host: Host) -> ComponentRuntime:
    return ComponentRuntime(manager, host)


@pytest.fixture
def stored(manager: StorageManager) -> ComponentStorage:
    """The component's storage as another host reader sees it."""
    return manager.component(TRANSACTIONAL)


def test_ok_result_commits_all_three(runtime: ComponentRuntime, guest: Guest, stored: ComponentStorage) -> None:
    """A guest that writes three keys and returns ok leaves all three."""
    component = runtime.add(guest, TRANSACTIONAL)
    assert runtime.invoke(component, "write-three", OK, 10) == Variant("ok")
    assert stored.keys() == ["a", "b", "c"]


@pytest.mark.parametrize("mode", [TRAP, ERR])
def test_trap_or_err_leaves_nothing(
    runtime: ComponentRuntime, guest: Guest, stored: ComponentStorage, mode: int
) -> None:
    """A guest that writes three keys and traps, or returns err, leaves nothing; the next invocation works."""
    component = runtime.add(guest, TRANSACTIONAL)
    if mode == TRAP:
        with pytest.raises(GuestTrap):
            runtime.invoke(component, "write-three", mode, 10)
    else:
        assert runtime.invoke(component, "write-three", mode, 10) == Variant("err")
    assert stored.keys() == []
    assert runtime.invoke(component, "write-three", OK, 10) == Variant("ok")
    assert stored.keys() == ["a", "b", "c"]


def test_limits_discard_the_writes(runtime: ComponentRuntime, guest: Guest, stored: ComponentStorage) -> None:
    """The time limit and the memory limit end the invocation and discard its writes."""
    component = runtime.add(guest, TRANSACTIONAL, limits=SandboxLimits(timeout=0.2, max_memory=4 * 65536))
    with pytest.raises(GuestTimeout):
        runtime.invoke(component, "write-three", SPIN, 10)
    with pytest.raises(GuestError):
        runtime.invoke(component, "write-three", GROW, 10)
    assert stored.keys() == []


def test_a_concurrent_reader_sees_nothing_before_the_commit(
    host: Host, guest: Guest, manager: StorageManager, stored: ComponentStorage
) -> None:
    """While the guest waits after its three writes, another reader sees none of them; after it returns, all."""
    instance = host.instantiate(guest, manager.component(TRANSACTIONAL))
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(instance.call("write-three", WAIT, 10)))
    worker.start()
    transaction = instance.transaction
    assert transaction is not None
    give_up = time.monotonic() + 60  # a bound on waiting, not a timing assertion
    while transaction.pending_writes < 3 and worker.is_alive() and time.monotonic() < give_up:
        time.sleep(0.005)
    assert transaction.pending_writes == 3
    assert stored.keys() == [] and stored.get_many(["a", "b", "c"]) == [None, None, None]
    stored.set("go", b"1")
    worker.join()
    assert outcome == [Variant("ok")]
    assert stored.keys() == ["a", "b", "c", "go"]
    instance.close()


def test_quota_is_checked_at_commit(runtime: ComponentRuntime, guest: Guest, stored: ComponentStorage) -> None:
    """Three writes that fit one by one but not together: the commit is refused, nothing is written."""
    component = runtime.add(guest, dataclasses.replace(TRANSACTIONAL, max_size="2KB"))
    with pytest.raises(QuotaExceeded, match=r"'write-three'.*not committed"):
        runtime.invoke(component, "write-three", OK, 1000)  # 3 x 1,001 bytes > 2 KiB
    assert stored.keys() == []
    assert runtime.invoke(component, "write-three", OK, 10) == Variant("ok")  # a fresh instance


def test_buffer_limit_is_an_error_for_the_guest(
    runtime: ComponentRuntime, guest: Guest, stored: ComponentStorage
) -> None:
    """Past max-transaction-writes the third storage-set fails (the guest ignores it); two keys commit."""
    component = runtime.add(guest, TRANSACTIONAL, limits=SandboxLimits(max_transaction_writes=2))
    assert runtime.invoke(component, "write-three", OK, 10) == Variant("ok")
    assert stored.keys() == ["a", "b"]


def test_without_the_manifest_field_writes_are_immediate(
    runtime: ComponentRuntime, guest: Guest, manager: StorageManager
) -> None:
    """transactional is opt-in: a plain component keeps what its completed storage calls wrote."""
    plain = Manifest(id="plain", access="read-write", max_size="4KB")
    component = runtime.add(guest, plain)
    with pytest.raises(GuestTrap):
        runtime.invoke(component, "write-three", TRAP, 10)
    assert manager.component(plain).keys() == ["a", "b", "c"]


def test_run_reports_a_refused_commit(tmp_path: Path) -> None:
    """``airssys-storage run`` exits 4 (refused) when the commit passes the quota, 70 on a trap; nothing stored."""
    cli = pytest.importorskip("airssys_storage.cli")
    manifest = tmp_path / "component-manifest.toml"
    manifest.write_text(
        '[component]\nid = "tx"\n[permissions]\n'
        'storage = { access = "read-write", max-size = "4KB", transactional = true }\n'
    )
    url = f"sqlite:///{tmp_path / 'store.db'}"
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli.main, ["run", str(FIXTURES / "transaction.wat"), "-m", str(manifest), "--url", url,
                                          "--no-cache", "-i", "write-three", *args])  # fmt: skip
        return result.exit_code, result.stderr

    code, stderr = run(str(OK), "2000")
    assert code == 4 and "not committed" in stderr and "quota" in stderr
    assert run(str(TRAP), "10")[0] == 70
    assert run(str(ERR), "10")[0] == 1
    listed = runner.invoke(cli.main, ["keys", "--url", url, "--component", "tx"])
    assert listed.exit_code == 0 and listed.stdout.strip() == "", listed.output
    assert run(str(OK), "10")[0] == 0
    listed = runner.invoke(cli.main, ["keys", "--url", url, "--component", "tx"])
    assert listed.stdout.split() == ["a", "b", "c"]
