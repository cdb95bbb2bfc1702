"""Paths, limits and helpers shared by the tests (a plain module: conftest.py is not importable)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest
from airssys_storage_wasmtime import GuestInstance
from airssys_storage_wasmtime.cli import split_result
from wasmtime.component import Variant

from airssys_storage import ComponentStorage, Manifest, StorageManager

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
PYTHON_GUEST = HERE / "python_guest"
KEYVALUE_GUEST = HERE / "keyvalue_guest"
SPIN_GUEST = HERE / "spin_guest"
#: The JavaScript guest (ComponentizeJS), with its npm toolchain in package.json / package-lock.json.
SPIN_JS_GUEST = HERE / "spin_js_guest"
#: The module the guests share (guest_checks.py), given to componentize-py as a second -p.
GUEST_COMMON = HERE / "guest_common"
REPOSITORY = HERE.parents[2]
COUNTER = REPOSITORY / "examples" / "counter"

#: Host limits the tests run with (the Python guest hard-codes the same numbers).
LIMITS = {"max_keys_per_query": 10, "max_batch_ops": 5, "max_value_bytes": 1024}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def tool(name: str) -> str:
    """The path of a command-line tool installed with the test dependencies; skip (fail under CI) without it."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed (pip install airssys-storage-wasmtime[test])")
    return found


#: The oldest Node.js that ComponentizeJS 0.23 (its parser, oxc-parser) supports.
NODE_MAJOR = 20


def node_tools() -> tuple[str, str]:
    """The paths of ``node`` and ``npm``, which build the JavaScript guest; skip (fail under CI) without them."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable(
            f"Node.js >= {NODE_MAJOR} with npm is not installed (apt-get install nodejs npm, or https://nodejs.org/); "
            "the JavaScript guest is built with it"
        )
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    major = version.lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < NODE_MAJOR:
        unavailable(f"Node.js {version or '(no version)'} at {node} is too old: ComponentizeJS needs >= {NODE_MAJOR}")
    return node, npm


def unavailable(message: str) -> NoReturn:
    """Skip a test that needs a missing tool, or fail it under CI (CI must run every test)."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def storage_of(
    manager: StorageManager,
    access: str = "read-write",
    max_size: str | None = "4KB",
    component: str = "guest",
    buckets: tuple[str, ...] = ("default",),
) -> ComponentStorage:
    return manager.component(Manifest(id=component, access=access, max_size=max_size, buckets=buckets))


def outcome(instance: GuestInstance, export: str, *args: Any) -> tuple[bool, Any]:
    """Call an echo export; ``(is_ok, payload)`` of the storage function's result."""
    return split_result(instance.guest.export_types[export].result, instance.call(export, *args))


def ok(instance: GuestInstance, export: str, *args: Any) -> Any:
    succeeded, payload = outcome(instance, export, *args)
    assert succeeded, f"{export}{_short(args)} failed with {_short(payload)}"
    return payload


def err(instance: GuestInstance, export: str, *args: Any) -> Variant:
    succeeded, payload = outcome(instance, export, *args)
    assert not succeeded, f"{export}{_short(args)} returned {_short(payload)}"
    assert isinstance(payload, Variant)
    return payload


def _short(value: Any) -> str:
    """repr(value), cut to 200 characters (a 1 MiB value would flood the report)."""
    text = repr(value)
    return text if len(text) <= 200 else f"{text[:200]}... ({len(text)} characters)"
