"""The wasmtime-py 50 workarounds: still needed, still applicable, and correct.

If a test here fails after a wasmtime upgrade, read its message: either
wasmtime-py's internals moved (adapt ``_compat``) or upstream fixed a defect
(drop that workaround and its test).
"""

from __future__ import annotations

import ctypes
from typing import Any

import pytest
from airssys_storage_wasmtime import Guest, Host, UnsupportedRuntime, _compat
from wasmtime import Store
from wasmtime import _ffi as ffi
from wasmtime.component import U8, Component, ListType, ResultType, Variant
from wasmtime.component._types import VariantLikeType


def import_type(host: Host, guest: Guest, function: str) -> Any:
    """The wasmtime FuncType of one storage import of *guest*."""
    imports = guest.component.type.imports(host.engine)
    instance = imports["airssys:wasm/storage@0.1.0"].ty
    return instance.exports(host.engine)[function].ty


@pytest.fixture
def get_result(host: Host, echo: Guest) -> ResultType:
    """``result<option<list<u8>>, storage-error>``, the type of storage-get's result."""
    result = import_type(host, echo, "storage-get").result
    assert isinstance(result, ResultType)
    return result


@pytest.fixture
def byte_list(host: Host, echo: Guest) -> ListType:
    """``list<u8>``, the type of storage-set's value."""
    value = import_type(host, echo, "storage-set").params[1][1]
    assert isinstance(value, ListType)
    return value


def roundtrip(ty: Any, host: Host, value: Any) -> Any:
    """Lower *value* to a C value with wasmtime-py's generic conversion and lift it back."""
    slot = ffi.wasmtime_component_val_t()
    ty.convert_to_c(Store(host.engine), value, ctypes.pointer(slot))
    return ty.convert_from_c(slot)


def test_the_installed_wasmtime_is_the_supported_release() -> None:
    assert _compat.wasmtime_version().split(".")[0] == str(_compat.SUPPORTED_MAJOR)


def test_wasmtime_py_still_has_the_internals_the_host_relies_on() -> None:
    assert _compat.internals_problems() == []


def test_a_host_installs_both_workarounds(host: Host) -> None:
    assert VariantLikeType._tagged is _compat._tagged
    assert ListType.convert_to_c is _compat._list_convert_to_c
    assert ListType.convert_from_c is _compat._list_convert_from_c


def test_applying_the_workarounds_twice_keeps_the_originals(host: Host) -> None:
    original = _compat.ORIGINALS["VariantLikeType._tagged"]
    _compat._apply_workarounds()
    assert _compat.ORIGINALS["VariantLikeType._tagged"] is original
    assert original is not _compat._tagged


def test_defect_1_is_still_in_wasmtime_py(get_result: ResultType, host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    original = _compat.ORIGINALS["VariantLikeType._tagged"]
    assert not original(get_result), (
        "wasmtime-py now tags result<option<list<u8>>, storage-error> by itself: upstream fixed defect 1, "
        "drop the _tagged workaround in airssys_storage_wasmtime/_compat.py"
    )
    monkeypatch.setattr(VariantLikeType, "_tagged", original)
    with pytest.raises((TypeError, ValueError)):
        roundtrip(get_result, host, Variant("err", Variant("key-not-found")))


def test_defect_1_workaround_tags_results_whose_ok_case_is_an_option(get_result: ResultType, host: Host) -> None:
    assert get_result._tagged()
    for value in (
        Variant("ok", None),
        Variant("ok", b""),
        Variant("ok", b"\x00\xffdata"),
        Variant("err", Variant("key-not-found")),
        Variant("err", Variant("internal-error", "disk on fire")),
    ):
        assert roundtrip(get_result, host, value) == value


def test_defect_1_workaround_leaves_unambiguous_results_untagged(host: Host, echo: Guest) -> None:
    has_result = import_type(host, echo, "storage-has").result
    set_result = import_type(host, echo, "storage-set").result
    assert not has_result._tagged() and not set_result._tagged()
    assert roundtrip(has_result, host, True) is True
    assert roundtrip(set_result, host, None) is None
    assert roundtrip(set_result, host, Variant("quota-exceeded")) == Variant("quota-exceeded")


def test_defect_2_is_still_in_wasmtime_py(byte_list: ListType, host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original_u8 = U8.convert_to_c

    def counting(self: U8, store: Any, val: Any, ptr: Any) -> None:
        calls.append(val)
        original_u8(self, store, val, ptr)

    monkeypatch.setattr(U8, "convert_to_c", counting)
    monkeypatch.setattr(ListType, "convert_to_c", _compat.ORIGINALS["ListType.convert_to_c"])
    monkeypatch.setattr(ListType, "convert_from_c", _compat.ORIGINALS["ListType.convert_from_c"])
    assert roundtrip(byte_list, host, b"abcd") == b"abcd"
    assert len(calls) == 4, (
        "wasmtime-py no longer converts list<u8> one byte at a time: upstream fixed defect 2, "
        "drop the ListType workaround in airssys_storage_wasmtime/_compat.py if it is as fast"
    )


@pytest.mark.parametrize("size", [0, 1, 2047, 2048, 2049, 65536, 100_001])
def test_defect_2_workaround_converts_every_byte(byte_list: ListType, host: Host, size: int) -> None:
    value = bytes(i * 7 % 256 for i in range(size))
    assert roundtrip(byte_list, host, value) == value


def test_lists_of_other_types_keep_the_original_conversion(host: Host, echo: Guest) -> None:
    keys = import_type(host, echo, "storage-keys").result.ok  # list<string>
    assert roundtrip(keys, host, ["a", "ключ", ""]) == ["a", "ключ", ""]


def test_an_unsupported_wasmtime_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_compat, "_ready", False)
    monkeypatch.setattr(_compat, "wasmtime_version", lambda: "51.0.0")
    with pytest.raises(UnsupportedRuntime, match=r"needs wasmtime 50\.x.*51\.0\.0 is installed"):
        _compat.ensure_ready()


def test_changed_internals_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(ListType, "_is_bytes")
    monkeypatch.setattr(ffi, "WASMTIME_COMPONENT_LIST", ctypes.c_uint8(99))
    monkeypatch.delattr(Component, "_from_ptr")
    problems = _compat.internals_problems()
    assert "wasmtime.component.Component._from_ptr is missing" in problems
    assert "wasmtime.component._types.ListType._is_bytes is missing" in problems
    assert "value kind WASMTIME_COMPONENT_LIST is not 13" in problems
    monkeypatch.setattr(_compat, "_ready", False)
    with pytest.raises(UnsupportedRuntime, match="_is_bytes is missing"):
        _compat.ensure_ready()


def test_changed_sandbox_internals_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The time limit needs epoch interruption and the C deadline callback as the bindings declare it."""
    from wasmtime import Engine, Store, _bindings

    monkeypatch.delattr(Engine, "increment_epoch")
    monkeypatch.delattr(Store, "set_limits")
    monkeypatch.delattr(_bindings, "_wasmtime_store_epoch_deadline_callback")
    problems = _compat.internals_problems()
    assert "wasmtime.Engine.increment_epoch is missing" in problems
    assert "wasmtime.Store.set_limits is missing" in problems
    assert "wasmtime._bindings._wasmtime_store_epoch_deadline_callback is missing or changed" in problems
