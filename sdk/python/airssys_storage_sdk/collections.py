"""Collections in the NEAR tradition over the store protocol: map, sorted map, set, vector, queue.

Layout (the same from every language, so host and guest share data): a
collection owns every key starting with its *prefix*. Its items live at
``prefix + encode_key(key)`` (:mod:`airssys_storage_sdk.keys`; every encoded
key starts with one of ``# ' ( < = >``), its bookkeeping at ``prefix + "!" +
name`` (``!size`` of a map or set, ``!len`` of a vector, ``!head`` and
``!tail`` of a queue; decimal ASCII). Values are JSON
(:mod:`airssys_storage_sdk.values`); a vector or queue slot holds
``b"<tag> " + value``, where the tag is the version of the length key its
writer read. Prefixes are registered under ``~airssys-collections/<prefix>``
(a JSON object ``{"kind": …}``); a prefix that overlaps a registered one
(either starts with the other) is refused with
:class:`~airssys_storage_sdk.errors.PrefixConflict` when the collection is
created, so two collections can never write over each other's keys.

Atomicity and concurrency (the store offers single-key compare-and-swap and
multi-key atomic write batches with checks, :class:`~airssys_storage_sdk.protocol.Batch`):

- Every change that touches more than one key is one atomic batch whose
  checks are the versions it read: a map's or set's item with its ``!size``
  counter, a vector's slot with ``!len``, a queue's slot with ``!tail`` (push)
  or ``!head`` (pop). So no reader ever sees an item without its count, a
  process killed at any point leaves every count exact, and concurrent
  writers (threads, processes, hosts, guests) never lose an update: a key
  created by two writers at once is counted once, a queue item is popped by
  exactly one caller. A change whose checks failed is read again and retried.
- ``clear`` removes up to ``page_size - 1`` items per atomic batch, each
  with its counter (so the count is exact after every batch).
- Iteration pages through ``scan`` (``page_size`` keys a call) and never loads
  a whole collection; every item present for the whole iteration is seen once.
"""

from __future__ import annotations

import re
import time
from collections.abc import ItemsView, Iterable, Iterator, MutableMapping, MutableSet, ValuesView
from typing import Any, ClassVar, Generic, TypeVar, overload

from .errors import InvalidArgument, InvalidKey, PreconditionFailed, PrefixConflict, ValueDecodeError
from .keys import Key, decode_key, encode_key
from .protocol import EntryLike, Store
from .values import Codec, codec_for, encode_json
from .values import loads as _loads

__all__ = ["REGISTRY_PREFIX", "StorageMap", "StorageQueue", "StorageSet", "StorageTreeMap", "StorageVector"]

K = TypeVar("K", bound=Key)
V = TypeVar("V")
_T = TypeVar("_T")

#: Where the prefix registry lives in every component's storage.
REGISTRY_PREFIX = "~airssys-collections/"
#: The default number of keys per scan page and per batch (the core's default ``max_batch_ops`` is 100).
PAGE_SIZE = 100
_META = "!"
# Every encoded key starts with a type code in "#'(<=>": items lie in [prefix + '"', prefix + "?").
_ITEMS_LOW, _ITEMS_HIGH = '"', "?"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_MISSING: Any = object()
# How long a push waits for another writer's unfinished push of the same slot before fencing it off (seconds).
_PUSH_PATIENCE = 0.2
# Earlier versions deleted popped queue slots this many at a time; a pop that moves the head past a
# multiple of it deletes the ones before it too (no-ops unless such a version left them).
_SWEEP = 32


