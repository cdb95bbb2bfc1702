"""Manifests fail closed: every rejection is a typed ManifestError naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from airssys_storage import Access, Manifest, ManifestError, ManifestLimits, StorageError, parse_size

MiB = 1024 * 1024


def manifest_text(storage: str = '{ access = "read-write" }', component_id: str = '"my-component"') -> str:
    component = f'[component]\nid = {component_id}\nname = "My Component"\nversion = "1.0.0"\n'
    return f"{component}\n[permissions]\nstorage = {storage}\n"


def test_seed_manifest() -> None:
    manifest = Manifest.from_toml(manifest_text('{ access = "read-write", max-size = "10MB" }'))
    assert manifest.id == "my-component"
    assert manifest.name == "My Component"
    assert manifest.version == "1.0.0"
    assert manifest.access is Access.READ_WRITE
    assert manifest.quota == 10 * MiB


@pytest.mark.parametrize(
    ("access", "default"),
    [("none", 0), ("read-only", 0), ("read-write", 10 * MiB), ("admin", 50 * MiB)],
)
def test_default_quotas_from_the_seed_table(access: str, default: int) -> None:
    assert Manifest.from_toml(manifest_text(f'{{ access = "{access}" }}')).quota == default


def test_missing_permissions_means_no_access() -> None:
    manifest = Manifest.from_toml('[component]\nid = "x"\n')
    assert manifest.access is Access.NONE
    assert manifest.quota == 0


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("10MB", 10 * MiB),
        ("512KiB", 512 * 1024),
        ("1GB", 1024 * MiB),
        ("100 MB", 100 * MiB),
        (0, 0),
        (12345, 12345),
        ("77", 77),
        ("3B", 3),
        ("2MiB", 2 * MiB),
    ],
)
def test_sizes(size: Any, expected: int) -> None:
    assert parse_size(size) == expected


@pytest.mark.parametrize(
    "size", [True, False, -1, 1.5, 10.0, "1e9", "-5MB", "10 mb", "1.5MB", "MB", "", "10TB", None, [1], "0x10"]
)
def test_bad_sizes(size: Any) -> None:
    with pytest.raises(ManifestError) as info:
        parse_size(size, "permissions.storage.max-size")
    assert "max-size" in str(info.value)


def test_zero_quota_is_zero_not_unlimited() -> None:
    manifest = Manifest.from_toml(manifest_text('{ access = "read-write", max-size = 0 }'))
    assert manifest.quota == 0


@pytest.mark.parametrize(
    ("access", "maximum"),
    [("read-write", 100 * MiB), ("admin", 500 * MiB)],
)
def test_quota_maximum(access: str, maximum: int) -> None:
    assert Manifest.from_toml(manifest_text(f'{{ access = "{access}", max-size = {maximum} }}')).quota == maximum
    with pytest.raises(ManifestError) as info:
        Manifest.from_toml(manifest_text(f'{{ access = "{access}", max-size = {maximum + 1} }}'))
    assert "above the maximum" in str(info.value)


def test_read_only_cannot_ask_for_a_quota() -> None:
    with pytest.raises(ManifestError):
        Manifest.from_toml(manifest_text('{ access = "read-only", max-size = "1MB" }'))


@pytest.mark.parametrize("access", ["rw", "Admin", "", "READ-ONLY", "read_write", "write", " admin"])
def test_unknown_access_fails_closed(access: str) -> None:
    with pytest.raises(ManifestError) as info:
        Manifest.from_toml(manifest_text(f'{{ access = "{access}" }}'))
    assert "permissions.storage.access" in str(info.value)


@pytest.mark.parametrize(
    "storage",
    ["{ access = 1 }", "{ access = true }", "{ max-size = 10 }", '{ access = "admin", extra = 1 }', "[1, 2]", "true"],
)
def test_malformed_storage_table(storage: str) -> None:
    with pytest.raises(ManifestError) as info:
        Manifest.from_toml(manifest_text(storage))
    assert "permissions.storage" in str(info.value)


@pytest.mark.parametrize(
    "component_id",
    ['"a:b"', '"A"', '"1abc"', '""', '"-x"', '"a b"', '"ab%"', '"a\\\\b"', '"é"', '"' + "a" * 64 + '"', "1", "true"],
)
def test_bad_component_ids(component_id: str) -> None:
    with pytest.raises(ManifestError) as info:
        Manifest.from_toml(manifest_text(component_id=component_id))
    assert "component.id" in str(info.value)


@pytest.mark.parametrize("component_id", ["a", "a_b", "a-b", "ab", "a" * 63, "x9"])
def test_good_component_ids(component_id: str) -> None:
    assert Manifest.from_toml(manifest_text(component_id=f'"{component_id}"')).id == component_id


@pytest.mark.parametrize("text", ["not toml = = =", "[component]\n", "", "component = 1"])
def test_structurally_bad_manifests(text: str) -> None:
    with pytest.raises(ManifestError):
        Manifest.from_toml(text)


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "component-manifest.toml"
    path.write_text(manifest_text('{ access = "admin", max-size = "50MB" }'))
    assert Manifest.from_file(path).quota == 50 * MiB
    with pytest.raises(ManifestError) as info:
        Manifest.from_file(tmp_path / "missing.toml")
    assert "missing.toml" in str(info.value)
    path.write_text(manifest_text('{ access = "root" }'))
    with pytest.raises(ManifestError) as info:
        Manifest.from_file(path)
    assert str(path) in str(info.value)


def test_constructor_validates_too() -> None:
    with pytest.raises(ManifestError):
        Manifest("Bad:Id")
    with pytest.raises(ManifestError):
        Manifest("ok", "rw")  # type: ignore[arg-type]
    with pytest.raises(ManifestError):
        Manifest("ok", Access.READ_WRITE, True)  # type: ignore[arg-type]
    assert Manifest("ok", "admin", "1KB").quota == 1024  # type: ignore[arg-type]


# -- fuzzing: arbitrary TOML documents either parse into a valid manifest or raise ManifestError


toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["none", "read-only", "read-write", "admin", "10MB", "512KiB", "1GB", "1e9", "-1"]),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
storage_tables = st.one_of(
    toml_values,
    st.fixed_dictionaries(
        {"access": toml_values},
        optional={"max-size": toml_values, "other": toml_values},
    ),
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "component": st.one_of(
            toml_values,
            st.fixed_dictionaries(
                {"id": st.one_of(st.from_regex(r"[a-z][a-z0-9_:-]{0,70}", fullmatch=True), toml_values)},
                optional={"name": toml_values, "version": toml_values},
            ),
        ),
        "permissions": st.one_of(toml_values, st.fixed_dictionaries({}, optional={"storage": storage_tables})),
    },
)


@settings(max_examples=500, deadline=None)
@given(documents)
def test_fuzzed_manifests_are_valid_or_typed_errors(document: dict[str, Any]) -> None:
    text = tomli_w.dumps(document)
    try:
        manifest = Manifest.from_toml(text)
    except ManifestError as exc:
        assert exc.code == "invalid-manifest"
        assert str(exc)
        return
    except StorageError as exc:  # pragma: no cover - would be a bug
        pytest.fail(f"wrong error type {type(exc).__name__}: {exc}")
    assert isinstance(manifest.access, Access)
    assert isinstance(manifest.quota, int) and not isinstance(manifest.quota, bool)
    assert 0 <= manifest.quota <= 500 * MiB
    assert ":" not in manifest.id


# -- [limits]: the core owns the table, so `manifest check` and every host apply the same rules -------


def test_limits_table_is_parsed_and_typed() -> None:
    manifest = Manifest.from_toml(
        '[component]\nid = "c"\n[limits]\ntimeout = 2\nmax-memory = "64MiB"\nmax-call-bytes = 4096\n'
    )
    assert manifest.limits == ManifestLimits(timeout=2.0, max_memory=64 * 1024 * 1024, max_call_bytes=4096)
    assert manifest.limits.asked() == {"timeout": 2.0, "max_memory": 64 * 1024 * 1024, "max_call_bytes": 4096}
    assert Manifest.from_toml('[component]\nid = "c"\n').limits == ManifestLimits()


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ("timeout = -1", "timeout must be a positive number of seconds"),
        ("timeout = 0", "timeout must be a positive number of seconds"),
        ("timeout = 1e400", "timeout must be a positive number of seconds"),
        ("timeout = nan", "timeout must be a positive number of seconds"),
        ('timeout = "5"', "timeout must be a number of seconds"),
        ("timeout = true", "timeout must be a number of seconds"),
        ('max-memory = "abc"', "is not a size"),
        ("max-memory = 0", "max-memory must be at least 1"),
        ("max-call-bytes = -5", "must not be negative"),
        ("max-instances = 1.5", "max-instances must be a whole number of at least 1"),
        ('max-instances = "1KiB"', "max-instances must be a whole number of at least 1"),
        ('max-table-elements = "10MB"', "max-table-elements must be a whole number of at least 1"),
        ("max-table-elements = 0", "max-table-elements must be a whole number of at least 1"),
        ("bogus = 1", "unknown field(s) ['bogus']"),
    ],
)
def test_bad_limits_name_the_field(table: str, fragment: str) -> None:
    with pytest.raises(ManifestError, match=r"\[limits\]") as caught:
        Manifest.from_toml(f'[component]\nid = "c"\n[limits]\n{table}\n')
    assert fragment in str(caught.value)


def test_limits_must_be_a_table() -> None:
    with pytest.raises(ManifestError, match=r"\[limits\] must be a table"):
        Manifest.from_toml('limits = 3\n[component]\nid = "c"\n')
