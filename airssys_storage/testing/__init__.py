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
enables the reopen test, ``multi_process`` a race of 8 processes on one quota,
``repair`` a test of ``repair_url`` (override ``damage_store`` to damage the
store first). Each test's docstring names the contract clause it checks.

It needs pytest and hypothesis: install them with the extra
``pip install 'airssys-storage[testing]'``.
"""

try:
    import hypothesis  # noqa: F401
    import pytest  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"airssys_storage.testing needs pytest and hypothesis ({exc.name} is missing): "
        "pip install 'airssys-storage[testing]'"
    ) from exc

from .clock import FakeClock
from .conformance import BackendConformance, model_component_ids
from .environment import isolated_environment

__all__ = ["BackendConformance", "FakeClock", "isolated_environment", "model_component_ids"]