class _Collection:
    """What every collection shares: the store, the prefix (registered), key encoding and paging."""

    kind: ClassVar[str]

    def __init__(self, storage: Store, prefix: str, *, page_size: int = PAGE_SIZE, max_key_bytes: int = 256) -> None:
        if type(prefix) is not str or not prefix or _CONTROL.search(prefix):
            raise InvalidKey(
                f"a collection prefix is a non-empty str without control characters or lone surrogates, got {prefix!r}"
            )
        if type(page_size) is not int or page_size < 1:
            raise InvalidArgument(f"page_size must be an int of at least 1 (keys per page), got {page_size!r}")
        self._store = storage
        self._prefix = prefix
        self._page = page_size
        self._max_key = max_key_bytes
        _register(storage, prefix, self.kind, page_size)

    @property
    def prefix(self) -> str:
        """The prefix of every key of this collection."""
        return self._prefix

    def _key(self, key: Key) -> str:
        """The storage key of item *key*; InvalidKey when it is longer than ``max_key_bytes``."""
        full = self._prefix + encode_key(key)
        if len(full) * 4 > self._max_key and len(full.encode()) > self._max_key:
            raise InvalidKey(
                f"key {key!r:.60} of collection {self._prefix!r} takes {len(full.encode())} bytes once encoded "
                f"(prefix included); the maximum is {self._max_key} bytes: use a shorter key or prefix"
            )
        return full

    def _meta(self, name: str) -> str:
        return self._prefix + _META + name

    def _decode_key(self, full: str) -> Any:
        try:
            return decode_key(full[len(self._prefix) :])
        except InvalidKey as exc:
            raise ValueDecodeError(
                f"key {full!r} lies under the prefix {self._prefix!r} of {self!r} but is not one of its item keys "
                f"({exc}); it was written by hand (a raw set): delete it or move it out of the prefix"
            ) from None

    def _scan(self) -> Iterator[tuple[str, bytes]]:
        """Every item ``(storage key, raw value)`` in key order, one scan page at a time."""
        store, prefix, skip = self._store, self._prefix, self._prefix + _META
        cursor: str | None = None
        while True:
            page, cursor = store.scan(prefix, cursor, self._page)
            for full, raw in page:
                if not full.startswith(skip):
                    yield full, raw
            if cursor is None:
                return

    def _read_int(self, key: str) -> int:
        raw = self._store.get(key)
        return 0 if raw is None else _as_int(raw, key)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._prefix!r}>"


class _Keyed(_Collection, Generic[K]):
    """A map or set: items by key, the size kept with increment under ``!size``."""

    def __init__(self, storage: Store, prefix: str, *, page_size: int = PAGE_SIZE, max_key_bytes: int = 256) -> None:
        super().__init__(storage, prefix, page_size=page_size, max_key_bytes=max_key_bytes)
        self._size = self._meta("size")

    def __len__(self) -> int:
        """The number of items (O(1): one read of the counter)."""
        return self._read_int(self._size)

    def __contains__(self, key: object) -> bool:
        return self._store.has(self._key(key))  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[K]:
        for full, _ in self._scan():
            yield self._decode_key(full)

    def _put(self, full: str, data: bytes) -> bool:
        """Store *data* under *full*; a new key and its count in one atomic batch. Returns whether it was new."""
        store = self._store
        while True:
            entry = store.get_entry(full)
            try:
                if entry is None:
                    store.atomic().check(full, 0).set(full, data).increment(self._size, 1).commit()
                    return True
                store.compare_and_swap(full, data, version=entry.version)
                return False
            except PreconditionFailed:
                continue  # another writer changed the key in between: read it again

    def _remove(self, full: str) -> EntryLike | None:
        """Delete *full* if present: the key (at the version read) and its count in one atomic batch; its entry."""
        store = self._store
        while True:
            entry = store.get_entry(full)
            if entry is None:
                return None
            try:
                store.atomic().check(full, entry.version).delete(full).increment(self._size, -1).commit()
            except PreconditionFailed:
                continue
            return entry

    def clear(self) -> None:
        """Remove every item: up to ``page_size - 1`` items with their count per atomic batch (exact after each)."""
        store, low, high = self._store, self._prefix + _ITEMS_LOW, self._prefix + _ITEMS_HIGH
        chunk = max(1, self._page - 1)  # the counter is one key of each batch
        while True:
            page = store.range(low, high, chunk)
            if not page:
                return
            batch, gone = store.atomic(), 0
            for full, _ in page:
                entry = store.get_entry(full)
                if entry is not None:
                    batch.check(full, entry.version).delete(full)
                    gone += 1
            try:
                batch.increment(self._size, -gone).commit()
            except PreconditionFailed:
                continue  # changed meanwhile: read the page again


