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
the backend's declared :class:`~airssys_storage.Capabilities` (for example
``persistent`` enables the reopen tests).
"""

from .conformance import BackendConformance, model_component_ids
from .environment import isolated_environment

__all__ = ["BackendConformance", "isolated_environment", "model_component_ids"]
