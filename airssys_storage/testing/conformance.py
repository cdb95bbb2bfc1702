"""Conformance tests every backend must pass; see :mod:`airssys_storage.testing`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from airssys_storage import (
    Access,
    ComponentStorage,
    InvalidArgument,
    InvalidKey,
    Manifest,
    PermissionDenied,
    QuotaExceeded,
    QuotaStrategy,
    StorageError,
    StorageManager,
    StorageSettings,
    TooManyKeys,
    Usage,
    ValueTooLarge,
)
from airssys_storage.policies import FixedQuota, ManifestPolicy

from .atomics import AtomicsConformance
from .batches import AtomicBatchConformance
from .changes import ChangeFeedConformance
from .clock import FakeClock
from .expiry import ExpiryConformance
from .feedproof import FeedProofConformance
from .fork import ForkConformance
from .model import _model_counter, model_component_ids, model_machine, utf8_sorted
from .processes import run_spawned, worker_manager
from .verify import VerifyConformance

MiB = 1024 * 1024

# Component ids that break naive "<id>:<key>" or LIKE-based designs.
NEIGHBOUR_IDS = ("a", "ab", "a_b", "a-b", "a_", "b")

# Keys that break naive prefix matching, collations and character counting.
ADVERSARIAL_KEYS = (
    "b:c",
    "key",
    "key ",
    "KEY",
    "Key",
    "kéy",
    "ke_",
    "ke%",
    "ke\\",
    "k",
    "a:b:c",
    "%",
    "_",
    "\\",
    "😀",
    "ü",
    "u\u0308",  # "ü" decomposed: a different key
)

__all__ = ["BackendConformance", "model_component_ids", "run_quota_race"]


def total_size(data: dict[str, bytes]) -> int:
    return sum(len(k.encode()) + len(v) for k, v in data.items())


class BackendConformance(
    AtomicsConformance,
    AtomicBatchConformance,
    ExpiryConformance,
    VerifyConformance,
    ForkConformance,
    ChangeFeedConformance,
    FeedProofConformance,
):
    """Mix-in test class: subclass it and provide the ``storage_url`` fixture."""

    # Small query limits make "past the maximum" cheap to reach on every backend.
    max_keys_per_query = 50
    max_batch_ops = 20
    #: Examples and steps of the stateful model test (lower them only for a slow engine, and say so).
    model_examples = 200
    model_steps = 50

    # -- fixtures ------------------------------------------------------------

    @pytest.fixture
    def storage_url(self) -> str:
        raise NotImplementedError("subclasses of BackendConformance must provide the storage_url fixture")

    @pytest.fixture
    def backend_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def storage_settings(self, storage_url: str, backend_options: dict[str, Any]) -> StorageSettings:
        return StorageSettings(
            url=storage_url,
            backend_options=backend_options,
            max_keys_per_query=self.max_keys_per_query,
            max_batch_ops=self.max_batch_ops,
        )

    @pytest.fixture
    def clock(self) -> FakeClock:
        """The test's clock: every manager of a test reads time from it, and only the test moves it."""
        return FakeClock()

    @pytest.fixture
    def manager_factory(self, storage_settings: StorageSettings, clock: FakeClock) -> Callable[[], StorageManager]:
        """Opens a new manager on the store; override to pass a custom plugin registry (and pass ``clock=clock``)."""
        return lambda: StorageManager.from_settings(storage_settings, clock=clock)

    @pytest.fixture
    def damage_store(self) -> Callable[[str, dict[str, Any]], None] | None:
        """Damages the closed store at (url, options) before the repair test runs ``repair_url``; ``None``: none."""
        return None

    @pytest.fixture
    def manager(self, manager_factory: Callable[[], StorageManager]) -> Iterator[StorageManager]:
        manager = manager_factory()
        try:
            yield manager
        finally:
            manager.close()

    @pytest.fixture
    def store(self, manager: StorageManager) -> ComponentStorage:
        return manager.component(Manifest("comp", Access.ADMIN, 10 * MiB))

    @staticmethod
    def open(
        manager: StorageManager, component_id: str, access: str = "read-write", max_size: Any = None
    ) -> ComponentStorage:
        return manager.component(Manifest(component_id, Access(access), max_size))

    # -- the seed's operations -------------------------------------------------

    def test_set_get_has_delete(self, store: ComponentStorage) -> None:
        """Seed operations: get/has of a missing key, set, overwrite-free delete returning whether the key existed."""
        assert store.get("missing") is None
        assert store.has("missing") is False
        store.set("config", b"value")
        assert store.get("config") == b"value"
        assert store.has("config") is True
        assert store.delete("config") is True
        assert store.delete("config") is False
        assert store.get("config") is None
        assert store.size() == 0

    def test_values_are_binary_safe(self, store: ComponentStorage) -> None:
        """Values are opaque bytes: NUL, every byte value and trailing spaces round-trip unchanged."""
        values = [b"", b"\x00", bytes(range(256)), b"\xff" * 1000, b" trailing "]
        for index, value in enumerate(values):
            store.set(f"v{index}", value)
        assert [store.get(f"v{index}") for index in range(len(values))] == values

    def test_bytearray_and_memoryview_values(self, store: ComponentStorage) -> None:
        """Values may be given as bytearray or memoryview and always come back as bytes."""
        store.set("ba", bytearray(b"abc"))
        store.set("mv", memoryview(b"xyz"))
        assert store.get("ba") == b"abc"
        assert store.get("mv") == b"xyz"
        assert type(store.get("ba")) is bytes

    def test_non_bytes_value_is_rejected(self, store: ComponentStorage) -> None:
        """A non-bytes value is invalid-argument and writes nothing."""
        with pytest.raises(InvalidArgument):
            store.set("k", "text")  # type: ignore[arg-type, call-overload]
        assert store.size() == 0

    def test_size_is_key_bytes_plus_value_bytes(self, store: ComponentStorage) -> None:
        """Usage is the sum of UTF-8 key bytes plus value bytes, and the key count."""
        data = {"a": b"1", "é": b"22", "😀": b"", "key ": b"4444"}
        for key, value in data.items():
            store.set(key, value)
        assert store.size() == total_size(data)
        assert store.usage().keys == len(data)

    def test_overwrite_charges_new_minus_old(self, store: ComponentStorage) -> None:
        """Guard rule: an overwrite is charged new size minus old size."""
        store.set("k", b"x" * 100)
        assert store.size() == 101
        store.set("k", b"x" * 10)
        assert store.size() == 11
        store.set("k", b"x" * 50)
        assert store.size() == 51
        assert store.usage().keys == 1

    def test_delete_missing_charges_nothing(self, store: ComponentStorage) -> None:
        """Guard rule: deleting a missing key changes neither data nor usage."""
        store.set("k", b"v")
        assert store.delete("other") is False
        assert store.size() == 2

    def test_keys_sorted_by_utf8_bytes(self, store: ComponentStorage) -> None:
        """items/keys: results are ordered bytewise by the keys' UTF-8 bytes."""
        keys = ["b", "a", "B", "é", "😀", "z", "a b", "ab", "a\u00a0", "Z", "~", "\u00ff", "\uffef"]
        for key in keys:
            store.set(key, b"")
        assert store.keys() == utf8_sorted(keys)
        assert store.keys("") == utf8_sorted(keys)

    def test_prefix_is_literal_bytewise_and_case_sensitive(self, store: ComponentStorage) -> None:
        """Prefix queries are literal byte ranges (no LIKE wildcards, no collation, case-sensitive)."""
        for key in ADVERSARIAL_KEYS:
            store.set(key, key.encode())
        expected = {
            prefix: utf8_sorted(k for k in ADVERSARIAL_KEYS if k.encode().startswith(prefix.encode()))
            for prefix in ("ke", "ke_", "ke%", "ke\\", "KEY", "key", "key ", "k", "_", "%", "\\", "u", "b:")
        }
        for prefix, keys in expected.items():
            assert store.keys(prefix) == keys, prefix

    def test_adversarial_keys_are_distinct(self, store: ComponentStorage) -> None:
        """Keys are compared as bytes: case, accents, normalisation forms and wildcards are distinct keys."""
        for key in ADVERSARIAL_KEYS:
            store.set(key, key.encode())
        for key in ADVERSARIAL_KEYS:
            assert store.get(key) == key.encode(), key
        assert store.usage().keys == len(ADVERSARIAL_KEYS)
        assert store.size() == sum(2 * len(k.encode()) for k in ADVERSARIAL_KEYS)

    def test_clear_removes_everything_and_resets_usage(self, manager: StorageManager) -> None:
        """clear: deletes every key of one namespace and resets its counter, leaving neighbours alone."""
        admin = self.open(manager, "a", "admin")
        other = self.open(manager, "ab", "admin")
        admin.set_many({"x": b"1", "y": b"2"})
        other.set("x", b"keep")
        admin.clear()
        assert admin.keys() == []
        assert admin.size() == 0
        assert admin.usage().keys == 0
        assert other.get("x") == b"keep"
        admin.set("x", b"again")
        assert admin.size() == 6

    # -- isolation -------------------------------------------------------------

    def test_namespace_isolation_against_neighbours(self, manager: StorageManager) -> None:
        """Namespaces are kept apart in the physical layout: ids that share prefixes never see each other's keys."""
        stores = {cid: self.open(manager, cid) for cid in NEIGHBOUR_IDS}
        for cid, store in stores.items():
            store.set("b:c", cid.encode())
            store.set("c", cid.encode())
            store.set("_", cid.encode())
        for cid, store in stores.items():
            assert store.get("b:c") == cid.encode()
            assert store.get("c") == cid.encode()
            assert store.keys() == utf8_sorted(["b:c", "c", "_"])
            assert store.keys("b") == ["b:c"]
            assert store.size() == total_size({"b:c": cid.encode(), "c": cid.encode(), "_": cid.encode()})
        stores["a"].delete("c")
        assert stores["ab"].get("c") == b"ab"
        assert stores["a_b"].get("c") == b"a_b"

    def test_seed_collision_does_not_happen(self, manager: StorageManager) -> None:
        # With "<id>:<key>" strings, a's key "b:c" is ab's... no: a's "b:c" == "a:b:c"; component
        # "a:b" cannot exist (ids exclude ':'), so check the concrete neighbour "ab" and prefix scans.
        """No '<id>:<key>' concatenation: a key of one component never appears under another id."""
        a = self.open(manager, "a")
        ab = self.open(manager, "ab")
        ab.set("secret", b"ab")
        assert a.keys() == []
        assert a.keys("b") == []
        assert a.scan()[0] == []
        assert a.range("\x20", "\U0010ffff") == []
        assert a.get_many(["secret", "b:secret", "b"]) == [None, None, None]

    def test_namespaces_lists_components_with_data(self, manager: StorageManager) -> None:
        """namespaces(): exactly the namespaces holding at least one key, sorted."""
        for cid in ("x1", "x2"):
            self.open(manager, cid).set("k", b"v")
        self.open(manager, "x3")
        names = manager.backend.namespaces()
        assert "x1" in names and "x2" in names and "x3" not in names
        assert names == sorted(names)

    # -- validation ------------------------------------------------------------

    @pytest.mark.parametrize(
        "key",
        [
            "",
            "ab\ud800",
            "\udfff",
            "nul\x00",
            "new\nline",
            "tab\t",
            "del\x7f",
            "c1\x85",
            "é" * 128 + "a",
            "😀" * 65,
            "x" * 257,
        ],
        ids=[
            "empty",
            "lone-high-surrogate",
            "lone-low-surrogate",
            "nul",
            "newline",
            "tab",
            "del",
            "c1",
            "257-bytes-2byte",
            "260-bytes-emoji",
            "257-ascii",
        ],
    )
    def test_invalid_keys(self, store: ComponentStorage, key: str) -> None:
        """Key validation (core): empty, lone-surrogate, control-character and over-long keys are invalid-key."""
        for call in (
            lambda: store.get(key),
            lambda: store.set(key, b"v"),
            lambda: store.delete(key),
            lambda: store.has(key),
            lambda: store.set_many({key: b"v"}),
            lambda: store.get_many([key]),
            lambda: store.delete_many([key]),
        ):
            with pytest.raises(InvalidKey):
                call()
        if key:
            with pytest.raises(InvalidKey):
                store.keys(key)
        assert store.size() == 0

    @pytest.mark.parametrize("key", ["é" * 128, "😀" * 64, "x" * 256, "a" * 255 + " ", "\u00a0", "ünïcödé:%_\\"])
    def test_limit_keys_are_valid(self, store: ComponentStorage, key: str) -> None:
        """Keys of exactly max_key_bytes of UTF-8, and non-ASCII keys, are stored and listed intact."""
        assert len(key.encode()) <= 256
        store.set(key, b"v")
        assert store.get(key) == b"v"
        assert store.keys() == [key]
        assert store.size() == len(key.encode()) + 1

    def test_non_str_keys_are_invalid(self, store: ComponentStorage) -> None:
        """Keys are str: bytes, int and None are invalid-key."""
        for key in (b"bytes", 1, None):
            with pytest.raises(InvalidKey):
                store.get(key)  # type: ignore[arg-type]

    def test_value_size_limit(self, store: ComponentStorage) -> None:
        """max_value_bytes: a value at the limit is stored; one byte more is value-too-large and writes nothing."""
        store.set("max", b"x" * MiB)
        assert store.get("max") == b"x" * MiB
        with pytest.raises(ValueTooLarge):
            store.set("over", b"x" * (MiB + 1))
        with pytest.raises(ValueTooLarge):
            store.set_many({"ok": b"1", "over": b"x" * (MiB + 1)})
        assert store.keys() == ["max"]
        assert store.size() == 3 + MiB

    # -- quota -----------------------------------------------------------------

    def test_quota_exact_boundary(self, manager: StorageManager) -> None:
        """Guard rule: used + delta == limit is accepted, one byte more is quota-exceeded."""
        store = self.open(manager, "q", max_size=100)
        store.set("k", b"x" * 99)  # 1 + 99 = 100: exactly the quota
        assert store.size() == 100
        with pytest.raises(QuotaExceeded):
            store.set("j", b"")
        with pytest.raises(QuotaExceeded):
            store.set("k", b"x" * 100)
        assert store.get("k") == b"x" * 99
        assert store.keys() == ["k"]
        assert store.size() == 100

    def test_quota_refused_write_changes_nothing(self, manager: StorageManager) -> None:
        """Guard rule: a refused write changes nothing (data, bytes and key count)."""
        store = self.open(manager, "q", max_size=50)
        store.set("a", b"1" * 20)
        with pytest.raises(QuotaExceeded) as info:
            store.set("b", b"2" * 40)
        assert info.value.code == "quota-exceeded"
        assert store.get("b") is None
        assert store.size() == 21
        assert store.usage().keys == 1

    def test_shrinking_and_deleting_always_allowed_over_quota(self, manager: StorageManager) -> None:
        """Guard rule: writes that do not grow usage are accepted even above a lowered quota."""
        store = self.open(manager, "q", max_size=1000)
        store.set("big", b"x" * 900)
        store = self.open(manager, "q", max_size=10)  # manifest reload lowers the quota
        store.set("big", b"x" * 500)  # shrinks: allowed although still over
        assert store.size() == 503
        with pytest.raises(QuotaExceeded):
            store.set("new", b"")
        assert store.delete("big") is True
        assert store.size() == 0
        store.set("k", b"123456789")
        assert store.size() == 10

    def test_batch_is_charged_its_net_delta_once(self, manager: StorageManager) -> None:
        """Guard rule: a commit is charged its net delta once, atomically."""
        store = self.open(manager, "q", max_size=100)
        store.set("a", b"x" * 89)  # 90 bytes
        # Gross additions 20 bytes, but "a" shrinks by 80: net -60, allowed.
        store.set_many([("a", b"x" * 9), ("b", b"y" * 9), ("c", b"z" * 9)])
        assert store.size() == 30
        with pytest.raises(QuotaExceeded):
            store.set_many([("d", b"d" * 40), ("e", b"e" * 40)])  # net +82 > 70 left
        assert store.keys() == ["a", "b", "c"]
        assert store.size() == 30
        store.set_many([("d", b"d" * 34), ("e", b"e" * 34)])  # net +70: exactly full
        assert store.size() == 100

    def test_zero_quota_refuses_every_growth(self, manager: StorageManager) -> None:
        """Guard rule with limit 0: every growing write is refused, deletes are not."""
        zero = self.open(manager, "z", max_size=0)
        with pytest.raises(QuotaExceeded):
            zero.set("k", b"")
        assert zero.delete("k") is False

    def test_unlimited_quota_through_the_api(self, manager: StorageManager) -> None:
        """A strategy may return None (unlimited): every write path works past any manifest quota."""
        settings = manager.settings
        # A second manager on the same backend, with the built-in 'fixed' strategy and no limit.
        # It is not closed: closing it would close the shared backend.
        unlimited = StorageManager(
            settings, manager.backend, [ManifestPolicy(settings)], FixedQuota(settings), clock=manager.clock
        )
        store = unlimited.component(Manifest("unlimited-api", Access.ADMIN))
        assert store.quota is None
        for index in range(11):  # 11 MiB: past the 10 MiB default quota of read-write components
            store.set(f"big{index:02}", b"x" * MiB)
        store.set_many({"a": b"1", "b": b"2"})
        assert store.delete("big00") is True
        assert store.delete_many(["big01", "a", "missing"]) == 2
        assert store.usage() == Usage(9 * (5 + MiB) + 2, 10)
        store.clear()
        assert store.usage() == Usage()

    def test_quota_error_names_what_set_the_limit(self, manager: StorageManager) -> None:
        """A refused write names the source of its limit: the manifest's max-size, fixed_quota_bytes, a strategy."""
        big = b"x" * 200
        store = self.open(manager, "q-manifest", max_size=100)
        named_max_size = r"permissions\.storage\.max-size in the manifest of 'q-manifest'"
        with pytest.raises(QuotaExceeded, match=named_max_size):
            store.set("k", big)
        with pytest.raises(QuotaExceeded, match=named_max_size):
            store.set_many([("k", big), ("l", b"")])
        fixed = manager.settings.model_copy(update={"quota_strategy": "fixed", "fixed_quota_bytes": 100})

        class TenBytes(QuotaStrategy):
            name = "ten-bytes"

            def limit_for(self, manifest: Manifest) -> int | None:
                return 10

        # Managers sharing this backend with other strategies (never closed: the backend is the fixture's).
        for strategy, named in ((FixedQuota(fixed), "fixed_quota_bytes setting"), (TenBytes(fixed), "'ten-bytes'")):
            other = StorageManager(fixed, manager.backend, [ManifestPolicy(fixed)], strategy, clock=manager.clock)
            handle = other.component(Manifest(f"q-{strategy.name}", Access.READ_WRITE))
            with pytest.raises(QuotaExceeded, match=named) as refused:
                handle.set("k", big)
            assert "max-size" not in refused.value.message
            with pytest.raises(QuotaExceeded, match=named):
                handle.set_many([("k", big), ("l", b"")])
            assert handle.keys() == []

    def test_readonly_component_cannot_write(self, manager: StorageManager) -> None:
        """Permissions (core): read-only may read but not write; earlier handles follow a manifest reload."""
        writer = self.open(manager, "ro")
        writer.set("k", b"v")
        reader = self.open(manager, "ro", "read-only")
        assert reader.get("k") == b"v"
        with pytest.raises(PermissionDenied):
            reader.set("k", b"w")
        with pytest.raises(PermissionDenied):
            writer.delete("k")  # the earlier handle follows the reload
        assert reader.get("k") == b"v"

    def test_manifest_reload_changes_quota_for_old_handles(self, manager: StorageManager) -> None:
        """The limit passed to the backend follows manifest reloads, for handles given out earlier too."""
        old = self.open(manager, "r", max_size=10)
        with pytest.raises(QuotaExceeded):
            old.set("k", b"x" * 20)
        self.open(manager, "r", max_size=100)
        old.set("k", b"x" * 20)
        assert old.quota == 100
        assert old.size() == 21

    def test_permission_checked_before_validation(self, manager: StorageManager) -> None:
        """Permissions are checked before key validation: a denied call never reaches the backend."""
        none = self.open(manager, "n", "none")
        with pytest.raises(PermissionDenied):
            none.get("")
        with pytest.raises(PermissionDenied):
            none.set("x" * 1000, b"v")
        with pytest.raises(PermissionDenied):
            none.size()

    # -- batches -----------------------------------------------------------------

    def test_batches(self, store: ComponentStorage) -> None:
        """commit: batch puts and deletes of distinct keys; the returned count is how many keys existed."""
        store.set_many({"a": b"1", "b": b"2"})
        store.set_many([("c", b"3"), ("c", b"33")])  # last wins
        assert store.get_many(["c", "x", "a"]) == [b"33", None, b"1"]
        assert store.delete_many(["a", "x", "a"]) == 1
        assert store.keys() == ["b", "c"]
        assert store.size() == 2 + 3
        store.set_many({})
        assert store.delete_many([]) == 0
        assert store.get_many([]) == []

    def test_batch_with_one_bad_entry_writes_nothing(self, store: ComponentStorage) -> None:
        """Atomic batches: one invalid entry and nothing of the batch is written."""
        store.set("keep", b"old")
        with pytest.raises(InvalidKey):
            store.set_many([("keep", b"new"), ("fine", b"v"), ("", b"bad")])
        with pytest.raises(InvalidArgument):
            store.set_many([("keep", b"new"), ("fine", "not-bytes")])  # type: ignore[list-item]
        with pytest.raises(InvalidKey):
            store.delete_many(["keep", "bad\x00"])
        assert store.keys() == ["keep"]
        assert store.get("keep") == b"old"
        assert store.size() == 7

    def test_batch_size_limit(self, store: ComponentStorage) -> None:
        """max_batch_ops: a batch past the maximum is too-many-keys and writes nothing."""
        limit = self.max_batch_ops
        store.set_many({f"k{i:03}": b"" for i in range(limit)})
        with pytest.raises(TooManyKeys):
            store.set_many({f"x{i:03}": b"" for i in range(limit + 1)})
        with pytest.raises(TooManyKeys):
            store.get_many([f"k{i:03}" for i in range(limit + 1)])
        with pytest.raises(TooManyKeys):
            store.delete_many([f"k{i:03}" for i in range(limit + 1)])
        assert store.usage().keys == limit

    def test_get_many_never_sees_half_a_batch(self, store: ComponentStorage) -> None:
        """Thread safety: get_many is atomic, it never sees half of a concurrent commit."""
        import sys
        import threading

        keys = [f"k{i:02}" for i in range(self.max_batch_ops)]
        store.set_many(dict.fromkeys(keys, b"0"))
        stop = threading.Event()

        def writer() -> None:
            turn = 0
            while not stop.is_set():
                turn ^= 1
                store.set_many(dict.fromkeys(keys, b"%d" % turn))

        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads often, so a non-atomic read gets caught
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            torn = 0
            for _ in range(2000):
                values = store.get_many(keys)
                torn += len(set(values)) != 1
        finally:
            stop.set()
            thread.join()
            sys.setswitchinterval(interval)
        assert torn == 0

    def test_single_string_is_not_a_key_list(self, store: ComponentStorage) -> None:
        """Batch calls take a list of keys, not a single string."""
        with pytest.raises(InvalidArgument):
            store.get_many("abc")
        with pytest.raises(InvalidArgument):
            store.delete_many("abc")

    # -- queries -----------------------------------------------------------------

    def test_keys_past_the_maximum_fail_and_point_to_scan(self, store: ComponentStorage) -> None:
        """max_keys_per_query: keys() fails past the maximum (never truncates) and points to scan."""
        limit = self.max_keys_per_query
        for start in range(0, limit, self.max_batch_ops):
            store.set_many({f"k{i:04}": b"" for i in range(start, min(limit, start + self.max_batch_ops))})
        assert len(store.keys()) == limit
        store.set("k9999", b"")
        with pytest.raises(TooManyKeys) as info:
            store.keys()
        assert "scan" in str(info.value)
        assert store.keys("k999") == ["k9999"]

    def test_range_is_half_open_and_bytewise(self, store: ComponentStorage) -> None:
        """items: start <= key < end, bytewise, at most limit pairs."""
        for key in ("a", "b", "ba", "c", "d", "é"):
            store.set(key, key.encode())
        assert [k for k, _ in store.range("b", "d")] == ["b", "ba", "c"]
        assert store.range("b", "c") == [("b", b"b"), ("ba", b"ba")]
        assert [k for k, _ in store.range("a", "\U0010ffff", limit=2)] == ["a", "b"]
        assert [k for k, _ in store.range("d", "\U0010ffff")] == ["d", "é"]
        assert store.range("c", "b") == []
        assert store.range("c", "c") == []
        with pytest.raises(InvalidArgument):
            store.range("a", "b", limit=0)

    def test_range_past_the_maximum_needs_a_limit(self, store: ComponentStorage) -> None:
        """range without a limit fails past max_keys_per_query; with a limit it returns that many."""
        limit = self.max_keys_per_query
        for start in range(0, limit + 1, self.max_batch_ops):
            store.set_many({f"k{i:04}": b"" for i in range(start, min(limit + 1, start + self.max_batch_ops))})
        with pytest.raises(TooManyKeys):
            store.range("k", "l")
        assert len(store.range("k", "l", limit=limit)) == limit

    def test_scan_pages_through_everything_once(self, store: ComponentStorage) -> None:
        """scan: pages through every key with the prefix exactly once, in order."""
        keys = [f"p:{i:03}" for i in range(47)] + ["p", "q:1", "o:9"]
        for start in range(0, len(keys), self.max_batch_ops):
            store.set_many({k: k.encode() for k in keys[start : start + self.max_batch_ops]})
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            items, cursor = store.scan("p:", cursor, limit=10)
            seen.extend(k for k, _ in items)
            assert all(v == k.encode() for k, v in items)
            pages += 1
            if cursor is None:
                break
        assert seen == [f"p:{i:03}" for i in range(47)]
        assert pages == 5
        everything, end = store.scan(limit=self.max_keys_per_query)
        assert end is None
        assert [k for k, _ in everything] == utf8_sorted(keys)

    def test_scan_exact_page_ends_without_empty_page(self, store: ComponentStorage) -> None:
        """scan: a page that ends exactly at the last key returns no cursor."""
        store.set_many({"a": b"", "b": b""})
        items, cursor = store.scan(limit=2)
        assert [k for k, _ in items] == ["a", "b"]
        assert cursor is None

    def test_scan_is_stable_under_concurrent_writes(self, store: ComponentStorage) -> None:
        """scan: keys present for the whole scan appear exactly once despite writes in between."""
        store.set_many({f"k{i:02}": b"" for i in range(0, 20, 2)})  # k00 k02 … k18
        items, cursor = store.scan(limit=3)
        seen = [k for k, _ in items]
        store.set("k01", b"")  # before the cursor: not required, not duplicated
        store.set("k99", b"")  # after the cursor: may appear
        store.delete("k10")  # deleted during the scan: may or may not appear
        while cursor is not None:
            items, cursor = store.scan(cursor=cursor, limit=3)
            seen.extend(k for k, _ in items)
        assert len(seen) == len(set(seen))
        always_present = {f"k{i:02}" for i in range(0, 20, 2)} - {"k10"}
        assert always_present <= set(seen)

    def test_scan_rejects_foreign_or_garbage_cursors(self, store: ComponentStorage) -> None:
        """scan: foreign or garbage cursors and bad limits are invalid-argument."""
        store.set_many({"a:1": b"", "a:2": b"", "b:1": b""})
        _, cursor = store.scan("a:", limit=1)
        assert cursor is not None
        with pytest.raises(InvalidArgument):
            store.scan("b:", cursor, limit=1)
        for garbage in ("", "!!!", "AAAA", "not a cursor"):
            with pytest.raises(InvalidArgument):
                store.scan("a:", garbage, limit=1)
        for bad_limit in (0, -1, self.max_keys_per_query + 1, True, 1.5):
            with pytest.raises(InvalidArgument):
                store.scan(limit=bad_limit)  # type: ignore[arg-type]

    # -- lifecycle -----------------------------------------------------------------

    def test_data_survives_reopen(self, manager_factory: Callable[[], StorageManager]) -> None:
        """Capability persistent: data and usage survive closing and reopening the same URL."""
        with manager_factory() as first:
            if not first.backend.capabilities.persistent:
                pytest.skip(f"backend {first.backend.name!r} is not persistent (capabilities.persistent=False)")
            store = self.open(first, "persist", max_size=1000)
            store.set_many({"a": b"1", "b": b"22"})
            store.delete("a")
        with manager_factory() as second:
            store = self.open(second, "persist", max_size=1000)
            assert store.keys() == ["b"]
            assert store.get("b") == b"22"
            assert store.size() == 3
            assert store.usage().keys == 1

    def test_multi_process_quota_race(self, manager: StorageManager, storage_settings: StorageSettings) -> None:
        """Capability multi_process: 8 processes racing for one exact quota never overshoot it, counters stay exact."""
        if not manager.backend.capabilities.multi_process:
            pytest.skip(f"backend {manager.backend.name!r} is single-process (capabilities.multi_process=False)")
        report = run_quota_race(storage_settings, f"race-{next(_model_counter)}")
        assert report["untyped_errors"] == []
        assert report["overshoot"] == 0
        assert report["counter"] == report["recounted"]
        assert report["stored_records"] == report["acknowledged_records"]
        assert report["refused"] > 0, "the race must press against the quota"
        assert report["counter"].bytes == report["limit"], "a refusal happened with room left"

    def test_repair_keeps_data_and_recounts_usage(
        self,
        manager_factory: Callable[[], StorageManager],
        storage_settings: StorageSettings,
        damage_store: Callable[[str, dict[str, Any]], None] | None,
    ) -> None:
        """Capability repair: repair_url on a closed (optionally damaged) store keeps the data, exact counters."""
        with manager_factory() as first:
            backend_cls = type(first.backend)
            if not first.backend.capabilities.repair:
                pytest.skip(f"backend {first.backend.name!r} cannot repair (capabilities.repair=False)")
            store = self.open(first, "repaired", max_size=10_000)
            store.set_many({f"k{i:02}": b"v" * i for i in range(self.max_batch_ops)})
            store.delete("k03")
            expected = {key: store.get(key) for key in store.keys()}
        url, options = storage_settings.resolved_url, dict(storage_settings.backend_options)
        if damage_store is not None:
            damage_store(url, options)
        report = backend_cls.repair_url(url, options)
        json.dumps(report)  # a report for operators: JSON-serialisable
        with manager_factory() as second:
            store = self.open(second, "repaired", max_size=10_000)
            assert {key: store.get(key) for key in store.keys()} == expected
            assert store.usage() == Usage(total_size(expected), len(expected))  # type: ignore[arg-type]

    def test_every_error_is_a_storage_error_with_a_code(self, store: ComponentStorage) -> None:
        """Errors: every failure is a StorageError with a stable code."""
        calls: list[Callable[[], object]] = [
            lambda: store.set("", b""),
            lambda: store.set("k", b"x" * (MiB + 1)),
            lambda: store.scan(cursor="zz"),
            lambda: store.clear() if store.manifest.access is not Access.ADMIN else store.set(None, b""),  # type: ignore[arg-type, call-overload]
        ]
        for call in calls:
            with pytest.raises(StorageError) as info:
                call()
            assert info.value.code in {"invalid-key", "value-too-large", "invalid-argument", "permission-denied"}

    # -- model test --------------------------------------------------------------

    def test_stateful_model_against_a_dict(self, manager: StorageManager, clock: FakeClock) -> None:
        """The whole contract at once: random operations (versions, expiry, CAS, counters, ranges) match a model."""
        run_state_machine_as_test(  # type: ignore[no-untyped-call]
            model_machine(manager, clock, self.max_keys_per_query),
            settings=settings(
                max_examples=self.model_examples,
                stateful_step_count=self.model_steps,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )


# -- the multi-process quota race (children are spawned: they import this module) ------

RACE_PROCESSES = 8
_RACE_VALUE = 26  # bytes; keys "w<worker>-<nnn>" are 6 bytes: 32 bytes per record
_RACE_RECORD = 6 + _RACE_VALUE
_RACE_LIMIT = 50 * _RACE_RECORD  # room for exactly 50 records
_RACE_ATTEMPTS = 20  # per process: 160+ records for 50 places


def run_quota_race(settings: StorageSettings, component: str) -> dict[str, Any]:
    """8 spawned processes write fixed-size records into one component whose quota fits exactly 50.

    Each process writes pairs (``set_many``) first, then single records
    (``set``), so the store must end exactly full. Returns the observed
    counts: acknowledged and stored records, refusals, the counter and a
    recount from the data, the overshoot, and any untyped errors.
    """
    outcomes = run_spawned(settings, _race_worker, [(component, worker) for worker in range(RACE_PROCESSES)])
    with StorageManager.from_settings(settings) as manager:
        pairs = manager.backend.items(component, b"", None, 100_000)
        counter = manager.backend.usage(component)
    recounted = Usage(sum(len(key) + len(value) for key, value in pairs), len(pairs))
    return {
        "limit": _RACE_LIMIT,
        "acknowledged_records": sum(o["acknowledged"] for o in outcomes),
        "stored_records": len(pairs),
        "refused": sum(o["refused"] for o in outcomes),
        "untyped_errors": [error for o in outcomes for error in o["untyped"]],
        "counter": counter,
        "recounted": recounted,
        "overshoot": max(0, recounted.bytes - _RACE_LIMIT, max(o["largest_seen"] for o in outcomes) - _RACE_LIMIT),
    }


def _race_worker(payload: dict[str, Any], component: str, worker: int, barrier: Any, results: Any) -> None:
    acknowledged = refused = largest = 0
    untyped: list[str] = []
    manager = worker_manager(payload, barrier, results)
    if manager is None:
        return
    with manager:
        store = manager.component(Manifest(component, Access.READ_WRITE, _RACE_LIMIT))
        for attempt in range(_RACE_ATTEMPTS):
            value = bytes([65 + worker]) * _RACE_VALUE
            try:
                if attempt < _RACE_ATTEMPTS // 2:
                    keys = [f"w{worker}-{2 * attempt:03}", f"w{worker}-{2 * attempt + 1:03}"]
                    store.set_many(dict.fromkeys(keys, value))
                    acknowledged += 2
                else:
                    store.set(f"w{worker}-{100 + attempt:03}", value)
                    acknowledged += 1
            except QuotaExceeded:
                refused += 1
            except Exception as exc:
                untyped.append(f"{type(exc).__name__}: {exc}")
            largest = max(largest, store.usage().bytes)
    results.put({"acknowledged": acknowledged, "refused": refused, "largest_seen": largest, "untyped": untyped})