class StorageMap(_Keyed[K], MutableMapping[K, V]):
    """A persistent ``MutableMapping`` of typed keys to JSON values (or dataclasses / pydantic models).

    ``StorageMap(storage, prefix, value_type=None, page_size=100,
    max_key_bytes=256)``. Keys: str, int, bytes or tuples of them
    (:mod:`airssys_storage_sdk.keys`); iteration is in the keys' natural
    order (per type). get is one ``get``; set is ``get_entry`` plus one
    compare-and-swap (for a new key: one atomic batch of the key and the
    count); delete is ``get_entry`` plus one atomic batch (the key at the
    version read, and the count); ``len`` is one read.
    Errors: ``KeyError`` for a missing key, ``InvalidKey`` for a key that is
    not encodable or too long, ``ValueDecodeError`` for a stored value that
    does not decode, ``InvalidArgument`` for a value JSON cannot hold,
    ``PrefixConflict`` at creation, and the store's own errors.
    """

    kind: ClassVar[str] = "map"

    def __init__(
        self,
        storage: Store,
        prefix: str,
        *,
        value_type: type[V] | None = None,
        page_size: int = PAGE_SIZE,
        max_key_bytes: int = 256,
    ) -> None:
        self._codec: Codec[V] = codec_for(value_type)
        self._plain = value_type is None
        super().__init__(storage, prefix, page_size=page_size, max_key_bytes=max_key_bytes)

    def __getitem__(self, key: K) -> V:
        full = self._prefix + encode_key(key)
        if len(full) * 4 > self._max_key:
            full = self._key(key)
        raw = self._store.get(full)
        if raw is None:
            raise KeyError(key)
        if self._plain:  # plain JSON values: json.loads inline (the hottest read)
            try:
                return _loads(raw)  # type: ignore[no-any-return]
            except (ValueError, RecursionError):
                pass  # decode() raises the typed error
        return self._codec.decode(raw, full)

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, /, default: V | _T) -> V | _T: ...
    def get(self, key: K, /, default: object = None) -> object:
        """The value of *key*, or *default*."""
        full = self._prefix + encode_key(key)
        if len(full) * 4 > self._max_key:
            full = self._key(key)
        raw = self._store.get(full)
        if raw is None:
            return default
        if self._plain:  # as in __getitem__
            try:
                return _loads(raw)
            except (ValueError, RecursionError):
                pass
        return self._codec.decode(raw, full)

    def __setitem__(self, key: K, value: V) -> None:
        self._put(self._key(key), self._codec.encode(value))

    def __delitem__(self, key: K) -> None:
        if self._remove(self._key(key)) is None:
            raise KeyError(key)

    @overload
    def pop(self, key: K, /) -> V: ...
    @overload
    def pop(self, key: K, /, default: V | _T) -> V | _T: ...
    def pop(self, key: K, /, default: object = _MISSING) -> object:
        """Remove *key* and return its value (atomically: delete-if on the version read); *default* if absent."""
        full = self._key(key)
        entry = self._remove(full)
        if entry is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return self._codec.decode(entry.value, full)

    def items(self) -> ItemsView[K, V]:
        """The ``(key, value)`` pairs in key order, paged through scan (one call a page, no get per key)."""
        return _ScanItems(self)

    def values(self) -> ValuesView[V]:
        """The values in key order, paged through scan."""
        return _ScanValues(self)

    def _pairs(self) -> Iterator[tuple[K, V]]:
        decode = self._codec.decode
        for full, raw in self._scan():
            yield self._decode_key(full), decode(raw, full)


class _ScanItems(ItemsView[K, V]):
    _mapping: StorageMap[K, V]

    def __iter__(self) -> Iterator[tuple[K, V]]:
        return self._mapping._pairs()


class _ScanValues(ValuesView[V]):
    _mapping: StorageMap[Any, V]

    def __iter__(self) -> Iterator[V]:
        for _, value in self._mapping._pairs():
            yield value


