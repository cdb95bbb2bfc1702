"""The backend conformance suite, shipped so third-party backends can reuse it.

A backend's test file is one class and one fixture::

    import pytest
    from airssys_storage.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def storage_url(self, tmp_path):
            return f"mybackend://{tmp_path}/db"

``storage_url`` must name a store in which the suite's component ids hold no
data. Override ``backend_options`` (a dict) to pass options, and
``manager_factory`` to open managers differently (e.g. with your own
:class:`~airssys_storage.PluginRegistry`). The suite reads
the backend's declared :class:`~airssys_storage.Capabilities`: ``persistent``
enables the reopen tests (data, versions, deadlines, operation ids),
``multi_process`` races of processes (8 on one quota, several on one
counter), ``repair`` a test of ``repair_url`` (override ``damage_store`` to
damage the store first). Each test's docstring names the contract clause it
checks.

Time: expiry is tested without sleeping. The ``clock`` fixture is a
:class:`FakeClock` that the suite's ``manager_factory`` passes to
:meth:`~airssys_storage.StorageManager.from_settings` (``clock=clock``), and
tests move it by hand. A test class that overrides ``manager_factory`` must
pass the ``clock`` fixture the same way, or the expiry tests see the wall
clock and fail.

Run time: the stateful model test runs ``model_examples`` (200) examples of
``model_steps`` (50) steps; the races use ``race_threads``,
``race_rounds``, ``race_processes`` and ``race_process_increments``; the
change feed's multi-process proofs (capabilities ``change_feed`` and
``multi_process``) ``feed_race_processes`` x ``feed_race_writes`` (4 x
2,500) and ``feed_kill_writes``/``feed_kill_after`` (600/150). A slow
engine may lower these class attributes in its test class (say why there).

It needs pytest and hypothesis: install them with the extra
``pip install 'airssys-storage[testing]'`` (from a clone: ``pip install '.[testing]'``);
:class:`FakeClock` needs neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .clock import FakeClock  # no test dependencies: usable by any program that wants a clock it moves

if TYPE_CHECKING:
    from .conformance import BackendConformance
    from .environment import isolated_environment
    from .model import model_component_ids

__all__ = ["BackendConformance", "FakeClock", "isolated_environment", "model_component_ids"]

# The suite needs pytest and hypothesis; FakeClock does not, so the rest is imported on first use.
_SUITE = {
    "BackendConformance": "conformance",
    "isolated_environment": "environment",
    "model_component_ids": "model",
}


def __getattr__(name: str) -> Any:
    module = _SUITE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import hypothesis  # noqa: F401
        import pytest  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"airssys_storage.testing.{name} needs pytest and hypothesis ({exc.name} is missing): "
            "pip install 'airssys-storage[testing]' (from a clone: pip install '.[testing]'); FakeClock needs neither"
        ) from exc
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
