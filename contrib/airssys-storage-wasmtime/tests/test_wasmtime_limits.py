"""The host as a sandbox: time, memory and per-call byte limits, Ctrl-C, and hostile guests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from airssys_storage_wasmtime import GuestError, GuestLimitExceeded, GuestTimeout, GuestTrap, Host, SandboxLimits
from airssys_storage_wasmtime.limits import DEFAULT_LIMITS
from wasmtime.component import Variant
from wasmtime_helpers import FIXTURES, err, ok

from airssys_storage import (
    ComponentStorage,
    ConfigurationError,
    Manifest,
    ManifestError,
    StorageManager,
    StorageSettings,
)

HOSTILE = FIXTURES / "hostile.wat"
ECHO = FIXTURES / "echo.wat"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def fast_host(tmp_path_factory: pytest.TempPathFactory) -> Host:
    return Host(tmp_path_factory.mktemp("compiled"), limits=SandboxLimits(timeout=0.5, max_memory=4 * MiB))


@pytest.fixture(scope="module")
def roomy_host(tmp_path_factory: pytest.TempPathFactory) -> Host:
    """A host that lets one storage call move 16 MiB."""
    return Host(tmp_path_factory.mktemp("compiled"), limits=SandboxLimits(max_call_bytes=16 * MiB))


@pytest.fixture
def big_storage() -> Iterator[ComponentStorage]:
    """Storage whose values may be 16 MiB (the issue's case), with a large quota."""
    settings = StorageSettings(url="memory://", max_value_bytes=16 * MiB, max_batch_ops=100)
    with StorageManager.from_settings(settings) as manager:
        yield manager.component(Manifest(id="big", access="read-write", max_size="100MB"))


def test_defaults_are_documented_values() -> None:
    assert DEFAULT_LIMITS == SandboxLimits(timeout=30.0, max_memory=256 * MiB, max_call_bytes=2 * MiB)


# -- time ---------------------------------------------------------------------------


def test_a_looping_guest_is_stopped_at_its_time_limit_and_the_host_lives_on(
    fast_host: Host, storage: ComponentStorage
) -> None:
    guest = fast_host.load(HOSTILE)
    instance = fast_host.instantiate(guest, storage)
    start = time.monotonic()
    with pytest.raises(GuestTimeout) as caught:
        instance.call("spin")
    assert 0.5 <= time.monotonic() - start < 5
    message = str(caught.value)
    assert "'hostile.wat'" in message and "'spin'" in message and "time limit of 0.5 s" in message
    assert "--timeout" in message
    assert caught.value.code == "guest-timeout"
    with pytest.raises(GuestError, match="discarded"):
        instance.call("answer")
    with fast_host.instantiate(guest, storage) as fresh:  # the next invocation runs
        assert fresh.call("answer") == 42


def test_the_default_host_has_a_time_limit_too(host: Host, storage: ComponentStorage) -> None:
    with host.instantiate(host.load(HOSTILE), storage, limits=SandboxLimits(timeout=0.2)) as instance:
        with pytest.raises(GuestTimeout):
            instance.call("spin")
    assert host.limits.timeout == DEFAULT_LIMITS.timeout


def test_a_component_cannot_raise_the_host_limits(fast_host: Host, storage: ComponentStorage) -> None:
    asked = SandboxLimits(timeout=3600, max_memory=1024 * MiB, max_call_bytes=64 * MiB)
    instance = fast_host.instantiate(fast_host.load(HOSTILE), storage, limits=asked)
    assert instance.limits.timeout == 0.5
    assert instance.limits.max_memory == 4 * MiB
    assert instance.limits.max_call_bytes == DEFAULT_LIMITS.max_call_bytes
    start = time.monotonic()
    with pytest.raises(GuestTimeout):
        instance.call("spin")
    assert time.monotonic() - start < 5


def test_slow_calls_within_the_limit_are_not_stopped(fast_host: Host, storage: ComponentStorage) -> None:
    with fast_host.instantiate(fast_host.load(HOSTILE), storage) as instance:
        for _ in range(3):
            assert instance.call("answer") == 42
            time.sleep(0.3)  # time between calls does not count


# -- memory -------------------------------------------------------------------------


def test_a_guest_growing_its_memory_is_refused_past_the_limit(fast_host: Host, storage: ComponentStorage) -> None:
    guest = fast_host.load(HOSTILE)
    with fast_host.instantiate(guest, storage) as instance:
        with pytest.raises(GuestTrap) as caught:
            instance.call("grow")
    message = str(caught.value)
    assert "'grow'" in message and "memory 4 MiB per linear memory" in message
    with fast_host.instantiate(guest, storage) as fresh:
        assert fresh.call("pages") == 1


def test_a_guest_whose_memory_starts_above_the_limit_is_not_instantiated(host: Host, storage: ComponentStorage) -> None:
    guest = host.load(b"(component (core module $m (memory 100)) (core instance (instantiate $m)))", "big-memory")
    with pytest.raises(GuestTrap, match="memory 1 MiB"):
        host.instantiate(guest, storage, limits=SandboxLimits(max_memory=MiB))


# -- bytes per storage call -----------------------------------------------------------


def test_no_trap_for_values_up_to_the_transfer_ceiling(roomy_host: Host, big_storage: ComponentStorage) -> None:
    value = bytes(range(256)) * (2 * MiB // 256)
    with roomy_host.instantiate(roomy_host.load(ECHO), big_storage) as echo:
        assert ok(echo, "set", "two", value) is None
        assert ok(echo, "get", "two") == value
        pairs = [(f"k{i}", value[: MiB - 100]) for i in range(2)]
        assert ok(echo, "set-many", pairs) is None
    assert big_storage.get("k1") == value[: MiB - 100]


def test_a_set_over_the_call_cap_is_an_error_value_not_a_trap(host: Host, big_storage: ComponentStorage) -> None:
    with host.instantiate(host.load(ECHO), big_storage, limits=SandboxLimits(max_call_bytes=MiB)) as echo:
        assert err(echo, "set", "k", bytes(MiB + 1)) == Variant("value-too-large")
        pairs = [("a", bytes(MiB // 2)), ("b", bytes(MiB // 2))]
        assert err(echo, "set-many", pairs) == Variant("value-too-large")
        assert ok(echo, "set", "k", bytes(MiB - 1)) is None  # the instance lives on
    assert not big_storage.has("a")


@pytest.mark.parametrize("count", [16, 40])  # the cases: 1,274 MB and 3.3 GB of host memory before
def test_an_oversized_get_many_response_is_refused_before_it_is_converted(
    host: Host, big_storage: ComponentStorage, count: int
) -> None:
    big_storage.set("big", bytes(MiB))
    with host.instantiate(host.load(ECHO), big_storage) as echo:
        assert err(echo, "get-many", ["big"] * count) == Variant("value-too-large")
        assert ok(echo, "get-many", ["big"]) == [bytes(MiB)]
        assert ok(echo, "range", "a", "z", None) == [("big", bytes(MiB))]
        big_storage.set_many([("big2", bytes(MiB)), ("big3", bytes(MiB))])
        assert err(echo, "range", "a", "z", None) == Variant("value-too-large")
        assert err(echo, "scan", None, None, 10) == Variant("value-too-large")
        pairs, cursor = ok(echo, "scan", None, None, 1)
        assert pairs == [("big", bytes(MiB))] and cursor is not None


def test_an_oversized_get_is_value_too_large(host: Host, big_storage: ComponentStorage) -> None:
    big_storage.set("big", bytes(3 * MiB))
    with host.instantiate(host.load(ECHO), big_storage) as echo:
        assert err(echo, "get", "big") == Variant("value-too-large")


def test_a_set_past_what_wasmtime_can_carry_is_a_clear_error(roomy_host: Host, big_storage: ComponentStorage) -> None:
    """wasmtime-py cannot raise its guest-to-host budget: past ~2.7 MiB per call the guest traps, clearly."""
    guest = roomy_host.load(ECHO)
    with roomy_host.instantiate(guest, big_storage) as echo:
        with pytest.raises(GuestLimitExceeded) as caught:
            echo.call("set", "k", bytes(3 * MiB))
    message = str(caught.value)
    assert caught.value.code == "guest-limit-exceeded"
    assert "'set'" in message and "about 2.7 MiB" in message and "hostcall budget" in message
    assert "split the value" in message
    with roomy_host.instantiate(guest, big_storage) as echo:
        assert ok(echo, "set", "k", b"small") is None
        with pytest.raises(GuestLimitExceeded, match="split the value or the batch"):  # the 3 x 1 MiB batch
            echo.call("set-many", [(f"k{i}", bytes(MiB)) for i in range(3)])
    assert big_storage.keys() == ["k"]


# -- manifests and the command line ----------------------------------------------------


def test_manifest_limits_table(tmp_path: Path) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text('[component]\nid = "c"\n[limits]\ntimeout = 2\nmax-memory = "64MiB"\nmax-call-bytes = 4096\n')
    limits = SandboxLimits.from_manifest_file(manifest)
    assert (limits.timeout, limits.max_memory, limits.max_call_bytes) == (2.0, 64 * MiB, 4096)
    manifest.write_text('[component]\nid = "c"\n')
    assert SandboxLimits.from_manifest_file(manifest) == DEFAULT_LIMITS


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ("timeout = 0", "timeout must be a positive number"),
        ('timeout = "5"', "timeout must be a number of seconds"),
        ('max-memory = "lots"', "is not a size"),
        ("cpu = 3", "unknown field(s) ['cpu']"),
    ],
)
def test_bad_manifest_limits_name_the_field(tmp_path: Path, table: str, fragment: str) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text(f'[component]\nid = "c"\n[limits]\n{table}\n')
    with pytest.raises(ManifestError, match=r"\[limits\]") as caught:
        SandboxLimits.from_manifest_file(manifest)
    assert fragment in str(caught.value)


def _run_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "airssys_storage_wasmtime", "run", str(HOSTILE), "--no-cache", *args]


def _manifest(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "component-manifest.toml"
    path.write_text(f'[component]\nid = "hostile"\n[permissions]\nstorage = "read-write"\n{extra}')
    return str(path)


def _env() -> dict[str, str]:
    return {**os.environ, "AIRSSYS_STORAGE_URL": "memory://"}


def test_run_stops_a_looping_guest_with_exit_code_124(tmp_path: Path) -> None:
    command = _run_command("--manifest", _manifest(tmp_path), "--invoke", "spin", "--timeout", "0.5")
    finished = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=60)
    assert finished.returncode == 124, finished.stderr
    assert "time limit of 0.5 s" in finished.stderr and "'spin'" in finished.stderr


def test_run_takes_the_lower_limit_of_the_manifest(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, "[limits]\ntimeout = 0.3\n")
    finished = subprocess.run(
        _run_command("--manifest", manifest, "--invoke", "spin", "--timeout", "20"),
        capture_output=True, text=True, env=_env(), timeout=60,
    )  # fmt: skip
    assert finished.returncode == 124, finished.stderr
    assert "time limit of 0.3 s" in finished.stderr


def test_run_max_memory(tmp_path: Path) -> None:
    command = _run_command("--manifest", _manifest(tmp_path), "--invoke", "grow", "--max-memory", "2MiB")
    finished = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=60)
    assert finished.returncode == 70, finished.stderr
    assert "memory 2 MiB per linear memory" in finished.stderr
    bad = subprocess.run(
        _run_command("--manifest", _manifest(tmp_path), "--max-memory", "much"),
        capture_output=True, text=True, env=_env(), timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--max-memory" in bad.stderr


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_a_running_guest_at_once(tmp_path: Path) -> None:
    command = _run_command("--manifest", _manifest(tmp_path), "--invoke", "spin")
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        preexec_fn=_default_sigint,  # a background shell may have started the tests with SIGINT ignored
    )  # fmt: skip
    try:
        time.sleep(3)  # started, compiled, and spinning in the guest (default limit: 30 s)
        assert process.poll() is None, process.communicate()
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert elapsed < 2, elapsed
    assert "interrupted (Ctrl-C)" in stderr and "hostile.wat" in stderr
    assert "Traceback" not in stderr


def test_host_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRSSYS_STORAGE_WASMTIME_TIMEOUT", "2.5")
    monkeypatch.setenv("AIRSSYS_STORAGE_WASMTIME_MAX_MEMORY", "64MiB")
    limits = SandboxLimits.from_environment()
    assert (limits.timeout, limits.max_memory, limits.max_call_bytes) == (2.5, 64 * MiB, 2 * MiB)
    monkeypatch.setenv("AIRSSYS_STORAGE_WASMTIME_MAX_CALL_BYTES", "lots")
    with pytest.raises(ConfigurationError, match="AIRSSYS_STORAGE_WASMTIME_MAX_CALL_BYTES 'lots' is not a size") as bad:
        SandboxLimits.from_environment()
    assert bad.value.code == "invalid-config"
    monkeypatch.setenv("AIRSSYS_STORAGE_WASMTIME_MAX_CALL_BYTES", "1KiB")
    monkeypatch.setenv("AIRSSYS_STORAGE_WASMTIME_TIMEOUT", "-1")
    with pytest.raises(ConfigurationError, match="environment variables: timeout must be a positive number") as caught:
        SandboxLimits.from_environment()
    assert caught.value.code == "invalid-config"


def test_run_reads_the_environment_and_options_win(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    env = {**_env(), "AIRSSYS_STORAGE_WASMTIME_TIMEOUT": "0.3"}
    finished = subprocess.run(
        _run_command("--manifest", manifest, "--invoke", "spin"), capture_output=True, text=True, env=env, timeout=60
    )
    assert finished.returncode == 124 and "time limit of 0.3 s" in finished.stderr, finished.stderr
    finished = subprocess.run(
        _run_command("--manifest", manifest, "--invoke", "spin", "--timeout", "0.6"),
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert finished.returncode == 124 and "time limit of 0.6 s" in finished.stderr, finished.stderr
    bad = {**_env(), "AIRSSYS_STORAGE_WASMTIME_TIMEOUT": "soon"}
    finished = subprocess.run(_run_command("--manifest", manifest), capture_output=True, text=True, env=bad, timeout=60)
    assert finished.returncode == 3 and "AIRSSYS_STORAGE_WASMTIME_TIMEOUT" in finished.stderr, finished.stderr


def test_an_export_result_past_what_wasmtime_can_carry_is_a_clear_error(
    roomy_host: Host, big_storage: ComponentStorage
) -> None:
    """The sibling of the oversized set: a guest returning 3 MiB to the host (here echoing a get)."""
    big_storage.set("big", bytes(3 * MiB))
    with roomy_host.instantiate(roomy_host.load(ECHO), big_storage) as echo:
        with pytest.raises(GuestLimitExceeded, match="the export's result"):
            echo.call("get", "big")


def test_a_max_value_above_the_transfer_ceiling_is_logged_once(
    roomy_host: Host, big_storage: ComponentStorage, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airssys_storage_wasmtime import host as host_module

    monkeypatch.setattr(host_module, "_warned_ceiling", set())
    guest = roomy_host.load(ECHO)
    for _ in range(2):
        roomy_host.instantiate(guest, big_storage).close()
    warnings = [
        record.getMessage() for record in caplog.records if "max_value_bytes is 16777216" in record.getMessage()
    ]
    assert len(warnings) == 1
    assert "about 2.7 MiB in one call" in warnings[0]


def test_storage_commit_arguments_count_toward_the_call_cap_and_the_bucket_guard() -> None:
    """storage-commit's checks and mutations (variant cases) are measured by their keys and values only."""
    from airssys_storage_wasmtime._calls import Case
    from airssys_storage_wasmtime.host import _payload_bytes, _reserved

    checks = [("key", 3)]
    mutations = [Case("set", ("k1", b"x" * 100, None)), Case("delete", "k2"), Case("increment", ("k3", 5))]
    assert _payload_bytes([checks, mutations]) == 3 + 2 + 100 + 2 + 2
    assert not _reserved([checks, mutations], "\U0010ffff")
    assert _reserved([[], [Case("delete", "\U0010ffffdefault/k")]], "\U0010ffff")
