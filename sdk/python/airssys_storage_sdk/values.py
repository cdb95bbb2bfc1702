"""Typed values: JSON by default; dataclasses and pydantic models when a collection is given their type.

Values are stored as compact UTF-8 JSON (``separators=(",", ":")``, no NaN or
infinity), the same bytes in every language. A ``value_type`` that is a
dataclass is stored as the JSON object of its fields (``dataclasses.asdict``)
and rebuilt with ``cls(**fields)``; a pydantic model (anything with
``model_validate_json``) with its own JSON methods, so pydantic is never
imported here (a guest has none). A stored value that does not decode raises
:class:`~airssys_storage_sdk.errors.ValueDecodeError`, never a raw
``JSONDecodeError``; a value that cannot be encoded raises
:class:`~airssys_storage_sdk.errors.InvalidArgument`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Generic, TypeVar

from .errors import InvalidArgument, ValueDecodeError

__all__ = ["Codec", "codec_for", "decode_json", "encode_json"]

V = TypeVar("V")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_decode = json.loads


def encode_json(value: object) -> bytes:
    """*value* as compact UTF-8 JSON; InvalidArgument for what JSON cannot hold (sets, NaN, objects …)."""
    try:
        return _ENCODER.encode(value).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"value {value!r:.80} cannot be stored as JSON: {exc}") from None


def decode_json(raw: bytes, where: str) -> Any:
    """The JSON value of *raw*; ValueDecodeError naming *where* (the key) if it is not UTF-8 JSON."""
    try:
        return _decode(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
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
        except TypeError as exc:
            raise ValueDecodeError(f"the value of key {where!r} is not a {self.cls.__name__}: {exc}") from None


class _ModelCodec(Codec[V]):
    """A pydantic model: its own ``model_dump_json`` / ``model_validate_json`` (pydantic imported by the model)."""

    def __init__(self, cls: type[V]) -> None:
        self.cls = cls

    def encode(self, value: V) -> bytes:
        if not isinstance(value, self.cls):
            raise InvalidArgument(f"this collection holds {self.cls.__name__}, not {type(value).__name__}")
        return value.model_dump_json().encode()  # type: ignore[attr-defined,no-any-return]

    def decode(self, raw: bytes, where: str) -> V:
        try:
            return self.cls.model_validate_json(raw)  # type: ignore[attr-defined,no-any-return]
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
