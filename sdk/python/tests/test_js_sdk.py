"""The JavaScript SDK (sdk/js): its node tests, a ComponentizeJS guest sharing collections with Python, todo-js.

Needs Node.js >= 20 and npm (skips without them, fails under CI). Cached
between sessions in pytest's cache: the JavaScript toolchain (``npm ci`` of
the pinned ComponentizeJS, jco and rolldown: the same install as the wasmtime
tests' JavaScript guest) and each built guest, by content. ``sdk/js`` itself
is installed (``npm ci``) and compiled (``npm run build``) once per session.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import needs_wasmtime, persistent_dir, skip_or_fail

from airssys_storage import ComponentStorage, Manifest, StorageManager, StorageSettings
from airssys_storage.collections import StorageMap, StorageQueue, StorageSet, StorageTreeMap

ROOT = Path(__file__).resolve().parents[3]
SDK_JS = ROOT / "sdk" / "js"
JS_GUEST = Path(__file__).parent / "js_guest"
TODO_JS = ROOT / "examples" / "todo-js"
TODO_PY = ROOT / "examples" / "todo-python" / "todo.py"
# The pinned JavaScript toolchain: componentize-js 0.23, jco 1.35 and, through jco, rolldown 1.3 (the bundler).
TOOLCHAIN = ROOT / "contrib" / "airssys-storage-wasmtime" / "tests" / "spin_js_guest"
COMPONENTIZE_JS_DISABLE = ("http", "fetch-event")  # no wasi:http: the host links none
LIMITS = {"max_batch_ops": 5, "max_keys_per_query": 10}
NODE_MAJOR = 20


def node_tools() -> tuple[str, str]:
    """``node`` and ``npm``; skip (fail under CI) without them or with a Node.js older than 20."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        skip_or_fail(f"Node.js >= {NODE_MAJOR} with npm is not installed (apt-get install nodejs npm); sdk/js needs it")
    assert node is not None and npm is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    major = version.lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < NODE_MAJOR:
        skip_or_fail(f"Node.js {version or '(no version)'} at {node} is too old: sdk/js needs >= {NODE_MAJOR}")
    return node, npm


def run(command: list[str], cwd: Path, what: str, env: dict[str, str] | None = None) -> str:
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=cwd, env=env)
    if finished.returncode != 0:
        pytest.fail(f"{what} failed ({finished.returncode}):\n{finished.stdout[-4000:]}\n{finished.stderr[-4000:]}")
    return finished.stdout


@pytest.fixture(scope="session")
def sdk_js() -> Path:
    """sdk/js installed (``npm ci``: TypeScript only) and compiled (``npm run build``), once per session."""
    _, npm = node_tools()
    run([npm, "ci", "--no-audit", "--no-fund"], SDK_JS, "npm ci in sdk/js")
    run([npm, "run", "build"], SDK_JS, "npm run build in sdk/js")
    return SDK_JS