class StorageTreeMap(StorageMap[K, V]):
    """A :class:`StorageMap` with ordered queries: ranges, first/last, floor/ceiling, lower/higher.

    Every query returns ``(key, value)`` or ``None``. ``first``,
    ``ceiling`` and ``higher`` are one ``range`` call. The store lists keys
    forwards only, so ``last``, ``floor`` and ``lower`` bisect the key space
    with ``range(…, limit=1)`` probes: about 8 probes per character of the
    answer's encoded key (e.g. ~40 for a short str key), independent of the
    number of items.
    """

    kind: ClassVar[str] = "treemap"

    def range(self, start: K | None = None, end: K | None = None) -> Iterator[tuple[K, V]]:
        """The pairs with ``start <= key < end`` (``None``: unbounded) in order, ``page_size`` per ``range`` call."""
        low = self._prefix + _ITEMS_LOW if start is None else self._key(start)
        high = self._prefix + _ITEMS_HIGH if end is None else self._key(end)
        store, decode = self._store, self._codec.decode
        while low < high:
            page = store.range(low, high, self._page)
            for full, raw in page:
                yield self._decode_key(full), decode(raw, full)
            if len(page) < self._page:
                return
            low = self._after(page[-1][0])

    def first(self) -> tuple[K, V] | None:
        """The pair with the smallest key, or ``None`` when empty."""
        return self._first(self._prefix + _ITEMS_LOW, self._prefix + _ITEMS_HIGH)

    def last(self) -> tuple[K, V] | None:
        """The pair with the largest key, or ``None`` when empty."""
        return self._greatest(self._prefix + _ITEMS_LOW, self._prefix + _ITEMS_HIGH)

    def ceiling(self, key: K) -> tuple[K, V] | None:
        """The pair with the smallest key ``>= key``, or ``None``."""
        return self._first(self._key(key), self._prefix + _ITEMS_HIGH)

    def higher(self, key: K) -> tuple[K, V] | None:
        """The pair with the smallest key ``> key``, or ``None``."""
        return self._first(self._after(self._key(key)), self._prefix + _ITEMS_HIGH)

    def floor(self, key: K) -> tuple[K, V] | None:
        """The pair with the largest key ``<= key``, or ``None``."""
        return self._greatest(self._prefix + _ITEMS_LOW, self._after(self._key(key)))

    def lower(self, key: K) -> tuple[K, V] | None:
        """The pair with the largest key ``< key``, or ``None``."""
        return self._greatest(self._prefix + _ITEMS_LOW, self._key(key))

    def _first(self, low: str, high: str) -> tuple[K, V] | None:
        found = self._first_raw(low, high)
        return None if found is None else (self._decode_key(found[0]), self._codec.decode(found[1], found[0]))

    def _first_raw(self, low: str, high: str) -> tuple[str, bytes] | None:
        if low >= high:
            return None
        page = self._store.range(low, high, 1)
        return (page[0][0], page[0][1]) if page else None

    def _greatest(self, low: str, high: str) -> tuple[K, V] | None:
        """The pair with the largest storage key in ``[low, high)``: bisection with forward probes."""
        best = self._first_raw(low, high)
        if best is None:
            return None
        while True:
            after = self._after(best[0])
            if after >= high:
                break
            middle = _midpoint(after, high)
            if middle is not None and len(middle.encode()) <= self._max_key:
                found = self._first_raw(middle, high)
                if found is not None:
                    best = found
                    continue
                high = middle  # nothing in [middle, high): look below it
            found = self._first_raw(after, high)
            if found is None:
                break
            best = found
        return self._decode_key(best[0]), self._codec.decode(best[1], best[0])

    def _after(self, full: str) -> str:
        """The smallest valid storage key greater than *full* (and than every key starting with it if it is full)."""
        if len(full.encode()) < self._max_key:
            return full + " "
        return full[:-1] + chr(ord(full[-1]) + 1)


class StorageSet(_Keyed[K], MutableSet[K]):
    """A persistent ``MutableSet`` of typed keys (str, int, bytes, tuples of them), iterated in order.

    ``add`` is one atomic batch (the key, which must be absent, and the
    count); ``discard`` is ``get_entry`` plus one atomic batch;
    ``in`` is one ``has``; ``len`` is one read. The set operators
    (``|``, ``&``, ``-``, ``^``) return a plain Python ``set``.
    """

    kind: ClassVar[str] = "set"

    def add(self, value: K) -> None:
        """Add *value* (nothing happens if it is there)."""
        full = self._key(value)
        try:
            self._store.atomic().check(full, 0).set(full, b"").increment(self._size, 1).commit()
        except PreconditionFailed:
            return  # present already

    def discard(self, value: K) -> None:
        """Remove *value* if present."""
        self._remove(self._key(value))

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> set[Any]:
        return set(it)


