/**
 * Collections in the NEAR tradition over the store protocol: map, sorted map,
 * set, vector, queue -- the same on-storage layout as the Python SDK
 * (`airssys_storage_sdk/collections.py`), so a collection written by a
 * JavaScript guest is read by the Python host or a Python guest, and back.
 *
 * Layout: a collection owns every key starting with its *prefix*. Its items
 * live at `prefix + encodeKey(key)` (`keys.ts`; every encoded key starts with
 * one of `# ' ( < = >`), its bookkeeping at `prefix + "!" + name` (`!size` of
 * a map or set, `!len` of a vector, `!head` and `!tail` of a queue; decimal
 * ASCII). Values are compact JSON (`values.ts`); a vector or queue slot holds
 * `"<tag> " + value`, the tag being the version of the counter its writer
 * read. Prefixes are registered under `~airssys-collections/<prefix>` (the
 * JSON `{"kind":…}`); a prefix that overlaps a registered one (either starts
 * with the other) throws {@link PrefixConflict} when the collection is
 * created.
 *
 * Concurrency (as in Python): every change is decided by one compare-and-swap
 * or delete-if, so concurrent writers (hosts, guests, in any language) never
 * lose an update and a queue item is popped by exactly one caller; a map or
 * set keeps its size with `increment` right after the change that decided it
 * (inside a guest whose host runs each invocation as a transaction, both are
 * one atomic commit); iteration pages through `scan` (`pageSize` keys a call)
 * and never loads a whole collection.
 */

import { InvalidArgument, InvalidKey, PreconditionFailed, PrefixConflict, ValueDecodeError } from "./errors.js";
import { type Key, decodeKey, encodeKey, utf8Length } from "./keys.js";
import type { Entry, Store } from "./protocol.js";
import { decodeJson, encodeJson, fromUtf8, preview, utf8 } from "./values.js";

/** Where the prefix registry lives in every component's storage. */
export const REGISTRY_PREFIX = "~airssys-collections/";
/** The default number of keys per scan page and per batch (the host's default `max_batch_ops` is 100). */
export const PAGE_SIZE = 100;

/** Options of every collection. */
export interface CollectionOptions {
  /** Keys per scan page and per batch (default 100; at most the host's `max_batch_ops` and `max_keys_per_query`). */
  pageSize?: number;
  /** The host's key limit in bytes of UTF-8, prefix included (default 256). */
  maxKeyBytes?: number;
}

const META = "!";
// Every encoded key starts with a type code in "#'(<=>": items lie in [prefix + '"', prefix + "?").
const ITEMS_LOW = '"';
const ITEMS_HIGH = "?";
const CONTROL = /[\x00-\x1f\x7f-\x9f]|[\ud800-\udbff](?![\udc00-\udfff])|(?:^|[^\ud800-\udbff])[\udc00-\udfff]/;
// How long a push waits for another writer's unfinished push of the same slot before fencing it off (ms).
const PUSH_PATIENCE_MS = 200;
// A queue deletes popped slots in batches of this many (one write per batch instead of one per pop).
const SWEEP = 32;

