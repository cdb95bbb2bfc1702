/**
 * The SDK inside a JavaScript guest built with ComponentizeJS: {@link GuestStore}
 * implements the store protocol with jco's bindings of the `airssys:wasm`
 * world, and this module re-exports the whole SDK, so a guest needs one import:
 *
 * ```js
 * import { GuestStore, Storage, StorageMap, StorageQueue } from "@airssys/storage-sdk/guest";
 * const store = new GuestStore();
 * const users = new StorageMap(store, "users/");
 * ```
 *
 * The guest's world must include `airssys:wasm/component-full@0.1.0` (the
 * interfaces `storage`, `storage-batch`, `storage-ranges` and
 * `storage-atomics`). A WIT error case becomes the SDK error class of the same
 * code (`invalid-key` → `InvalidKey`, `precondition-failed` →
 * `PreconditionFailed` …) carrying the host's message, so collection code
 * behaves as on the host. Importing this module outside a component fails
 * (the `airssys:wasm/…` modules exist only there): use `MemoryStore` there.
 */

/// <reference path="./bindings.d.ts" />

import * as storage from "airssys:wasm/storage@0.1.0";
import * as batch from "airssys:wasm/storage-batch@0.1.0";
import * as ranges from "airssys:wasm/storage-ranges@0.1.0";
import * as atomics from "airssys:wasm/storage-atomics@0.1.0";
import { ERRORS_BY_CODE, InternalError } from "./errors.js";
import type { Entry, Store } from "./protocol.js";
import { Storage as StorageOver } from "./storage.js";

export * from "./index.js";

/** The SDK error of a thrown binding error (jco: `error.payload` is the WIT variant); other errors as they are. */
function translate(error: unknown): unknown {
  const payload = (error as { payload?: { tag?: unknown; val?: unknown } } | null)?.payload;
  if (payload === undefined || typeof payload?.tag !== "string") return error;
  const message = typeof payload.val === "string" ? payload.val : payload.tag;
  const Class = ERRORS_BY_CODE[payload.tag] ?? InternalError;
  return new Class(message);
}

function call<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    throw translate(error);
  }
}

/** {@link Store} over the `airssys:wasm` imports of the component (one per guest is enough; it holds no state). */
export class GuestStore implements Store {
  get(key: string): Uint8Array | undefined {
    return call(() => storage.storageGet(key));
  }

  set(key: string, value: Uint8Array): void {
    call(() => storage.storageSet(key, value));
  }

  delete(key: string): boolean {
    return call(() => storage.storageDelete(key));
  }

  has(key: string): boolean {
    return call(() => storage.storageHas(key));
  }

  getMany(keys: string[]): (Uint8Array | undefined)[] {
    return call(() => batch.storageGetMany(keys));
  }

  setMany(items: [string, Uint8Array][]): void {
    call(() => batch.storageSetMany(items));
  }

  deleteMany(keys: string[]): number {
    return call(() => batch.storageDeleteMany(keys));
  }

  scan(prefix: string | undefined, cursor: string | undefined, limit: number): [[string, Uint8Array][], string | undefined] {
    return call(() => ranges.storageScan(prefix, cursor, limit));
  }

  range(start: string, end: string, limit: number): [string, Uint8Array][] {
    return call(() => ranges.storageRange(start, end, limit));
  }

  compareAndSwap(key: string, value: Uint8Array, version: bigint | undefined): bigint {
    return call(() => atomics.storageCompareAndSwap(key, value, version));
  }

  deleteIf(key: string, version: bigint): boolean {
    return call(() => atomics.storageDeleteIf(key, version));
  }

  increment(key: string, delta: bigint): bigint {
    return call(() => atomics.storageIncrement(key, delta, undefined));
  }

  getEntry(key: string): Entry | undefined {
    const entry = call(() => atomics.storageGetEntry(key));
    return entry === undefined ? undefined : { value: entry.value, version: entry.version };
  }

  usedBytes(): bigint {
    return call(() => storage.storageSize());
  }
}

/** The seed's `Storage` over the component's own storage: `new Storage()` in a guest. */
export class Storage extends StorageOver {
  constructor(store: Store = new GuestStore(), pageSize?: number) {
    super(store, pageSize);
  }
}
