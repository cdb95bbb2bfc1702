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
from wasmtime_helpers import FIXTURES, LIMITS, PYTHON_GUEST, storage_of, tool

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


@pytest.fixture(scope="session")
def python_guest_wasm(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/python_guest/app.py built with componentize-py (about 10 s and 18 MB, so cached by content)."""
    componentize = tool("componentize-py")
    storage_wit = importlib.resources.files("airssys_storage").joinpath("wit/storage.wit").read_bytes()
    sources = [PYTHON_GUEST / "app.py", PYTHON_GUEST / "guest.wit"]
    digest = hashlib.sha256(importlib.metadata.version("componentize-py").encode() + storage_wit)
    for source in sources:
        digest.update(source.read_bytes())
    target = _persistent_dir(pytestconfig, "airssys-wasmtime-python-guest", tmp_path_factory) / (
        digest.hexdigest()[:32] + ".wasm"
    )
    if target.exists():
        return target
    work = tmp_path_factory.mktemp("python-guest-build")
    wit = work / "wit"
    (wit / "deps" / "airssys-wasm").mkdir(parents=True)
    (wit / "guest.wit").write_bytes((PYTHON_GUEST / "guest.wit").read_bytes())
    (wit / "deps" / "airssys-wasm" / "storage.wit").write_bytes(storage_wit)
    built = work / "app.wasm"
    command = [componentize, "-d", str(wit), "-w", "python-guest", "componentize", "-p", str(PYTHON_GUEST),
               "app", "-o", str(built)]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=work)
    if finished.returncode != 0:
        pytest.fail(f"componentize-py failed ({finished.returncode}):\n{finished.stdout}\n{finished.stderr}")
    os.replace(built, target)
    return target


@pytest.fixture(scope="session")
def python_guest(
    python_guest_wasm: Path, pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Host, Guest]:
    """The Python guest, compiled through a host whose cache persists (compiling 18 MB takes ~10 s)."""
    host = Host(cache_dir=_persistent_dir(pytestconfig, "airssys-wasmtime-compiled", tmp_path_factory))
    return host, host.load(python_guest_wasm)