/** Code-point (= UTF-8 byte) order of two strings: the store's order (JavaScript's `<` is UTF-16 order). */
export function compareKeys(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index++) {
    const x = a.charCodeAt(index);
    const y = b.charCodeAt(index);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

function codePointRank(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000; // a surrogate: above every other BMP character
  return unit >= 0xe000 ? unit - 0x800 : unit;
}

abstract class Collection {
  protected readonly store: Store;
  /** The prefix of every key of this collection. */
  readonly prefix: string;
  protected readonly pageSize: number;
  protected readonly maxKeyBytes: number;

  protected constructor(store: Store, prefix: string, options: CollectionOptions = {}) {
    const kind = (new.target as unknown as { readonly kind: string }).kind;
    if (typeof prefix !== "string" || prefix === "" || CONTROL.test(prefix)) {
      throw new InvalidKey(
        `a collection prefix is a non-empty string without control characters or lone surrogates, got ${JSON.stringify(prefix)}`,
      );
    }
    const pageSize = options.pageSize ?? PAGE_SIZE;
    if (!Number.isInteger(pageSize) || pageSize < 1) {
      throw new InvalidArgument(`pageSize must be an integer of at least 1 (keys per page), got ${pageSize}`);
    }
    this.store = store;
    this.prefix = prefix;
    this.pageSize = pageSize;
    this.maxKeyBytes = options.maxKeyBytes ?? 256;
    register(store, prefix, kind, pageSize);
  }

  /** The storage key of item *key*; {@link InvalidKey} when longer than `maxKeyBytes`. */
  protected key(key: Key): string {
    const full = this.prefix + encodeKey(key);
    if (full.length * 3 > this.maxKeyBytes && utf8Length(full) > this.maxKeyBytes) {
      throw new InvalidKey(
        `key ${full.slice(this.prefix.length, this.prefix.length + 60)} of collection ${JSON.stringify(this.prefix)} ` +
          `takes ${utf8Length(full)} bytes once encoded (prefix included); the maximum is ${this.maxKeyBytes} bytes: ` +
          "use a shorter key or prefix",
      );
    }
    return full;
  }

  protected meta(name: string): string {
    return this.prefix + META + name;
  }

  protected decodeItemKey(full: string): Key {
    try {
      return decodeKey(full.slice(this.prefix.length));
    } catch (error) {
      if (!(error instanceof InvalidKey)) throw error;
      throw new ValueDecodeError(
        `key ${JSON.stringify(full)} lies under the prefix ${JSON.stringify(this.prefix)} of this collection but is ` +
          `not one of its item keys (${error.message}); it was written by hand (a raw set): delete it or move it out of the prefix`,
      );
    }
  }

  /** Every item `[storage key, raw value]` in key order, one scan page at a time. */
  protected *scanItems(): Generator<[string, Uint8Array]> {
    const skip = this.prefix + META;
    let cursor: string | undefined;
    do {
      const [page, next] = this.store.scan(this.prefix, cursor, this.pageSize);
      for (const pair of page) if (!pair[0].startsWith(skip)) yield pair;
      cursor = next;
    } while (cursor !== undefined);
  }

  protected readInt(key: string): number {
    const raw = this.store.get(key);
    return raw === undefined ? 0 : asInt(raw, key);
  }
}

abstract class Keyed<K extends Key> extends Collection {
  protected readonly sizeKey: string;

  protected constructor(store: Store, prefix: string, options?: CollectionOptions) {
    super(store, prefix, options);
    this.sizeKey = this.meta("size");
  }

  /** The number of items (O(1): one read of the counter). */
  get size(): number {
    return this.readInt(this.sizeKey);
  }

  /** Whether *key* is present (one `has`). */
  has(key: K): boolean {
    return this.store.has(this.key(key));
  }

  /** The keys in order, paged through scan. */
  *keys(): Generator<K> {
    for (const [full] of this.scanItems()) yield this.decodeItemKey(full) as K;
  }

  /** Store *data* under *full* with compare-and-swap; counts a new key once. Whether it was new. */
  protected put(full: string, data: Uint8Array): boolean {
    for (;;) {
      const entry = this.store.getEntry(full);
      try {
        if (entry === undefined) {
          this.store.compareAndSwap(full, data, undefined);
          this.store.increment(this.sizeKey, 1n);
          return true;
        }
        this.store.compareAndSwap(full, data, entry.version);
        return false;
      } catch (error) {
        if (!(error instanceof PreconditionFailed)) throw error; // else: changed in between, read again
      }
    }
  }

  /** Delete *full* if present (delete-if on the version read, then the counter); its entry. */
  protected remove(full: string): Entry | undefined {
    for (;;) {
      const entry = this.store.getEntry(full);
      if (entry === undefined) return undefined;
      if (this.store.deleteIf(full, entry.version)) {
        this.store.increment(this.sizeKey, -1n);
        return entry;
      }
    }
  }

  /** Remove every item: each page of `pageSize` keys in one atomic batch, the size lowered by what went. */
  clear(): void {
    let batch: string[] = [];
    for (const [full] of this.scanItems()) {
      batch.push(full);
      if (batch.length === this.pageSize) {
        this.store.increment(this.sizeKey, -BigInt(this.store.deleteMany(batch)));
        batch = [];
      }
    }
    if (batch.length > 0) this.store.increment(this.sizeKey, -BigInt(this.store.deleteMany(batch)));
  }
}

/**
 * A persistent map of typed keys to JSON values, shaped like JavaScript's `Map`.
 *
 * `new StorageMap(store, prefix, {pageSize, maxKeyBytes})`. Keys: strings,
 * integers, `Uint8Array`s or arrays of them (`keys.ts`); iteration is in the
 * keys' natural order (per type). `get` is one `get`; `set` is `getEntry` plus
 * one compare-and-swap (plus `increment` for a new key); `delete` is
 * `getEntry` plus `deleteIf` (plus `increment`); `size` is one read. Throws
 * {@link InvalidKey} for a key that is not encodable or too long,
 * {@link ValueDecodeError} for a stored value that does not decode,
 * {@link InvalidArgument} for a value JSON cannot hold, {@link PrefixConflict}
 * at creation, and the store's own errors.
 */
export class StorageMap<K extends Key = Key, V = unknown> extends Keyed<K> {
  /** The kind recorded in the prefix registry. */
  static readonly kind: string = "map";

  constructor(store: Store, prefix: string, options?: CollectionOptions) {
    super(store, prefix, options);
  }

  /** The value of *key*, or `undefined`. */
  get(key: K): V | undefined {
    const full = this.key(key);
    const raw = this.store.get(full);
    return raw === undefined ? undefined : (decodeJson(raw, full) as V);
  }

  /** Store *value* under *key*; returns the map (as `Map.set`). */
  set(key: K, value: V): this {
    this.put(this.key(key), encodeJson(value));
    return this;
  }

  /** Remove *key*; whether it was present. */
  delete(key: K): boolean {
    return this.remove(this.key(key)) !== undefined;
  }

  /** Remove *key* and return its value (atomically: delete-if on the version read), or `undefined`. */
  pop(key: K): V | undefined {
    const full = this.key(key);
    const entry = this.remove(full);
    return entry === undefined ? undefined : (decodeJson(entry.value, full) as V);
  }

  /** The `[key, value]` pairs in key order, paged through scan (no get per key). */
  *entries(): Generator<[K, V]> {
    for (const [full, raw] of this.scanItems()) yield [this.decodeItemKey(full) as K, decodeJson(raw, full) as V];
  }

  /** The values in key order, paged through scan. */
  *values(): Generator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): Generator<[K, V]> {
    return this.entries();
  }

  forEach(callback: (value: V, key: K, map: this) => void): void {
    for (const [key, value] of this.entries()) callback(value, key, this);
  }
}

