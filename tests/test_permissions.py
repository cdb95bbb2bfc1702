"""The permission matrix: 4 access levels x every operation, and the veto rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field

from airssys_storage import (
    READ_OPERATIONS,
    WRITE_OPERATIONS,
    Access,
    ComponentStorage,
    ConfigurationError,
    KeyNotFound,
    Manifest,
    Operation,
    PermissionDenied,
    PermissionPolicy,
    PluginRegistry,
    StorageManager,
    StorageSettings,
    hookimpl,
)
from airssys_storage.planner import Write, WriteKind
from airssys_storage.policies import ACCESS_OPERATIONS

CALLS: dict[Operation, Callable[[ComponentStorage], Any]] = {
    Operation.GET: lambda s: s.get("k"),
    Operation.SET: lambda s: s.set("k", b"v"),
    Operation.DELETE: lambda s: s.delete("k"),
    Operation.HAS: lambda s: s.has("k"),
    Operation.KEYS: lambda s: s.keys(),
    Operation.SIZE: lambda s: s.size(),
    Operation.CLEAR: lambda s: s.clear(),
    Operation.GET_MANY: lambda s: s.get_many(["k"]),
    Operation.SET_MANY: lambda s: s.set_many({"k": b"v"}),
    Operation.DELETE_MANY: lambda s: s.delete_many(["k"]),
    Operation.RANGE: lambda s: s.range("a", "z"),
    Operation.SCAN: lambda s: s.scan(),
    Operation.GET_ENTRY: lambda s: s.get_entry("k"),
    Operation.COMPARE_AND_SWAP: lambda s: s.compare_and_swap("k", b"v", version=None),
    Operation.SET_IF_ABSENT: lambda s: s.set_if_absent("k", b"v"),
    Operation.DELETE_IF: lambda s: s.delete_if("k", version=1),
    Operation.INCREMENT: lambda s: s.increment("n"),
    Operation.GET_TTL: lambda s: _ttl_or_missing(s, "k"),
    Operation.EXPIRE: lambda s: s.expire("k", 10),
    Operation.PERSIST: lambda s: s.persist("k"),
    Operation.PURGE_EXPIRED: lambda s: s.purge_expired(),
    Operation.DELETE_PREFIX: lambda s: s.delete_prefix("k"),
    Operation.DELETE_RANGE: lambda s: s.delete_range("a", "z"),
    Operation.LIMITS: lambda s: s.limits(),
    Operation.CHANGES: lambda s: _changes(s),
    Operation.COMMIT: lambda s: s.atomic().set("k", b"v").commit(),
}


def _changes(store: ComponentStorage) -> Any:
    """changes() past the permission check: the matrix's component keeps no feed (invalid-config after it)."""
    try:
        return store.changes()
    except ConfigurationError:
        return None


def _ttl_or_missing(store: ComponentStorage, key: str) -> float | None:
    """ttl() of a key that may not exist: key-not-found is the allowed call's answer, not a denial."""
    try:
        return store.ttl(key)
    except KeyNotFound:
        return None


SEED_TABLE = {
    Access.NONE: set(),
    Access.READ_ONLY: {
        "get",
        "has",
        "keys",
        "size",
        "get-many",
        "scan",
        "range",
        "get-entry",
        "get-ttl",
        "limits",
        "changes",
    },
    Access.READ_WRITE: {op.value for op in Operation} - {"clear"},
    Access.ADMIN: {op.value for op in Operation},
}


def test_every_operation_has_a_call() -> None:
    assert set(CALLS) == set(Operation)


def test_table_matches_the_seed() -> None:
    assert {access: {op.value for op in ops} for access, ops in ACCESS_OPERATIONS.items()} == SEED_TABLE


@pytest.mark.parametrize("access", list(Access), ids=lambda a: a.value)
@pytest.mark.parametrize("operation", list(Operation), ids=lambda o: o.value)
def test_permission_matrix(manager: StorageManager, access: Access, operation: Operation) -> None:
    store = manager.component(Manifest("matrix", access, 0 if access in (Access.NONE, Access.READ_ONLY) else None))
    if operation.value in SEED_TABLE[access]:
        CALLS[operation](store)
    else:
        with pytest.raises(PermissionDenied) as info:
            CALLS[operation](store)
        assert info.value.code == "permission-denied"
        assert operation.wit_name in str(info.value)


def test_wit_names() -> None:
    assert Operation.GET.wit_name == "storage-get"
    assert Operation.GET_MANY.wit_name == "storage-get-many"


class KeyPrefixPolicy(PermissionPolicy):
    """Test policy: denies keys under "secret/", allows nothing itself otherwise."""

    name = "no-secrets"
    uses_key: ClassVar[bool] = True

    def check(self, manifest: Manifest, operation: Operation, key: str | None) -> bool | None:
        if key is not None and key.startswith("secret/"):
            return False
        return None


