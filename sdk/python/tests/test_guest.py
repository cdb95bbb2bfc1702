"""A Python guest built with componentize-py uses the SDK; the host reads the same collections, and back."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import skip_or_fail

from airssys_storage import ComponentStorage, Manifest, StorageManager, StorageSettings
from airssys_storage.collections import StorageQueue, StorageSet, StorageTreeMap

GUEST = Path(__file__).parent / "guest"
SDK = Path(__file__).parent.parent  # sdk/python: the guest bundles airssys_storage_sdk from here
LIMITS = {"max_batch_ops": 5, "max_keys_per_query": 10}

try:
    import airssys_storage_wasmtime as wasmtime
except ImportError:  # the module's tests skip (fail under CI) with the reason
    wasmtime = None


@pytest.fixture(autouse=True)
def _needs_wasmtime() -> None:
    if wasmtime is None:
        skip_or_fail(
            "airssys-storage-wasmtime is not installed (pip install -e contrib/airssys-storage-wasmtime[test])"
        )


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        skip_or_fail(f"{name} is not installed (pip install -e contrib/airssys-storage-wasmtime[test])")
    return str(found)


@pytest.fixture(scope="session")
def guest_wasm(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """guest/app.py with the SDK, built once and cached by content between sessions (~10 s, 18 MB)."""
    componentize = _tool("componentize-py")
    wit_files = {
        item.name: item.read_bytes()
        for item in importlib.resources.files("airssys_storage").joinpath("wit").iterdir()
        if item.name.endswith(".wit")
    }
    sources = [GUEST / "app.py", GUEST / "guest.wit", *sorted((SDK / "airssys_storage_sdk").glob("*.py"))]
    digest = hashlib.sha256(importlib.metadata.version("componentize-py").encode())
    for name, data in sorted(wit_files.items()):
        digest.update(name.encode() + data)
    for path in sources:
        digest.update(path.name.encode() + path.read_bytes())
    cache = pytestconfig.cache
    folder = Path(cache.mkdir("airssys-sdk-guest")) if cache is not None else tmp_path_factory.mktemp("sdk-guest")
    target = folder / (digest.hexdigest()[:32] + ".wasm")
    if target.exists():
        return target
    work = tmp_path_factory.mktemp("sdk-guest-build")
    (work / "wit" / "deps" / "airssys-wasm").mkdir(parents=True)
    for name, data in wit_files.items():
        (work / "wit" / "deps" / "airssys-wasm" / name).write_bytes(data)
    (work / "wit" / "guest.wit").write_bytes((GUEST / "guest.wit").read_bytes())
    command = [componentize, "-d", "wit", "-w", "sdk-guest", "componentize", "-p", str(GUEST), "-p", str(SDK),
               "app", "-o", "app.wasm"]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=work)
    if finished.returncode != 0:
        pytest.fail(f"componentize-py failed ({finished.returncode}):\n{finished.stdout}\n{finished.stderr}")
    os.replace(work / "app.wasm", target)
    return target


@pytest.fixture(scope="session")
def host(pytestconfig: pytest.Config) -> Any:
    """A host whose compile cache persists between sessions (compiling the 18 MB guest takes ~10 s)."""
    cache = pytestconfig.cache
    return wasmtime.Host(cache_dir=cache.mkdir("airssys-wasmtime-compiled") if cache is not None else None)


@pytest.fixture
def storage() -> Iterator[ComponentStorage]:
    with StorageManager.from_settings(StorageSettings(url="memory://", **LIMITS)) as manager:
        yield manager.component(Manifest(id="app", access="read-write"))


def test_guest_and_host_share_collections(guest_wasm: Path, host: Any, storage: ComponentStorage) -> None:
    """The guest fills a tree map and a queue; the host reads both and pushes; the guest pops in FIFO order."""
    with host.instantiate(host.load(guest_wasm), storage) as instance:
        assert instance.call("fill-collections", 12) == 12
        users = StorageTreeMap(storage, "users/", page_size=5)
        assert len(users) == 12
        assert users["user-007"] == {"n": 7, "name": "User 7"}
        assert users.last() == ("user-011", {"n": 11, "name": "User 11"})
        assert [key for key, _ in users.range("user-003", "user-006")] == ["user-003", "user-004", "user-005"]
        jobs = StorageQueue(storage, "jobs/", page_size=5)
        assert len(jobs) == 12
        assert jobs.pop() == {"job": 0}
        jobs.push({"job": "from the host"})
        popped = instance.call("pop-jobs", 100)
        assert popped == [f'{{"job": {index}}}' for index in range(1, 12)] + ['{"job": "from the host"}']
        assert len(jobs) == 0 and jobs.pop() is None


def test_the_registry_is_shared_with_the_guest(guest_wasm: Path, host: Any, storage: ComponentStorage) -> None:
    """A prefix the host registered is refused to the guest when it overlaps, with the same error code."""
    StorageSet(storage, "tags/", page_size=5)
    with host.instantiate(host.load(guest_wasm), storage) as instance:
        opened = instance.call("open-collection", "set", "tags/")  # result<string, string>: a tagged variant
        assert (opened.tag, opened.payload) == ("ok", "")
        for kind, prefix, message in [
            ("map", "tags/x", "prefix-conflict: prefix 'tags/x' starts with 'tags/'"),
            ("queue", "tags/", "prefix-conflict: prefix 'tags/' holds a set, not a queue"),
            ("map", "", "invalid-key: a collection prefix is a non-empty str"),
        ]:
            refused = instance.call("open-collection", kind, prefix)
            assert refused.tag == "err" and refused.payload.startswith(message)