/**
 * A {@link StorageMap} with ordered queries: ranges, first/last,
 * floor/ceiling, lower/higher. Every query returns `[key, value]` or
 * `undefined`. `first`, `ceiling` and `higher` are one `range` call; the store
 * lists keys forwards only, so `last`, `floor` and `lower` bisect the key
 * space with `range(…, 1)` probes (about 8 per character of the answer's
 * encoded key), independent of the number of items.
 */
export class StorageTreeMap<K extends Key = Key, V = unknown> extends StorageMap<K, V> {
  static override readonly kind: string = "treemap";


  /** The pairs with `start <= key < end` (`undefined`: unbounded) in order, `pageSize` per `range` call. */
  *range(start?: K, end?: K): Generator<[K, V]> {
    let low = start === undefined ? this.prefix + ITEMS_LOW : this.key(start);
    const high = end === undefined ? this.prefix + ITEMS_HIGH : this.key(end);
    while (compareKeys(low, high) < 0) {
      const page = this.store.range(low, high, this.pageSize);
      for (const [full, raw] of page) yield [this.decodeItemKey(full) as K, decodeJson(raw, full) as V];
      if (page.length < this.pageSize) return;
      low = this.after(page[page.length - 1]![0]);
    }
  }

  /** The pair with the smallest key, or `undefined` when empty. */
  first(): [K, V] | undefined {
    return this.pair(this.firstRaw(this.prefix + ITEMS_LOW, this.prefix + ITEMS_HIGH));
  }

  /** The pair with the largest key, or `undefined` when empty. */
  last(): [K, V] | undefined {
    return this.pair(this.greatest(this.prefix + ITEMS_LOW, this.prefix + ITEMS_HIGH));
  }

