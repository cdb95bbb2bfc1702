/**
 * Typed keys encoded as storage keys whose bytewise order is the keys' natural
 * order: the layout of the Python SDK (`airssys_storage_sdk/keys.py`), byte
 * for byte, so collections written in one language read in the other. In
 * the spirit of FoundationDB's tuple layer (type code, payload, terminator),
 * but producing text: every character written is printable ASCII or a
 * character of the key itself.
 *
 * Elements (a type code, then the payload):
 *
 * - bytes (`Uint8Array`): `#`, base64 with the sorted alphabet `-0-9A-Z_a-z`
 *   (6 bits a character, the last one zero-padded, no `=`), then `" "`.
 * - string: `'`, the characters, then `" "`. U+0000-U+0021 are written `!` +
 *   one character and U+007E-U+009F `~` + one character.
 * - integer (a safe-integer `number` or a `bigint`): `=` for 0; `>` + the
 *   digit count (one base-64 digit) + the base-64 digits for a positive one;
 *   `<` + (63 - digit count) + the complemented digits for a negative one. At
 *   most 63 digits (|n| < 2**378).
 * - tuple (an array): `(`, its elements, then `" "`; nested arrays nest.
 *
 * Across types the order is bytes < string < tuple < integer. Booleans,
 * non-integer numbers and integers beyond `Number.MAX_SAFE_INTEGER` as a
 * `number` (use a `bigint`) throw {@link InvalidKey}. Decoding gives back a
 * `number` for a safe integer and a `bigint` beyond; an array for a tuple;
 * a `Uint8Array` for bytes.
 */

import { InvalidKey } from "./errors.js";

/** What a key may be: a string, an integer (`number` or `bigint`), bytes, or a tuple (array) of them. */
export type Key = string | number | bigint | Uint8Array | readonly Key[];

/** The base-64 digits in ascending byte order. */
export const DIGITS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
/** The most base-64 digits of an integer key (|n| < 64**63 == 2**378). */
export const MAX_INT_DIGITS = 63;

const DIGIT_VALUE: Record<string, number> = Object.fromEntries([...DIGITS].map((c, i) => [c, i]));
const TERMINATOR = " ";
const BYTES = "#";
const STR = "'";
const TUPLE = "(";
const NEGATIVE = "<";
const ZERO = "=";
const POSITIVE = ">";
// Characters written escaped (U+0000-U+0021, U+007E-U+009F); a string with none and no lone surrogate is copied.
const ESCAPED_CHARS = /[\x00-\x21\x7e-\x9f]/g;
const NEEDS_WORK = /[\x00-\x21\x7e-\x9f\ud800-\udfff]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?:^|[^\ud800-\udbff])[\udc00-\udfff]/;
const ESCAPE_PAIR = /[!~]./gsu;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function escapeChar(char: string): string {
  const code = char.charCodeAt(0);
  return code <= 0x21 ? "!" + String.fromCharCode(0x40 + code) : "~" + String.fromCharCode(0x40 + code - 0x7e);
}

function unescapePair(pair: string): string {
  const code = pair.charCodeAt(1) - 0x40;
  if (pair[0] === "!" && code >= 0 && code <= 0x21) return String.fromCharCode(code);
  if (pair[0] === "~" && code >= 0 && code <= 0x21) return String.fromCharCode(code + 0x7e);
  return "\uffff"; // an unknown escape: the re-encoding check below refuses it
}

function show(key: unknown): string {
  if (typeof key === "bigint") return `${key}n`;
  if (isBytes(key)) return `bytes[${key.length}]`;
  try {
    return (JSON.stringify(key) ?? String(key)).slice(0, 80);
  } catch {
    return String(key).slice(0, 80);
  }
}

/** Whether *value* is a `Uint8Array` (of this realm or another: the bindings' arrays come from another one). */
export function isBytes(value: unknown): value is Uint8Array {
  return Object.prototype.toString.call(value) === "[object Uint8Array]";
}

