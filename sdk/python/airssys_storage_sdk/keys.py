"""Typed keys encoded as storage keys whose bytewise order is the keys' natural order.

In the spirit of FoundationDB's tuple layer (type code, payload, terminator),
but producing *text*: storage keys are ``str`` of UTF-8 without control
characters (``airssys_storage.storage.encode_key``), so every byte the
encoding writes is printable ASCII or a character of the key itself.

Elements (a type code, then the payload):

- ``bytes``: ``#``, base64 with the sorted alphabet ``-0-9A-Z_a-z`` (6 bits a
  character, the last one zero-padded, no ``=``), then the terminator ``" "``.
- ``str``: ``'``, the characters themselves, then ``" "``. The characters
  U+0000-U+0021 are written ``!`` + one character and U+007E-U+009F ``~`` +
  one character (so the terminator sorts below everything and no control
  character reaches the store); UTF-8 order is code-point order.
- ``int``: ``=`` for 0; ``>`` + the digit count (one base-64 digit) + the
  base-64 digits for a positive int; ``<`` + (63 - digit count) + the
  complemented digits for a negative one. At most 63 digits (|n| < 2**378).
- ``tuple``: ``(``, its elements, then ``" "``; nested tuples nest.

Across types the order is bytes < str < tuple < int (Python does not compare
them; the order only has to be fixed). ``bool`` is refused (``True == 1``).
"""

from __future__ import annotations

import base64
import re
from typing import Any, TypeAlias

from .errors import InvalidKey

__all__ = ["MAX_INT_DIGITS", "Key", "decode_key", "encode_key"]

#: What a key may be: str, int, bytes, or a tuple of them (nested tuples included).
Key: TypeAlias = "str | int | bytes | tuple[Any, ...]"

DIGITS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
#: The most base-64 digits of an int key (|n| < 64**63 == 2**378).
MAX_INT_DIGITS = 63
_DIGIT_VALUE = {c: i for i, c in enumerate(DIGITS)}
_TERMINATOR = " "
_BYTES, _STR, _TUPLE, _NEGATIVE, _ZERO, _POSITIVE = "#", "'", "(", "<", "=", ">"
_STANDARD_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TO_SORTED = bytes.maketrans(_STANDARD_B64, DIGITS.encode())
_FROM_SORTED = bytes.maketrans(DIGITS.encode(), _STANDARD_B64)
_ESCAPE_LOW, _ESCAPE_HIGH = "!", "~"
_ESCAPES = {
    **{code: _ESCAPE_LOW + chr(0x40 + code) for code in range(0x22)},
    **{code: _ESCAPE_HIGH + chr(0x40 + code - 0x7E) for code in range(0x7E, 0xA0)},
}
_UNESCAPES = {escaped: chr(code) for code, escaped in _ESCAPES.items()}
_ESCAPED = re.compile("[!~].")
_SURROGATE = re.compile("[\ud800-\udfff]")
# A str of none of the characters that are escaped (U+0000-U+0021, U+007E-U+009F) nor surrogates.
_PLAIN_STR = re.compile("[^\x00-\x21\x7e-\x9f\ud800-\udfff]*").fullmatch


def encode_key(key: Key) -> str:
    """The storage-key text of *key* (str, int, bytes, or a tuple of them); raises InvalidKey otherwise.

    ``a < b`` exactly when ``encode_key(a) < encode_key(b)`` (compared as
    UTF-8 bytes, as the store lists keys), for keys of one type.
    """
    if type(key) is str:  # the common case, inline: most str keys need no escape at all
        if _PLAIN_STR(key):
            return _STR + key + _TERMINATOR
        if not _SURROGATE.search(key):
            return _STR + key.translate(_ESCAPES) + _TERMINATOR
    elif type(key) is int:  # a vector's or queue's slot numbers
        return _encode_int(key)
    parts: list[str] = []
    _encode(key, parts)
    return "".join(parts)


def _encode(key: object, parts: list[str]) -> None:
    kind = type(key)
    if kind is str:
        assert isinstance(key, str)
        if _SURROGATE.search(key):
            raise InvalidKey(f"key {key!r} is not valid Unicode (it contains a lone surrogate)")
        parts += (_STR, key.translate(_ESCAPES), _TERMINATOR)
    elif kind is int:
        assert isinstance(key, int)
        parts.append(_encode_int(key))
    elif kind is bytes or kind is bytearray:
        assert isinstance(key, (bytes, bytearray))
        parts += (_BYTES, base64.b64encode(key).rstrip(b"=").translate(_TO_SORTED).decode(), _TERMINATOR)
    elif kind is tuple:
        assert isinstance(key, tuple)
        parts.append(_TUPLE)
        for element in key:
            _encode(element, parts)
        parts.append(_TERMINATOR)
    elif kind is bool:
        raise InvalidKey(f"bool keys are refused (True == 1 in Python, so they would collide with ints): {key!r}")
    else:
        raise InvalidKey(f"keys are str, int, bytes or tuples of them, not {kind.__name__}: {key!r}")


