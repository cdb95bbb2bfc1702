"""The storage explorer: a small web application over one store (``airssys-storage serve``).

Pages (Jinja2 templates) and a JSON API mirroring them, on Starlette, served
by uvicorn; templates, CSS and the chart script ship inside the package, so
the explorer works on hosts without internet access. Install the optional
extra ``airssys-storage[explorer]``; nothing here is imported unless ``serve``
runs (or a host calls :func:`airssys_storage.explorer.app.create_app`).

Safe by default: read-only, bound to 127.0.0.1. Writes (set, delete, clear,
import) need ``--allow-writes`` and a bearer token; every write goes through
an operator handle of the core (permission, validation, quota, backend, in
that order) and is logged as a JSON audit record on the logger
``airssys_storage.audit``. See the README's "Storage explorer" section for
the routes.
"""
