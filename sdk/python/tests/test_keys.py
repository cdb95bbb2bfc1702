"""Key encoding: bytewise order of the encoded text is the keys' natural order; decoding inverts it."""

from __future__ import annotations

from typing import Any

import pytest
from airssys_storage_sdk.keys import MAX_INT_DIGITS, decode_key, encode_key
from hypothesis import given
from hypothesis import strategies as st

from airssys_storage.backend import key_problem
from airssys_storage.errors import InvalidKey

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
ints = st.integers(min_value=-(64**MAX_INT_DIGITS) + 1, max_value=64**MAX_INT_DIGITS - 1) | st.integers(-300, 300)
raw = st.binary(max_size=20)
scalars = texts | ints | raw


def _tuples(element: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.tuples(element) | st.tuples(element, element) | st.tuples(element, element, element)


keys_of_one_shape = (
    st.lists(texts, min_size=2, max_size=2)
    | st.lists(ints, min_size=2, max_size=2)
    | st.lists(raw, min_size=2, max_size=2)
    | st.lists(st.tuples(texts, ints, raw), min_size=2, max_size=2)
    | st.lists(st.lists(ints, max_size=3).map(tuple), min_size=2, max_size=2)
    | st.lists(st.tuples(st.tuples(ints, texts), raw), min_size=2, max_size=2)
)


def _utf8(text: str) -> bytes:
    return text.encode()


@given(keys_of_one_shape)
def test_bytewise_order_is_the_natural_order(pair: list[Any]) -> None:
    """For two keys of one shape, a < b exactly when encode(a) < encode(b) as UTF-8 bytes (the store's order)."""
    a, b = pair
    ea, eb = _utf8(encode_key(a)), _utf8(encode_key(b))
    assert (a < b) == (ea < eb)
    assert (a == b) == (ea == eb)


@given(scalars | _tuples(scalars) | _tuples(_tuples(scalars)))
def test_round_trip_and_valid_storage_key(key: Any) -> None:
    """decode(encode(k)) == k, and the encoding is a valid storage key (UTF-8, no control character)."""
    text = encode_key(key)
    assert decode_key(text) == key
    assert type(decode_key(text)) is type(key)
    assert key_problem(text.encode()) is None


@pytest.mark.parametrize(
    ("key", "expected"),
    [("a", "'a "), ("", "' "), (0, "="), (1, ">00"), (-1, "<yy"), (b"", "# "), (("a", 1), "('a >00 ")],
)
def test_the_layout_is_stable(key: Any, expected: str) -> None:
    """The on-storage layout is shared with other languages: these spellings never change."""
    assert encode_key(key) == expected


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (True, "bool keys are refused"),
        (1.5, "keys are str, int, bytes or tuples of them, not float"),
        ("\ud800", "lone surrogate"),
        (64**MAX_INT_DIGITS, "too large"),
        (("a", None), "not NoneType"),
    ],
)
def test_unencodable_keys_are_invalid_key(key: Any, message: str) -> None:
    """Anything else is an InvalidKey naming the problem."""
    with pytest.raises(InvalidKey, match=message) as caught:
        encode_key(key)
    assert caught.value.code == "invalid-key"


@pytest.mark.parametrize("text", ["", "x", "'a", ">0", ">1A", "<y", "#A ", "'!z ", "(", "= ", ">0- "])
def test_text_no_key_encodes_to_is_invalid_key(text: str) -> None:
    """Decoding foreign text is an InvalidKey, never an IndexError or ValueError."""
    with pytest.raises(InvalidKey, match="not an encoded collection key"):
        decode_key(text)


def test_the_shared_key_vectors_are_this_sdks_encoding() -> None:
    """sdk/key-vectors.json (also checked by sdk/js's node tests) is make_key_vectors.py's output, and holds."""
    import json
    from pathlib import Path

    from make_key_vectors import render

    path = Path(__file__).resolve().parents[2] / "key-vectors.json"
    assert path.read_text(encoding="utf-8") == render(), "regenerate: python sdk/python/tests/make_key_vectors.py"
    content = json.loads(render())
    assert len(content["vectors"]) >= 100
    for text in content["invalid"]:
        with pytest.raises(InvalidKey):
            decode_key(text)
    for vector in content["vectors"]:
        assert encode_key(decode_key(vector["encoded"])) == vector["encoded"]


def test_slot_numbers_around_the_table_bounds() -> None:
    """Ints near 64, 64**2, 64**3 and 64**4 (the written-out digits of small positive ints): canonical, ordered."""
    numbers = sorted({n + d for n in (0, 1, 64, 64**2, 64**3, 64**4, 64**5) for d in (-2, -1, 0, 1, 2)})
    encoded = [encode_key(n) for n in numbers]
    assert [decode_key(text) for text in encoded] == numbers  # decode_key refuses a non-canonical digit count
    assert sorted(encoded, key=_utf8) == encoded
    assert encode_key(64**3) == ">3" + "0---"  # digit count 4 (DIGITS[4] is "3"), then 1 0 0 0 in base 64
