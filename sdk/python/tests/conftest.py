"""Stores for the collection tests: memory://, SQLite and LevelDB (and PostgreSQL for the queue test)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airssys_storage import ComponentStorage, Manifest, StorageManager, StorageSettings

POSTGRESQL_URL = os.environ.get(
    "AIRSSYS_STORAGE_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("memory", "sqlite", "leveldb")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def skip_or_fail(reason: str) -> None:
    """Skip on a laptop; fail under CI, where a skipped service test would hide a broken setup."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def store_settings(backend: str, directory: Path) -> StorageSettings:
    """Settings of a fresh store of *backend* under *directory* (postgresql: fresh tables)."""
    if backend == "memory":
        return StorageSettings(url="memory://")
    if backend == "sqlite":
        return StorageSettings(url=f"sqlite:///{directory}/store.sqlite3")
    if backend == "leveldb":
        return StorageSettings(url=f"leveldb://{directory}/db")
    if backend == "postgresql":
        # Commits are not waited for on disk (synchronous_commit=off): these tests are about concurrency, not
        # durability (the SQL plugin's own tests cover that), and a flushed commit costs 2-10 ms on the test VM.
        options = {
            "table_prefix": f"coll{uuid.uuid4().hex[:10]}_",
            "connect_args": {"options": "-c synchronous_commit=off"},
        }
        return StorageSettings(url=POSTGRESQL_URL, backend_options=options)
    raise ValueError(backend)


def drop_postgresql(settings: StorageSettings) -> None:
    """Drop the tables of a PostgreSQL test store (its table_prefix)."""
    from sqlalchemy import create_engine, text

    prefix = settings.backend_options["table_prefix"]
    engine = create_engine(POSTGRESQL_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"DROP TABLE IF EXISTS {prefix}data, {prefix}usage, {prefix}meta, {prefix}ops"))
        connection.execute(text(f"DROP FUNCTION IF EXISTS {prefix}refuse(text, bigint, bigint)"))
    engine.dispose()


def postgresql_reachable() -> str | None:
    """``None`` when the test server answers, else why not."""
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(POSTGRESQL_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect is a reason to skip
        return f"PostgreSQL at {POSTGRESQL_URL} is not reachable ({type(exc).__name__}: {exc}"[:300] + ")"
    return None


def component(manager: StorageManager, access: str = "read-write") -> ComponentStorage:
    return manager.component(Manifest(id="app", access=access))


@pytest.fixture(params=BACKENDS)
def open_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], ComponentStorage]]:
    """Opens read-write storage of one component on a fresh store of each backend (closed after the test)."""
    managers: list[StorageManager] = []
    settings = store_settings(request.param, tmp_path)

    def open_() -> ComponentStorage:
        if managers and request.param == "memory":  # one memory store: hand out the same one
            return component(managers[0])
        if request.param == "leveldb":  # one process at a time: a reopen closes the earlier manager
            for earlier in managers:
                earlier.close()
        manager = StorageManager.from_settings(settings)
        managers.append(manager)
        return component(manager)

    yield open_
    for manager in reversed(managers):
        manager.close()


@pytest.fixture
def storage(open_storage: Callable[[], ComponentStorage]) -> ComponentStorage:
    return open_storage()


@pytest.fixture
def memory_storage() -> Iterator[ComponentStorage]:
    with StorageManager.from_settings(StorageSettings(url="memory://")) as manager:
        yield component(manager)


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "slow: long-running (several processes)")


# -- the componentize-py guest of the SDK (test_guest.py, test_js_sdk.py) ------------------------------------

GUEST = Path(__file__).parent / "guest"
SDK = Path(__file__).parent.parent  # sdk/python: the guest bundles airssys_storage_sdk from here


def needs_wasmtime() -> Any:
    """The airssys_storage_wasmtime module; skip (fail under CI) without it."""
    try:
        import airssys_storage_wasmtime
    except ImportError:
        skip_or_fail(
            "airssys-storage-wasmtime is not installed (pip install -e contrib/airssys-storage-wasmtime[test])"
        )
    return airssys_storage_wasmtime


def persistent_dir(config: pytest.Config, name: str, factory: pytest.TempPathFactory) -> Path:
    """A directory kept between sessions (pytest's cache), or a temporary one without the cache."""
    cache = getattr(config, "cache", None)
    return Path(cache.mkdir(name)) if cache is not None else factory.mktemp(name)


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
    folder = persistent_dir(pytestconfig, "airssys-sdk-guest", tmp_path_factory)
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
def host(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A host whose compile cache persists between sessions (compiling the 18 MB guest takes ~10 s)."""
    wasmtime = needs_wasmtime()
    return wasmtime.Host(cache_dir=persistent_dir(pytestconfig, "airssys-wasmtime-compiled", tmp_path_factory))
