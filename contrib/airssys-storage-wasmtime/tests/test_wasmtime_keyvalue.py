"""wasi:keyvalue@0.2.0-draft2 and Spin's key-value: guests built only against their standard WIT."""

from __future__ import annotations

from pathlib import Path

import pytest
from airssys_storage_wasmtime import Guest, Host
from airssys_storage_wasmtime._interfaces import KEYVALUE_FUNCTIONS, SPIN_FUNCTIONS
from airssys_storage_wasmtime._keyvalue import RESERVED, bucket_prefix, hide_bucket_prefixes
from test_wasmtime_cli import core_cli
from wasmtime_helpers import FIXTURES, LIMITS, err, storage_of

from airssys_storage import ComponentStorage, StorageManager
from airssys_storage.backend import key_problem

BUCKETS = ("default", "cache")
#: guest fixture -> (the functions it imports, checks per scenario, what its read-write run leaves)
GUESTS = {
    "keyvalue_guest": (
        KEYVALUE_FUNCTIONS,
        {"read-write": 49, "read-only": 13, "none": 4},
        {f"{RESERVED}cache/kept": b"cached", f"{RESERVED}default/kept": b"for the host to see"},
    ),
    "spin_guest": (
        SPIN_FUNCTIONS,
        {"read-write": 16, "read-only": 6, "none": 3},
        {f"{RESERVED}default/kept": b"for the host to see"},
    ),
    # The same checks written in JavaScript (ComponentizeJS), against the same WIT.
    "spin_js_guest": (
        SPIN_FUNCTIONS,
        {"read-write": 16, "read-only": 6, "none": 3},
        {f"{RESERVED}default/kept": b"for the host to see"},
    ),
}
#: guest fixture -> how its run-checks reports an unexpected access-denied error
DENIED = {"keyvalue_guest": "AccessDenied", "spin_guest": "AccessDenied", "spin_js_guest": '{"tag":"access-denied"}'}
SCENARIOS = {"read-write": ("read-write", "4KB", BUCKETS), "read-only": ("read-only", None, ("default",)),
             "none": ("none", None, ("default",))}  # fmt: skip


@pytest.mark.parametrize("fixture", GUESTS)
def test_it_imports_exactly_the_standard(fixture: str, request: pytest.FixtureRequest) -> None:
    _, guest = request.getfixturevalue(fixture)
    assert set(guest.imports) == {function.qualified_name for function in GUESTS[fixture][0]}
    assert guest.exports["run-checks"] == "func(string) -> result<u32, string>"


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("fixture", GUESTS)
def test_scenario(
    fixture: str,
    scenario: str,
    request: pytest.FixtureRequest,
    manager: StorageManager,
    capfd: pytest.CaptureFixture[str],
) -> None:
    host, guest = request.getfixturevalue(fixture)
    access, max_size, buckets = SCENARIOS[scenario]
    checks = GUESTS[fixture][1][scenario]
    if scenario == "read-only":
        storage_of(manager, "read-write", None).set(bucket_prefix("default") + "shared", b"written by the host")
    storage = storage_of(manager, access, max_size, buckets=buckets)
    with host.instantiate(guest, storage, inherit_stdio=True) as instance:
        assert instance.call("run-checks", scenario) == checks
        if scenario == "read-write":
            keyvalue = instance._keyvalue
            assert not keyvalue._cas  # every cas handle was swapped or dropped
    assert f"{scenario}: {checks} checks passed" in capfd.readouterr().out
    inspector = storage_of(manager, "admin", None)
    everything = dict(inspector.scan(None, None, LIMITS["max_keys_per_query"])[0])
    assert inspector.usage().bytes == sum(len(key.encode()) + len(value) for key, value in everything.items())
    if scenario == "read-write":
        # The layout: each bucket under its own prefix in the component's storage, no bad keys.
        assert everything == GUESTS[fixture][2]
        assert not [key for key in everything if key_problem(key.encode())]
        assert manager.backend.verify().ok


def test_the_component_interfaces_cannot_reach_into_a_bucket(
    host: Host, echo: Guest, storage: ComponentStorage
) -> None:
    storage.set(bucket_prefix("default") + "k", b"bucket data")
    with host.instantiate(echo, storage) as instance:
        for export, args in [
            ("get", (bucket_prefix("default") + "k",)),
            ("set", (bucket_prefix("default") + "k", b"overwrite")),
            ("delete", (bucket_prefix("default") + "k",)),
            ("set-many", ([("a", b""), (RESERVED, b"")],)),
            ("range", ("a", RESERVED + "z", None)),
            ("scan", (RESERVED, None, 5)),
        ]:
            assert err(instance, export, *args).tag == "invalid-key", export
    assert storage.get(bucket_prefix("default") + "k") == b"bucket data"