class _Slots(_Collection, Generic[V]):
    """Numbered slots ``prefix + encode_key(i)`` and the push protocol shared by the vector and the queue.

    A push reads the counter (value n, version v), then writes slot n
    (``b"<v> " + value``, which must be absent) and the counter n + 1 (which
    must still be at version v) in one atomic batch; if either check fails it
    reads again. The read is skipped when this object made the counter's last
    change it knows of (its own push, pop or clear: the commit returns the
    counter's new version): the batch's checks then test that guess, and a
    failed one costs a read and a second batch. The tag ``<v>`` keeps the layout of pushes made in two steps
    (claim the slot, then swap the counter), which earlier versions and other
    SDKs may still make: a push that finds slot n taken while the counter
    still reads (n, v) meets such a push. A slot tagged v is one still
    running, waited for and, after ``_PUSH_PATIENCE`` seconds (its writer
    died), fenced off by rewriting the counter (its version moves on, so that
    push can no longer be counted); a slot with another tag can never be
    counted and is deleted.
    """

    def __init__(
        self,
        storage: Store,
        prefix: str,
        *,
        value_type: type[V] | None = None,
        page_size: int = PAGE_SIZE,
        max_key_bytes: int = 256,
    ) -> None:
        self._codec: Codec[V] = codec_for(value_type)
        # The push counter as this object's last commit left it, (count, version), or None: unknown.
        self._known: tuple[int, int] | None = None
        super().__init__(storage, prefix, page_size=page_size, max_key_bytes=max_key_bytes)

    def _push(self, counter: str, data: bytes) -> int:
        store, known = self._store, self._known
        while True:
            if known is not None:  # what our last commit left: no read (the batch's check says if it still holds)
                count, version = known
            else:
                entry = store.get_entry(counter)
                count, version = (0, 0) if entry is None else (_as_int(entry.value, counter), entry.version)
            slot = self._key(count)
            batch = store.atomic().check(counter, version).set(counter, b"%d" % (count + 1))
            try:
                versions = batch.check(slot, 0).set(slot, b"%d %s" % (version, data)).commit()
            except PreconditionFailed:
                self._known = None
                if known is not None:  # most likely another writer moved the counter on: read it
                    known = None
                    continue
                self._settle(counter, slot, count, version)  # the counter moved on, or the slot is taken
                continue
            self._known = (count + 1, versions[counter])
            return count

    def _settle(self, counter: str, slot: str, count: int, version: int) -> None:
        """Slot *count* is taken while the counter read (*count*, *version*): clear the way (see the class)."""
        store = self._store
        waited, pause = 0.0, 0.0005
        while True:
            found = store.get_entry(slot)
            if found is None or _version(store.get_entry(counter)) != version:
                return  # the slot or the counter moved on: read again
            if _parse_slot(found.value, slot)[0] != version:
                store.delete_if(slot, version=found.version)  # can never be counted
                return
            if waited >= _PUSH_PATIENCE:
                try:  # fence the unfinished push off: its counter swap now fails
                    store.compare_and_swap(counter, b"%d" % count, version=version or None)
                except PreconditionFailed:
                    pass
                return
            time.sleep(pause)
            waited += pause
            pause = min(pause * 2, 0.02)

    def _value(self, raw: bytes, slot: str) -> V:
        return self._codec.decode(_parse_slot(raw, slot)[1], slot)


