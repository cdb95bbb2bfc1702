/**
 * The seed's `Storage` class: JSON values under plain string keys, over any
 * {@link Store} (in a guest `@airssys/storage-sdk/guest` gives one built on
 * the `airssys:wasm` bindings). jco's bindings are synchronous, so these
 * methods are too (`await storage.get(…)`, as the seed writes it, still works).
 */

import type { Store } from "./protocol.js";
import { decodeJson, encodeJson } from "./values.js";
import { PAGE_SIZE } from "./collections.js";

/** Typed JSON helpers over one component's storage (keys are plain strings, as given). */
export class Storage {
  /**
   * @param store the component's storage.
   * @param pageSize keys per scan page for {@link keys} and {@link entries} (default 100, at most the host's
   *   `max_keys_per_query`).
   */
  constructor(
    readonly store: Store,
    readonly pageSize: number = PAGE_SIZE,
  ) {}

  /** The JSON value under *key*, or `null` when missing; `ValueDecodeError` when it is not UTF-8 JSON. */
  get<T = unknown>(key: string): T | null {
    const raw = this.store.get(key);
    return raw === undefined ? null : (decodeJson(raw, key) as T);
  }

  /** Store *value* as compact JSON under *key*; `InvalidArgument` for what JSON cannot hold. */
  set<T>(key: string, value: T): void {
    this.store.set(key, encodeJson(value));
  }

  /** Delete *key*; whether it existed. */
  delete(key: string): boolean {
    return this.store.delete(key);
  }

  /** Whether *key* exists. */
  has(key: string): boolean {
    return this.store.has(key);
  }

  /** Every key starting with *prefix* (all keys without one), in UTF-8 byte order, paged through scan. */
  keys(prefix?: string): string[] {
    const keys: string[] = [];
    for (const [key] of this.scan(prefix)) keys.push(key);
    return keys;
  }

  /** Bytes used by the component (keys plus values). */
  size(): number {
    return Number(this.store.usedBytes());
  }

  /** The JSON values under *prefix* by key, in key order, paged through scan (no get per key). */
  entries<T = unknown>(prefix?: string): Map<string, T> {
    const entries = new Map<string, T>();
    for (const [key, raw] of this.scan(prefix)) entries.set(key, decodeJson(raw, key) as T);
    return entries;
  }

  private *scan(prefix: string | undefined): Generator<[string, Uint8Array]> {
    let cursor: string | undefined;
    do {
      const [page, next] = this.store.scan(prefix, cursor, this.pageSize);
      yield* page;
      cursor = next;
    } while (cursor !== undefined);
  }
}
