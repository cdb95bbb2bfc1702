"""What the test guests (componentize-py, one per WIT) share: counting checks and running a scenario.

Each guest's ``app.py`` imports this module; the tests pass its directory to
``componentize-py`` as a second ``-p``. A failed check raises
``Err("<what failed>")``; a scenario returns the number of checks made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from componentize_py_types import Err


class Checks:
    def __init__(self) -> None:
        self.count = 0

    def equal(self, what: str, got: Any, expected: Any) -> None:
        self.count += 1
        if got != expected:
            raise Err(f"{what}: got {got!r}, expected {expected!r}")

    def error(self, what: str, call: Callable[[], Any], expected: type, code: str = "") -> Any:
        """Run *call*; it must fail with the error case *expected*. Returns the error value.

        With *code*, the case's message must start with ``"<code>:"`` (the
        standards' catch-all ``other`` case carries the storage error's code so).
        """
        self.count += 1
        try:
            got = call()
        except Err as err:
            value = err.value
            if type(value) is not expected:
                raise Err(f"{what}: failed with {value!r}, expected {expected.__name__}") from None
            if code and not value.value.startswith(code + ":"):
                raise Err(f"{what}: failed with {value!r}, expected the code {code}") from None
            return value
        raise Err(f"{what}: returned {got!r}, expected the error {expected.__name__}")


def run_checks(scenarios: Mapping[str, Callable[[Checks], None]], scenario: str) -> int:
    """Run *scenario*; print and return how many checks passed, or raise ``Err`` naming the failure."""
    checks = Checks()
    try:
        scenarios[scenario](checks)
    except Err as err:
        if isinstance(err.value, str):
            raise
        raise Err(f"unexpected error {err.value!r} after {checks.count} checks") from None
    print(f"{scenario}: {checks.count} checks passed")
    return checks.count
