"""Typed values: JSON by default; dataclasses and pydantic models when a collection is given their type.

Values are stored as compact UTF-8 JSON (``separators=(",", ":")``, no NaN or
infinity), the same bytes in every language. A ``value_type`` that is a
dataclass is stored as the JSON object of its fields (``dataclasses.asdict``)
and rebuilt with ``cls(**fields)``; a pydantic model (anything with
``model_validate_json``) with its own JSON methods, so pydantic is never
imported here (a guest has none). A stored value that does not decode raises
:class:`~airssys_storage_sdk.errors.ValueDecodeError`, never a raw
``JSONDecodeError``; a value that cannot be encoded raises
:class:`~airssys_storage_sdk.errors.InvalidArgument`. Both directions apply
the same rules: no NaN or infinity (a stored ``NaN`` token is refused like a
written ``float("nan")``), no value nested deeper than the interpreter's
recursion limit (``RecursionError`` becomes the typed error), and no integer
longer than Python's int/str digit limit (``sys.get_int_max_str_digits()``,
4300 by default).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import InvalidArgument, ValueDecodeError

__all__ = ["Codec", "codec_for", "decode_json", "encode_json"]

V = TypeVar("V")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _refuse_constant(token: str) -> object:
    raise ValueError(f"{token} is not JSON (NaN and infinity are refused, as when writing)")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def loads(raw: bytes) -> Any:
    """The JSON value of UTF-8 *raw*; raw ``ValueError`` / ``RecursionError`` (callers turn them typed)."""
    return _DECODER.decode(str(raw, "utf-8"))


def _one_shot_encoder() -> Callable[[object], str] | None:
    """_ENCODER's C encoder made once (``JSONEncoder.encode`` makes one per call: half the cost of a small value).

    Without the circular-reference check (its marker dict is per call): a
    cycle is a RecursionError, which :func:`encode_json` hands to
    ``_ENCODER.encode`` for its own error. ``None`` where the interpreter has
    no ``_json`` or a different signature (then every value takes
    ``_ENCODER.encode``).
    """
    try:
        from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]

        encoder = c_make_encoder(
            None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, False
        )  # (markers, default, encoder, indent, key and item separators, sort_keys, skipkeys, allow_nan)

        def encode(value: object) -> str:
            return "".join(encoder(value, 0))

        probe = {"a": [1, 2.5, None, True, "\u00e9\n"], "b": {}}
        if encode(probe) != _ENCODER.encode(probe):
            return None
    except Exception:  # no _json, another signature: the plain path
        return None
    try:
        encode(float("nan"))
    except ValueError:  # refused, as allow_nan=False wants
        return encode
    return None  # NaN accepted: not the encoder we need


_encode_str = _one_shot_encoder() or _ENCODER.encode


def encode_json(value: object) -> bytes:
    """*value* as compact UTF-8 JSON; InvalidArgument for what JSON cannot hold (sets, NaN, objects …)."""
    try:
        return _encode_str(value).encode()
    except RecursionError:
        try:  # a cycle, or nesting beyond the recursion limit: the checking encoder says which
            _ENCODER.encode(value)
        except ValueError as exc:
            raise InvalidArgument(f"value cannot be stored as JSON: {exc} ({_preview(value)})") from None
        except RecursionError:
            pass
        raise InvalidArgument(
            "value is too deeply nested to be stored as JSON (deeper than the recursion limit, "
            f"sys.getrecursionlimit() = {sys.getrecursionlimit()}); flatten it"
        ) from None
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"value cannot be stored as JSON: {exc} ({_preview(value)})") from None


def _preview(value: object) -> str:
    """A short repr of *value* that never fails (repr of a huge int or a deep list raises)."""
    try:
        return f"{value!r:.80}"
    except (ValueError, RecursionError):
        return f"a {type(value).__name__}"


def decode_json(raw: bytes, where: str) -> Any:
    """The JSON value of *raw*; ValueDecodeError naming *where* (the key) if it is not UTF-8 JSON."""
    try:
        return loads(raw)
    except RecursionError:
        raise ValueDecodeError(
            f"the value of key {where!r} is nested too deeply to decode (deeper than the recursion limit): "
            f"{bytes(raw[:60])!r}"
        ) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the int digit limit, NaN
        raise ValueDecodeError(f"the value of key {where!r} is not JSON ({exc}): {bytes(raw[:60])!r}") from None


class Codec(Generic[V]):
    """Turns values of one type into stored bytes and back (plain JSON values)."""

    def encode(self, value: V) -> bytes:
        """The stored bytes of *value*."""
        return encode_json(value)

    def decode(self, raw: bytes, where: str) -> V:
        """The value of stored *raw* (*where* names the key in errors)."""
        return decode_json(raw, where)  # type: ignore[no-any-return]


class _DataclassCodec(Codec[V]):
    def __init__(self, cls: type[V]) -> None:
        self.cls = cls

    def encode(self, value: V) -> bytes:
        if type(value) is not self.cls:
            raise InvalidArgument(f"this collection holds {self.cls.__name__}, not {type(value).__name__}")
        return encode_json(dataclasses.asdict(value))  # type: ignore[call-overload]

    def decode(self, raw: bytes, where: str) -> V:
        fields = decode_json(raw, where)
        if not isinstance(fields, dict):
            raise ValueDecodeError(f"the value of key {where!r} is not a JSON object of {self.cls.__name__} fields")
        try:
            return self.cls(**fields)
        except (TypeError, ValueError) as exc:  # ValueError: the dataclass's own __post_init__ checks
            raise ValueDecodeError(f"the value of key {where!r} is not a {self.cls.__name__}: {exc}") from None


class _ModelCodec(Codec[V]):
    """A pydantic model: its own ``model_dump_json`` / ``model_validate_json`` (pydantic imported by the model)."""

    def __init__(self, cls: type[V]) -> None:
        self.cls = cls

    def encode(self, value: V) -> bytes:
        if not isinstance(value, self.cls):
            raise InvalidArgument(f"this collection holds {self.cls.__name__}, not {type(value).__name__}")
        try:
            return value.model_dump_json().encode()  # type: ignore[attr-defined,no-any-return]
        except (TypeError, ValueError, RecursionError) as exc:  # pydantic's serialization errors are ValueErrors
            raise InvalidArgument(f"value cannot be stored as JSON: {str(exc).splitlines()[0]}") from None

    def decode(self, raw: bytes, where: str) -> V:
        try:
            return self.cls.model_validate_json(raw)  # type: ignore[attr-defined,no-any-return]
        except RecursionError:
            raise ValueDecodeError(f"the value of key {where!r} is nested too deeply to decode") from None
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            first = str(exc).splitlines()[0:3]
            raise ValueDecodeError(
                f"the value of key {where!r} is not a {self.cls.__name__}: {' '.join(first)}"
            ) from None


_PLAIN: Codec[Any] = Codec()


def codec_for(value_type: type[V] | None) -> Codec[V]:
    """The codec of *value_type*: ``None`` (JSON values), a dataclass, or a pydantic model class."""
    if value_type is None:
        return _PLAIN
    if hasattr(value_type, "model_validate_json") and hasattr(value_type, "model_dump_json"):
        return _ModelCodec(value_type)
    if isinstance(value_type, type) and dataclasses.is_dataclass(value_type):
        return _DataclassCodec(value_type)
    raise InvalidArgument(
        f"value_type must be None (JSON values), a dataclass or a pydantic model class, not {value_type!r}"
    )
