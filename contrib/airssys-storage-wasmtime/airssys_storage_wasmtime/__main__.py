"""``python -m airssys_storage_wasmtime run GUEST --manifest FILE [--invoke EXPORT] [ARG ...]``."""

from .cli import main

if __name__ == "__main__":
    main()
