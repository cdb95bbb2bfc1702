// Key encoding: the layout of the Python SDK (sdk/key-vectors.json, written by it), order, round trip, errors.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { InvalidKey, MAX_INT_DIGITS, decodeKey, encodeKey } from "../dist/index.js";

const VECTORS = JSON.parse(readFileSync(new URL("../../key-vectors.json", import.meta.url), "utf8"));
const utf8 = (text) => Buffer.from(text, "utf8");

/** A typed key of the vector file as a JavaScript key (ints: number when safe, bigint beyond). */
function fromTyped(typed) {
  if ("str" in typed) return typed.str;
  if ("int" in typed) {
    const value = BigInt(typed.int);
    return value >= -BigInt(Number.MAX_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }
  if ("bytes" in typed) return new Uint8Array(Buffer.from(typed.bytes, "hex"));
  return typed.tuple.map(fromTyped);
}

test("every vector of the Python SDK encodes to the same text and decodes back", () => {
  assert.ok(VECTORS.vectors.length >= 100);
  for (const { key, encoded } of VECTORS.vectors) {
    const value = fromTyped(key);
    assert.equal(encodeKey(value), encoded, `encodeKey(${JSON.stringify(key)})`);
    assert.deepEqual(decodeKey(encoded), value, `decodeKey(${JSON.stringify(encoded)})`);
  }
});

test("texts no key encodes to are invalid-key in JavaScript too", () => {
  for (const text of VECTORS.invalid) {
    assert.throws(() => decodeKey(text), (error) => error instanceof InvalidKey && error.code === "invalid-key", text);
  }
});

test("the layout is stable", () => {
  const table = [["a", "'a "], ["", "' "], [0, "="], [1, ">00"], [-1, "<yy"], [new Uint8Array(), "# "], [["a", 1], "('a >00 "]];
  for (const [key, expected] of table) assert.equal(encodeKey(key), expected);
  assert.equal(encodeKey(5n), encodeKey(5));
});

/** A small deterministic generator (the tests never change by themselves). */
function random(seed) {
  let state = seed >>> 0;
  return (n) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % n;
  };
}

const ALPHABET = ["a", "b", " ", "\0", "!", "~", "\x7f", "\x9f", "\xa0", "é", "€", "\uffff", "😀", "'", "#"];

function naturalCompare(a, b) {
  // the keys' natural order, per shape: strings by code point, integers by value, bytes bytewise, tuples elementwise
  if (typeof a === "string") {
    const x = Array.from(a, (c) => c.codePointAt(0));
    const y = Array.from(b, (c) => c.codePointAt(0));
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length;
  }
  if (typeof a === "number" || typeof a === "bigint") return BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0;
  if (a instanceof Uint8Array) return Buffer.compare(Buffer.from(a), Buffer.from(b));
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const order = naturalCompare(a[i], b[i]);
    if (order !== 0) return order;
  }
  return a.length - b.length;
}

test("bytewise order of the encodings is the keys' natural order, and decoding inverts encoding", () => {
  const next = random(13);
  const makers = [
    () => Array.from({ length: next(6) }, () => ALPHABET[next(ALPHABET.length)]).join(""),
    () => (next(2) ? 1 : -1) * next(1 + [64, 5000, 2 ** 31][next(3)]),
    () => (next(2) ? 1n : -1n) * BigInt(next(2 ** 30)) ** BigInt(1 + next(8)),
    () => new Uint8Array(Array.from({ length: next(6) }, () => next(256))),
    () => [next(2000) - 1000, Array.from({ length: next(3) }, () => ALPHABET[next(ALPHABET.length)]).join("")],
  ];
  let checked = 0;
  for (const make of makers) {
    for (let round = 0; round < 400; round++) {
      const a = make();
      const b = make();
      const order = Math.sign(naturalCompare(a, b));
      assert.equal(Math.sign(Buffer.compare(utf8(encodeKey(a)), utf8(encodeKey(b)))), order, `${encodeKey(a)} vs ${encodeKey(b)}`);
      for (const key of [a, b]) {
        const back = decodeKey(encodeKey(key));
        assert.equal(naturalCompare(back, key), 0);
      }
      checked++;
    }
  }
  assert.equal(checked, 2000);
});

test("what is not a key is an InvalidKey naming the problem", () => {
  const cases = [
    [true, /boolean keys are refused/],
    [1.5, /not fractions/],
    [2 ** 53, /pass a bigint/],
    ["\ud800", /lone surrogate/],
    [64n ** BigInt(MAX_INT_DIGITS), /too large/],
    [["a", null], /not null/],
    [{}, /not Object/],
  ];
  for (const [key, message] of cases) {
    assert.throws(() => encodeKey(key), (error) => error instanceof InvalidKey && message.test(error.message), String(key));
  }
});