  /** The pair with the smallest key `>= key`, or `undefined`. */
  ceiling(key: K): [K, V] | undefined {
    return this.pair(this.firstRaw(this.key(key), this.prefix + ITEMS_HIGH));
  }

  /** The pair with the smallest key `> key`, or `undefined`. */
  higher(key: K): [K, V] | undefined {
    return this.pair(this.firstRaw(this.after(this.key(key)), this.prefix + ITEMS_HIGH));
  }

  /** The pair with the largest key `<= key`, or `undefined`. */
  floor(key: K): [K, V] | undefined {
    return this.pair(this.greatest(this.prefix + ITEMS_LOW, this.after(this.key(key))));
  }

  /** The pair with the largest key `< key`, or `undefined`. */
  lower(key: K): [K, V] | undefined {
    return this.pair(this.greatest(this.prefix + ITEMS_LOW, this.key(key)));
  }

  private pair(found: [string, Uint8Array] | undefined): [K, V] | undefined {
    return found === undefined ? undefined : [this.decodeItemKey(found[0]) as K, decodeJson(found[1], found[0]) as V];
  }

  private firstRaw(low: string, high: string): [string, Uint8Array] | undefined {
    if (compareKeys(low, high) >= 0) return undefined;
    const page = this.store.range(low, high, 1);
    return page[0];
  }

  /** The pair with the largest storage key in `[low, high)`: bisection with forward probes. */
  private greatest(low: string, high: string): [string, Uint8Array] | undefined {
    let best = this.firstRaw(low, high);
    if (best === undefined) return undefined;
    for (;;) {
      const after = this.after(best[0]);
      if (compareKeys(after, high) >= 0) break;
      const middle = midpoint(after, high);
      if (middle !== undefined && utf8Length(middle) <= this.maxKeyBytes) {
        const found = this.firstRaw(middle, high);
        if (found !== undefined) {
          best = found;
          continue;
        }
        high = middle; // nothing in [middle, high): look below it
      }
      const found = this.firstRaw(after, high);
      if (found === undefined) break;
      best = found;
    }
    return best;
  }

  /** The smallest valid storage key greater than *full* (and than every key starting with it if it is full). */
  private after(full: string): string {
    if (utf8Length(full) < this.maxKeyBytes) return full + " ";
    const points = Array.from(full);
    const last = points.pop()!.codePointAt(0)!;
    return points.join("") + String.fromCodePoint(last + 1);
  }
}

/**
 * A persistent set of typed keys (strings, integers, `Uint8Array`s, arrays
 * of them), shaped like JavaScript's `Set` and iterated in order. `add` is one
 * compare-and-swap (plus `increment` when new); `delete` is `getEntry` plus
 * `deleteIf` (plus `increment`); `has` is one `has`; `size` is one read.
 */
export class StorageSet<K extends Key = Key> extends Keyed<K> {
  static readonly kind: string = "set";
  constructor(store: Store, prefix: string, options?: CollectionOptions) {
    super(store, prefix, options);
  }

  /** Add *value* (nothing happens if it is there); returns the set. */
  add(value: K): this {
    const full = this.key(value);
    try {
      this.store.compareAndSwap(full, new Uint8Array(), undefined);
    } catch (error) {
      if (error instanceof PreconditionFailed) return this;
      throw error;
    }
    this.store.increment(this.sizeKey, 1n);
    return this;
  }

  /** Remove *value*; whether it was present. */
  delete(value: K): boolean {
    return this.remove(this.key(value)) !== undefined;
  }

  /** The members in order (as `keys()`). */
  values(): Generator<K> {
    return this.keys();
  }

  [Symbol.iterator](): Generator<K> {
    return this.keys();
  }
}

/**
 * Numbered slots `prefix + encodeKey(i)` and the push protocol shared by the
 * vector and the queue (the Python SDK's `_Slots`, step for step). A push
 * reads the counter (value n, version v), claims slot n with a
 * compare-and-swap that requires it absent (writing `"<v> " + value`), then
 * moves the counter to n + 1 with a compare-and-swap on version v: the one
 * call that counts the item. A push whose counter swap fails deletes its own
 * slot and starts again; one that finds slot n taken while the counter still
 * reads (n, v) waits up to 200 ms for that other push (busy-waiting: a guest
 * cannot sleep) and then fences it off by rewriting the counter.
 */
