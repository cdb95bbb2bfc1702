import pytest

from airssys_storage.testing import BackendConformance


class TestMemoryBackend(BackendConformance):
    @pytest.fixture
    def storage_url(self) -> str:
        return "memory://"
