"""What the explorer's tests share (a module name of its own: tests/cli has a conftest too)."""

from __future__ import annotations

import os
from collections.abc import Callable

from starlette.testclient import TestClient

#: The bearer token of the writable explorers in these tests.
TOKEN = "test-token-0123456789abcdef"


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


#: The ``make_client`` fixture: ``make_client(allow_writes=..., quotas=..., changes=...)`` -> a test client.
MakeClient = Callable[..., TestClient]
