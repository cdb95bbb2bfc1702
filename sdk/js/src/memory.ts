/**
 * `MemoryStore`: the store protocol in process memory, for unit tests of code
 * that uses the collections (and the SDK's own tests under `node --test`).
 * It follows the host's rules that the collections rely on: keys of 1 to
 * `maxKeyBytes` bytes of UTF-8 without control characters ({@link InvalidKey}),
 * listing in UTF-8 byte order, versions strictly increasing per store and
 * never reused, compare-and-swap ({@link PreconditionFailed}), decimal
 * counters, and at most `maxBatchOps` keys per batch or page
 * ({@link TooManyKeys}). Nothing is persisted.
 */

import { InvalidArgument, InvalidKey, PreconditionFailed, TooManyKeys } from "./errors.js";
import { utf8Length } from "./keys.js";
import type { Entry, Store } from "./protocol.js";
import { compareKeys } from "./collections.js";
import { fromUtf8, utf8 } from "./values.js";

/** Limits of a {@link MemoryStore} (the host's defaults). */
export interface MemoryStoreOptions {
  /** Bytes of UTF-8 per key (default 256). */
  maxKeyBytes?: number;
  /** Keys per batch, scan page or range (default 100). */
  maxBatchOps?: number;
}

const CONTROL = /[\x00-\x1f\x7f-\x9f]/;

/** An in-memory {@link Store}. */
export class MemoryStore implements Store {
  private readonly data = new Map<string, { value: Uint8Array; version: bigint }>();
  private lastVersion = 0n;
  private readonly maxKeyBytes: number;
  private readonly maxBatchOps: number;

  constructor(options: MemoryStoreOptions = {}) {
    this.maxKeyBytes = options.maxKeyBytes ?? 256;
    this.maxBatchOps = options.maxBatchOps ?? 100;
  }

  private check(key: string): string {
    if (typeof key !== "string" || key === "" || utf8Length(key) > this.maxKeyBytes || CONTROL.test(key)) {
      throw new InvalidKey(`invalid key ${JSON.stringify(key)}: 1 to ${this.maxKeyBytes} bytes of UTF-8, no control characters`);
    }
    return key;
  }

  private batch(count: number): void {
    if (count > this.maxBatchOps) throw new TooManyKeys(`${count} keys in one call; the maximum is ${this.maxBatchOps}`);
  }

  private write(key: string, value: Uint8Array): bigint {
    this.lastVersion += 1n;
    this.data.set(key, { value: Uint8Array.from(value), version: this.lastVersion });
    return this.lastVersion;
  }

  private sorted(): string[] {
    return [...this.data.keys()].sort(compareKeys);
  }

  get(key: string): Uint8Array | undefined {
    return this.data.get(this.check(key))?.value.slice();
  }

  set(key: string, value: Uint8Array): void {
    this.write(this.check(key), value);
  }

  delete(key: string): boolean {
    return this.data.delete(this.check(key));
  }

  has(key: string): boolean {
    return this.data.has(this.check(key));
  }

  getMany(keys: string[]): (Uint8Array | undefined)[] {
    this.batch(keys.length);
    return keys.map((key) => this.get(key));
  }

  setMany(items: [string, Uint8Array][]): void {
    this.batch(items.length);
    for (const [key] of items) this.check(key);
    for (const [key, value] of items) this.write(key, value);
  }

  deleteMany(keys: string[]): number {
    this.batch(keys.length);
    for (const key of keys) this.check(key);
    return keys.filter((key) => this.data.delete(key)).length;
  }

  scan(prefix: string | undefined, cursor: string | undefined, limit: number): [[string, Uint8Array][], string | undefined] {
    if (!Number.isInteger(limit) || limit < 1) throw new InvalidArgument(`limit must be at least 1, got ${limit}`);
    this.batch(limit);
    const keys = this.sorted().filter(
      (key) => (prefix === undefined || key.startsWith(prefix)) && (cursor === undefined || compareKeys(key, cursor) > 0),
    );
    const page = keys.slice(0, limit).map((key): [string, Uint8Array] => [key, this.data.get(key)!.value.slice()]);
    return [page, keys.length > limit ? page[page.length - 1]![0] : undefined];
  }

  range(start: string, end: string, limit: number): [string, Uint8Array][] {
    this.batch(limit);
    return this.sorted()
      .filter((key) => compareKeys(key, start) >= 0 && compareKeys(key, end) < 0)
      .slice(0, limit)
      .map((key) => [key, this.data.get(key)!.value.slice()]);
  }

  compareAndSwap(key: string, value: Uint8Array, version: bigint | undefined): bigint {
    const current = this.data.get(this.check(key));
    if (current?.version !== version) {
      throw new PreconditionFailed(
        `key ${JSON.stringify(key)} is at version ${current?.version ?? "none (absent)"}, not ${version ?? "none (absent)"}`,
      );
    }
    return this.write(key, value);
  }

  deleteIf(key: string, version: bigint): boolean {
    if (this.data.get(this.check(key))?.version !== version) return false;
    return this.data.delete(key);
  }

  increment(key: string, delta: bigint): bigint {
    const current = this.data.get(this.check(key));
    const text = current === undefined ? "0" : fromUtf8(current.value);
    if (!/^-?\d+$/.test(text)) throw new InvalidArgument(`key ${JSON.stringify(key)} does not hold a decimal counter`);
    const next = BigInt(text) + delta;
    this.write(key, utf8(String(next)));
    return next;
  }

  getEntry(key: string): Entry | undefined {
    const current = this.data.get(this.check(key));
    return current === undefined ? undefined : { value: current.value.slice(), version: current.version };
  }

  usedBytes(): bigint {
    let total = 0;
    for (const [key, { value }] of this.data) total += utf8Length(key) + value.length;
    return BigInt(total);
  }
}
