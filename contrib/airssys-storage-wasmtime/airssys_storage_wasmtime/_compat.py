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
   The patch converts ``bytes`` with strided slice copies
   (:func:`._codec.lower_bytes`, :func:`._codec.lift_bytes`).

Both are applied by :func:`ensure_ready` (called when a :class:`~.Host` is
created, never at import time), only for wasmtime-py 50 and only when the
internals they replace still look as expected. The tests in
``tests/test_compat.py`` fail when the internals change or when an upstream
release fixes a defect, so the workaround can be dropped deliberately.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import sys
import threading
from typing import Any

from .errors import UnsupportedRuntime

__all__ = ["PAYLOAD_OFFSET", "SUPPORTED_MAJOR", "VAL_SIZE", "ensure_ready", "internals_problems", "wasmtime_version"]

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
    from wasmtime.component import Component, _types

    problems = []
    if sys.byteorder != "little":  # _codec writes a value's kind byte as the low byte of a word
        problems.append("this host is big-endian; the value codecs assume little-endian")
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
        "wasmtime_component_deserialize",
        "wasmtime_component_t",
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
    if not hasattr(Component, "_from_ptr"):
        problems.append("wasmtime.component.Component._from_ptr is missing")
    problems.extend(_sandbox_problems())
    return problems


def _sandbox_problems() -> list[str]:
    """What host.py uses besides values: epoch interruption, its deadline callback, store limits, add_func."""
    from wasmtime import Config, Engine, Store, _bindings

    problems = []
    for name, count in (
        ("_wasmtime_store_epoch_deadline_callback", 4),
        ("_wasmtime_component_linker_instance_add_func", 6),
    ):
        declared = getattr(_bindings, name, None)
        if len(getattr(declared, "argtypes", None) or []) != count:
            problems.append(f"wasmtime._bindings.{name} is missing or changed")
    for owner, attribute in (
        (Config, "epoch_interruption"),
        (Engine, "increment_epoch"),
        (Store, "set_epoch_deadline"),
        (Store, "set_limits"),
    ):
        if not hasattr(owner, attribute):
            problems.append(f"wasmtime.{owner.__name__}.{attribute} is missing")
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
        from ._codec import lower_bytes

        lower_bytes(val, ptr.contents)
        return
    ORIGINALS["ListType.convert_to_c"](self, store, val, ptr)


def _list_convert_from_c(self: Any, c: Any) -> Any:
    """Workaround 2 (lifting): a ``list<u8>`` to ``bytes`` in one pass; takes ownership like the original."""
    if not self._is_bytes():
        return ORIGINALS["ListType.convert_from_c"](self, c)
    from wasmtime import _ffi as ffi

    from ._codec import lift_bytes

    try:
        return lift_bytes(c)
    finally:
        ffi.wasmtime_component_vallist_delete(ctypes.byref(c.of.list))