class AllowAllPolicy(PermissionPolicy):
    name = "allow-all"

    def check(self, manifest: Manifest, operation: Operation, key: str | None) -> bool | None:
        return True


class DenyClearPolicy(PermissionPolicy):
    name = "deny-clear"

    def check(self, manifest: Manifest, operation: Operation, key: str | None) -> bool | None:
        return False if operation is Operation.CLEAR else None


class AbstainPolicy(PermissionPolicy):
    name = "abstain"

    def check(self, manifest: Manifest, operation: Operation, key: str | None) -> bool | None:
        return None


class WritesOnlyKeyPolicy(PermissionPolicy):
    """Needs the key only for writes: denies writes under "frozen/"; counts its calls."""

    name = "frozen-writes"
    uses_key: ClassVar[bool] = True
    operations = WRITE_OPERATIONS
    asked: ClassVar[list[Operation]] = []

    def check(self, manifest: Manifest, operation: Operation, key: str | None) -> bool | None:
        self.asked.append(operation)
        return False if key is not None and key.startswith("frozen/") else None


class _PrefixOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str = "secret/"
    max_depth: int = Field(default=8, ge=1)


class PrefixOption(PermissionPolicy):
    """A third-party-style policy with options: denies keys under its configured prefix."""

    name = "prefix"
    uses_key: ClassVar[bool] = True
    Options = _PrefixOptions

    def check(self, manifest: Manifest, operation: Operation, key: str | None) -> bool | None:
        assert isinstance(self.options, _PrefixOptions)
        return False if key is not None and key.startswith(self.options.prefix) else None


class _PolicyPlugin:
    @staticmethod
    @hookimpl
    def register_permission_policies() -> list[type[PermissionPolicy]]:
        return [KeyPrefixPolicy, AllowAllPolicy, DenyClearPolicy, AbstainPolicy, WritesOnlyKeyPolicy, PrefixOption]


def _manager(policies: list[str], **settings: Any) -> StorageManager:
    registry = PluginRegistry.load(plugins={"test-policies": _PolicyPlugin})
    return StorageManager.from_settings(
        StorageSettings(url="memory://", policies=policies, **settings), registry=registry
    )


def test_veto_any_deny_wins() -> None:
    with _manager(["manifest", "deny-clear"]) as manager:
        store = manager.component(Manifest("admin", Access.ADMIN))
        store.set("k", b"v")
        with pytest.raises(PermissionDenied):
            store.clear()


def test_no_allow_means_deny() -> None:
    with _manager(["abstain"]) as manager:
        store = manager.component(Manifest("admin", Access.ADMIN))
        with pytest.raises(PermissionDenied):
            store.get("k")


def test_allow_from_another_policy_overrides_manifest_abstention_but_not_a_deny() -> None:
    with _manager(["allow-all"]) as manager:
        store = manager.component(Manifest("nobody", Access.NONE))
        assert store.get("k") is None  # allow-all is the only voter
    with _manager(["manifest", "allow-all"]) as manager:
        store = manager.component(Manifest("nobody", Access.NONE))
        with pytest.raises(PermissionDenied):
            store.get("k")  # manifest says False for access none: the veto wins


def test_key_sensitive_policy_is_asked_per_key() -> None:
    with _manager(["manifest", "no-secrets"]) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        store.set("public/x", b"1")
        with pytest.raises(PermissionDenied) as info:
            store.set("secret/x", b"1")
        assert "no-secrets" in str(info.value)
        with pytest.raises(PermissionDenied):
            store.get("secret/x")
        with pytest.raises(PermissionDenied):
            store.set_many({"secret/y": b"1"})
        assert store.keys() == ["public/x"]


def test_key_sensitive_policy_alone_needs_an_allow() -> None:
    with _manager(["no-secrets"]) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        with pytest.raises(PermissionDenied) as info:
            store.get("public")
        assert "no policy allowed it" in str(info.value)


def test_key_sensitive_policy_sees_every_key_of_a_batch() -> None:
    with _manager(["manifest", "no-secrets"]) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        store.set("public/a", b"1")
        with pytest.raises(PermissionDenied):
            store.set_many([("public/b", b"1"), ("secret/x", b"pwned")])
        with pytest.raises(PermissionDenied):
            store.get_many(["public/a", "secret/x"])
        with pytest.raises(PermissionDenied):
            store.delete_many(["public/a", "secret/x"])
        assert store.keys() == ["public/a"]