abstract class Slots<V> extends Collection {
  protected push_(counter: string, data: Uint8Array): number {
    for (;;) {
      const entry = this.store.getEntry(counter);
      const count = entry === undefined ? 0 : asInt(entry.value, counter);
      const version = entry === undefined ? 0n : entry.version;
      const slot = this.key(count);
      let written: bigint;
      try {
        written = this.store.compareAndSwap(slot, slotRecord(version, data), undefined);
      } catch (error) {
        if (!(error instanceof PreconditionFailed)) throw error;
        this.settle(counter, slot, count, version);
        continue;
      }
      try {
        this.store.compareAndSwap(counter, utf8(String(count + 1)), version === 0n ? undefined : version);
        return count;
      } catch (error) {
        if (!(error instanceof PreconditionFailed)) throw error;
        this.store.deleteIf(slot, written); // ours and never counted
      }
    }
  }

  /** Slot *count* is taken while the counter read (*count*, *version*): clear the way (see the class). */
  private settle(counter: string, slot: string, count: number, version: bigint): void {
    const deadline = Date.now() + PUSH_PATIENCE_MS;
    for (;;) {
      const found = this.store.getEntry(slot);
      if (found === undefined || versionOf(this.store.getEntry(counter)) !== version) return;
      if (parseSlot(found.value, slot)[0] !== version) {
        this.store.deleteIf(slot, found.version); // can never be counted
        return;
      }
      if (Date.now() >= deadline) {
        try {
          this.store.compareAndSwap(counter, utf8(String(count)), version === 0n ? undefined : version);
        } catch (error) {
          if (!(error instanceof PreconditionFailed)) throw error;
        }
        return;
      }
    }
  }

  protected value(raw: Uint8Array, slot: string): V {
    return decodeJson(parseSlot(raw, slot)[1], slot) as V;
  }
}

/**
 * A persistent list of JSON values: `push`, `pop`, `length`, `at`, `set`, O(1)
 * each. Slot *i* is `prefix + encodeKey(i)`; the length `!len` changes only by
 * compare-and-swap, so concurrent pushes and pops from any number of hosts and
 * guests keep it exact. `at(i)` (negative *i* counts from the end) is one read
 * of the length plus one `get`; `push` is three calls when uncontended, `pop`
 * four. `pop` and `at` return `undefined` when there is no such item (as an
 * `Array`'s); `set` out of range throws a `RangeError`.
 */
export class StorageVector<V = unknown> extends Slots<V> {
  static readonly kind: string = "vector";
  private readonly lengthKey: string;

  constructor(store: Store, prefix: string, options?: CollectionOptions) {
    super(store, prefix, options);
    this.lengthKey = this.meta("len");
  }

  /** The number of items (O(1): one read). */
  get length(): number {
    return this.readInt(this.lengthKey);
  }

  /** Add *values* at the end, one after the other (not atomic as a whole); the new length. */
  push(...values: V[]): number {
    let count = 0;
    for (const value of values) count = this.push_(this.lengthKey, encodeJson(value)) + 1;
    return values.length === 0 ? this.length : count;
  }

  /** Remove and return the last item; `undefined` when empty. */
  pop(): V | undefined {
    for (;;) {
      const entry = this.store.getEntry(this.lengthKey);
      const count = entry === undefined ? 0 : asInt(entry.value, this.lengthKey);
      if (entry === undefined || count === 0) return undefined;
      const slot = this.key(count - 1);
      const found = this.store.getEntry(slot);
      if (found === undefined) {
        checkMoved(this.store, this.lengthKey, entry, slot);
        continue; // popped by another writer since the length was read
      }
      try {
        this.store.compareAndSwap(this.lengthKey, utf8(String(count - 1)), entry.version);
      } catch (error) {
        if (!(error instanceof PreconditionFailed)) throw error;
        continue;
      }
      this.store.deleteIf(slot, found.version);
      return this.value(found.value, slot);
    }
  }

