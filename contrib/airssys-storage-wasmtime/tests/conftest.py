from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from airssys_storage_wasmtime import Guest, Host
from wasmtime_helpers import (
    FIXTURES,
    GUEST_COMMON,
    KEYVALUE_GUEST,
    LIMITS,
    PYTHON_GUEST,
    SPIN_GUEST,
    SPIN_JS_GUEST,
    node_tools,
    storage_of,
    tool,
)

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
    digest = _digest(importlib.metadata.version("componentize-py").encode(), deps, sources)
    target = _persistent_dir(config, "airssys-wasmtime-python-guest", factory) / (digest + ".wasm")
    if target.exists():
        return target
    work = factory.mktemp(f"{world}-build")
    wit = _wit_tree(work, source, deps)
    built = work / "app.wasm"
    command = [componentize, "-d", str(wit), "-w", world, "componentize", "-p", str(source), "-p", str(GUEST_COMMON),
               "app", "-o", str(built)]  # fmt: skip
    _build(command, work, "componentize-py")
    _store(built, target)
    return target


def _digest(tools: bytes, deps: dict[str, dict[str, bytes]], sources: list[Path]) -> str:
    """The cache key of a built guest: the *tools*' versions, the WIT *deps* and the *sources*."""
    digest = hashlib.sha256(tools)
    for directory, files in sorted(deps.items()):
        for name, data in sorted(files.items()):
            digest.update(f"{directory}/{name}".encode() + data)
    for path in sources:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def _wit_tree(work: Path, source: Path, deps: dict[str, dict[str, bytes]]) -> Path:
    """``work/wit``: *source*/guest.wit with the WIT *deps* under ``deps/`` (the layout the WIT tools read)."""
    wit = work / "wit"
    for directory, files in deps.items():
        (wit / "deps" / directory).mkdir(parents=True)
        for name, data in files.items():
            (wit / "deps" / directory / name).write_bytes(data)
    (wit / "guest.wit").write_bytes((source / "guest.wit").read_bytes())
    return wit


def _store(built: Path, target: Path) -> None:
    """Move *built* to *target* atomically (a session stopped halfway leaves no truncated guest in the cache)."""
    partial = target.with_suffix(".partial")
    shutil.copyfile(built, partial)  # the temporary directory may be on another file system
    os.replace(partial, target)


def _build(command: list[str], cwd: Path, what: str) -> None:
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=cwd)
    if finished.returncode != 0:
        pytest.fail(f"{what} failed ({finished.returncode}):\n{finished.stdout}\n{finished.stderr}")


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


# -- the JavaScript guest (ComponentizeJS), built once and cached between sessions ---

#: ComponentizeJS's WASI features left out: wasi:http (StarlingMonkey's fetch and
#: its incoming-handler), which the host does not link -- guests get no network.
COMPONENTIZE_JS_DISABLE = ("http", "fetch-event")


def _js_toolchain(config: pytest.Config, factory: pytest.TempPathFactory) -> Path:
    """A directory with spin_js_guest's npm packages (ComponentizeJS, jco), installed by ``npm ci``.

    Cached by package.json and package-lock.json between sessions: ``npm ci``
    downloads about 150 packages (390 MB installed) and takes about a minute.
    """
    _, npm = node_tools()
    manifests = [SPIN_JS_GUEST / "package.json", SPIN_JS_GUEST / "package-lock.json"]
    key = hashlib.sha256(b"".join(path.read_bytes() for path in manifests)).hexdigest()[:16]
    root = _persistent_dir(config, "airssys-wasmtime-js-toolchain", factory) / key
    installed = root / "installed"  # written once npm ci succeeded: a broken install is redone
    if not installed.exists():
        shutil.rmtree(root / "node_modules", ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        for path in manifests:
            shutil.copyfile(path, root / path.name)
        _build([npm, "ci", "--no-audit", "--no-fund"], root, "npm ci (the JavaScript guest's toolchain)")
        installed.write_text("npm ci succeeded\n")
    return root


@pytest.fixture(scope="session")
def spin_js_guest_wasm(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/spin_js_guest/app.js, against the vendored fermyon:spin/key-value@2.0.0 only (ComponentizeJS).

    Cached by the sources, the WIT and package-lock.json (the tools' exact
    versions): a cached guest needs no Node.js. Building takes 8-70 s and makes 12 MB.
    """
    deps = {"spin": _shipped_wit("wit/deps/spin-key-value")}
    sources = [SPIN_JS_GUEST / name for name in ("app.js", "guest.wit", "package.json", "package-lock.json")]
    digest = _digest(" ".join(COMPONENTIZE_JS_DISABLE).encode(), deps, sources)
    target = _persistent_dir(pytestconfig, "airssys-wasmtime-js-guest", tmp_path_factory) / (digest + ".wasm")
    if target.exists():
        return target
    node, _ = node_tools()
    toolchain = _js_toolchain(pytestconfig, tmp_path_factory)
    work = tmp_path_factory.mktemp("spin-js-guest-build")
    wit = _wit_tree(work, SPIN_JS_GUEST, deps)
    shutil.copyfile(SPIN_JS_GUEST / "app.js", work / "app.js")
    built = work / "app.wasm"
    componentize = toolchain / "node_modules" / ".bin" / "componentize-js"
    command = [node, str(componentize), "app.js", "--wit", str(wit), "-n", "spin-js-guest",
               "-d", *COMPONENTIZE_JS_DISABLE, "-o", str(built)]  # fmt: skip
    _build(command, work, "componentize-js")
    _store(built, target)
    return target


@pytest.fixture(scope="session")
def compile_cache(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compile cache (``--cache-dir``) that persists between sessions (compiling a 12-18 MB guest takes 10-20 s)."""
    return _persistent_dir(pytestconfig, "airssys-wasmtime-compiled", tmp_path_factory)


@pytest.fixture(scope="session")
def compiling_host(compile_cache: Path) -> Host:
    """A host using :func:`compile_cache`."""
    return Host(cache_dir=compile_cache)


@pytest.fixture(scope="session")
def python_guest(python_guest_wasm: Path, compiling_host: Host) -> tuple[Host, Guest]:
    return compiling_host, compiling_host.load(python_guest_wasm)


@pytest.fixture(scope="session")
def keyvalue_guest(keyvalue_guest_wasm: Path, compiling_host: Host) -> tuple[Host, Guest]:
    return compiling_host, compiling_host.load(keyvalue_guest_wasm)


@pytest.fixture(scope="session")
def spin_guest(spin_guest_wasm: Path, compiling_host: Host) -> tuple[Host, Guest]:
    return compiling_host, compiling_host.load(spin_guest_wasm)


@pytest.fixture(scope="session")
def spin_js_guest(spin_js_guest_wasm: Path, compiling_host: Host) -> tuple[Host, Guest]:
    return compiling_host, compiling_host.load(spin_js_guest_wasm)