def test_listings_hide_keys_a_key_sensitive_policy_denies() -> None:
    with _manager(["manifest", "no-secrets"]) as manager:
        admin = manager.backend
        writes = [Write(b"public/a", WriteKind.PUT, b"1"), Write(b"secret/x", WriteKind.PUT, b"hidden")]
        admin.apply("app", writes, None)  # written behind the policy
        store = manager.component(Manifest("app", Access.ADMIN))
        assert store.keys() == ["public/a"]
        assert store.range("a", "z") == [("public/a", b"1")]
        assert store.scan()[0] == [("public/a", b"1")]
        items, cursor = store.scan(limit=1)
        assert items == [("public/a", b"1")] and cursor is not None
        assert store.scan(cursor=cursor, limit=1) == ([], None)


# -- which operations write, and policies that declare their operations ----------------


def test_reads_and_writes_partition_the_operations() -> None:
    """Every operation, including any added later, is classified: a write-only policy cannot miss one."""
    assert READ_OPERATIONS | WRITE_OPERATIONS == set(Operation)
    assert not READ_OPERATIONS & WRITE_OPERATIONS
    assert {op for op in Operation if op.is_write} == WRITE_OPERATIONS
    assert Operation.CLEAR.is_write and Operation.DELETE_MANY.is_write and not Operation.SCAN.is_write


def test_a_policy_is_asked_only_about_the_operations_it_declares() -> None:
    WritesOnlyKeyPolicy.asked.clear()
    with _manager(["manifest", "frozen-writes"]) as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        store.set("frozen", b"1")
        with pytest.raises(PermissionDenied, match="'frozen-writes' denied it"):
            store.set("frozen/x", b"1")
        with pytest.raises(PermissionDenied):
            store.set_many({"ok": b"1", "frozen/y": b"2"})
        with pytest.raises(PermissionDenied):
            store.delete_many(["frozen/x"])
        writes = list(WritesOnlyKeyPolicy.asked)
        store.get("frozen")
        store.has("frozen")
        assert store.keys() == ["frozen"]  # nothing hidden: the policy does not vote on keys()
        store.get_many(["frozen", "x"])
        store.scan()
        store.range("a", "z")
        store.size()
        assert WritesOnlyKeyPolicy.asked == writes  # no read asked it
        assert set(writes) == {Operation.SET, Operation.SET_MANY, Operation.DELETE_MANY}
        store.clear()
        assert WritesOnlyKeyPolicy.asked[-1] is Operation.CLEAR


def test_undeclared_reads_take_the_fast_path() -> None:
    with _manager(["manifest", "frozen-writes"]) as manager:
        state = manager.component(Manifest("app", Access.READ_WRITE))._state
        assert {"get", "has", "keys", "get-many", "scan", "range", "size"} <= state.fast_allowed
        assert not {"set", "delete", "set-many", "delete-many"} & state.fast_allowed
        assert set(state.key_policies) == {op.value for op in WRITE_OPERATIONS}


# -- options -------------------------------------------------------------------------


def test_policy_options_from_settings_reach_the_policy() -> None:
    with _manager(["manifest", "prefix"], plugin_options={"prefix": {"prefix": "priv/"}}) as manager:
        store = manager.component(Manifest("app", Access.READ_WRITE))
        store.set("secret/ok", b"1")
        with pytest.raises(PermissionDenied, match="'prefix'"):
            store.set("priv/x", b"1")


def test_policy_options_default_when_no_table() -> None:
    with _manager(["manifest", "prefix"]) as manager:
        with pytest.raises(PermissionDenied):
            manager.component(Manifest("app", Access.READ_WRITE)).set("secret/x", b"1")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"prefix": {"max_depth": 0}}, "plugin_options.prefix.max_depth=0"),
        ({"prefix": {"prefx": "a/"}}, "plugin_options.prefix.prefx: the permission policy 'prefix' has no option"),
        ({"prefix": {"prefix": ["a"]}}, "plugin_options.prefix.prefix (a list): "),
        ({"allow-all": {"x": 1}}, "the permission policy 'allow-all' takes no options"),
        ({"nosuch": {"x": 1}}, "plugin_options names 'nosuch'"),
    ],
)
def test_invalid_plugin_options_name_the_plugin_and_field(options: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        _manager(["manifest", "prefix", "allow-all"], plugin_options=options)
    assert expected in str(info.value)
    assert info.value.code == "invalid-config"


def test_plugin_options_from_the_environment_and_the_settings_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("AIRSSYS_STORAGE_PLUGIN_OPTIONS", '{"prefix": {"prefix": "env/"}}')
    assert StorageSettings().plugin_options == {"prefix": {"prefix": "env/"}}
    monkeypatch.delenv("AIRSSYS_STORAGE_PLUGIN_OPTIONS")
    config = tmp_path / "settings.toml"
    config.write_text('[plugin_options.prefix]\nprefix = "file/"\n')
    monkeypatch.setenv("AIRSSYS_STORAGE_CONFIG_FILE", str(config))
    assert StorageSettings().plugin_options == {"prefix": {"prefix": "file/"}}