  private position(index: number): number | undefined {
    if (!Number.isInteger(index)) throw new TypeError(`StorageVector indices are integers, not ${index}`);
    const count = this.length;
    const position = index < 0 ? index + count : index;
    return position >= 0 && position < count ? position : undefined;
  }

  /** The item at *index* (negative: from the end), or `undefined` out of range. */
  at(index: number): V | undefined {
    const position = this.position(index);
    if (position === undefined) return undefined;
    const slot = this.key(position);
    const raw = this.store.get(slot);
    return raw === undefined ? undefined : this.value(raw, slot);
  }

  /** Replace the item at *index* (negative: from the end); `RangeError` out of range. */
  set(index: number, value: V): void {
    const data = encodeJson(value);
    for (;;) {
      const position = this.position(index);
      const found = position === undefined ? undefined : this.store.getEntry(this.key(position));
      if (position === undefined || found === undefined) {
        throw new RangeError(`StorageVector index ${index} out of range (length ${this.length})`);
      }
      const slot = this.key(position);
      const tag = parseSlot(found.value, slot)[0];
      try {
        this.store.compareAndSwap(slot, slotRecord(tag, data), found.version);
        return;
      } catch (error) {
        if (!(error instanceof PreconditionFailed)) throw error;
      }
    }
  }

  /** The items in order, `pageSize` per `getMany` call (up to the length read when it starts). */
  *[Symbol.iterator](): Generator<V> {
    const count = this.length;
    for (let start = 0; start < count; start += this.pageSize) {
      const slots: string[] = [];
      for (let index = start; index < Math.min(start + this.pageSize, count); index++) slots.push(this.key(index));
      const raws = this.store.getMany(slots);
      for (let index = 0; index < slots.length; index++) {
        const raw = raws[index];
        if (raw === undefined) return; // popped meanwhile: the end moved below
        yield this.value(raw, slots[index]!);
      }
    }
  }

  /** Remove every item: the length goes to 0 first, then the slots are deleted a page at a time. */
  clear(): void {
    for (;;) {
      const entry = this.store.getEntry(this.lengthKey);
      if (entry === undefined) return;
      try {
        this.store.compareAndSwap(this.lengthKey, utf8("0"), entry.version);
        break;
      } catch (error) {
        if (!(error instanceof PreconditionFailed)) throw error;
      }
    }
    let batch: string[] = [];
    for (const [full] of this.scanItems()) {
      batch.push(full);
      if (batch.length === this.pageSize) {
        this.store.deleteMany(batch);
        batch = [];
      }
    }
    if (batch.length > 0) this.store.deleteMany(batch);
  }
}

/**
 * A persistent FIFO queue: `push(item)`, `pop()` (the item or `undefined`),
 * `length`; safe across processes, hosts and guests. `!tail` counts pushes
 * (the vector's push) and `!head` pops; `pop` moves the head on by
 * compare-and-swap, so whoever wins that swap owns the item: each item is
 * popped exactly once. Popped slots are deleted 32 at a time by the pop that
 * moves the head past a multiple of 32 (one `deleteMany`). `length` is
 * `tail - head` (one `getMany`).
 */
export class StorageQueue<V = unknown> extends Slots<V> {
  static readonly kind: string = "queue";
  private readonly headKey: string;
  private readonly tailKey: string;
  private seenTail = 0;
  private readonly sweep: number;

  constructor(store: Store, prefix: string, options?: CollectionOptions) {
    super(store, prefix, options);
    this.headKey = this.meta("head");
    this.tailKey = this.meta("tail");
    this.sweep = Math.min(this.pageSize, SWEEP);
  }

  /** Add *item* at the back. */
  push(item: V): void {
    this.push_(this.tailKey, encodeJson(item));
  }

