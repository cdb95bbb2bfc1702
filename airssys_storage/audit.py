"""The audit trail: one JSON log record per security- or data-relevant event, on standard logging.

Records go to the logger ``airssys_storage.audit`` (configure it like any
other logger: a handler, a level, ``propagate``). Each record's message is one
JSON object, and the same dict is attached to the record as its ``audit``
attribute for structured handlers::

    {"event": "permission-denied", "component": "app", "operation": "clear",
     "key": "b2:1f0a...", "reason": "its permissions do not allow it", "time": 1764470000.123}

Events and levels:

``permission-denied`` (WARNING)
    A permission check refused an operation (``reason``: why).
``quota-exceeded`` (WARNING)
    A write was refused by the component's byte quota (``reason``: the error's message; ``operation``: the
    public method refused, e.g. ``set``, ``set-many``, or ``null`` for a transaction's commit).
``quota-warning`` (WARNING)
    Usage crossed a soft quota threshold upward (``threshold_percent``, ``used_bytes``, ``quota_bytes``);
    one per crossing (see :mod:`airssys_storage.quota_warnings`).
``manifest-reloaded`` (INFO)
    :meth:`~airssys_storage.StorageManager.component` was called again for an id with another manifest.
``clear``, ``delete-prefix``, ``delete-range`` (INFO)
    The bulk deletes, after they succeeded (``deleted``: how many live keys went).

``key`` follows the setting ``audit_keys``: ``"hash"`` (default) gives
``"b2:"`` and the first 16 hex digits of the key's BLAKE2b digest (enough to
correlate records without storing the key), ``"plain"`` the key itself,
``"omit"`` leaves the field out. Building a record costs nothing unless the
logger is enabled for its level.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = ["AUDIT_LOGGER", "audit", "key_for_audit"]

AUDIT_LOGGER = "airssys_storage.audit"
log = logging.getLogger(AUDIT_LOGGER)


def key_for_audit(key: str | None, mode: str) -> str | None:
    """*key* as an audit record shows it under setting ``audit_keys`` *mode* (``None``: leave it out)."""
    if key is None or mode == "omit":
        return None
    if mode == "plain":
        return key
    import hashlib  # only here: it loads OpenSSL

    return "b2:" + hashlib.blake2b(key.encode(errors="surrogatepass"), digest_size=8).hexdigest()


def audit(
    event: str,
    component: str,
    operation: str | None,
    *,
    key: str | None = None,
    key_mode: str = "hash",
    reason: str | None = None,
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    """Log one audit record (see the module docs); a no-op when the audit logger is off for *level*."""
    if not log.isEnabledFor(level):
        return
    record: dict[str, Any] = {"event": event, "component": component, "operation": operation}
    shown = key_for_audit(key, key_mode)
    if shown is not None:
        record["key"] = shown
    if reason is not None:
        record["reason"] = reason
    record.update(fields)
    record["time"] = time.time()
    log.log(level, json.dumps(record, ensure_ascii=False, sort_keys=False), extra={"audit": record})
