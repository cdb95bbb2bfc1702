"""The audit trail (issue 15): one JSON record per denial, quota refusal, reload, clear and range delete."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from airssys_storage import Access, Manifest, PermissionDenied, QuotaExceeded, StorageManager, StorageSettings
from airssys_storage.audit import AUDIT_LOGGER, key_for_audit


def audit_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    parsed = []
    for record in caplog.records:
        if record.name == AUDIT_LOGGER:
            data = json.loads(record.getMessage())
            assert data == record.audit  # type: ignore[attr-defined]  # the same dict for structured handlers
            data.pop("time")
            parsed.append({**data, "level": record.levelname})
    return parsed


def manager_with(**settings: Any) -> StorageManager:
    return StorageManager.from_settings(StorageSettings(url="memory://", **settings))


def test_denials_refusals_reloads_clears_and_range_deletes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    with manager_with(audit_keys="plain") as manager:
        reader = manager.component(Manifest("app", Access.READ_ONLY))
        with pytest.raises(PermissionDenied):
            reader.set("secret", b"v")
        writer = manager.component(Manifest("app", Access.READ_WRITE, 100))  # a reload
        with pytest.raises(QuotaExceeded):
            writer.set("big", b"x" * 200)
        writer.set("user/1", b"v")
        writer.set("user/2", b"v")
        assert writer.delete_prefix("user/") == 2
        assert writer.delete_range("a", "b") == 0
        admin = manager.component(Manifest("app", Access.ADMIN))
        admin.clear()
        manager.component(Manifest("app", Access.ADMIN))  # the same manifest: no reload
    assert audit_records(caplog) == [
        {
            "event": "permission-denied",
            "component": "app",
            "operation": "set",
            "key": "secret",
            "reason": "its permissions do not allow it",
            "access": "read-only",
            "level": "WARNING",
        },
        {
            "event": "manifest-reloaded",
            "component": "app",
            "operation": None,
            "access": "read-write",
            "quota": 100,
            "level": "INFO",
        },
        {
            "event": "quota-exceeded",
            "component": "app",
            "operation": "set",
            "reason": "quota exceeded for component 'app': the write needs 203 more bytes, 0 of 100 bytes are used",
            "quota": 100,
            "level": "WARNING",
        },
        {
            "event": "delete-prefix",
            "component": "app",
            "operation": "delete-prefix",
            "key": "user/",
            "deleted": 2,
            "level": "INFO",
        },
        {
            "event": "delete-range",
            "component": "app",
            "operation": "delete-range",
            "key": "a",
            "deleted": 0,
            "level": "INFO",
        },
        {
            "event": "manifest-reloaded",
            "component": "app",
            "operation": None,
            "access": "admin",
            "quota": 52428800,
            "level": "INFO",
        },
        {"event": "clear", "component": "app", "operation": "clear", "level": "INFO"},
    ]


@pytest.mark.parametrize("mode", ["hash", "plain", "omit"])
def test_keys_are_hashed_by_default_or_as_configured(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    with manager_with(audit_keys=mode) as manager:
        with pytest.raises(PermissionDenied):
            manager.component(Manifest("app", Access.READ_ONLY)).delete("user/42")
    (record,) = audit_records(caplog)
    if mode == "omit":
        assert "key" not in record
    elif mode == "plain":
        assert record["key"] == "user/42"
    else:
        assert record["key"] == key_for_audit("user/42", "hash")
        assert record["key"].startswith("b2:") and len(record["key"]) == 3 + 16 and "42" not in record["key"]


def test_audit_keys_are_checked() -> None:
    from airssys_storage import ConfigurationError

    with pytest.raises(ConfigurationError, match="audit_keys"):
        StorageSettings(audit_keys="rot13")


def test_nothing_is_built_when_the_audit_logger_is_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=AUDIT_LOGGER)
    with manager_with() as manager:
        store = manager.component(Manifest("app", Access.ADMIN))
        store.set("k", b"v")
        store.clear()
    assert audit_records(caplog) == []


def test_a_quota_refusal_names_its_operation(caplog: pytest.LogCaptureFixture) -> None:
    """The refused public operation is named, on the single-key and the batch paths (an outside report)."""
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    with manager_with() as manager:
        app = manager.component(Manifest("app", Access.READ_WRITE, 100))
        for write in (
            lambda: app.set("k", b"x" * 200),
            lambda: app.set("k", b"x" * 200, ttl=60),
            lambda: app.set_many({"a": b"x" * 200}),
            lambda: app.set_if_absent("k", b"x" * 200),
        ):
            with pytest.raises(QuotaExceeded):
                write()
    operations = [r["operation"] for r in audit_records(caplog) if r["event"] == "quota-exceeded"]
    assert operations == ["set", "set", "set-many", "set-if-absent"]