  /** Remove and return the front item, or `undefined` when the queue is empty. */
  pop(): V | undefined {
    for (;;) {
      const head = this.store.getEntry(this.headKey);
      const first = head === undefined ? 0 : asInt(head.value, this.headKey);
      if (first >= this.seenTail) {
        // pushes only move the tail on: read it only when the head catches up
        this.seenTail = this.readInt(this.tailKey);
        if (first >= this.seenTail) return undefined;
      }
      const slot = this.key(first);
      const raw = this.store.get(slot);
      if (raw === undefined) {
        const tail = this.readInt(this.tailKey);
        if (tail !== this.seenTail) {
          // the queue was emptied (clear, deletePrefix) and maybe refilled
          this.seenTail = tail;
          continue;
        }
        checkMoved(this.store, this.headKey, head, slot);
        continue; // popped by another caller since the head was read
      }
      const version = versionOf(head);
      try {
        this.store.compareAndSwap(this.headKey, utf8(String(first + 1)), version === 0n ? undefined : version);
      } catch (error) {
        if (!(error instanceof PreconditionFailed)) throw error;
        continue;
      }
      if ((first + 1) % this.sweep === 0) {
        const done: string[] = [];
        for (let index = first + 1 - this.sweep; index <= first; index++) done.push(this.key(index));
        this.store.deleteMany(done);
      }
      return this.value(raw, slot);
    }
  }

  /** Items pushed and not popped (O(1)). */
  get length(): number {
    const [head, tail] = this.store.getMany([this.headKey, this.tailKey]);
    const count = (tail === undefined ? 0 : asInt(tail, this.tailKey)) - (head === undefined ? 0 : asInt(head, this.headKey));
    return Math.max(0, count);
  }
}

function register(store: Store, prefix: string, kind: string, pageSize: number): void {
  if (prefix.startsWith(REGISTRY_PREFIX) || REGISTRY_PREFIX.startsWith(prefix)) {
    throw new PrefixConflict(`prefix ${JSON.stringify(prefix)} overlaps "${REGISTRY_PREFIX}", where the collections are registered`);
  }
  const entry = REGISTRY_PREFIX + prefix;
  let existing = store.get(entry);
  if (existing === undefined) {
    checkOverlap(store, prefix, pageSize);
    let version: bigint | undefined;
    try {
      version = store.compareAndSwap(entry, encodeJson({ kind }), undefined);
    } catch (error) {
      if (!(error instanceof PreconditionFailed)) throw error;
      existing = store.get(entry); // registered by another process just now
    }
    if (version !== undefined) {
      try {
        checkOverlap(store, prefix, pageSize); // a concurrent registration of an overlapping prefix: both back off
      } catch (error) {
        if (error instanceof PrefixConflict) store.deleteIf(entry, version);
        throw error;
      }
      return;
    }
  }
  if (existing !== undefined) {
    const record = decodeRecord(existing, entry);
    if (record !== kind) {
      throw new PrefixConflict(
        `prefix ${JSON.stringify(prefix)} holds a ${record}, not a ${kind}: open it as a ${record}, or use another prefix`,
      );
    }
  }
}

function checkOverlap(store: Store, prefix: string, pageSize: number): void {
  const points = Array.from(prefix);
  const ancestors: string[] = [];
  for (let end = 1; end < points.length; end++) ancestors.push(REGISTRY_PREFIX + points.slice(0, end).join(""));
  for (let start = 0; start < ancestors.length; start += pageSize) {
    const chunk = ancestors.slice(start, start + pageSize);
    const raws = store.getMany(chunk);
    chunk.forEach((entry, index) => {
      const raw = raws[index];
      if (raw !== undefined) {
        const other = entry.slice(REGISTRY_PREFIX.length);
        throw new PrefixConflict(
          `prefix ${JSON.stringify(prefix)} starts with ${JSON.stringify(other)}, the prefix of an existing ` +
            `${decodeRecord(raw, entry)}: their keys would mix; choose a prefix that neither starts with nor is the ` +
            "start of another (e.g. end prefixes with '/')",
        );
      }
    });
  }
  const [page] = store.scan(REGISTRY_PREFIX + prefix, undefined, 2);
  for (const [entry, raw] of page) {
    const other = entry.slice(REGISTRY_PREFIX.length);
    if (other !== prefix) {
      throw new PrefixConflict(
        `prefix ${JSON.stringify(prefix)} is the start of ${JSON.stringify(other)}, the prefix of an existing ` +
          `${decodeRecord(raw, entry)}: their keys would mix; choose a prefix that neither starts with nor is the ` +
          "start of another (e.g. end prefixes with '/')",
      );
    }
  }
}

