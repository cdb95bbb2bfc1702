/**
 * Typed values: stored as compact UTF-8 JSON, the bytes the Python SDK
 * writes (`airssys_storage_sdk/values.py`: no spaces, non-ASCII characters
 * as themselves, no NaN or infinity). A stored value that is not UTF-8 JSON
 * throws {@link ValueDecodeError} naming the key, never a raw `SyntaxError`;
 * a value JSON cannot hold (`undefined`, a function, a bigint, NaN, ±Infinity)
 * throws {@link InvalidArgument}.
 */

import { InvalidArgument, ValueDecodeError } from "./errors.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** A value JSON holds (what a collection stores). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function refuseNonFinite(_key: string, value: unknown): unknown {
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new InvalidArgument(`${value} cannot be stored as JSON (Python's json refuses it too)`);
  }
  return value;
}

/** *value* as compact UTF-8 JSON; {@link InvalidArgument} for what JSON cannot hold. */
export function encodeJson(value: unknown): Uint8Array {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, refuseNonFinite);
  } catch (error) {
    if (error instanceof InvalidArgument) throw error;
    throw new InvalidArgument(`value cannot be stored as JSON: ${String(error)}`);
  }
  if (text === undefined) throw new InvalidArgument(`value ${String(value)} cannot be stored as JSON`);
  return encoder.encode(text);
}

/** The JSON value of stored *raw*; {@link ValueDecodeError} naming *where* (the key) if it is not UTF-8 JSON. */
export function decodeJson(raw: Uint8Array, where: string): unknown {
  try {
    return JSON.parse(decoder.decode(raw));
  } catch (error) {
    throw new ValueDecodeError(`the value of key ${JSON.stringify(where)} is not JSON (${String(error)}): ${preview(raw)}`);
  }
}

/** The first bytes of *raw*, readable, for error messages. */
export function preview(raw: Uint8Array): string {
  const head = Array.from(raw.subarray(0, 60), (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`));
  return `b'${head.join("")}'`;
}

/** Text to UTF-8 bytes (one shared encoder). */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** UTF-8 bytes to text (invalid UTF-8 throws a `TypeError`). */
export function fromUtf8(raw: Uint8Array): string {
  return decoder.decode(raw);
}
