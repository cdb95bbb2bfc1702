"""Invocation transactions: a ``transactional`` component's writes commit when an export succeeds, else vanish."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
from airssys_storage_wasmtime import (
    ComponentRuntime,
    Guest,
    GuestError,
    GuestInstance,
    GuestTimeout,
    GuestTrap,
    Host,
    SandboxLimits,
)
from click.testing import CliRunner
from test_wasmtime_python_guest import STATE_CHECKS
from wasmtime.component import Variant
from wasmtime_helpers import FIXTURES

from airssys_storage import ComponentStorage, Manifest, QuotaExceeded, StorageManager, StorageSettings, Transaction

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


def wait_for_writes(instance: GuestInstance, worker: threading.Thread) -> None:
    """Until the guest running in *worker* has buffered its three writes."""
    transaction = instance.transaction
    assert transaction is not None
    give_up = time.monotonic() + 60  # a bound on waiting, not a timing assertion
    while transaction.pending_writes < 3 and worker.is_alive() and time.monotonic() < give_up:
        time.sleep(0.005)
    assert transaction.pending_writes == 3


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
    wait_for_writes(instance, worker)
    assert stored.keys() == [] and stored.get_many(["a", "b", "c"]) == [None, None, None]
    stored.set("go", b"1")
    worker.join()
    assert outcome == [Variant("ok")]
    assert stored.keys() == ["a", "b", "c", "go"]
    instance.close()


def test_quota_is_checked_at_commit(host: Host, guest: Guest, manager: StorageManager) -> None:
    """Another writer takes the room while the guest waits: its commit is refused, nothing of it is written."""
    manifest = dataclasses.replace(TRANSACTIONAL, max_size="2KB")
    stored = manager.component(manifest)
    instance = host.instantiate(guest, manager.component(manifest))
    failure: list[BaseException] = []

    def invoke() -> None:
        try:
            instance.call("write-three", WAIT, 500)  # 3 x 501 bytes: fits
        except QuotaExceeded as exc:
            failure.append(exc)

    worker = threading.Thread(target=invoke)
    worker.start()
    wait_for_writes(instance, worker)
    stored.set("go", b"x" * 700)  # 702 bytes: fits alone, not with the guest's 1,503
    worker.join()
    assert len(failure) == 1 and "'write-three'" in str(failure[0]) and "not committed" in str(failure[0])
    assert stored.keys() == ["go"] and instance.discarded


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


def test_run_reports_a_refused_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``airssys-storage run``: exit 4 (refused) when the commit passes the quota, 70 on a trap, 1 on err."""
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

    def keys() -> list[str]:
        listed = runner.invoke(cli.main, ["keys", "--url", url, "--component", "tx"])
        assert listed.exit_code == 0, listed.output
        return listed.stdout.split()

    assert run(str(TRAP), "10")[0] == 70
    assert run(str(ERR), "10")[0] == 1
    assert keys() == []
    commit = Transaction.commit

    def another_writer_first(self: Transaction) -> int:  # takes the room between the guest's writes and the commit
        if self.pending_writes:  # not the (empty) commit of the instantiation
            with StorageManager.from_settings(StorageSettings(url=url)) as other:
                other.component(Manifest.from_file(manifest)).set("other", b"x" * 3000)
        return commit(self)

    monkeypatch.setattr(Transaction, "commit", another_writer_first)
    code, stderr = run(str(OK), "500")
    assert code == 4 and "not committed" in stderr and "quota" in stderr, stderr
    assert keys() == ["other"]
    monkeypatch.undo()
    assert run(str(OK), "10")[0] == 0
    assert keys() == ["a", "b", "c", "other"]


def test_the_python_guest_passes_its_checks_inside_a_transaction(
    python_guest: tuple[Host, Guest], manager: StorageManager
) -> None:
    """componentize-py guest, seed + batch + range calls in one invocation: the buffer answers as the store would."""
    host, guest = python_guest
    storage = manager.component(dataclasses.replace(TRANSACTIONAL, id="guest"))
    with host.instantiate(guest, storage) as instance:
        assert instance.call("run-checks", "read-write") == 40  # the count test_wasmtime_python_guest expects


def test_the_python_guests_state_checks_inside_a_transaction(
    python_guest: tuple[Host, Guest], manager: StorageManager
) -> None:
    """Atomics with an op id inside a transaction: every check of the state scenario passes, as outside one.

    Checks 18-20 increment with an op id, retry it and read the counter; the scenario then deletes
    the counter in the same invocation. The commit writes the counter's final state (its delete)
    and records the op id as its own element (the planner's ``WriteKind.RECORD``), so the
    committed store equals the one the scenario leaves outside a transaction.
    """
    host, guest = python_guest
    storage = manager.component(dataclasses.replace(TRANSACTIONAL, id="guest"))
    with host.instantiate(guest, storage) as instance:
        assert instance.call("run-checks", "state") == STATE_CHECKS
    plain = manager.component(dataclasses.replace(TRANSACTIONAL, id="plain", transactional=False))
    with host.instantiate(guest, plain) as instance:
        assert instance.call("run-checks", "state") == STATE_CHECKS
    keys = storage.keys()
    assert keys == plain.keys() and storage.get_many(keys) == plain.get_many(keys)
    assert storage.usage() == plain.usage()


@pytest.mark.parametrize(("fixture", "checks"), [("keyvalue_guest", 49), ("spin_guest", 16)])
def test_the_standard_guests_pass_their_checks_inside_a_transaction(
    fixture: str, checks: int, request: pytest.FixtureRequest, manager: StorageManager
) -> None:
    """wasi:keyvalue and Spin guests (buckets, atomics, batches) inside a transaction: the same answers."""
    host, guest = request.getfixturevalue(fixture)
    manifest = dataclasses.replace(TRANSACTIONAL, id="guest", buckets=("default", "cache"))
    with host.instantiate(guest, manager.component(manifest)) as instance:
        assert instance.call("run-checks", "read-write") == checks  # the counts test_wasmtime_keyvalue expects
    assert manager.component(manifest).keys()  # committed: what the run leaves is there
