"""What this package needs from wasmtime-py 50, checked once, and two workarounds.

The host converts values between Python and wasmtime's C representation
itself (see :mod:`._codec`), so it depends on the layout of
``wasmtime_component_val_t`` as wasmtime-py 50 declares it. It also repairs
two defects of wasmtime-py 50's generic conversion, which the host still uses
to call a guest's exports:

1. **Result tagging.** ``VariantLikeType._tagged`` decides that a result (or
   variant) can be passed untagged when the Python classes of its cases do not
   overlap. An ``option<…>`` case contributes ``object`` (for ``None``), and
   ``isinstance(x, object)`` holds for everything, so in
   ``result<option<list<u8>>, storage-error>`` the ok case swallows every
   value: a host function cannot return ``err`` and a lifted ``err`` is
   indistinguishable from ``ok``. The patch also tags every variant-like type
   with a case whose payload accepts ``object``; those then use
   ``Variant("ok" | "err", payload)`` in both directions.
2. **``list<u8>`` one byte at a time.** ``ListType`` converts each byte as its
   own 32-byte value through Python (about 0.8 µs per byte: 48 ms for 64 KiB).
   The patch converts the whole list with one strided slice assignment.

Both are applied by :func:`ensure_ready` (called when a :class:`~.Host` is
created, never at import time), only for wasmtime-py 50 and only when the
internals they replace still look as expected. The tests in
``tests/test_compat.py`` fail when the internals change or when an upstream
release fixes a defect, so the workaround can be dropped deliberately.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import threading
from typing import Any

from .errors import UnsupportedRuntime

__all__ = [
    "SUPPORTED_MAJOR",
    "VAL_SIZE",
    "PAYLOAD_OFFSET",
    "ensure_ready",
    "internals_problems",
    "lift_bytes",
    "lower_bytes",
    "wasmtime_version",
]

SUPPORTED_MAJOR = 50
#: ``sizeof(wasmtime_component_val_t)`` and the offset of its payload union.
VAL_SIZE = 32
PAYLOAD_OFFSET = 8

_lock = threading.Lock()
_ready = False
#: The functions the workarounds replace, kept for the tests and for chaining.
ORIGINALS: dict[str, Any] = {}


def wasmtime_version() -> str:
    """The installed wasmtime-py version."""
    return importlib.metadata.version("wasmtime")


def internals_problems() -> list[str]:
    """What this package relies on in wasmtime-py and does not find (empty when all is well)."""
    from wasmtime import _ffi as ffi
    from wasmtime.component import _types

    problems = []
    val = getattr(ffi, "wasmtime_component_val_t", None)
    if val is None or ctypes.sizeof(val) != VAL_SIZE or val.of.offset != PAYLOAD_OFFSET:
        problems.append("wasmtime_component_val_t is not a 32-byte struct with its payload at offset 8")
    expected_kinds = {
        "BOOL": 0, "U8": 2, "U32": 6, "U64": 8, "STRING": 12, "LIST": 13, "TUPLE": 15, "VARIANT": 16, "OPTION": 18,
        "RESULT": 19,
    }  # fmt: skip
    for name, value in expected_kinds.items():
        kind = getattr(ffi, f"WASMTIME_COMPONENT_{name}", None)
        if kind is None or kind.value != value:
            problems.append(f"value kind WASMTIME_COMPONENT_{name} is not {value}")
    for name in (
        "wasmtime_component_linker_instance_add_func",
        "wasmtime_component_func_callback_t",
        "wasmtime_component_vallist_new_uninit",
        "wasmtime_component_valtuple_new_uninit",
        "wasmtime_component_vallist_delete",
        "wasmtime_component_val_new",
        "wasm_byte_vec_new_uninitialized",
        "wasmtime_error_new",
    ):
        if not hasattr(ffi, name):
            problems.append(f"wasmtime._ffi.{name} is missing")
    for owner, attribute in (
        ("VariantLikeType", "_tagged"),
        ("VariantLikeType", "_cases"),
        ("ListType", "_is_bytes"),
        ("ListType", "convert_to_c"),
        ("ListType", "convert_from_c"),
    ):
        if not hasattr(getattr(_types, owner, None), attribute):
            problems.append(f"wasmtime.component._types.{owner}.{attribute} is missing")
    return problems


def ensure_ready() -> None:
    """Check the installed wasmtime-py and apply the workarounds (once; thread-safe)."""
    global _ready
    if _ready:
        return
    with _lock:
        if _ready:
            return
        version = wasmtime_version()
        if version.split(".")[0] != str(SUPPORTED_MAJOR):
            raise UnsupportedRuntime(
                f"airssys-storage-wasmtime needs wasmtime {SUPPORTED_MAJOR}.x (its value conversion "
                f"depends on wasmtime-py's internals), but wasmtime {version} is installed: "
                f"pip install 'wasmtime=={SUPPORTED_MAJOR}.0.1'"
            )
        problems = internals_problems()
        if problems:
            raise UnsupportedRuntime(
                f"wasmtime {version} does not have the internals airssys-storage-wasmtime relies on: "
                + "; ".join(problems)
            )
        _apply_workarounds()
        _ready = True


def _apply_workarounds() -> None:
    from wasmtime.component import _types

    if _types.VariantLikeType._tagged is _tagged:  # already applied: keep the true originals
        return
    ORIGINALS["VariantLikeType._tagged"] = _types.VariantLikeType._tagged
    ORIGINALS["ListType.convert_to_c"] = _types.ListType.convert_to_c
    ORIGINALS["ListType.convert_from_c"] = _types.ListType.convert_from_c
    _types.VariantLikeType._tagged = _tagged  # type: ignore[method-assign]
    _types.ListType.convert_to_c = _list_convert_to_c  # type: ignore[method-assign]
    _types.ListType.convert_from_c = _list_convert_from_c  # type: ignore[method-assign]


def _tagged(self: Any) -> bool:
    """Workaround 1: also tag when a case's payload accepts ``object`` (an option would swallow every value)."""
    if ORIGINALS["VariantLikeType._tagged"](self):
        return True
    for _, ty in self._cases():
        if ty is not None:
            classes: set[type] = set()
            ty.add_classes(classes)
            if object in classes:
                return True
    return False


