"""Typed conversion between Python values and wasmtime's C component values.

wasmtime-py's generic conversion reflects on the function type on every call
(dozens of FFI calls and allocations) and converts ``list<u8>`` per byte; a
storage call through it costs 55-150 µs. The host knows the WIT types of its
imports statically, so each import gets a tree of small codecs built once,
and a call costs a few attribute accesses per value.

Ownership follows wasmtime's C API: arguments belong to wasmtime (``lift``
only reads them); results are written into wasmtime-owned slots, so every
nested allocation goes through wasmtime's allocators (``lower``). ``lower``
writes a value's kind last, after its payload is complete: wasmtime drops the
result slots even when the host function fails, and a slot must then hold
either its initial ``bool`` or a fully built value.
"""

from __future__ import annotations

import abc
import ctypes
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import component as wc

from airssys_storage import StorageError

from ._calls import Case
from ._compat import PAYLOAD_OFFSET, VAL_SIZE

__all__ = [
    "BOOL",
    "BYTES",
    "Case",
    "S64",
    "STRING",
    "U32",
    "U64",
    "Borrow",
    "Codec",
    "EnumOf",
    "ErrorVariant",
    "ListOf",
    "OptionOf",
    "Own",
    "RecordOf",
    "Resource",
    "ResultOf",
    "TupleOf",
    "VariantOf",
    "boxed",
    "describe",
    "lift_bytes",
    "lower_bytes",
]

Val = ffi.wasmtime_component_val_t
_byref = ctypes.byref
_string_at = ctypes.string_at
_memmove = ctypes.memmove
_memset = ctypes.memset
_cast = ctypes.cast
_c_void_p = ctypes.c_void_p
_vec_uninit = ffi.wasm_byte_vec_new_uninitialized
_K_BOOL = ffi.WASMTIME_COMPONENT_BOOL.value
_K_U32 = ffi.WASMTIME_COMPONENT_U32.value
_K_U64 = ffi.WASMTIME_COMPONENT_U64.value
_K_S64 = ffi.WASMTIME_COMPONENT_S64.value
_K_RECORD = ffi.WASMTIME_COMPONENT_RECORD.value
_K_RESOURCE = ffi.WASMTIME_COMPONENT_RESOURCE.value
_K_STRING = ffi.WASMTIME_COMPONENT_STRING.value
_K_LIST = ffi.WASMTIME_COMPONENT_LIST.value
_K_TUPLE = ffi.WASMTIME_COMPONENT_TUPLE.value
_K_VARIANT = ffi.WASMTIME_COMPONENT_VARIANT.value
_K_ENUM = ffi.WASMTIME_COMPONENT_ENUM.value
_K_OPTION = ffi.WASMTIME_COMPONENT_OPTION.value
_K_RESULT = ffi.WASMTIME_COMPONENT_RESULT.value


def _set_name(vec: Any, raw: bytes) -> None:
    _vec_uninit(_byref(vec), len(raw))
    if raw:
        _memmove(vec.data, raw, len(raw))


# -- values at addresses ----------------------------------------------------------
#
# The host's callbacks receive plain addresses. Reading or writing a value
# through ctypes structures builds an object per field access (~100 ns each)
# and each wasmtime-py FFI wrapper adds a Python frame and a byref; the hot
# codecs (strings, bytes, bools, integers, options, results) therefore work on
# addresses: a value is four 8-byte words (kind, then the payload union), read
# and written through one ctypes pointer (~25 ns per word), and wasmtime's
# allocators are called through prototypes taking plain addresses.
# _WORDS[(address >> 3) - 1 + i] is word i of the value at *address* (values are
# 8-aligned; the pointer starts at address 8 because ctypes refuses to index a
# NULL pointer). Writing a whole word at offset 0 sets the kind byte and zeroes
# the padding after it (little-endian, checked by _compat).

_WORDS = ctypes.cast(8, ctypes.POINTER(ctypes.c_uint64))
_SIGNED_WORDS = ctypes.cast(8, ctypes.POINTER(ctypes.c_int64))
_addressof = ctypes.addressof


def _prototype(name: str, restype: Any, *argtypes: Any) -> Any:
    return ctypes.CFUNCTYPE(restype, *argtypes)((name, ffi.dll))