/**
 * The storage-key text of *key*; throws {@link InvalidKey} for anything that
 * is not a key (see the module comment). `a < b` exactly when
 * `encodeKey(a) < encodeKey(b)` compared as UTF-8 bytes (as the store lists
 * keys), for keys of one type.
 */
export function encodeKey(key: Key): string {
  if (typeof key === "string" && !NEEDS_WORK.test(key)) return STR + key + TERMINATOR;
  const parts: string[] = [];
  encodeInto(key, parts);
  return parts.join("");
}

function encodeInto(key: unknown, parts: string[]): void {
  if (typeof key === "string") {
    if (LONE_SURROGATE.test(key)) throw new InvalidKey(`key ${show(key)} is not valid Unicode (it contains a lone surrogate)`);
    parts.push(STR, key.replace(ESCAPED_CHARS, escapeChar), TERMINATOR);
  } else if (typeof key === "number") {
    if (!Number.isInteger(key)) throw new InvalidKey(`keys are integers, not fractions or NaN: ${key}`);
    if (!Number.isSafeInteger(key)) {
      throw new InvalidKey(`integer key ${key} is beyond Number.MAX_SAFE_INTEGER and may have lost digits: pass a bigint`);
    }
    parts.push(encodeInt(BigInt(key)));
  } else if (typeof key === "bigint") {
    parts.push(encodeInt(key));
  } else if (isBytes(key)) {
    parts.push(BYTES, encodeBase64(key), TERMINATOR);
  } else if (Array.isArray(key)) {
    parts.push(TUPLE);
    for (const element of key) encodeInto(element, parts);
    parts.push(TERMINATOR);
  } else if (typeof key === "boolean") {
    throw new InvalidKey(`boolean keys are refused (true == 1 in Python, so they would collide with integers): ${key}`);
  } else {
    const kind = key === null ? "null" : typeof key === "object" ? key.constructor?.name ?? "object" : typeof key;
    throw new InvalidKey(`keys are strings, integers, Uint8Arrays or arrays of them, not ${kind}: ${show(key)}`);
  }
}

function encodeInt(value: bigint): string {
  if (value === 0n) return ZERO;
  let magnitude = value < 0n ? -value : value;
  const digits: number[] = [];
  while (magnitude > 0n) {
    digits.push(Number(magnitude & 63n));
    magnitude >>= 6n;
  }
  const count = digits.length;
  if (count > MAX_INT_DIGITS) {
    throw new InvalidKey(
      `integer key ${value} is too large: keys hold integers of at most ${MAX_INT_DIGITS} base-64 digits ` +
        "(|n| < 2**378); store it as a string or bytes key",
    );
  }
  digits.reverse();
  if (value > 0n) return POSITIVE + DIGITS[count] + digits.map((d) => DIGITS[d]).join("");
  return NEGATIVE + DIGITS[MAX_INT_DIGITS - count] + digits.map((d) => DIGITS[63 - d]).join("");
}

function encodeBase64(bytes: Uint8Array): string {
  let out = "";
  let index = 0;
  for (; index + 2 < bytes.length; index += 3) {
    const n = (bytes[index]! << 16) | (bytes[index + 1]! << 8) | bytes[index + 2]!;
    out += DIGITS[n >> 18]! + DIGITS[(n >> 12) & 63]! + DIGITS[(n >> 6) & 63]! + DIGITS[n & 63]!;
  }
  const left = bytes.length - index;
  if (left === 1) {
    const n = bytes[index]!;
    out += DIGITS[n >> 2]! + DIGITS[(n & 3) << 4]!;
  } else if (left === 2) {
    const n = (bytes[index]! << 8) | bytes[index + 1]!;
    out += DIGITS[n >> 10]! + DIGITS[(n >> 4) & 63]! + DIGITS[(n & 15) << 2]!;
  }
  return out;
}

