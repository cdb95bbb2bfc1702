"""The hosting API: one compiled guest and one instance per component, invocations one at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from airssys_storage_wasmtime import ComponentRuntime, GuestTimeout, Host, SandboxLimits
from wasmtime_helpers import COUNTER, FIXTURES, LIMITS

from airssys_storage import InvalidArgument, Manifest, StorageManager, StorageSettings

HOSTILE = FIXTURES / "hostile.wat"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[ComponentRuntime]:
    host = Host(tmp_path / "compiled", limits=SandboxLimits(timeout=0.4))
    with StorageManager.from_settings(StorageSettings(url="memory://", **LIMITS)) as manager:
        with ComponentRuntime(manager, host) as runtime:
            yield runtime


def manifest(component: str = "hostile") -> Manifest:
    return Manifest(id=component, access="read-write")


def test_one_instance_per_component_keeps_its_state(runtime: ComponentRuntime) -> None:
    component = runtime.add(HOSTILE, manifest())
    assert component == "hostile"
    assert [runtime.invoke(component, "count") for _ in range(3)] == [1, 2, 3]
    assert runtime.components == ["hostile"]
    assert runtime.exports(component)["count"] == "func() -> u32"


def test_after_a_limit_the_next_invocation_gets_a_fresh_instance(runtime: ComponentRuntime) -> None:
    component = runtime.add(HOSTILE, manifest())
    assert runtime.invoke(component, "count") == 1
    with pytest.raises(GuestTimeout):
        runtime.invoke(component, "spin")
    assert runtime.invoke(component, "count") == 1  # a new instance
    assert runtime.invoke(component, "count") == 2


def test_invocations_of_one_instance_run_one_at_a_time(runtime: ComponentRuntime) -> None:
    component = runtime.add(HOSTILE, manifest())
    finished: list[str] = []

    def spin() -> None:
        with pytest.raises(GuestTimeout):
            runtime.invoke(component, "spin")
        finished.append("spin")

    spinner = threading.Thread(target=spin)
    spinner.start()
    time.sleep(0.1)  # the spin invocation holds the instance
    assert runtime.invoke(component, "count") == 1  # waited for it: a fresh instance after its timeout
    finished.append("count")
    spinner.join()
    assert finished == ["spin", "count"]


def test_the_counter_example_through_its_manifest_file(runtime: ComponentRuntime) -> None:
    component = runtime.add(COUNTER / "counter.wasm", COUNTER / "component-manifest.toml")
    assert [runtime.invoke(component, "run") for _ in range(2)] == [1, 2]


def test_manifest_limits_apply_capped_by_the_host(runtime: ComponentRuntime, tmp_path: Path) -> None:
    path = tmp_path / "component-manifest.toml"
    path.write_text('[component]\nid = "hostile"\n[permissions]\nstorage = "read-write"\n[limits]\ntimeout = 0.1\n')
    component = runtime.add(HOSTILE, path)
    with pytest.raises(GuestTimeout, match=r"time limit of 0\.1 s"):
        runtime.invoke(component, "spin")
    path.write_text('[component]\nid = "other"\n[permissions]\nstorage = "read-write"\n[limits]\ntimeout = 600\n')
    with pytest.raises(GuestTimeout, match=r"time limit of 0\.4 s"):
        runtime.invoke(runtime.add(HOSTILE, path), "spin")


def test_ids_are_checked(runtime: ComponentRuntime) -> None:
    runtime.add(HOSTILE, manifest())
    with pytest.raises(InvalidArgument, match="already added"):
        runtime.add(HOSTILE, manifest())
    with pytest.raises(InvalidArgument, match=r"no component 'nobody' in this runtime \(added: hostile\)"):
        runtime.invoke("nobody", "count")
    runtime.remove("hostile")
    assert runtime.components == []
    assert runtime.add(HOSTILE, manifest()) == "hostile"
