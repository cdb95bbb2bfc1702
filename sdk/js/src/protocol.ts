/**
 * The store protocol the collections are written against: what a transport
 * offers. In a guest, `GuestStore` (`@airssys/storage-sdk/guest`) implements
 * it over jco's bindings of the `airssys:wasm` world; `MemoryStore` is an
 * in-process model for unit tests. The same operations as the Python SDK's
 * `Store` (`airssys_storage_sdk/protocol.py`), in JavaScript's shapes: keys
 * are strings (1 to `max-key-bytes` bytes of UTF-8, no control characters),
 * values `Uint8Array`, a missing value `undefined`, versions `bigint` (WIT
 * u64). Every method throws the {@link StorageError} class of the host's error
 * case (`PreconditionFailed` for a compare-and-swap whose version no longer holds).
 */

/** A live key's value and version (WIT `entry`). */
export interface Entry {
  readonly value: Uint8Array;
  readonly version: bigint;
}

/** One component's key-value storage, as the collections use it. */
export interface Store {
  get(key: string): Uint8Array | undefined;
  set(key: string, value: Uint8Array): void;
  /** Whether the key existed. */
  delete(key: string): boolean;
  has(key: string): boolean;
  getMany(keys: string[]): (Uint8Array | undefined)[];
  /** One atomic batch. */
  setMany(items: [string, Uint8Array][]): void;
  /** One atomic batch; how many keys existed. */
  deleteMany(keys: string[]): number;
  /** One page of pairs under *prefix* (in key order) and the cursor of the next page (`undefined` at the end). */
  scan(prefix: string | undefined, cursor: string | undefined, limit: number): [[string, Uint8Array][], string | undefined];
  /** The pairs with `start <= key < end` (bytewise), at most *limit*. */
  range(start: string, end: string, limit: number): [string, Uint8Array][];
  /** Write only if the key's version is *version* (`undefined`: the key must be absent); the new version. */
  compareAndSwap(key: string, value: Uint8Array, version: bigint | undefined): bigint;
  /** Delete only if the key's version is *version*; whether it deleted. */
  deleteIf(key: string, version: bigint): boolean;
  /** Add *delta* to the decimal counter under the key (missing = 0); the new value. */
  increment(key: string, delta: bigint): bigint;
  getEntry(key: string): Entry | undefined;
  /** Bytes used by the component (keys plus values). */
  usedBytes(): bigint;
}
