"""Key and value limits the engine cannot hold fail at open, naming the setting and the fix.

Issue 9: on MariaDB with ``max_value_bytes`` raised to 12 to 20 MiB, a large value
failed as "MySQL server has gone away": PyMySQL sends bytes hex-encoded, so a
16 MiB ``max_allowed_packet`` holds a value of about 8 MiB only.
"""

from __future__ import annotations

from typing import Any

import pytest

from airssys_storage import Access, ConfigurationError, Manifest, StorageManager, StorageSettings, ValueTooLarge

MiB = 1024 * 1024


def manager(url: str, options: dict[str, Any], **limits: int) -> StorageManager:
    return StorageManager.from_settings(StorageSettings(url=url, backend_options=options, **limits))


@pytest.mark.engines("mariadb")
@pytest.mark.parametrize("max_value_bytes", [12 * MiB, 16 * MiB, 20 * MiB])
def test_mariadb_refuses_values_above_max_allowed_packet_at_open(
    store_url: str, store_options: dict[str, Any], max_value_bytes: int
) -> None:
    with pytest.raises(ConfigurationError, match="max_allowed_packet") as refused:
        manager(store_url, store_options, max_value_bytes=max_value_bytes)
    message = refused.value.message
    assert f"max_value_bytes = {max_value_bytes}" in message and "hex-encoded" in message
    assert "lower max_value_bytes to at most" in message and "SET GLOBAL max_allowed_packet" in message


@pytest.mark.engines("mariadb")
def test_mariadb_stores_a_value_of_exactly_the_computed_ceiling(store_url: str, store_options: dict[str, Any]) -> None:
    """The ceiling is exact enough to use: the largest key and id with a value of the ceiling's size commit."""
    from airssys_storage_sql import SQLBackend

    backend = SQLBackend.open(store_url, store_options)
    try:
        packet = int(backend._fetchall(backend._take(), "SELECT @@max_allowed_packet", ())[0][0])
        ceiling = backend._d.value_ceiling(packet, 256)
    finally:
        backend.close()
    assert 0.49 * packet < ceiling < 0.5 * packet
    with manager(store_url, store_options, max_value_bytes=ceiling) as opened:
        component = "c" + "x" * 62  # the longest id
        storage = opened.component(Manifest(component, Access.ADMIN, "500MB"))
        key = "k" * 256
        storage.set(key, b"\xab" * ceiling)
        assert storage.get(key) == b"\xab" * ceiling
        # A write batch sends its values as escaped bytes, each row in its own piece when it must; bytes
        # that need escaping (backslash, quote, NUL) double, so a value made of them is the worst case.
        batch = [
            (key, b"\\" * ceiling),
            ("k" * 255 + "2", bytes(range(256)) * (ceiling // 256)),
            ("k" * 255 + "3", b"'\x00" * (ceiling // 2)),
        ]
        storage.set_many(batch)
        assert storage.get_many([k for k, _ in batch]) == [v for _, v in batch]
        with pytest.raises(ValueTooLarge):
            storage.set(key, b"\xab" * (ceiling + 1))
        storage.clear()


@pytest.mark.engines("mariadb")
def test_mariadb_refuses_keys_wider_than_its_key_column(store_url: str, store_options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="max_key_bytes = 300 is above the 256 bytes the MariaDB key column"):
        manager(store_url, store_options, max_key_bytes=300)


@pytest.mark.engines("postgresql")
def test_postgresql_refuses_values_above_its_1_gb_field_limit(store_url: str, store_options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL's largest field and message are 1 GB"):
        manager(store_url, store_options, max_value_bytes=2**30)
    manager(store_url, store_options, max_value_bytes=512 * MiB).close()


@pytest.mark.engines("sqlite")
def test_sqlite_refuses_values_above_sqlite_max_length(store_url: str, store_options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"SQLite's maximum length of a row \(SQLITE_MAX_LENGTH\)"):
        manager(store_url, store_options, max_value_bytes=10**9)
    manager(store_url, store_options, max_value_bytes=512 * MiB).close()
