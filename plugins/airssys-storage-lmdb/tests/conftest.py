from __future__ import annotations

from airssys_storage.testing import isolated_environment  # noqa: F401 - autouse: no developer settings leak in
