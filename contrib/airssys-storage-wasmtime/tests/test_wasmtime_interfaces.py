"""The host's table of imports is the WIT shipped in airssys_storage, function by function."""

from __future__ import annotations

import importlib.resources
import subprocess
from pathlib import Path

import pytest
from airssys_storage_wasmtime import Host
from airssys_storage_wasmtime._interfaces import (
    BATCH,
    CHANGES,
    CHANGES_FUNCTIONS,
    FUNCTIONS,
    INTERFACES,
    KEYVALUE_FUNCTIONS,
    RANGES,
    SPIN_FUNCTIONS,
    STORAGE,
    HostFunction,
)
from wasmtime_helpers import FIXTURES, storage_of, tool

from airssys_storage import StorageManager, StorageSettings


def dummy_component(world: str, work: Path, directory: str = "wit") -> bytes:
    """A component importing everything *world* of the shipped WIT *directory* imports (wasm-tools --dummy)."""
    wasm_tools = tool("wasm-tools")
    wit = importlib.resources.files("airssys_storage").joinpath(directory)
    (work / "wit").mkdir()
    for item in wit.iterdir():
        if item.name.endswith(".wit"):
            (work / "wit" / item.name).write_bytes(item.read_bytes())
    core, component = work / "core.wasm", work / "component.wasm"
    for command in (
        [wasm_tools, "component", "embed", "--dummy", str(work / "wit"), "-w", world, "-o", str(core)],
        [wasm_tools, "component", "new", str(core), "-o", str(component)],
    ):
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    return component.read_bytes()


@pytest.mark.parametrize(
    ("world", "interfaces"),
    [
        ("component", {STORAGE}),
        ("component-extended", {STORAGE, BATCH, RANGES}),
        ("component-full", set(INTERFACES)),
        ("component-changes", {STORAGE, CHANGES}),
        ("change-subscriber", {*INTERFACES, CHANGES}),
    ],
)
def test_every_function_of_the_shipped_wit_is_served_with_its_type(
    host: Host, tmp_path: Path, world: str, interfaces: set[str]
) -> None:
    guest = host.load(dummy_component(world, tmp_path), name=world)  # checks every import's type
    expected = {f.qualified_name for f in (*FUNCTIONS, *CHANGES_FUNCTIONS) if f.interface in interfaces}
    assert set(guest.imports) == expected


def test_the_subscriber_world_exports_the_handler_the_host_calls(host: Host, tmp_path: Path) -> None:
    from airssys_storage_wasmtime._interfaces import CHANGE_EVENT
    from airssys_storage_wasmtime.subscriptions import HANDLER_EXPORT

    guest = host.load(dummy_component("change-subscriber", tmp_path), name="change-subscriber")
    assert guest.exports == {HANDLER_EXPORT: f"func(list<{CHANGE_EVENT.wit}>) -> result<_, string>"}
    fixture = host.load(FIXTURES / "subscriber.wat")
    assert fixture.exports == guest.exports


def test_the_fixtures_declare_the_shipped_types(host: Host) -> None:
    guest = host.load(FIXTURES / "echo.wat")
    echoed = [f for f in FUNCTIONS if f.interface in (STORAGE, BATCH, RANGES)]
    assert set(guest.imports) == {f.qualified_name for f in echoed}
    for function in echoed:
        assert guest.exports[function.name.removeprefix("storage-")] == function.wit


@pytest.mark.parametrize(
    ("directory", "world", "functions"),
    [("wit/deps/keyvalue", "imports", KEYVALUE_FUNCTIONS),
     ("wit/deps/spin-key-value", "key-value-imports", SPIN_FUNCTIONS)],
)  # fmt: skip
def test_every_function_of_a_vendored_standard_is_served_with_its_type(
    host: Host, tmp_path: Path, directory: str, world: str, functions: tuple[HostFunction, ...]
) -> None:
    guest = host.load(dummy_component(world, tmp_path, directory), name=world)
    assert set(guest.imports) == {f.qualified_name for f in functions}
    assert not guest.needs_wasi


def test_the_shipped_wit_is_valid(tmp_path: Path) -> None:
    """storage.wit (every world) and the vendored wasi:keyvalue and Spin key-value resolve with wasm-tools."""
    wasm_tools = tool("wasm-tools")
    root = importlib.resources.files("airssys_storage").joinpath("wit")
    for directory in (root, root.joinpath("deps/keyvalue"), root.joinpath("deps/spin-key-value")):
        target = tmp_path / directory.name
        target.mkdir()
        for item in directory.iterdir():
            if item.name.endswith(".wit"):
                (target / item.name).write_bytes(item.read_bytes())
        subprocess.run([wasm_tools, "component", "wit", str(target)], check=True, capture_output=True, timeout=120)


def test_a_guest_built_before_storage_commit_still_loads(host: Host, tmp_path: Path) -> None:
    """Guests built against the WIT without storage-commit (and its mutation type) keep working."""
    wasm_tools = tool("wasm-tools")
    shipped = importlib.resources.files("airssys_storage").joinpath("wit/storage.wit").read_text()
    start = shipped.index("    /// One change of a storage-commit batch.")
    end = shipped.index("\n}", shipped.index("storage-commit: func"))
    older = shipped[:start].rstrip() + shipped[end:]
    assert "mutation" not in older and "storage-commit" not in older
    (tmp_path / "wit").mkdir()
    (tmp_path / "wit" / "storage.wit").write_text(older)
    core, component = tmp_path / "core.wasm", tmp_path / "component.wasm"
    for command in (
        [wasm_tools, "component", "embed", "--dummy", str(tmp_path / "wit"), "-w", "component-full", "-o", str(core)],
        [wasm_tools, "component", "new", str(core), "-o", str(component)],
    ):
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    guest = host.load(component.read_bytes(), name="before-commit")
    expected = {f.qualified_name for f in FUNCTIONS if f.interface in INTERFACES and f.name != "storage-commit"}
    assert set(guest.imports) == expected
    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        with host.instantiate(guest, storage_of(manager, "read-write", None)) as instance:
            assert not instance.discarded