@pytest.fixture(scope="session")
def js_toolchain(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned ComponentizeJS toolchain, installed by ``npm ci`` once (the wasmtime tests' cache entry)."""
    _, npm = node_tools()
    manifests = [TOOLCHAIN / "package.json", TOOLCHAIN / "package-lock.json"]
    key = hashlib.sha256(b"".join(path.read_bytes() for path in manifests)).hexdigest()[:16]
    root = persistent_dir(pytestconfig, "airssys-wasmtime-js-toolchain", tmp_path_factory) / key
    installed = root / "installed"  # written once npm ci succeeded: a broken install is redone
    if not installed.exists():
        shutil.rmtree(root / "node_modules", ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        for path in manifests:
            shutil.copyfile(path, root / path.name)
        run([npm, "ci", "--no-audit", "--no-fund"], root, "npm ci (the JavaScript guest's toolchain)")
        installed.write_text("npm ci succeeded\n")
    return root


def build_js_guest(
    source: Path,
    world: str,
    wit: Path,
    sdk: Path,
    toolchain: Path,
    config: pytest.Config,
    factory: pytest.TempPathFactory,
) -> Path:
    """*source*/app.js with the SDK: bundled by rolldown, built by componentize-js; cached by content (~10-60 s)."""
    node, _ = node_tools()
    shipped = ROOT / "airssys_storage" / "wit" / "storage.wit"
    inputs = [source / "app.js", wit, shipped, TOOLCHAIN / "package-lock.json", SDK_JS / "package-lock.json"]
    inputs += sorted((SDK_JS / "src").glob("*.ts"))
    digest = hashlib.sha256(" ".join(COMPONENTIZE_JS_DISABLE).encode())
    for path in inputs:
        digest.update(path.name.encode() + path.read_bytes())
    target = persistent_dir(config, "airssys-sdk-js-guest", factory) / (digest.hexdigest()[:32] + ".wasm")
    if target.exists():
        return target
    work = factory.mktemp(f"{world}-build")
    shutil.copyfile(source / "app.js", work / "app.js")
    package = work / "node_modules" / "@airssys" / "storage-sdk"  # what `npm install ../sdk/js` puts there
    package.mkdir(parents=True)
    shutil.copyfile(sdk / "package.json", package / "package.json")
    shutil.copytree(sdk / "dist", package / "dist")
    (work / "wit" / "deps" / "airssys-wasm").mkdir(parents=True)
    shutil.copyfile(shipped, work / "wit" / "deps" / "airssys-wasm" / "storage.wit")
    shutil.copyfile(wit, work / "wit" / "guest.wit")
    bin_ = toolchain / "node_modules" / ".bin"
    run([node, str(bin_ / "rolldown"), "app.js", "--file", "bundle.js", "--format", "esm"], work, "rolldown")
    command = [node, str(bin_ / "componentize-js"), "bundle.js", "--wit", "wit", "-n", world,
               "-d", *COMPONENTIZE_JS_DISABLE, "-o", "app.wasm"]  # fmt: skip
    run(command, work, "componentize-js")
    partial = target.with_suffix(".partial")
    shutil.copyfile(work / "app.wasm", partial)
    os.replace(partial, target)
    return target


@pytest.fixture(scope="session")
def js_guest_wasm(
    sdk_js: Path, js_toolchain: Path, pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """js_guest/app.js with @airssys/storage-sdk (12 MB)."""
    wit = JS_GUEST / "guest.wit"
    return build_js_guest(JS_GUEST, "sdk-js-guest", wit, sdk_js, js_toolchain, pytestconfig, tmp_path_factory)


@pytest.fixture(scope="session")
def todo_js_wasm(
    sdk_js: Path, js_toolchain: Path, pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """examples/todo-js built as its README shows."""
    wit = TODO_JS / "wit" / "todo.wit"
    return build_js_guest(TODO_JS, "todo", wit, sdk_js, js_toolchain, pytestconfig, tmp_path_factory)


@pytest.fixture
def storage() -> Any:
    with StorageManager.from_settings(StorageSettings(url="memory://", **LIMITS)) as manager:
        yield manager.component(Manifest(id="app", access="read-write"))


def test_node_unit_tests(sdk_js: Path) -> None:
    """``npm test`` (node --test) in sdk/js: key vectors of the Python SDK, order, collections on MemoryStore."""
    _, npm = node_tools()
    out = run([npm, "test"], sdk_js, "npm test in sdk/js")
    passed = re.search(r"^# pass (\d+)$", out, re.MULTILINE)
    failed = re.search(r"^# fail (\d+)$", out, re.MULTILINE)
    assert passed is not None and int(passed.group(1)) >= 10, out[-2000:]
    assert failed is not None and failed.group(1) == "0", out[-2000:]


def test_js_guest_python_host_and_python_guest_share_collections(
    js_guest_wasm: Path, guest_wasm: Path, host: Any, storage: ComponentStorage
) -> None:
    """The JavaScript guest fills a tree map, a map and a queue; the host reads them; the Python guest pops."""
    needs_wasmtime()
    with host.instantiate(host.load(js_guest_wasm), storage) as js:
        assert js.call("fill-collections", 12) == 12
    users = StorageTreeMap(storage, "users/", page_size=5)
    assert len(users) == 12
    assert users["user-007"] == {"n": 7, "name": "User 7", "tags": ["js", "é"]}
    assert users.last() == ("user-011", {"n": 11, "name": "User 11", "tags": ["js", "é"]})
    assert [key for key, _ in users.range("user-003", "user-006")] == ["user-003", "user-004", "user-005"]
    scores = StorageMap(storage, "scores/", page_size=5)
    assert len(scores) == 12
    assert list(scores) == sorted((f"player-{index % 3}", index - 5) for index in range(12))
    assert scores[("player-1", -1)] == 6.0
    jobs = StorageQueue(storage, "jobs/", page_size=5)
    assert len(jobs) == 12
    assert jobs.pop() == {"job": 0}
    jobs.push({"job": "from the host"})
    users["user-005"] = {"n": 5, "name": "changed by the host"}
    with host.instantiate(host.load(guest_wasm), storage) as python:
        popped = python.call("pop-jobs", 6)
    assert popped == [f'{{"job": {index}}}' for index in range(1, 7)]
    with host.instantiate(host.load(js_guest_wasm), storage) as js:
        rest = js.call("pop-jobs", 100)  # JSON.stringify: no spaces
        assert rest == [f'{{"job":{index}}}' for index in range(7, 12)] + ['{"job":"from the host"}']
        users_read = js.call("read-users")  # result<string, string>: a tagged variant
        assert users_read.tag == "ok", users_read.payload
        size, first, last, floor = json.loads(users_read.payload)
    assert (size, first[0], last[0]) == (12, "user-000", "user-011")
    assert floor == ["user-005", {"n": 5, "name": "changed by the host"}]
    assert len(jobs) == 0 and jobs.pop() is None


def test_the_seeds_storage_class_in_a_guest(js_guest_wasm: Path, host: Any, storage: ComponentStorage) -> None:
    """`new Storage()` in the JavaScript guest: get/set JSON, delete, has, keys, size, entries; the host agrees.

    The host's refusals reach the guest as the SDK's classes (GuestStore translates jco's thrown variants).
    """
    storage.set("from-host", b'{"written":"by the host"}')
    with host.instantiate(host.load(js_guest_wasm), storage) as instance:
        summary = instance.call("seed-storage")
    assert summary.tag == "ok", summary.payload
    alice = {"name": "Alice", "age": 30}
    assert json.loads(summary.payload) == [
        alice, True, ["user:alice"], {"user:alice": alice}, True, {"written": "by the host"},
        "InvalidKey invalid-key", "PreconditionFailed precondition-failed",
    ]  # fmt: skip
    assert storage.get("user:alice") == b'{"name":"Alice","age":30}'
    assert not storage.has("user:bob")


def test_the_registry_is_shared_across_languages(js_guest_wasm: Path, host: Any, storage: ComponentStorage) -> None:
    """A prefix the Python host registered is refused to the JavaScript guest when it overlaps, same code."""
    StorageSet(storage, "tags/", page_size=5)
    with host.instantiate(host.load(js_guest_wasm), storage) as instance:
        opened = instance.call("open-collection", "set", "tags/")
        assert (opened.tag, opened.payload) == ("ok", "")
        for kind, prefix, message in [
            ("map", "tags/x", 'prefix-conflict: prefix "tags/x" starts with "tags/"'),
            ("queue", "tags/", 'prefix-conflict: prefix "tags/" holds a set, not a queue'),
            ("map", "", "invalid-key: a collection prefix is a non-empty string"),
        ]:
            refused = instance.call("open-collection", kind, prefix)
            assert refused.tag == "err" and refused.payload.startswith(message), refused.payload


def test_the_todo_js_example(
    todo_js_wasm: Path, tmp_path: Path, pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """examples/todo-js through `airssys-storage run`, on SQLite; the Python to-do reads the same list."""
    needs_wasmtime()
    manifest = tmp_path / "component-manifest.toml"
    shutil.copyfile(TODO_JS / "component-manifest.toml", manifest)
    env = {**os.environ, "AIRSSYS_STORAGE_URL": f"sqlite:///{tmp_path}/todo.sqlite3"}
    env.pop("AIRSSYS_STORAGE_SETTINGS", None)
    cli = Path(sys.executable).parent / "airssys-storage"
    # The compile cache of the host fixture, kept between sessions: the component is compiled once (10-45 s).
    cache = persistent_dir(pytestconfig, "airssys-wasmtime-compiled", tmp_path_factory)

    def todo(*args: str) -> str:
        command = [str(cli), "run", str(todo_js_wasm), "-m", str(manifest), "--cache-dir", str(cache), "-i", *args]
        return run(command, tmp_path, f"airssys-storage run todo-js {args}", env)

    assert todo("add", "buy milk") == "added 1: buy milk\n"
    assert todo("add", "call Ada") == "added 2: call Ada\n"
    assert todo("done", "1") == "done 1: buy milk\n"
    assert todo("list") == "[x] 1 buy milk\n[ ] 2 call Ada\n2 items, last id 2\n"
    python = run([sys.executable, str(TODO_PY), "list"], tmp_path, "todo.py list", env)
    assert python == "[x] 1 buy milk\n[ ] 2 call Ada\n2 items, last id 2\n"


def test_the_todo_js_lock_pins_the_tested_toolchain() -> None:
    """examples/todo-js's package-lock.json pins the tool versions the tests build with (and the SDK by path)."""
    example = json.loads((TODO_JS / "package-lock.json").read_text())["packages"]
    tested = json.loads((TOOLCHAIN / "package-lock.json").read_text())["packages"]
    for name in ("@bytecodealliance/componentize-js", "@bytecodealliance/jco", "rolldown"):
        assert example[f"node_modules/{name}"]["version"] == tested[f"node_modules/{name}"]["version"], name
    assert example["node_modules/@airssys/storage-sdk"] == {"resolved": "../../sdk/js", "link": True}