/** The key whose {@link encodeKey} is *text*; throws {@link InvalidKey} for text no key encodes to. */
export function decodeKey(text: string): Key {
  const [key, end] = decodeAt(text, 0);
  if (end !== text.length) throw bad(text, end, "text after the key");
  return key;
}

function decodeAt(text: string, start: number): [Key, number] {
  if (start >= text.length) throw bad(text, start, "it ends where a key element should start");
  const code = text[start];
  let at = start + 1;
  if (code === STR || code === BYTES) {
    const end = text.indexOf(TERMINATOR, at);
    if (end < 0) throw bad(text, at, "no terminator");
    const payload = text.slice(at, end);
    return [code === STR ? decodeStr(text, payload, at) : decodeBase64(text, payload, at), end + 1];
  }
  if (code === TUPLE) {
    const elements: Key[] = [];
    for (;;) {
      if (at >= text.length) throw bad(text, at, "an unterminated tuple");
      if (text[at] === TERMINATOR) return [elements, at + 1];
      const [element, next] = decodeAt(text, at);
      elements.push(element);
      at = next;
    }
  }
  if (code === ZERO) return [0, at];
  if (code === POSITIVE || code === NEGATIVE) {
    const countDigit = text[at];
    if (countDigit === undefined || DIGIT_VALUE[countDigit] === undefined) throw bad(text, at, "an integer without its digit count");
    let count = DIGIT_VALUE[countDigit]!;
    if (code === NEGATIVE) count = MAX_INT_DIGITS - count;
    const digits = text.slice(at + 1, at + 1 + count);
    if (count === 0 || digits.length !== count || [...digits].some((c) => DIGIT_VALUE[c] === undefined)) {
      throw bad(text, at, "an integer whose digits do not match its digit count");
    }
    let magnitude = 0n;
    for (const digit of digits) {
      const value = DIGIT_VALUE[digit]!;
      magnitude = magnitude * 64n + BigInt(code === NEGATIVE ? 63 - value : value);
    }
    if (magnitude < 1n << BigInt(6 * (count - 1))) throw bad(text, at, "an integer with a leading zero digit");
    const value = code === POSITIVE ? magnitude : -magnitude;
    return [magnitude <= MAX_SAFE ? Number(value) : value, at + 1 + count];
  }
  throw bad(text, start, `unknown type code ${JSON.stringify(code)}`);
}

function decodeStr(text: string, payload: string, at: number): string {
  const decoded = payload.replace(ESCAPE_PAIR, unescapePair);
  if (decoded.replace(ESCAPED_CHARS, escapeChar) !== payload) throw bad(text, at, "a string with an invalid escape");
  return decoded;
}

function decodeBase64(text: string, payload: string, at: number): Uint8Array {
  if (payload.length % 4 === 1 || [...payload].some((c) => DIGIT_VALUE[c] === undefined)) {
    throw bad(text, at, "bytes that are not sorted base64");
  }
  const out = new Uint8Array(Math.floor((payload.length * 6) / 8));
  let bits = 0;
  let buffer = 0;
  let index = 0;
  for (const char of payload) {
    buffer = ((buffer << 6) | DIGIT_VALUE[char]!) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[index++] = (buffer >> bits) & 0xff;
    }
  }
  if ((buffer & ((1 << bits) - 1)) !== 0) throw bad(text, at, "bytes with non-zero padding bits");
  return out;
}

function bad(text: string, at: number, why: string): InvalidKey {
  return new InvalidKey(`${JSON.stringify(text)} is not an encoded collection key (${why} at character ${at})`);
}

/** The number of bytes of *text* in UTF-8 (what the host's key limit counts). */
export function utf8Length(text: string): number {
  let length = text.length;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code >= 0x80) length += code >= 0x800 && (code < 0xd800 || code > 0xdfff) ? 2 : 1;
  }
  return length;
}
