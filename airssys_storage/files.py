"""Files and directories that airssys-storage creates are private to the user who runs it.

Component data is private by default. Everything the project creates on
disk goes through these helpers:

- directories it creates get mode ``0700`` (:data:`PRIVATE_DIR_MODE`), and
  so does every missing parent it creates on the way (as the XDG base
  directory specification asks for the user directories);
- files it creates get mode ``0600`` (:data:`PRIVATE_FILE_MODE`).

The process umask can only remove permissions from these modes, never add
any. A file or directory that already exists is used as it is: its owner
and permissions are never changed (they are the user's choice; tighten them
with ``chmod``).

The backends use them where they create their files: the SQL plugin creates
a new SQLite database file ``0600`` before SQLite opens it (SQLite gives its
``-wal``, ``-shm`` and ``-journal`` files the main file's permissions), the
LevelDB plugin creates the database directory ``0700`` (LevelDB creates the
files inside with mode ``0644`` on every platform and offers no setting;
the private directory is what keeps others out), the core creates the
default data directory, the command line writes exports with
:func:`atomic_private_file`, and the wasmtime host keeps its compile cache
in a private directory.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "atomic_private_file",
    "create_private_file",
    "make_private_dirs",
]

#: Mode of the directories airssys-storage creates (owner only).
PRIVATE_DIR_MODE = 0o700
#: Mode of the files airssys-storage creates (owner read and write).
PRIVATE_FILE_MODE = 0o600


def make_private_dirs(path: str | os.PathLike[str]) -> None:
    """Create the directory *path* and each missing parent, each with mode 0700.

    Directories that exist are left as they are (mode and owner unchanged).
    Safe against a concurrent creator. Raises :class:`OSError` as
    :func:`os.mkdir` does, e.g. ``FileExistsError`` when a component of *path*
    is a file, ``PermissionError`` when a parent is not writable.
    """
    target = Path(os.path.abspath(path))
    missing: list[Path] = []
    current = target
    while not current.is_dir() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR_MODE)
        except FileExistsError:
            if not directory.is_dir():
                raise


def create_private_file(path: str | os.PathLike[str]) -> bool:
    """Create an empty file at *path* with mode 0600 unless something is already there.

    Returns ``True`` when this call created the file, ``False`` when *path*
    existed (a file, a directory or a symbolic link, left untouched). Raises
    :class:`OSError` when the file cannot be created (e.g. its directory is
    missing or not writable).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


@contextmanager
def atomic_private_file(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary stream whose content becomes the file *path* (mode 0600) when the block completes.

    The data goes to a temporary file (mode 0600) in the same directory,
    which replaces *path* with :func:`os.replace` only when the ``with``
    block ends without an exception: readers see the old file or the whole
    new one, never a part, and an interrupted write leaves no file behind.
    A file that *path* named before is replaced, not rewritten, so the new
    file has mode 0600 whatever the old one had. Raises :class:`OSError`
    when the directory is missing or not writable, and :class:`IsADirectoryError`
    naming *path* when *path* is a directory (before anything is written).
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
