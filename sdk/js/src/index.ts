/**
 * `@airssys/storage-sdk`: typed values and collections over airssys-storage,
 * in the on-storage layout of the Python SDK (`airssys_storage_sdk`), so
 * JavaScript and Python components -- and the Python host -- share data.
 *
 * Transport-free: every class takes a {@link Store}. In a ComponentizeJS
 * guest import from `@airssys/storage-sdk/guest`, which adds `GuestStore`
 * (jco's bindings of `airssys:wasm`) and re-exports all of this.
 */

export {
  PAGE_SIZE,
  REGISTRY_PREFIX,
  StorageMap,
  StorageQueue,
  StorageSet,
  StorageTreeMap,
  StorageVector,
  compareKeys,
  type CollectionOptions,
} from "./collections.js";
export * from "./errors.js";
export { DIGITS, MAX_INT_DIGITS, decodeKey, encodeKey, isBytes, utf8Length, type Key } from "./keys.js";
export { MemoryStore, type MemoryStoreOptions } from "./memory.js";
export type { Entry, Store } from "./protocol.js";
export { Storage } from "./storage.js";
export { decodeJson, encodeJson, type Json } from "./values.js";
