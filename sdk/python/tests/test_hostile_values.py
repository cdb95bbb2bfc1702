"""Hostile values and keys: only the SDK's typed StorageError subclasses escape, never a raw json/int error."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from airssys_storage_sdk.collections import _as_int, _parse_slot
from airssys_storage_sdk.keys import decode_key
from airssys_storage_sdk.values import codec_for, decode_json
from hypothesis import given, settings
from hypothesis import strategies as st

from airssys_storage import ComponentStorage
from airssys_storage.collections import StorageMap, StorageTreeMap, ValueDecodeError
from airssys_storage.errors import InvalidArgument, StorageError


@dataclasses.dataclass
class Point:
    x: int
    y: int


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_writing_a_too_deeply_nested_value_is_invalid_argument_and_writes_nothing(storage: ComponentStorage) -> None:
    m: StorageMap[str, Any] = StorageMap(storage, "m/")
    with pytest.raises(InvalidArgument, match="too deeply nested"):
        m["x"] = _nested(100_000)
    assert "x" not in m


def test_reading_a_too_deeply_nested_stored_value_is_value_decode_error(storage: ComponentStorage) -> None:
    m: StorageMap[str, Any] = StorageMap(storage, "m/")
    m["deep"] = 0
    storage.set(m._key("deep"), b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(ValueDecodeError, match="nested too deeply"):
        m["deep"]
    with pytest.raises(ValueDecodeError):
        m.get("deep")
    with pytest.raises(ValueDecodeError):
        list(m.items())


def test_an_int_past_the_digit_limit_is_invalid_argument_and_stored_one_is_value_decode_error(
    storage: ComponentStorage,
) -> None:
    m: StorageMap[str, Any] = StorageMap(storage, "m/")
    with pytest.raises(InvalidArgument):
        m["x"] = 10**5000
    assert "x" not in m
    m["x"] = 0
    storage.set(m._key("x"), b"1" * 5000)
    with pytest.raises(ValueDecodeError):
        m["x"]


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"[1,NaN]"])
def test_stored_nan_and_infinity_are_refused_as_when_writing(storage: ComponentStorage, token: bytes) -> None:
    m: StorageMap[str, Any] = StorageMap(storage, "m/")
    with pytest.raises(InvalidArgument):
        m["x"] = float("nan")
    m["x"] = 0
    storage.set(m._key("x"), token)
    with pytest.raises(ValueDecodeError, match="NaN and infinity are refused"):
        m["x"]
    with pytest.raises(ValueDecodeError):
        m.get("x")


def test_a_stray_key_under_the_prefix_is_value_decode_error_naming_it(storage: ComponentStorage) -> None:
    m: StorageTreeMap[str, int] = StorageTreeMap(storage, "m/")
    m["a"] = 1
    storage.set("m/stray", b"1")
    for walk in (lambda: list(m), lambda: list(m.items()), lambda: list(m.values())):
        with pytest.raises(ValueDecodeError, match=r"'m/stray'.*delete it or move it out of the prefix"):
            walk()
    storage.delete("m/stray")
    assert dict(m.items()) == {"a": 1}


_TYPED = (StorageError,)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.sampled_from([b"[" * 5000 + b"]" * 5000, b"1" * 5000, b"NaN", b"-Infinity"]))
def test_decoders_raise_only_typed_errors_on_arbitrary_bytes(raw: bytes) -> None:
    for decode in (
        lambda: decode_json(raw, "k"),
        lambda: codec_for(Point).decode(raw, "k"),
        lambda: _as_int(raw, "k"),
        lambda: _parse_slot(raw, "k"),
    ):
        try:
            decode()
        except _TYPED:
            pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | st.binary(max_size=60).map(lambda b: b.decode("latin-1")))
def test_decode_key_raises_only_typed_errors_on_arbitrary_text(text: str) -> None:
    try:
        decode_key(text)
    except _TYPED:
        pass


def test_a_dataclass_from_json_of_wrong_field_values_is_value_decode_error() -> None:
    @dataclasses.dataclass
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("n must be >= 0")

    with pytest.raises(ValueDecodeError):
        codec_for(Checked).decode(b'{"n":-1}', "k")
    with pytest.raises(ValueDecodeError):
        codec_for(Checked).decode(b"[" * 100_000, "k")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_values_are_compact_utf8_json(value: Any) -> None:
    """The encoder made once writes what json.dumps writes with the layout's options."""
    import json

    from airssys_storage_sdk.values import encode_json

    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    assert encode_json(value) == expected


def test_a_value_holding_itself_is_invalid_argument() -> None:
    from airssys_storage_sdk.values import encode_json

    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(InvalidArgument, match="Circular reference"):
        encode_json(looped)