class StorageVector(_Slots[V]):
    """A persistent list of JSON values (or dataclasses / pydantic models): append, pop, len, indexing, O(1) each.

    Slot *i* is ``prefix + encode_key(i)``; the length ``!len`` is changed only
    by compare-and-swap, so concurrent appends and pops from any number of
    processes keep it exact (see :class:`_Slots`). ``v[i]`` (negative *i*
    counts from the end) is one read of the length plus one ``get``;
    ``append`` is one atomic batch of the slot and the length, preceded by a
    ``get_entry`` of the length unless this object made its last change (see
    :class:`_Slots`); ``pop`` three calls. Errors:
    ``IndexError`` out of range or on an empty pop; ``ValueDecodeError``,
    ``InvalidArgument`` and ``PrefixConflict`` as for :class:`StorageMap`.
    """

    kind: ClassVar[str] = "vector"

    def __init__(
        self,
        storage: Store,
        prefix: str,
        *,
        value_type: type[V] | None = None,
        page_size: int = PAGE_SIZE,
        max_key_bytes: int = 256,
    ) -> None:
        super().__init__(storage, prefix, value_type=value_type, page_size=page_size, max_key_bytes=max_key_bytes)
        self._length = self._meta("len")

    def __len__(self) -> int:
        """The number of items (O(1): one read)."""
        return self._read_int(self._length)

    def append(self, value: V) -> None:
        """Add *value* at the end."""
        self._push(self._length, self._codec.encode(value))

    def extend(self, values: Iterable[V]) -> None:
        """Append each of *values* in order (one append each; not atomic as a whole)."""
        for value in values:
            self.append(value)

    def pop(self) -> V:
        """Remove and return the last item; ``IndexError`` when empty."""
        store = self._store
        while True:
            entry = store.get_entry(self._length)
            count = 0 if entry is None else _as_int(entry.value, self._length)
            if entry is None or count == 0:
                raise IndexError("pop from an empty StorageVector")
            slot = self._key(count - 1)
            found = store.get_entry(slot)
            if found is None:
                _check_moved(store, self._length, entry, slot)
                continue  # popped by another writer since the length was read
            batch = store.atomic().check(self._length, entry.version).set(self._length, b"%d" % (count - 1))
            try:
                versions = batch.check(slot, found.version).delete(slot).commit()
            except PreconditionFailed:
                continue
            self._known = (count - 1, versions[self._length])
            return self._value(found.value, slot)

    def _index(self, index: int) -> int:
        if type(index) is not int:
            raise TypeError(f"StorageVector indices are ints, not {type(index).__name__}")
        count = len(self)
        position = index + count if index < 0 else index
        if not 0 <= position < count:
            raise IndexError(f"StorageVector index {index} out of range (length {count})")
        return position

    def __getitem__(self, index: int) -> V:
        slot = self._key(self._index(index))
        raw = self._store.get(slot)
        if raw is None:
            raise IndexError(f"StorageVector index {index} out of range (the item was popped meanwhile)")
        return self._value(raw, slot)

    def __setitem__(self, index: int, value: V) -> None:
        data, store = self._codec.encode(value), self._store
        while True:
            slot = self._key(self._index(index))
            found = store.get_entry(slot)
            if found is None:
                raise IndexError(f"StorageVector index {index} out of range (the item was popped meanwhile)")
            tag = _parse_slot(found.value, slot)[0]
            try:
                store.compare_and_swap(slot, b"%d %s" % (tag, data), version=found.version)
                return
            except PreconditionFailed:
                continue

    def __iter__(self) -> Iterator[V]:
        """The items in order, ``page_size`` per ``get_many`` call (up to the length read when it starts)."""
        count = len(self)
        for start in range(0, count, self._page):
            slots = [self._key(index) for index in range(start, min(start + self._page, count))]
            for slot, raw in zip(slots, self._store.get_many(slots), strict=True):
                if raw is None:
                    return  # popped meanwhile: the end moved below
                yield self._value(raw, slot)

    def clear(self) -> None:
        """Remove every item from the end, up to ``page_size - 1`` slots with the length per atomic batch.

        After each batch the vector is a shorter prefix of itself (never a
        length that counts a missing slot).
        """
        store, chunk = self._store, max(1, self._page - 1)  # the length is one key of each batch
        while True:
            entry = store.get_entry(self._length)
            count = 0 if entry is None else _as_int(entry.value, self._length)
            if entry is None or count == 0:
                return
            rest = max(0, count - chunk)
            batch = store.atomic().check(self._length, entry.version).set(self._length, b"%d" % rest)
            for index in range(rest, count):
                batch.delete(self._key(index))
            try:
                versions = batch.commit()
            except PreconditionFailed:
                continue
            self._known = (rest, versions[self._length])


