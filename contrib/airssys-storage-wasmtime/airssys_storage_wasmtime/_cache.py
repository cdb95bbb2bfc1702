"""The compile cache: compiled components on disk, used only from a private directory and when signed.

Loading a compiled component runs its native code without any validation,
so an entry is trusted only when both hold:

1. **The directory is private.** The cache directory (and its
   ``wasmtime-<version>`` subdirectory) must be owned by the user running
   the host and writable by no one else (no group or other write bit); each
   parent up to ``/`` must be owned by the user or root and writable by no
   one else, unless it has the sticky bit (as ``/tmp`` has: others cannot
   rename or delete what is not theirs in it). These are ``ssh``'s rules for
   ``~/.ssh``, plus the sticky exception. A directory that fails them is
   not used: the host compiles without the cache and logs a warning naming
   the directory and the fix. Missing directories are created with mode 0700.
   The path is resolved (symbolic links followed) once, and the resolved
   path is what is checked and used.
2. **The entry is signed.** Each entry is ``MAGIC + tag + artifact``, where
   *tag* is HMAC-SHA256, under a per-user secret key, over the wasmtime
   version, the sha256 of the guest's source and the artifact. The key is 32
   random bytes in the file ``cache.key`` (mode 0600) in the cache directory.
   An entry that is unreadable, damaged, stale, written by another key or
   planted under another guest's hash does not verify: the host logs a
   warning, compiles the guest and replaces the entry. Verified bytes are
   what is deserialised (from memory, not re-read from the file).

What this stops: someone who can write a single entry, or copy a genuine
entry of one guest under another guest's hash, gets a recompilation, never
their code run. What it cannot stop: someone who can write to the directory
itself can replace ``cache.key`` with a key of their own, and someone who
knows the key and can write an entry runs native code in the host process.
Rule 1 is what keeps them out, so the cache directory must stay private;
root can always do both.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Any

from airssys_storage.files import atomic_private_file, make_private_dirs

__all__ = ["KEY_FILE", "MAGIC", "CompileCache", "untrusted_reason"]

#: Under the core's logger, so that ``airssys-storage run`` prints these warnings as its own.
log = logging.getLogger("airssys_storage.wasmtime.cache")

#: The first bytes of every entry (format version 1).
MAGIC = b"airssys-storage-wasmtime compiled component v1\n"
#: The name of the secret key's file in the cache directory.
KEY_FILE = "cache.key"
_KEY_BYTES = 32
_TAG_BYTES = hashlib.sha256().digest_size
_FIX = "use a private cache directory (--cache-dir, AIRSSYS_STORAGE_WASMTIME_CACHE_DIR or Host(cache_dir=...))"


def untrusted_reason(directory: Path, top: Path) -> str | None:
    """Why *directory* may not hold code this process runs, with the fix; ``None`` if it may.

    *directory* and *top* (the cache directory the user chose, *directory*
    or one of its parents) are resolved paths. *directory* and each parent
    up to *top* must be owned by the current user and writable by no one
    else; the parents of *top* must be owned by the user or root, and
    writable by others only with the sticky bit. Always ``None`` where there
    are no POSIX user ids (Windows). Raises :class:`OSError` when a
    directory cannot be examined.
    """
    if not hasattr(os, "getuid"):
        return None
    uid = os.getuid()
    for path in (directory, *directory.parents):
        info = os.stat(path)
        mode = stat.S_IMODE(info.st_mode)
        if path == directory or path == top or top in path.parents:
            if not stat.S_ISDIR(info.st_mode):
                return f"{path} is not a directory; {_FIX}"
            if info.st_uid != uid:
                return f"{path} is owned by user id {info.st_uid}, not by you (user id {uid}); {_FIX}"
            if mode & 0o022:
                return (
                    f"{path} is writable by its group or by others (mode {mode:o}); run `chmod go-w {path}`, or {_FIX}"
                )
        elif info.st_uid not in (uid, 0):
            return (
                f"its parent directory {path} is owned by user id {info.st_uid}, neither you nor root, "
                f"so that user can replace the cache; {_FIX}"
            )
        elif mode & 0o022 and not mode & stat.S_ISVTX:
            return (
                f"its parent directory {path} is writable by its group or by others without the sticky bit "
                f"(mode {mode:o}), so they can replace the cache; run `chmod go-w {path}`, or {_FIX}"
            )
    return None


class CompileCache:
    """Signed compiled components in a private directory (see the module documentation)."""

    def __init__(self, directory: Path, wasmtime_version: str, key: bytes) -> None:
        #: The resolved directory holding the entries and the key.
        self.directory = directory
        self._version = wasmtime_version.encode()
        self._key = key

    @staticmethod
    def directory_for(root: Path, wasmtime_version: str) -> Path:
        """Where the entries of this wasmtime version live in the cache directory *root*."""
        return root / f"wasmtime-{wasmtime_version}"

    @classmethod
    def open(cls, root: Path, wasmtime_version: str) -> CompileCache | None:
        """The cache of this wasmtime version in the cache directory *root*, created (mode 0700) if missing.

        Returns ``None``, after logging a warning that names the directory
        and the fix, when the directory cannot be created or examined, is not
        private, or its key cannot be read or created: the host then
        compiles every guest. Never raises for the cache's sake.
        """
        directory = cls.directory_for(root, wasmtime_version)
        try:
            make_private_dirs(directory)
            real = Path(os.path.realpath(directory))
            reason = untrusted_reason(real, Path(os.path.realpath(root)))
        except OSError as exc:
            log.warning("not using the compile cache %s: %s; compiling without it", directory, exc)
            return None
        if reason is not None:
            log.warning(
                "not using the compile cache %s, it is not private: %s; compiling without it", directory, reason
            )
            return None
        try:
            key = _load_key(real / KEY_FILE)
        except OSError as exc:
            log.warning("not using the compile cache %s: its key: %s; compiling without it", directory, exc)
            return None
        return cls(real, wasmtime_version, key)

    def path(self, sha256: str) -> Path:
        """The entry of the guest whose source has this sha256 (hex)."""
        return self.directory / f"{sha256}.cwasm"

    def _tag(self, sha256: str, artifact: bytes | bytearray | memoryview) -> bytes:
        mac = hmac.new(self._key, MAGIC + self._version + b"\0" + sha256.encode() + b"\0", hashlib.sha256)
        mac.update(artifact)
        return mac.digest()

    def load(self, engine: Any, sha256: str) -> Any | None:
        """The cached component of the guest with this sha256, or ``None`` (missing, or rejected with a warning)."""
        from wasmtime import WasmtimeError

        path = self.path(sha256)
        try:
            with open(path, "rb") as stream:
                entry = bytearray(os.fstat(stream.fileno()).st_size)
                del entry[stream.readinto(entry) :]
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the compile cache entry %s (%s); compiling the guest again", path, exc)
            return None
        header = len(MAGIC) + _TAG_BYTES
        if not (
            entry.startswith(MAGIC)
            and len(entry) > header
            and hmac.compare_digest(entry[len(MAGIC) : header], self._tag(sha256, memoryview(entry)[header:]))
        ):
            log.warning(
                "the compile cache entry %s does not verify (damaged, written by another version or key, or "
                "planted); not running it: compiling the guest again and replacing the entry",
                path,
            )
            return None
        try:
            return _deserialize(engine, entry, header)
        except WasmtimeError as exc:
            log.warning("cannot load the compile cache entry %s (%s); compiling the guest again", path, exc)
            return None

    def store(self, sha256: str, component: Any) -> None:
        """Write the signed entry of *component* atomically (mode 0600); a failure only logs a warning."""
        path = self.path(sha256)
        artifact = component.serialize()
        try:
            with atomic_private_file(path) as stream:
                stream.write(MAGIC)
                stream.write(self._tag(sha256, artifact))
                stream.write(artifact)
        except OSError as exc:  # the cache is an optimisation; never fail a run for it
            log.warning("cannot write the compile cache entry %s: %s", path, exc)


def _deserialize(engine: Any, entry: bytearray, offset: int) -> Any:
    """The component serialised in *entry* from *offset* on, handed to wasmtime without a copy.

    ``Component.deserialize`` needs ``bytes`` and copies them once more into a
    ctypes array: for a 30 MB artifact that is two extra copies (~60 ms) on
    every cached load. These are the same wasmtime-py calls without them
    (checked by ``_compat.internals_problems``).
    """
    from wasmtime import WasmtimeError
    from wasmtime import _ffi as ffi
    from wasmtime.component import Component

    size = len(entry) - offset
    data = (ctypes.c_uint8 * size).from_buffer(entry, offset)
    pointer = ctypes.POINTER(ffi.wasmtime_component_t)()
    error = ffi.wasmtime_component_deserialize(engine.ptr(), data, size, ctypes.byref(pointer))
    if error:
        raise WasmtimeError._from_ptr(error)
    return Component._from_ptr(pointer)


def _load_key(path: Path) -> bytes:
    """The key in *path*; a new random one when it is missing, or replaced when it cannot be trusted."""
    for _ in range(3):  # a concurrent host may create the key between our attempts
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            key = _write_key(path, replace=False)
            if key is not None:
                return key
            continue
        with os.fdopen(fd, "rb") as stream:
            info = os.fstat(stream.fileno())
            key = stream.read(_KEY_BYTES + 1)
        problem = _key_problem(info, key)
        if problem is None:
            return key
        log.warning("replacing the compile cache key %s: %s; every cached guest is compiled again", path, problem)
        replaced = _write_key(path, replace=True)
        assert replaced is not None
        return replaced
    raise OSError(f"{path} keeps disappearing")


def _key_problem(info: os.stat_result, key: bytes) -> str | None:
    if not stat.S_ISREG(info.st_mode):
        return "it is not a regular file"
    if hasattr(os, "getuid"):  # POSIX owners and modes (Windows reports 0o666 for every file)
        if info.st_uid != os.getuid():
            return f"it is owned by user id {info.st_uid}"
        if info.st_mode & 0o077:
            return f"others may access it (mode {stat.S_IMODE(info.st_mode):o})"
    if len(key) != _KEY_BYTES:
        return f"it holds {len(key)} bytes instead of {_KEY_BYTES}"
    return None


def _write_key(path: Path, *, replace: bool) -> bytes | None:
    """Write a new key to *path* (mode 0600), whole or not at all; ``None`` when another process was first."""
    key = secrets.token_bytes(_KEY_BYTES)
    if replace:
        with atomic_private_file(path) as stream:
            stream.write(key)
        return key
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(key)
        os.link(temporary, path)  # fails if the key exists: the first host to create it wins
    except FileExistsError:
        return None
    finally:
        os.unlink(temporary)
    return key
