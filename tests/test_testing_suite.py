"""The shipped conformance suite itself: its dependencies, its docstrings, and that it catches what it claims."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from airssys_storage_memory import MemoryBackend
from hypothesis import Phase, settings

import airssys_storage.testing.conformance as conformance
from airssys_storage import (
    Access,
    Manifest,
    PluginRegistry,
    StorageBackend,
    StorageError,
    StorageManager,
    StorageSettings,
    hookimpl,
)
from airssys_storage.planner import Plan, SpaceState, Write, WriteKind
from airssys_storage.testing import BackendConformance, FakeClock


@pytest.mark.parametrize("missing", ["pytest", "hypothesis"])
def test_missing_test_dependencies_name_the_extra(missing: str) -> None:
    code = f"import sys; sys.modules[{missing!r}] = None; from airssys_storage.testing import BackendConformance"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert f"({missing} is missing)" in last and "pip install 'airssys-storage[testing]'" in last


def test_fake_clock_needs_no_test_dependencies() -> None:
    """FakeClock is for any program's tests: importing it must not need pytest or hypothesis."""
    code = (
        "import sys; sys.modules['pytest'] = sys.modules['hypothesis'] = None\n"
        "from airssys_storage.testing import FakeClock\n"
        "clock = FakeClock(1000); clock.advance(1.5); print(clock())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2500"


def test_the_testing_extra_lists_what_the_suite_imports() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[1]
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["testing"]
    names = {requirement.split(">")[0].split("=")[0] for requirement in extra}
    imported: set[str] = set()
    for path in (root / "airssys_storage" / "testing").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"airssys_storage"}
    assert third_party == names == {"pytest", "hypothesis"}


def test_every_conformance_test_names_its_contract_clause() -> None:
    tests = [name for name in dir(BackendConformance) if name.startswith("test_")]
    assert len(tests) > 40
    for name in tests:
        doc = getattr(BackendConformance, name).__doc__
        assert doc and "\n" not in doc.strip(), f"{name} needs a one-line docstring naming its contract clause"


# -- mutants: backends that break one clause each; the suite must catch every one -----------


class NoUnlimited(MemoryBackend):
    """A backend that breaks on every unlimited write (issue 9 §6)."""

    name = "no-unlimited"
    url_schemes = ("no-unlimited",)
    put_one = StorageBackend.put_one  # through apply, like a backend without hot paths
    delete_one = StorageBackend.delete_one

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        if limit is None:
            raise TypeError("'>' not supported between instances of 'int' and 'NoneType'")
        return super().apply(namespace, writes, limit)


class HotPathIgnoresQuota(MemoryBackend):
    """A specialised put_one that forgets the limit: it differs from apply."""

    name = "hot-path-ignores-quota"
    url_schemes = ("hot-path-ignores-quota",)

    def put_one(self, namespace: str, key: bytes, value: bytes, limit: int | None) -> int:
        return super().put_one(namespace, key, value, None)


class SwapIgnoresVersion(MemoryBackend):
    """A specialised compare_and_swap_one that forgets its condition: it differs from apply."""

    name = "swap-ignores-version"
    url_schemes = ("swap-ignores-version",)

    def compare_and_swap_one(self, namespace: str, key: bytes, value: bytes, version: int, limit: int | None) -> int:
        return self.put_one(namespace, key, value, limit)


class IncrementIgnoresQuota(MemoryBackend):
    """A specialised increment_one that forgets the limit: it differs from apply."""

    name = "increment-ignores-quota"
    url_schemes = ("increment-ignores-quota",)

    def increment_one(self, namespace: str, key: bytes, delta: int, limit: int | None) -> int:
        return super().increment_one(namespace, key, delta, None)


class LateExpiry(MemoryBackend):
    """Reads and writes see time one millisecond late: keys live past their deadline."""

    name = "late-expiry"
    url_schemes = ("late-expiry",)

    @property  # type: ignore[override]
    def clock(self) -> Callable[[], int]:
        return lambda: self._given_clock() - 1

    @clock.setter
    def clock(self, clock: Callable[[], int]) -> None:
        self._given_clock = clock


class ForgetsOpIds(MemoryBackend):
    """Drops operation ids: a retried increment counts twice."""

    name = "forgets-op-ids"
    url_schemes = ("forgets-op-ids",)

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        return super().apply(namespace, [write._replace(op_id=None) for write in writes], limit)


class RacyIncrement(MemoryBackend):
    """Increments by read, then write, outside the atomic section."""

    name = "racy-increment"
    url_schemes = ("racy-increment",)

    def apply(self, namespace: str, writes: Sequence[Write], limit: int | None) -> Plan:
        if len(writes) != 1 or writes[0].kind is not WriteKind.INCREMENT:
            return super().apply(namespace, writes, limit)
        key, delta = writes[0].key, writes[0].delta
        number = int(self.get(namespace, key) or b"0") + delta
        time.sleep(0)  # let another thread in between the read and the write
        plan = super().apply(namespace, (Write(key, WriteKind.PUT, b"%d" % number),), limit)
        return plan._replace(results=[number])


class TornRangeDelete(MemoryBackend):
    """Deletes a range key by key, each in its own step: a concurrent writer lands in between."""

    name = "torn-range-delete"
    url_schemes = ("torn-range-delete",)

    def delete_range(
        self, namespace: str, start: bytes, end: bytes | None, *, expired_only: bool = False, limit: int | None = None
    ) -> Plan:
        if expired_only:
            return super().delete_range(namespace, start, end, expired_only=True, limit=limit)
        results = []
        for key in self.keys(namespace, start, end, 1_000_000):
            time.sleep(0)
            results.append(int(self.delete_one(namespace, key)))
        return Plan([], [], SpaceState(), False, results, [True] * len(results), [], [])