class StorageQueue(_Slots[V]):
    """A persistent FIFO queue: ``push(item)``, ``pop() -> item | None``, ``len()``; safe across processes.

    Items are numbered slots; ``!tail`` counts pushes (the vector's push,
    see :class:`_Slots`) and ``!head`` pops. ``pop`` reads the head entry,
    the tail (only when the head has caught up with the tail last read) and
    the head slot, then moves the head on and deletes the slot in one atomic
    batch that checks the head's version: whoever commits it owns the item,
    so concurrent pops from any number of hosts or guests hand each item to
    exactly one caller, and no popped slot stays stored. (Slots below the
    head are never read, so ones left by earlier versions, which deleted
    popped slots 32 at a time, are harmless; a pop that moves the head past a
    multiple of 32 deletes the 31 before it too.) ``len`` is ``tail - head``
    (two reads in one ``get_many``).
    """

    kind: ClassVar[str] = "queue"

    def __init__(
        self,
        storage: Store,
        prefix: str,
        *,
        value_type: type[V] | None = None,
        page_size: int = PAGE_SIZE,
        max_key_bytes: int = 256,
    ) -> None:
        super().__init__(storage, prefix, value_type=value_type, page_size=page_size, max_key_bytes=max_key_bytes)
        self._head, self._tail = self._meta("head"), self._meta("tail")
        self._seen_tail = 0
        self._sweep = max(1, min(self._page - 1, _SWEEP))  # head + slot + sweep - 1 keys per batch

    def push(self, item: V) -> None:
        """Add *item* at the back."""
        self._push(self._tail, self._codec.encode(item))

    def pop(self) -> V | None:
        """Remove and return the front item, or ``None`` when the queue is empty."""
        store = self._store
        while True:
            head = store.get_entry(self._head)
            first = 0 if head is None else _as_int(head.value, self._head)
            if first >= self._seen_tail:  # pushes only move the tail on: read it only when the head catches up
                self._seen_tail = self._read_int(self._tail)
                if first >= self._seen_tail:
                    return None
            slot = self._key(first)
            raw = store.get(slot)
            if raw is None:
                tail = self._read_int(self._tail)
                if tail != self._seen_tail:  # the queue was emptied (clear, delete_prefix) and maybe refilled
                    self._seen_tail = tail
                    continue
                _check_moved(store, self._head, head, slot)
                continue  # popped by another caller since the head was read
            batch = store.atomic().check(self._head, _version(head)).set(self._head, b"%d" % (first + 1))
            batch.delete(slot)
            if (first + 1) % self._sweep == 0:  # slots an earlier version left below the head
                for index in range(first + 1 - self._sweep, first):
                    batch.delete(self._key(index))
            try:
                batch.commit()
            except PreconditionFailed:
                continue
            return self._value(raw, slot)

    def __len__(self) -> int:
        """Items pushed and not popped (O(1))."""
        head, tail = self._store.get_many([self._head, self._tail])
        count = (0 if tail is None else _as_int(tail, self._tail)) - (0 if head is None else _as_int(head, self._head))
        return max(0, count)

    def __bool__(self) -> bool:
        return len(self) > 0


def _register(store: Store, prefix: str, kind: str, page_size: int) -> None:
    """Record *prefix* as a collection of *kind*, refusing overlaps (see the module docstring)."""
    if prefix.startswith(REGISTRY_PREFIX) or REGISTRY_PREFIX.startswith(prefix):
        raise PrefixConflict(f"prefix {prefix!r} overlaps {REGISTRY_PREFIX!r}, where the collections are registered")
    entry = REGISTRY_PREFIX + prefix
    existing = store.get(entry)
    if existing is None:
        _check_overlap(store, prefix, page_size)
        try:
            version = store.compare_and_swap(entry, encode_json({"kind": kind}), version=None)
        except PreconditionFailed:  # registered by another process just now
            existing = store.get(entry)
        else:
            try:  # a concurrent registration of an overlapping prefix: both back off
                _check_overlap(store, prefix, page_size)
            except PrefixConflict:
                store.delete_if(entry, version=version)
                raise
            return
    if existing is not None:
        record = _decode_record(existing, entry)
        if record != kind:
            raise PrefixConflict(
                f"prefix {prefix!r} holds a {record}, not a {kind}: open it as a {record}, or use another prefix"
            )