#: wasmtime_component_val_new(val) -> a heap copy of *val* (which it takes the contents of)
_box_at = _prototype("wasmtime_component_val_new", ctypes.c_void_p, ctypes.c_void_p)
#: wasm_byte_vec_new(out, size, data): a string payload holding a copy of *data*
_string_new_at = _prototype("wasm_byte_vec_new", None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
#: wasmtime_component_vallist_new(out, size, values): a list payload holding a copy of *values*
_list_new_at = _prototype("wasmtime_component_vallist_new", None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_list_uninit_at = _prototype("wasmtime_component_vallist_new_uninit", None, ctypes.c_void_p, ctypes.c_size_t)


def boxed_at(codec: Codec, value: Any) -> int:
    """The address of a wasmtime-heap value holding *value* (for option, result and variant payloads)."""
    tmp = Val()
    address = _addressof(tmp)
    codec.lower_at(value, address)
    return _box_at(address)  # type: ignore[no-any-return]  # moves tmp's contents


def boxed(codec: Codec, value: Any) -> Any:
    """:func:`boxed_at` as a ctypes pointer (what the ctypes structures' pointer fields take)."""
    return _cast(boxed_at(codec, value), _VAL_POINTER)


_VAL_POINTER = ctypes.POINTER(Val)


# -- list<u8> -----------------------------------------------------------------
#
# wasmtime's C API represents list<u8> as an array of 32-byte values, each a
# kind byte (U8 = 2) at offset 0 and the byte itself at offset 8. Strided slice
# assignment on a bytearray builds or reads that array at C speed. It works in
# chunks through a small per-thread scratch buffer: a temporary as large as
# the whole array (2 MiB for 64 KiB) would come from fresh pages on every call,
# and page faults cost more than the copying (~1 ms per 64 KiB on a VM).

_CHUNK = 2048  # values per pass: 64 KiB, below malloc's mmap threshold
_U8_CELL = bytes([ffi.WASMTIME_COMPONENT_U8.value]) + bytes(VAL_SIZE - 1)
_scratch = threading.local()


def _cells() -> tuple[bytearray, int]:
    """This thread's scratch: _CHUNK U8 values whose payload bytes are overwritten per pass."""
    cells: bytearray | None = getattr(_scratch, "cells", None)
    if cells is None:
        cells = _scratch.cells = bytearray(_U8_CELL) * _CHUNK
        _scratch.view = (ctypes.c_char * len(cells)).from_buffer(cells)  # pins the buffer's address
        _scratch.address = ctypes.addressof(_scratch.view)
    return cells, _scratch.address


def lower_bytes_at(data: bytes | bytearray, address: int) -> None:
    """Make the value at *address* a ``list<u8>`` holding *data* (memory owned by wasmtime)."""
    size = len(data)
    if not size:
        _list_uninit_at(address + PAYLOAD_OFFSET, 0)
    elif size <= _CHUNK:
        cells, source = _cells()
        cells[PAYLOAD_OFFSET : PAYLOAD_OFFSET + VAL_SIZE * size : VAL_SIZE] = data
        _list_new_at(address + PAYLOAD_OFFSET, size, source)  # copies the cells
    else:
        _list_uninit_at(address + PAYLOAD_OFFSET, size)
        cells, source = _cells()
        destination = _WORDS[(address >> 3) + 1]
        view = memoryview(data)
        for start in range(0, size, _CHUNK):
            count = min(_CHUNK, size - start)
            cells[PAYLOAD_OFFSET : PAYLOAD_OFFSET + VAL_SIZE * count : VAL_SIZE] = view[start : start + count]
            _memmove(destination + VAL_SIZE * start, source, VAL_SIZE * count)
    _WORDS[(address >> 3) - 1] = _K_LIST


def lift_bytes_at(address: int) -> bytes:
    """The bytes of the ``list<u8>`` value at *address* (which stays owned by its owner)."""
    slot = address >> 3
    size = _WORDS[slot]
    if size <= _CHUNK:
        return _string_at(_WORDS[slot + 1], VAL_SIZE * size)[PAYLOAD_OFFSET::VAL_SIZE] if size else b""
    data = _WORDS[slot + 1]
    return b"".join(
        _string_at(data + VAL_SIZE * start, VAL_SIZE * min(_CHUNK, size - start))[PAYLOAD_OFFSET::VAL_SIZE]
        for start in range(0, size, _CHUNK)
    )


def lower_bytes(data: bytes | bytearray, out: Any) -> None:
    """Make the C value *out* a ``list<u8>`` holding *data* (memory owned by wasmtime)."""
    lower_bytes_at(data, _addressof(out))


def lift_bytes(val: Any) -> bytes:
    """The bytes of the ``list<u8>`` C value *val* (which stays owned by its owner)."""
    return lift_bytes_at(_addressof(val))


class Codec(abc.ABC):
    """One WIT type: ``lift`` reads a C value into Python, ``lower`` writes Python into a C value.

    Each has two forms: on a ctypes ``wasmtime_component_val_t`` (``lift``,
    ``lower``) and on its address (``lift_at``, ``lower_at``, what the host's
    callbacks use). A codec implements one form of each; the other defaults
    to it.
    """

    #: The type in WIT syntax, structurally (as :func:`describe` renders wasmtime's types).
    wit: str

    def lift(self, v: Any) -> Any:
        return self.lift_at(_addressof(v))

    def lower(self, value: Any, out: Any) -> None:
        self.lower_at(value, _addressof(out))

    def lift_at(self, address: int) -> Any:
        return self.lift(Val.from_address(address))

    def lower_at(self, value: Any, address: int) -> None:
        self.lower(value, Val.from_address(address))

    def __repr__(self) -> str:
        return f"<codec {self.wit}>"


class _String(Codec):
    wit = "string"

    def lift_at(self, address: int) -> str:
        slot = address >> 3
        size = _WORDS[slot]
        return _string_at(_WORDS[slot + 1], size).decode() if size else ""

    def lower_at(self, value: str, address: int) -> None:
        # "replace": a lone surrogate must not reach wasmtime, which requires valid UTF-8.
        raw = value.encode("utf-8", "replace")
        _string_new_at(address + PAYLOAD_OFFSET, len(raw), raw)
        _WORDS[(address >> 3) - 1] = _K_STRING


class _Bytes(Codec):
    wit = "list<u8>"

    def lift_at(self, address: int) -> bytes:
        return lift_bytes_at(address)

    def lower_at(self, value: bytes, address: int) -> None:
        lower_bytes_at(value, address)


class _Bool(Codec):
    wit = "bool"

    def lift_at(self, address: int) -> bool:
        return bool(_WORDS[address >> 3] & 0xFF)

    def lower_at(self, value: bool, address: int) -> None:
        slot = address >> 3
        _WORDS[slot] = 1 if value else 0
        _WORDS[slot - 1] = _K_BOOL


class _Unsigned(Codec):
    def __init__(self, bits: int, kind: int) -> None:
        self.wit = f"u{bits}"
        self._kind = kind
        self._max = (1 << bits) - 1

    def lift_at(self, address: int) -> int:
        return _WORDS[address >> 3] & self._max  # type: ignore[no-any-return]

    def lower_at(self, value: int, address: int) -> None:
        # ctypes would silently truncate; a wrong count must not reach a guest.
        if not 0 <= value <= self._max:
            raise OverflowError(f"{value} does not fit in {self.wit}")
        slot = address >> 3
        _WORDS[slot] = value
        _WORDS[slot - 1] = self._kind


class OptionOf(Codec):
    def __init__(self, inner: Codec) -> None:
        self.inner = inner
        self.wit = f"option<{inner.wit}>"

    def lift_at(self, address: int) -> Any:
        boxed = _WORDS[address >> 3]
        return self.inner.lift_at(boxed) if boxed else None

    def lower_at(self, value: Any, address: int) -> None:
        slot = address >> 3
        _WORDS[slot] = 0 if value is None else boxed_at(self.inner, value)
        _WORDS[slot - 1] = _K_OPTION


class ListOf(Codec):
    def __init__(self, item: Codec) -> None:
        self.item = item
        self.wit = f"list<{item.wit}>"

    def lift_at(self, address: int) -> list[Any]:
        slot = address >> 3
        data = _WORDS[slot + 1]
        lift = self.item.lift_at
        return [lift(data + VAL_SIZE * i) for i in range(_WORDS[slot])]

    def lower(self, value: Sequence[Any], out: Any) -> None:
        _lower_items(out.of.list, [self.item] * len(value), value, ffi.wasmtime_component_vallist_new_uninit)
        out.kind = _K_LIST


class TupleOf(Codec):
    def __init__(self, *items: Codec) -> None:
        self.items = items
        self.wit = "tuple<" + ", ".join(item.wit for item in items) + ">"

    def lift_at(self, address: int) -> tuple[Any, ...]:
        data = _WORDS[(address >> 3) + 1]
        return tuple(item.lift_at(data + VAL_SIZE * i) for i, item in enumerate(self.items))

    def lower(self, value: Sequence[Any], out: Any) -> None:
        if len(value) != len(self.items):
            raise ValueError(f"{self.wit} needs {len(self.items)} items, got {len(value)}")
        _lower_items(out.of.tuple, self.items, value, ffi.wasmtime_component_valtuple_new_uninit)
        out.kind = _K_TUPLE


def _lower_items(vec: Any, codecs: Sequence[Codec], values: Sequence[Any], new_uninit: Any) -> None:
    size = len(values)
    new_uninit(_byref(vec), size)
    data = vec.data
    if size:
        # Zeroed slots are Bool(false): if lowering fails halfway, wasmtime can still drop the vector.
        _memset(data, 0, size * VAL_SIZE)
    for i, (codec, value) in enumerate(zip(codecs, values, strict=True)):
        codec.lower(value, data[i])


class ErrorVariant(Codec):
    """A WIT error variant whose case names are :class:`StorageError` codes (or *aliases* of them).

    ``lower`` takes a :class:`StorageError`: its ``code`` (through *aliases*,
    e.g. ``permission-denied`` -> ``access-denied``) picks the case; a code with
    no case here becomes the *fallback* case (a ``string`` case): the message,
    prefixed with ``"<code>: "`` when *code_in_fallback*, so a guest of a
    standard interface with one catch-all case can still tell the errors apart.
    """

    def __init__(
        self,
        cases: Sequence[tuple[str, bool]],
        *,
        aliases: Mapping[str, str] | None = None,
        fallback: str = "internal-error",
        code_in_fallback: bool = False,
    ) -> None:
        self.cases = dict(cases)
        if self.cases.get(fallback) is not True:
            raise ValueError(f"an error variant needs the case {fallback}(string)")
        self.aliases = dict(aliases or {})
        self.fallback = fallback
        self.code_in_fallback = code_in_fallback
        self._names = {name: name.encode() for name in self.cases}
        self.wit = "variant{" + ", ".join(f"{name}(string)" if payload else name for name, payload in cases) + "}"

    def case_for(self, error: StorageError) -> tuple[str, str | None]:
        """The case and payload *error* maps to."""
        code = self.aliases.get(error.code, error.code)
        has_payload = self.cases.get(code)
        if has_payload is None:
            return self.fallback, f"{error.code}: {error.message}" if self.code_in_fallback else error.message
        return code, error.message if has_payload else None

    def lift(self, v: Any) -> tuple[str, str | None]:
        variant = v.of.variant
        name = _string_at(variant.discriminant.data, variant.discriminant.size).decode()
        boxed = variant.val
        return name, STRING.lift(boxed[0]) if boxed else None

    def lower(self, value: StorageError, out: Any) -> None:
        name, payload = self.case_for(value)
        self.lower_case(name, None if payload is None else boxed(STRING, payload), out)

    def lower_case(self, name: str, boxed: Any, out: Any) -> None:
        """Write the case *name* with the already boxed payload *boxed* (``None``: no payload)."""
        _set_name(out.of.variant.discriminant, self._names.get(name) or name.encode())
        out.of.variant.val = boxed
        out.kind = _K_VARIANT


class EnumOf(Codec):
    """A WIT enum; Python side: the case name (``str``)."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self._raw = {name: name.encode() for name in names}
        self.wit = "enum{" + ", ".join(names) + "}"

    def lift(self, v: Any) -> str:
        name = v.of.enumeration
        return _string_at(name.data, name.size).decode()

    def lower(self, value: str, out: Any) -> None:
        raw = self._raw.get(value)
        if raw is None:
            raise ValueError(f"{value!r} is no case of {self.wit}")
        _set_name(out.of.enumeration, raw)
        out.kind = _K_ENUM


class VariantOf(Codec):
    """A WIT variant of data cases (not an error variant: see :class:`ErrorVariant`); Python side: :class:`Case`."""

    def __init__(self, *cases: tuple[str, Codec | None]) -> None:
        self.cases = dict(cases)
        self._names = {name: name.encode() for name in self.cases}
        self.wit = "variant{" + ", ".join(name if c is None else f"{name}({c.wit})" for name, c in cases) + "}"

    def lift(self, v: Any) -> Case:
        variant = v.of.variant
        name = _string_at(variant.discriminant.data, variant.discriminant.size).decode()
        codec = self.cases.get(name)
        boxed = variant.val
        return Case(name, codec.lift(boxed[0]) if codec is not None and boxed else None)

    def lower(self, value: Case, out: Any) -> None:
        codec = self.cases[value.name]
        _set_name(out.of.variant.discriminant, self._names[value.name])
        out.of.variant.val = None if codec is None else boxed(codec, value.payload)
        out.kind = _K_VARIANT


class ResultOf(Codec):
    """``result<ok, error>``; Python side: ``("ok", value)`` or ``("err", StorageError)``."""

    def __init__(self, ok: Codec | None, error: Codec) -> None:
        self.ok = ok
        self.error = error
        self.wit = f"result<{ok.wit if ok else '_'}, {error.wit}>"

    def lift(self, v: Any) -> tuple[str, Any]:
        result = v.of.result
        boxed = result.val
        if result.is_ok:
            return "ok", self.ok.lift(boxed[0]) if self.ok is not None and boxed else None
        return "err", self.error.lift(boxed[0])

    def lower(self, value: tuple[str, Any], out: Any) -> None:
        tag, payload = value
        if tag == "ok":
            self.lower_ok(payload, out)
        else:
            self.lower_err(payload, out)

    def lower_ok(self, value: Any, out: Any) -> None:
        self.lower_ok_at(value, _addressof(out))

    def lower_err(self, error: StorageError, out: Any) -> None:
        self.lower_err_at(error, _addressof(out))

    def lower_ok_at(self, value: Any, address: int) -> None:
        """Write ``ok(value)`` at *address* (``value`` is ignored when the ok case has no payload)."""
        slot = address >> 3
        _WORDS[slot + 1] = 0 if self.ok is None else boxed_at(self.ok, value)
        _WORDS[slot] = 1  # is_ok
        _WORDS[slot - 1] = _K_RESULT

    def lower_err_at(self, error: StorageError, address: int) -> None:
        """Write ``err(error)`` at *address*."""
        slot = address >> 3
        _WORDS[slot + 1] = boxed_at(self.error, error)
        _WORDS[slot] = 0
        _WORDS[slot - 1] = _K_RESULT


class _Signed(Codec):
    def __init__(self, bits: int, kind: int) -> None:
        self.wit = f"s{bits}"
        self._field = self.wit
        self._kind = kind
        self._min = -(1 << (bits - 1))
        self._max = (1 << (bits - 1)) - 1

    def lift_at(self, address: int) -> int:
        if self.wit == "s64":
            return _SIGNED_WORDS[address >> 3]  # type: ignore[no-any-return]
        return int(getattr(Val.from_address(address).of, self._field))

    def lower_at(self, value: int, address: int) -> None:
        if not self._min <= value <= self._max:  # ctypes would wrap silently
            raise OverflowError(f"{value} does not fit in {self.wit}")
        slot = address >> 3
        _SIGNED_WORDS[slot] = value  # sign-extended to the word: the low bytes are the value
        _WORDS[slot - 1] = self._kind


class RecordOf(Codec):
    """A WIT record; Python side: a mapping of field name to value (``lift`` gives a dict)."""

    def __init__(self, *fields: tuple[str, Codec]) -> None:
        self.fields = fields
        self._names = [name.encode() for name, _ in fields]
        self.wit = "record{" + ", ".join(f"{name}: {codec.wit}" for name, codec in fields) + "}"

    def lift(self, v: Any) -> dict[str, Any]:
        data = v.of.record.data
        return {name: codec.lift(data[i].val) for i, (name, codec) in enumerate(self.fields)}

    def lower(self, value: Mapping[str, Any], out: Any) -> None:
        record = out.of.record
        size = len(self.fields)
        ffi.wasmtime_component_valrecord_new_uninit(_byref(record), size)
        data = record.data
        # Zeroed entries are (empty name, Bool(false)): wasmtime can drop them if lowering fails halfway.
        _memset(data, 0, size * ctypes.sizeof(ffi.wasmtime_component_valrecord_entry_t))
        for i, ((name, codec), raw) in enumerate(zip(self.fields, self._names, strict=True)):
            entry = data[i]
            _set_name(entry.name, raw)
            codec.lower(value[name], entry.val)
        out.kind = _K_RECORD


# -- resources ------------------------------------------------------------------
#
# A host resource crosses the boundary as a handle whose "rep" (a u32) the host
# chooses; converting between handles and reps needs the calling store's
# context, which the host function receives with each call and records here
# (a store is used by one thread at a time).

_call = threading.local()


def enter_call(context: int) -> None:
    """Record the store context (its address) of the host call now running on this thread (for :class:`Resource`)."""
    _call.context = context


_any_to_host = _prototype(
    "wasmtime_component_resource_any_to_host", ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p
)
_host_type = _prototype("wasmtime_component_resource_host_type", ctypes.c_uint32, ctypes.c_void_p)
_host_rep = _prototype("wasmtime_component_resource_host_rep", ctypes.c_uint32, ctypes.c_void_p)
_host_delete = _prototype("wasmtime_component_resource_host_delete", None, ctypes.c_void_p)


class Resource(Codec):
    _owned: bool

    def __init__(self, type_id: int, name: str) -> None:
        self.type_id = type_id
        self.name = name
        self.wit = f"{'own' if self._owned else 'borrow'}<resource>"

    def lift_at(self, address: int) -> int:
        """The rep of the host resource the value at *address* refers to (the argument stays owned by wasmtime)."""
        host = _c_void_p()
        error = _any_to_host(_call.context, _WORDS[address >> 3], _byref(host))
        if error:
            raise wasmtime.WasmtimeError._from_ptr(_cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))
        try:
            if _host_type(host) != self.type_id:
                raise TypeError(f"the guest passed a resource that is no {self.name}")
            return _host_rep(host)  # type: ignore[no-any-return]
        finally:
            _host_delete(host)

    def lower(self, value: int, out: Any) -> None:
        host = ffi.wasmtime_component_resource_host_new(self._owned, value, self.type_id)
        try:
            handle = ctypes.POINTER(ffi.wasmtime_component_resource_any_t)()
            context = _cast(_call.context, ctypes.POINTER(ffi.wasmtime_context_t))
            error = ffi.wasmtime_component_resource_host_to_any(context, host, _byref(handle))
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
        finally:
            ffi.wasmtime_component_resource_host_delete(host)
        out.of.resource = handle
        out.kind = _K_RESOURCE


class Own(Resource):
    """``own<r>`` of a host resource: lowered from (and lifted to) its rep."""

    _owned = True


class Borrow(Resource):
    """``borrow<r>`` of a host resource: lifted to its rep."""

    _owned = False


STRING: Codec = _String()
BYTES: Codec = _Bytes()
BOOL: Codec = _Bool()
U32: Codec = _Unsigned(32, _K_U32)
U64: Codec = _Unsigned(64, _K_U64)
S64: Codec = _Signed(64, _K_S64)


def describe(ty: Any) -> str:
    """A wasmtime-py component type in the structural WIT syntax of :attr:`Codec.wit`."""
    if isinstance(ty, wc.FuncType):
        params = ", ".join(describe(param) for _, param in ty.params)
        result = ty.result
        return f"func({params})" + ("" if result is None else f" -> {describe(result)}")
    if isinstance(ty, wc.ListType):
        return f"list<{describe(ty.element)}>"
    if isinstance(ty, wc.OptionType):
        return f"option<{describe(ty.payload)}>"
    if isinstance(ty, wc.ResultType):
        ok, err = ty.ok, ty.err
        return f"result<{'_' if ok is None else describe(ok)}, {'_' if err is None else describe(err)}>"
    if isinstance(ty, wc.TupleType):
        return "tuple<" + ", ".join(describe(item) for item in ty.elements) + ">"
    if isinstance(ty, wc.VariantType):
        return "variant{" + ", ".join(name if p is None else f"{name}({describe(p)})" for name, p in ty.cases) + "}"
    if isinstance(ty, wc.RecordType):
        return "record{" + ", ".join(f"{name}: {describe(field)}" for name, field in ty.fields) + "}"
    if isinstance(ty, (wc.OwnType, wc.BorrowType)):
        return f"{'own' if isinstance(ty, wc.OwnType) else 'borrow'}<resource>"
    if isinstance(ty, wc.EnumType):
        return "enum{" + ", ".join(ty.names) + "}"
    if isinstance(ty, wc.FlagsType):
        return "flags{" + ", ".join(ty.names) + "}"
    return type(ty).__name__.lower()


def split_result(ty: Any, value: Any) -> tuple[bool, Any]:
    """``(is_ok, payload)`` of a value of type *ty*; a non-result value is always ok."""
    from wasmtime import component as wc

    if not isinstance(ty, wc.ResultType):
        return True, value
    if ty._tagged():  # patched in _compat: tags whenever the payloads cannot tell ok from err
        return value.tag == "ok", value.payload
    # Untagged: the cases' Python classes are disjoint, as wasmtime-py's own lowering assumes.
    ok_type, err_type = ty.ok, ty.err
    if ok_type is None:
        return value is None, value
    if err_type is None:
        return value is not None, value
    classes: set[type] = set()
    ok_type.add_classes(classes)
    return isinstance(value, tuple(classes)), value