@pytest.mark.parametrize("fixture", GUESTS)
def test_through_airssys_storage_run(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path, compile_cache: Path
) -> None:
    from click.testing import CliRunner

    wasm = request.getfixturevalue(f"{fixture}_wasm")

    manifest = tmp_path / "component-manifest.toml"
    manifest.write_text(
        '[component]\nid = "kv-guest"\n\n[permissions]\n'
        'storage = { access = "read-write", max-size = "4KB", buckets = ["default", "cache"] }\n'
    )
    env = {"AIRSSYS_STORAGE_URL": "memory://"}
    env.update({f"AIRSSYS_STORAGE_{name.upper()}": str(value) for name, value in LIMITS.items()})
    cache = str(compile_cache)  # the guest fixtures compiled it there
    args = ["run", str(wasm), "-m", str(manifest), "--cache-dir", cache, "-i", "run-checks"]
    result = CliRunner().invoke(core_cli(), [*args, "read-write"], env=env, catch_exceptions=True)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stdout.splitlines()[-1] == str(GUESTS[fixture][1]["read-write"])
    denied = tmp_path / "denied.toml"
    denied.write_text('[component]\nid = "kv-guest"\n\n[permissions]\nstorage = { access = "read-only" }\n')
    result = CliRunner().invoke(
        core_cli(), ["run", str(wasm), "-m", str(denied), "--cache-dir", cache, "-i", "run-checks",
                     "read-write"], env=env, catch_exceptions=True)  # fmt: skip
    assert result.exit_code == 1
    assert DENIED[fixture] in result.stderr


@pytest.mark.parametrize(
    ("buckets", "fragment"),
    [("'default'", "non-empty list"), ("[]", "non-empty list"), ("['Default']", "no bucket name"),
     ("['a/b']", "no bucket name"), ("['cache', 'cache']", "twice"), ("[1]", "no bucket name")],
)  # fmt: skip
def test_manifest_buckets_are_validated(buckets: str, fragment: str) -> None:
    from airssys_storage import Manifest, ManifestError

    text = f'[component]\nid = "c"\n[permissions]\nstorage = {{ access = "read-write", buckets = {buckets} }}\n'
    with pytest.raises(ManifestError, match=fragment):
        Manifest.from_toml(text.replace("'", '"'))
    assert Manifest.from_toml('[component]\nid = "c"\n').buckets == ("default",)


def test_messages_to_guests_hide_the_bucket_layout() -> None:
    """Outside trial: a cas-failed message showed the host's key "'\\U0010ffffdefault/k'"; a guest sees its own key."""
    stored = bucket_prefix("default") + "k"
    for shown in (repr(stored), stored):
        message = f"key {shown} of component 'app' is version 2, not version 1: read it again and retry"
        assert hide_bucket_prefixes(message) == (
            "key 'k' of component 'app' is version 2, not version 1: read it again and retry"
            if shown.startswith("'")
            else "key k of component 'app' is version 2, not version 1: read it again and retry"
        )
    assert RESERVED not in hide_bucket_prefixes(f"keys {bucket_prefix('a')}x and {bucket_prefix('cache')}y")


@pytest.mark.parametrize("fixture", ["bench_keyvalue.wat", "bench_spin.wat"])
def test_the_wat_bench_guests_call_through_a_bucket_handle(fixture: str, host: Host, manager: StorageManager) -> None:
    """The benchmark's WAT guests (bench_wasm.py): a handle opened once serves many get/set/exists calls."""
    storage = storage_of(manager, buckets=("default",))
    with host.instantiate(host.load(FIXTURES / fixture), storage) as instance:
        assert instance.call("open", "cache") == 1  # not in the manifest: access-denied
        assert instance.call("open", "default") == 0
        assert instance.call("bench-set", 5, "k", b"value") == 5
        assert instance.call("bench-get", 5, "k") == 5
        assert instance.call("bench-has", 5, "k") == 5
    # Five sets, the first byte flipped on every other one: the last wrote the value as given.
    assert storage.get(bucket_prefix("default") + "k") == b"value"
    assert storage.keys() == [bucket_prefix("default") + "k"]