function decodeRecord(raw: Uint8Array, entry: string): string {
  const record = decodeJson(raw, entry) as { kind?: unknown } | null;
  if (record === null || typeof record !== "object" || typeof record.kind !== "string") {
    throw new ValueDecodeError(`the registry entry ${JSON.stringify(entry)} is not a collection record: ${preview(raw)}`);
  }
  return record.kind;
}

/** A decimal count (Python's `int(raw)`: optional sign and surrounding whitespace). */
function asInt(raw: Uint8Array, key: string): number {
  let text: string | undefined;
  try {
    text = fromUtf8(raw).trim();
  } catch {
    text = undefined;
  }
  if (text === undefined || !/^[-+]?\d+$/.test(text)) {
    throw new ValueDecodeError(`the value of key ${JSON.stringify(key)} is not a decimal count: ${preview(raw)}`);
  }
  return Number(text);
}

function versionOf(entry: Entry | undefined): bigint {
  return entry === undefined ? 0n : entry.version;
}

/** A counted slot is missing: fine if *counter* moved since it was *read*, damage (no endless retry) if not. */
function checkMoved(store: Store, counter: string, read: Entry | undefined, slot: string): void {
  if (versionOf(store.getEntry(counter)) === versionOf(read)) {
    throw new ValueDecodeError(
      `slot ${JSON.stringify(slot)} is missing although ${JSON.stringify(counter)} counts it: the collection was ` +
        "changed by hand (keys deleted under its prefix); repair or clear it",
    );
  }
}

function slotRecord(tag: bigint, data: Uint8Array): Uint8Array {
  const head = utf8(`${tag} `);
  const record = new Uint8Array(head.length + data.length);
  record.set(head);
  record.set(data, head.length);
  return record;
}

/** A slot's `[tag, value bytes]` from `"<tag> <value>"`. */
function parseSlot(raw: Uint8Array, slot: string): [bigint, Uint8Array] {
  const space = raw.indexOf(0x20);
  let digits = space > 0;
  for (let index = 0; digits && index < space; index++) digits = raw[index]! >= 0x30 && raw[index]! <= 0x39;
  if (!digits) {
    throw new ValueDecodeError(`the value of key ${JSON.stringify(slot)} is not a slot record ("<tag> <value>"): ${preview(raw)}`);
  }
  return [BigInt(fromUtf8(raw.subarray(0, space))), raw.subarray(space + 1)];
}

// -- bisection of the key space (StorageTreeMap.last/floor/lower), on code points ----------------------------

const TOP = 0x110000;

/** A valid key character strictly between code points *low* and *high*, near the middle, or `undefined`. */
function midChar(low: number, high: number): number | undefined {
  if (low < 0x7e && high > 0xa0) return 0xa0;
  let middle = Math.floor((low + high) / 2);
  if (middle >= 0x7f && middle <= 0x9f) middle = 0xa0 < high ? 0xa0 : 0x7e;
  else if (middle >= 0xd800 && middle <= 0xdfff) middle = 0xe000 < high ? 0xe000 : 0xd7ff;
  return low < middle && middle < high ? middle : undefined;
}

/** A string `m` with `low < m < high` (both valid keys, `low < high`), near the middle, or `undefined`. */
function midpoint(lowText: string, highText: string): string | undefined {
  const low = Array.from(lowText, (c) => c.codePointAt(0)!);
  const high = Array.from(highText, (c) => c.codePointAt(0)!);
  const text = (points: number[]): string => String.fromCodePoint(...points);
  let same = 0;
  const limit = Math.min(low.length, high.length);
  while (same < limit && low[same] === high[same]) same++;
  if (same === low.length) {
    const char = midChar(0x1f, high[same]!);
    if (char !== undefined) return lowText + String.fromCodePoint(char);
    return high.length > same + 1 ? lowText + " " : undefined;
  }
  const char = midChar(low[same]!, high[same]!);
  if (char !== undefined) return text([...low.slice(0, same), char]);
  for (let index = same + 1; index < low.length; index++) {
    const next = midChar(low[index]!, TOP);
    if (next !== undefined) return text([...low.slice(0, index), next]);
  }
  return lowText + String.fromCodePoint(0xa0);
}
