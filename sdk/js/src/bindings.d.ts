// The imports of the `airssys:wasm@0.1.0` world `component-full`
// (airssys_storage/wit/storage.wit) as ComponentizeJS / jco present them to a
// guest: the interfaces the SDK uses. jco's conventions: functions and record
// fields in camelCase, `option<T>` is `T | undefined`, `list<u8>` a
// `Uint8Array`, `u64`/`s64` a `bigint`, `u32` a `number`, a tuple an array,
// and an `err` result is thrown as an `Error` whose `payload` is the error
// variant (`{ tag: "invalid-key" }`, `{ tag: "internal-error", val: "…" }`).
// Written from the WIT by these rules (kept to what guest.ts calls);
// sdk/python/tests/test_js_sdk.py builds a guest against the real bindings.

declare module "airssys:wasm/storage@0.1.0" {
  export function storageGet(key: string): Uint8Array | undefined;
  export function storageSet(key: string, value: Uint8Array): void;
  export function storageDelete(key: string): boolean;
  export function storageHas(key: string): boolean;
  export function storageKeys(prefix: string | undefined): string[];
  export function storageSize(): bigint;
  export function storageClear(): void;
}

declare module "airssys:wasm/storage-batch@0.1.0" {
  export function storageGetMany(keys: string[]): (Uint8Array | undefined)[];
  export function storageSetMany(entries: [string, Uint8Array][]): void;
  export function storageDeleteMany(keys: string[]): number;
}

declare module "airssys:wasm/storage-ranges@0.1.0" {
  export function storageRange(start: string, end: string, limit: number | undefined): [string, Uint8Array][];
  export function storageScan(
    prefix: string | undefined,
    cursor: string | undefined,
    limit: number,
  ): [[string, Uint8Array][], string | undefined];
}

declare module "airssys:wasm/storage-atomics@0.1.0" {
  export interface Entry {
    value: Uint8Array;
    version: bigint;
    expiresAtMs?: bigint;
  }
  export function storageGetEntry(key: string): Entry | undefined;
  export function storageCompareAndSwap(key: string, value: Uint8Array, version: bigint | undefined): bigint;
  export function storageSetIfAbsent(key: string, value: Uint8Array): boolean;
  export function storageDeleteIf(key: string, version: bigint): boolean;
  export function storageIncrement(key: string, delta: bigint, opId: string | undefined): bigint;
}
