"""The permission matrix: 4 access levels x every operation, and the veto rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from airssys_storage import (
    Access,
    ComponentStorage,
    Manifest,
    Operation,
    PermissionDenied,
    PermissionPolicy,
    PluginRegistry,
    StorageManager,
    StorageSettings,
    hookimpl,
)
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
}

SEED_TABLE = {
    Access.NONE: set(),
    Access.READ_ONLY: {"get", "has", "keys", "size", "get-many", "scan", "range"},
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


class _PolicyPlugin:
    @staticmethod
    @hookimpl
    def register_permission_policies() -> list[type[PermissionPolicy]]:
        return [KeyPrefixPolicy, AllowAllPolicy, DenyClearPolicy, AbstainPolicy]


def _manager(policies: list[str]) -> StorageManager:
    import importlib.metadata
    import sys
    import types

    module = types.ModuleType("airssys_test_policies")
    module.register_permission_policies = _PolicyPlugin.register_permission_policies  # type: ignore[attr-defined]
    sys.modules["airssys_test_policies"] = module
    memory = [ep for ep in importlib.metadata.entry_points(group="airssys_storage") if ep.name == "memory"]
    extra = importlib.metadata.EntryPoint("test-policies", "airssys_test_policies", "airssys_storage")
    registry = PluginRegistry.load(entry_points=[*memory, extra])
    return StorageManager.from_settings(StorageSettings(url="memory://", policies=policies), registry=registry)


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
        admin.commit("app", [(b"public/a", b"1"), (b"secret/x", b"hidden")], None)  # written behind the policy
        store = manager.component(Manifest("app", Access.ADMIN))
        assert store.keys() == ["public/a"]
        assert store.range("a", "z") == [("public/a", b"1")]
        assert store.scan()[0] == [("public/a", b"1")]
        items, cursor = store.scan(limit=1)
        assert items == [("public/a", b"1")] and cursor is not None
        assert store.scan(cursor=cursor, limit=1) == ([], None)