class ForgetsFloorOnClear(MemoryBackend):
    """Resets the version floor on clear: a key re-created after clear may get an old version again."""

    name = "forgets-floor"
    url_schemes = ("forgets-floor",)

    def clear(self, namespace: str) -> None:
        super().clear(namespace)
        self._spaces[namespace].floor = 0


def _run_suite_test(backend: type[StorageBackend], test: str, **arguments: Any) -> None:
    """Run the conformance test *test* against *backend*, giving it the fixtures it asks for."""

    class Plugin:
        @staticmethod
        @hookimpl
        def register_backends() -> list[type[StorageBackend]]:
            return [backend]

    registry = PluginRegistry.load(plugins={backend.name: Plugin})
    clock = FakeClock()
    # A mutant fails at its first falsifying example: no shrinking, one report (the model test would
    # otherwise spend minutes shrinking several distinct failures).
    previous = settings.get_current_profile_name()
    settings.register_profile(
        "conformance-mutants",
        parent=settings.get_profile(previous),
        phases=[Phase.explicit, Phase.generate],
        report_multiple_bugs=False,
        database=None,
    )
    settings.load_profile("conformance-mutants")
    try:
        _run_with_fixtures(registry, backend, clock, test, arguments)
    finally:
        settings.load_profile(previous)


def _run_with_fixtures(
    registry: PluginRegistry, backend: type[StorageBackend], clock: FakeClock, test: str, arguments: dict[str, Any]
) -> None:
    """Open a manager on *backend* and call the suite's method *test* with the fixtures it names."""
    options = StorageSettings(url=f"{backend.url_schemes[0]}://", max_keys_per_query=50, max_batch_ops=20)
    with StorageManager.from_settings(options, registry=registry, clock=clock) as manager:
        method = getattr(BackendConformance(), test)
        fixtures = {
            "manager": manager,
            "clock": clock,
            "store": manager.component(Manifest("comp", Access.ADMIN, 10 * 1024 * 1024)),
        }
        wanted = [name for name in inspect.signature(method).parameters if name not in arguments]
        method(**{name: fixtures[name] for name in wanted}, **arguments)


@pytest.mark.parametrize(
    "test",
    [
        "test_unlimited_quota_on_every_backend_write_path",
        "test_unlimited_quota_through_the_api",
        "test_unlimited_quota_for_the_new_operations",
    ],
)
def test_the_suite_fails_a_backend_that_breaks_on_unlimited_writes(test: str) -> None:
    with pytest.raises(Exception, match="NoneType"):
        _run_suite_test(NoUnlimited, test)


@pytest.mark.parametrize(
    ("backend", "test", "arguments"),
    [
        (HotPathIgnoresQuota, "test_put_one_and_delete_one_equal_apply", {}),
        (SwapIgnoresVersion, "test_put_one_and_delete_one_equal_apply", {}),
        (IncrementIgnoresQuota, "test_put_one_and_delete_one_equal_apply", {}),
        (LateExpiry, "test_expired_key_is_invisible_in_every_read_path", {}),
        (LateExpiry, "test_stateful_model_against_a_dict", {}),
        (ForgetsOpIds, "test_op_id_replay_returns_the_first_result_and_applies_nothing", {}),
        (ForgetsOpIds, "test_stateful_model_against_a_dict", {}),
        (RacyIncrement, "test_threads_incrementing_count_exactly", {}),
        (ForgetsFloorOnClear, "test_versions_are_not_reused_after_clear", {}),
        (ForgetsFloorOnClear, "test_stateful_model_against_a_dict", {}),
        (TornRangeDelete, "test_range_delete_is_atomic_under_a_concurrent_writer", {"how": "delete_prefix"}),
        (TornRangeDelete, "test_range_delete_is_atomic_under_a_concurrent_writer", {"how": "delete_range"}),
    ],
    ids=lambda value: str(getattr(value, "name", value)),
)
def test_the_suite_catches_a_broken_backend(
    backend: type[StorageBackend], test: str, arguments: dict[str, Any]
) -> None:
    # A test fails by an assertion, or by an error the backend raised where the contract wants a result.
    with pytest.raises((AssertionError, StorageError)):
        _run_suite_test(backend, test, **arguments)


@pytest.mark.parametrize(
    "test",
    [
        "test_put_one_and_delete_one_equal_apply",
        "test_expired_key_is_invisible_in_every_read_path",
        "test_op_id_replay_returns_the_first_result_and_applies_nothing",
        "test_threads_incrementing_count_exactly",
        "test_unlimited_quota_for_the_new_operations",
        "test_stateful_model_against_a_dict",
        "test_threads_racing_compare_and_swap_have_one_winner_per_round",
    ],
)
def test_the_mutants_harness_passes_a_sound_backend(test: str) -> None:
    _run_suite_test(MemoryBackend, test)


def test_the_race_uses_records_that_fill_the_quota_exactly() -> None:
    key = f"w{conformance.RACE_PROCESSES - 1}-{119:03}"
    assert len(key) + conformance._RACE_VALUE == conformance._RACE_RECORD
    assert conformance._RACE_LIMIT % conformance._RACE_RECORD == 0
