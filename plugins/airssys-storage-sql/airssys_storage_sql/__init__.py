"""SQL backend for airssys-storage: SQLite, PostgreSQL and MariaDB through SQLAlchemy.

URLs: ``sqlite:///PATH`` (the embedded default), ``sqlite://`` (in memory),
``postgresql://…`` (psycopg 3, extra ``[postgresql]``), ``mysql://…`` /
``mariadb://…`` (PyMySQL, extra ``[mysql]``). Options are documented on
:class:`~airssys_storage_sql.backend.SQLOptions` and in the README.

Importing this module imports neither SQLAlchemy nor a driver; that happens
when a store is opened.
"""

from __future__ import annotations

from typing import cast

from airssys_storage import StorageBackend, hookimpl

from .backend import SQLBackend, SQLOptions

__all__ = ["SQLBackend", "SQLOptions"]


@hookimpl
def register_backends() -> list[type[StorageBackend]]:
    # One class for every engine: open() gives it the dialect object of the URL's engine.
    return [cast("type[StorageBackend]", SQLBackend)]