# Positive ints below 64**4 (slot numbers) from a table of two-digit strings: no loop, no join.
_PAIRS = [first + second for first in DIGITS for second in DIGITS]
_ONE, _TWO, _THREE, _FOUR = (_POSITIVE + DIGITS[count] for count in range(1, 5))


def _encode_int(number: int) -> str:
    if 0 < number < 16777216:  # 64**4; the same text as the general case below
        if number < 64:
            return _ONE + DIGITS[number]
        if number < 4096:
            return _TWO + _PAIRS[number]
        if number < 262144:
            return _THREE + DIGITS[number >> 12] + _PAIRS[number & 4095]
        return _FOUR + _PAIRS[number >> 12] + _PAIRS[number & 4095]
    if number == 0:
        return _ZERO
    magnitude = -number if number < 0 else number
    count = (magnitude.bit_length() + 5) // 6
    if count > MAX_INT_DIGITS:
        raise InvalidKey(
            f"int key {number} is too large: keys hold ints of at most {MAX_INT_DIGITS} base-64 digits "
            "(|n| < 2**378); store it as a str or bytes key"
        )
    digits = [(magnitude >> (6 * shift)) & 63 for shift in range(count - 1, -1, -1)]
    if number > 0:
        return _POSITIVE + DIGITS[count] + "".join([DIGITS[d] for d in digits])
    return _NEGATIVE + DIGITS[MAX_INT_DIGITS - count] + "".join([DIGITS[63 - d] for d in digits])


def decode_key(text: str) -> Key:
    """The key whose :func:`encode_key` is *text*; raises InvalidKey for text no key encodes to."""
    key, end = _decode(text, 0)
    if end != len(text):
        raise _bad(text, end, "text after the key")
    return key


def _decode(text: str, at: int) -> tuple[Key, int]:
    if at >= len(text):
        raise _bad(text, at, "it ends where a key element should start")
    code = text[at]
    at += 1
    if code == _STR or code == _BYTES:
        end = text.find(_TERMINATOR, at)
        if end < 0:
            raise _bad(text, at, "no terminator")
        payload = text[at:end]
        if code == _STR:
            return _decode_str(text, payload, at), end + 1
        return _decode_bytes(text, payload, at), end + 1
    if code == _TUPLE:
        elements: list[Key] = []
        while True:
            if at >= len(text):
                raise _bad(text, at, "an unterminated tuple")
            if text[at] == _TERMINATOR:
                return tuple(elements), at + 1
            element, at = _decode(text, at)
            elements.append(element)
    if code == _ZERO:
        return 0, at
    if code == _POSITIVE or code == _NEGATIVE:
        if at >= len(text) or text[at] not in _DIGIT_VALUE:
            raise _bad(text, at, "an int without its digit count")
        count = _DIGIT_VALUE[text[at]]
        if code == _NEGATIVE:
            count = MAX_INT_DIGITS - count
        digits = text[at + 1 : at + 1 + count]
        if count == 0 or len(digits) != count or any(c not in _DIGIT_VALUE for c in digits):
            raise _bad(text, at, "an int whose digits do not match its digit count")
        magnitude = 0
        for digit in digits:
            value = _DIGIT_VALUE[digit]
            magnitude = magnitude * 64 + (63 - value if code == _NEGATIVE else value)
        if magnitude.bit_length() <= 6 * (count - 1):
            raise _bad(text, at, "an int with a leading zero digit")
        return (magnitude if code == _POSITIVE else -magnitude), at + 1 + count
    raise _bad(text, at - 1, f"unknown type code {code!r}")


def _decode_str(text: str, payload: str, at: int) -> str:
    decoded = _ESCAPED.sub(lambda match: _UNESCAPES.get(match.group(), "\uffff"), payload)
    if decoded.translate(_ESCAPES) != payload:  # an unknown escape, or a character that must be escaped
        raise _bad(text, at, "a str with an invalid escape")
    return decoded


def _decode_bytes(text: str, payload: str, at: int) -> bytes:
    if len(payload) % 4 == 1 or any(c not in _DIGIT_VALUE for c in payload):
        raise _bad(text, at, "bytes that are not sorted base64")
    standard = payload.encode().translate(_FROM_SORTED)
    decoded = base64.b64decode(standard + b"=" * (-len(standard) % 4))
    if base64.b64encode(decoded).rstrip(b"=") != standard:
        raise _bad(text, at, "bytes with non-zero padding bits")
    return decoded


def _bad(text: str, at: int, why: str) -> InvalidKey:
    return InvalidKey(f"{text!r} is not an encoded collection key ({why} at character {at})")