def _check_overlap(store: Store, prefix: str, page_size: int) -> None:
    ancestors = [REGISTRY_PREFIX + prefix[:end] for end in range(1, len(prefix))]
    for start in range(0, len(ancestors), page_size):
        chunk = ancestors[start : start + page_size]
        for entry, raw in zip(chunk, store.get_many(chunk), strict=True):
            if raw is not None:
                other = entry[len(REGISTRY_PREFIX) :]
                raise PrefixConflict(
                    f"prefix {prefix!r} starts with {other!r}, the prefix of an existing "
                    f"{_decode_record(raw, entry)}: their keys would mix; choose a prefix that neither starts "
                    "with nor is the start of another (e.g. end prefixes with '/')"
                )
    page, _ = store.scan(REGISTRY_PREFIX + prefix, None, 2)
    for entry, raw in page:
        other = entry[len(REGISTRY_PREFIX) :]
        if other != prefix:
            raise PrefixConflict(
                f"prefix {prefix!r} is the start of {other!r}, the prefix of an existing "
                f"{_decode_record(raw, entry)}: their keys would mix; choose a prefix that neither starts with nor "
                "is the start of another (e.g. end prefixes with '/')"
            )


def _decode_record(raw: bytes, entry: str) -> str:
    from .values import decode_json

    record = decode_json(raw, entry)
    if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
        raise ValueDecodeError(f"the registry entry {entry!r} is not a collection record: {raw[:60]!r}")
    kind: str = record["kind"]
    return kind


def _as_int(raw: bytes, key: str) -> int:
    try:
        return int(raw)
    except ValueError:  # not decimal, or longer than the int/str digit limit
        raise ValueDecodeError(f"the value of key {key!r} is not a decimal count: {bytes(raw[:60])!r}") from None


def _version(entry: EntryLike | None) -> int:
    return 0 if entry is None else entry.version


def _check_moved(store: Store, counter: str, read: EntryLike | None, slot: str) -> None:
    """A counted slot is missing: fine if *counter* moved since it was *read*, damage (no endless retry) if not."""
    if _version(store.get_entry(counter)) == _version(read):
        raise ValueDecodeError(
            f"slot {slot!r} is missing although {counter!r} counts it: the collection was changed by hand "
            "(keys deleted under its prefix); repair or clear it"
        )


def _parse_slot(raw: bytes, slot: str) -> tuple[int, bytes]:
    """A slot's ``(tag, value bytes)`` from ``b"<tag> <value>"``."""
    space = raw.find(b" ")
    if space <= 0 or space > 20 or not raw[:space].isdigit():  # tags are 64-bit counters
        raise ValueDecodeError(f"the value of key {slot!r} is not a slot record (b'<tag> <value>'): {raw[:60]!r}")
    return int(raw[:space]), raw[space + 1 :]


# -- bisection of the key space (StorageTreeMap.last/floor/lower) ------------------------------------------

_TOP = 0x110000


def _mid_char(low: int, high: int) -> int | None:
    """A valid key character strictly between code points *low* and *high*, near the middle, or ``None``.

    Valid: U+0020-U+007E and U+00A0 up, surrogates excluded. ASCII is tried
    before the rest (keys are mostly ASCII), so the first split is at U+00A0.
    """
    if low < 0x7E and high > 0xA0:
        return 0xA0
    middle = (low + high) // 2
    if 0x7F <= middle <= 0x9F:
        middle = 0xA0 if 0xA0 < high else 0x7E
    elif 0xD800 <= middle <= 0xDFFF:
        middle = 0xE000 if 0xE000 < high else 0xD7FF
    return middle if low < middle < high else None


def _midpoint(low: str, high: str) -> str | None:
    """A string ``m`` with ``low < m < high`` (both valid keys, ``low < high``), near the middle, or ``None``."""
    same = 0
    limit = min(len(low), len(high))
    while same < limit and low[same] == high[same]:
        same += 1
    if same == len(low):  # low is a proper prefix of high
        char = _mid_char(0x1F, ord(high[same]))
        if char is not None:
            return low + chr(char)
        return low + " " if len(high) > same + 1 else None
    char = _mid_char(ord(low[same]), ord(high[same]))
    if char is not None:
        return low[:same] + chr(char)
    for index in range(same + 1, len(low)):  # adjacent characters: anything above low that keeps low[: same + 1]
        char = _mid_char(ord(low[index]), _TOP)
        if char is not None:
            return low[:index] + chr(char)
    return low + chr(0xA0)
