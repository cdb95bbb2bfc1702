from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from airssys_storage_wasmtime import Guest, Host
from wasmtime_helpers import FIXTURES, GUEST_COMMON, KEYVALUE_GUEST, LIMITS, PYTHON_GUEST, SPIN_GUEST, storage_of, tool

from airssys_storage import ComponentStorage, StorageManager, StorageSettings
from airssys_storage.testing import isolated_environment  # noqa: F401 - autouse: no developer settings leak in


@pytest.fixture(scope="session")
def host(tmp_path_factory: pytest.TempPathFactory) -> Host:
    return Host(cache_dir=tmp_path_factory.mktemp("compiled"))


@pytest.fixture(scope="session")
def echo(host: Host) -> Guest:
    return host.load(FIXTURES / "echo.wat")


@pytest.fixture
def manager() -> Iterator[StorageManager]:
    with StorageManager.from_settings(StorageSettings(url="memory://", **LIMITS)) as manager:
        yield manager


@pytest.fixture
def storage(manager: StorageManager) -> ComponentStorage:
    return storage_of(manager)


# -- the componentize-py guest, built once and cached between sessions ----------


def _persistent_dir(config: pytest.Config, name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    return Path(cache.mkdir(name)) if cache is not None else tmp_path_factory.mktemp(name)


def _componentize(
    source: Path, world: str, deps: dict[str, dict[str, bytes]], config: pytest.Config, factory: pytest.TempPathFactory
) -> Path:
    """*source*/app.py built with componentize-py against *source*/guest.wit and the WIT *deps*.

    *deps* maps a directory under ``wit/deps`` to its files. Building takes
    about 10 s and makes 18 MB, so the result is cached by content between sessions.
    """
    componentize = tool("componentize-py")
    sources = [source / "app.py", source / "guest.wit", GUEST_COMMON / "guest_checks.py"]
    digest = hashlib.sha256(importlib.metadata.version("componentize-py").encode())
    for directory, files in sorted(deps.items()):
        for name, data in sorted(files.items()):
            digest.update(f"{directory}/{name}".encode() + data)
    for path in sources:
        digest.update(path.read_bytes())
    target = _persistent_dir(config, "airssys-wasmtime-python-guest", factory) / (digest.hexdigest()[:32] + ".wasm")
    if target.exists():
        return target
    work = factory.mktemp(f"{world}-build")
    wit = work / "wit"
    for directory, files in deps.items():
        (wit / "deps" / directory).mkdir(parents=True)
        for name, data in files.items():
            (wit / "deps" / directory / name).write_bytes(data)
    (wit / "guest.wit").write_bytes((source / "guest.wit").read_bytes())
    built = work / "app.wasm"
    command = [componentize, "-d", str(wit), "-w", world, "componentize", "-p", str(source), "-p", str(GUEST_COMMON),
               "app", "-o", str(built)]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=work)
    if finished.returncode != 0:
        pytest.fail(f"componentize-py failed ({finished.returncode}):\n{finished.stdout}\n{finished.stderr}")
    os.replace(built, target)
    return target


def _shipped_wit(directory: str) -> dict[str, bytes]:
    """The .wit files of *directory* in airssys_storage's WIT."""
    folder = importlib.resources.files("airssys_storage").joinpath(directory)
    return {item.name: item.read_bytes() for item in folder.iterdir() if item.name.endswith(".wit")}


@pytest.fixture(scope="session")
def python_guest_wasm(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/python_guest/app.py, against airssys:wasm (every interface)."""
    deps = {"airssys-wasm": _shipped_wit("wit")}
    return _componentize(PYTHON_GUEST, "python-guest", deps, pytestconfig, tmp_path_factory)


@pytest.fixture(scope="session")
def keyvalue_guest_wasm(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/keyvalue_guest/app.py, against the vendored wasi:keyvalue@0.2.0-draft2 only."""
    deps = {"keyvalue": _shipped_wit("wit/deps/keyvalue")}
    return _componentize(KEYVALUE_GUEST, "keyvalue-guest", deps, pytestconfig, tmp_path_factory)


@pytest.fixture(scope="session")
def spin_guest_wasm(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/spin_guest/app.py, against the vendored fermyon:spin/key-value@2.0.0 only."""
    deps = {"spin": _shipped_wit("wit/deps/spin-key-value")}
    return _componentize(SPIN_GUEST, "spin-guest", deps, pytestconfig, tmp_path_factory)


@pytest.fixture(scope="session")
def compiling_host(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Host:
    """A host whose compile cache persists between sessions (compiling a guest of 18 MB takes ~10 s)."""
    return Host(cache_dir=_persistent_dir(pytestconfig, "airssys-wasmtime-compiled", tmp_path_factory))


@pytest.fixture(scope="session")
def python_guest(python_guest_wasm: Path, compiling_host: Host) -> tuple[Host, Guest]:
    return compiling_host, compiling_host.load(python_guest_wasm)


@pytest.fixture(scope="session")
def keyvalue_guest(keyvalue_guest_wasm: Path, compiling_host: Host) -> tuple[Host, Guest]:
    return compiling_host, compiling_host.load(keyvalue_guest_wasm)


@pytest.fixture(scope="session")
def spin_guest(spin_guest_wasm: Path, compiling_host: Host) -> tuple[Host, Guest]:
    return compiling_host, compiling_host.load(spin_guest_wasm)