def _list_convert_to_c(self: Any, store: Any, val: Any, ptr: Any) -> None:
    """Workaround 2 (lowering): a ``list<u8>`` from ``bytes`` in one pass."""
    if isinstance(val, bytes) and self._is_bytes():
        lower_bytes(val, ptr.contents)
        return
    ORIGINALS["ListType.convert_to_c"](self, store, val, ptr)


def _list_convert_from_c(self: Any, c: Any) -> Any:
    """Workaround 2 (lifting): a ``list<u8>`` to ``bytes`` in one pass; takes ownership like the original."""
    if not self._is_bytes():
        return ORIGINALS["ListType.convert_from_c"](self, c)
    from wasmtime import _ffi as ffi

    try:
        return lift_bytes(c)
    finally:
        ffi.wasmtime_component_vallist_delete(ctypes.byref(c.of.list))


# -- list<u8> in one pass ------------------------------------------------------
#
# wasmtime's C API represents list<u8> as an array of 32-byte values, each a
# kind byte (U8 = 2) at offset 0 and the byte itself at offset 8. Strided slice
# assignment on a bytearray builds or reads that array at C speed. It works in
# chunks through a small per-thread scratch buffer: a temporary as large as
# the whole array (2 MiB for 64 KiB) would come from fresh pages on every call,
# and page faults cost more than the copying (~1 ms per 64 KiB on a VM).

_CHUNK = 2048  # values per pass: 64 KiB, below malloc's mmap threshold
_U8_CELL = bytes([2]) + bytes(VAL_SIZE - 1)
_scratch = threading.local()


def _cells() -> tuple[bytearray, int]:
    """This thread's scratch: _CHUNK U8 values whose payload bytes are overwritten per pass."""
    cells: bytearray | None = getattr(_scratch, "cells", None)
    if cells is None:
        cells = _scratch.cells = bytearray(_U8_CELL) * _CHUNK
        _scratch.view = (ctypes.c_char * len(cells)).from_buffer(cells)  # pins the buffer's address
        _scratch.address = ctypes.addressof(_scratch.view)
    return cells, _scratch.address


def lower_bytes(data: bytes | bytearray, out: Any) -> None:
    """Make the C value *out* a ``list<u8>`` holding *data* (memory owned by wasmtime)."""
    from wasmtime import _ffi as ffi

    size = len(data)
    ffi.wasmtime_component_vallist_new_uninit(ctypes.byref(out.of.list), size)
    if size:
        cells, source = _cells()
        destination = ctypes.cast(out.of.list.data, ctypes.c_void_p).value or 0
        view = memoryview(data)
        for start in range(0, size, _CHUNK):
            count = min(_CHUNK, size - start)
            cells[PAYLOAD_OFFSET : PAYLOAD_OFFSET + VAL_SIZE * count : VAL_SIZE] = view[start : start + count]
            ctypes.memmove(destination + VAL_SIZE * start, source, VAL_SIZE * count)
    out.kind = ffi.WASMTIME_COMPONENT_LIST  # last: see the note on ownership in _codec


def lift_bytes(val: Any) -> bytes:
    """The bytes of the ``list<u8>`` C value *val* (which stays owned by its owner)."""
    items = val.of.list
    size = items.size
    if not size:
        return b""
    address = ctypes.cast(items.data, ctypes.c_void_p).value or 0
    if size <= _CHUNK:
        return ctypes.string_at(address, VAL_SIZE * size)[PAYLOAD_OFFSET::VAL_SIZE]
    return b"".join(
        ctypes.string_at(address + VAL_SIZE * start, VAL_SIZE * min(_CHUNK, size - start))[PAYLOAD_OFFSET::VAL_SIZE]
        for start in range(0, size, _CHUNK)
    )
