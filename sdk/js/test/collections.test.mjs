// The collections on MemoryStore: behaviour, layout (the keys the Python SDK writes), registry, errors.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  InvalidArgument,
  InvalidKey,
  MemoryStore,
  PrefixConflict,
  REGISTRY_PREFIX,
  Storage,
  StorageMap,
  StorageQueue,
  StorageSet,
  StorageTreeMap,
  StorageVector,
  ValueDecodeError,
  encodeJson,
} from "../dist/index.js";

const text = (raw) => Buffer.from(raw).toString("utf8");
const store = () => new MemoryStore({ maxBatchOps: 5 });
const PAGE = { pageSize: 3 };
const byteOrder = (x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y));

test("a map: set, get, has, delete, pop, size, ordered iteration through pages", () => {
  const map = new StorageMap(store(), "m/", PAGE);
  for (const key of [5, -3, 0, 12, 100000, -70]) map.set(key, { key });
  assert.equal(map.size, 6);
  assert.deepEqual([...map.keys()], [-70, -3, 0, 5, 12, 100000]);
  assert.deepEqual(map.get(12), { key: 12 });
  assert.equal(map.get(13), undefined);
  assert.equal(map.has(-3), true);
  map.set(12, "again");
  assert.equal(map.size, 6);
  assert.equal(map.delete(12), true);
  assert.equal(map.delete(12), false);
  assert.deepEqual(map.pop(5), { key: 5 });
  assert.equal(map.pop(5), undefined);
  assert.equal(map.size, 4);
  assert.deepEqual([...map.values()], [{ key: -70 }, { key: -3 }, { key: 0 }, { key: 100000 }]);
  map.clear();
  assert.equal(map.size, 0);
  assert.deepEqual([...map], []);
});

test("the on-storage layout is the Python SDK's", () => {
  const s = store();
  new StorageMap(s, "users/").set("ada", { n: 1 });
  new StorageSet(s, "tags/").add(["a", 1]);
  new StorageVector(s, "v/").push("x");
  new StorageQueue(s, "q/").push({ job: 1 });
  const [all] = new MemoryStore().scan(undefined, undefined, 1); // (an empty store: no page)
  assert.deepEqual(all, []);
  const pairs = [];
  let cursor;
  do {
    const [page, next] = s.scan(undefined, cursor, 5);
    pairs.push(...page.map(([key, value]) => [key, text(value)]));
    cursor = next;
  } while (cursor !== undefined);
  assert.deepEqual(pairs, [
    ["q/!tail", "1"],
    ["q/=", '0 {"job":1}'],
    ["tags/!size", "1"],
    ["tags/('a >00 ", ""],
    ["users/!size", "1"],
    ["users/'ada ", '{"n":1}'],
    ["v/!len", "1"],
    ["v/=", '0 "x"'],
    [REGISTRY_PREFIX + "q/", '{"kind":"queue"}'],
    [REGISTRY_PREFIX + "tags/", '{"kind":"set"}'],
    [REGISTRY_PREFIX + "users/", '{"kind":"map"}'],
    [REGISTRY_PREFIX + "v/", '{"kind":"vector"}'],
  ]);
});

test("a tree map answers range, first, last, floor, ceiling, lower, higher like a sorted model", () => {
  const tree = new StorageTreeMap(new MemoryStore(), "t/", PAGE);
  const keys = ["", "a", "ab", "b", "é", "😀", "z z", "~", "\uffff", "mid"];
  for (const key of keys) tree.set(key, key.length);
  const model = [...keys].sort(byteOrder);
  assert.deepEqual([...tree.keys()], model);
  assert.deepEqual(tree.first(), [model[0], 0]);
  assert.equal(tree.last()?.[0], model.at(-1));
  for (const probe of ["", "a", "aa", "b", "c", "zz", "é", "😀", "\u{10ffff}", "\uffff", "m"]) {
    assert.equal(tree.floor(probe)?.[0], model.filter((k) => byteOrder(k, probe) <= 0).at(-1), `floor ${probe}`);
    assert.equal(tree.lower(probe)?.[0], model.filter((k) => byteOrder(k, probe) < 0).at(-1), `lower ${probe}`);
    assert.equal(tree.ceiling(probe)?.[0], model.find((k) => byteOrder(k, probe) >= 0), `ceiling ${probe}`);
    assert.equal(tree.higher(probe)?.[0], model.find((k) => byteOrder(k, probe) > 0), `higher ${probe}`);
  }
  assert.deepEqual(
    [...tree.range("a", "z z")].map(([k]) => k),
    model.filter((k) => byteOrder(k, "a") >= 0 && byteOrder(k, "z z") < 0),
  );
  const empty = new StorageTreeMap(new MemoryStore(), "empty/");
  assert.equal(empty.first(), undefined);
  assert.equal(empty.last(), undefined);
});

test("a tree map of integers: last and floor by bisection", () => {
  const tree = new StorageTreeMap(new MemoryStore(), "n/");
  for (let n = -50; n <= 200; n += 7) tree.set(n, n);
  assert.deepEqual(tree.last(), [195, 195]);
  assert.deepEqual(tree.floor(100), [97, 97]);
  assert.equal(tree.lower(-50), undefined);
  assert.deepEqual(tree.ceiling(-49), [-43, -43]);
  assert.equal(tree.higher(195), undefined);
});

test("a set: add, has, delete, size, ordered members", () => {
  const set = new StorageSet(store(), "s/", PAGE);
  for (const member of ["b", "a", "c", "a"]) set.add(member);
  assert.equal(set.size, 3);
  assert.deepEqual([...set], ["a", "b", "c"]);
  assert.equal(set.delete("a"), true);
  assert.equal(set.delete("a"), false);
  assert.equal(set.has("b"), true);
  set.clear();
  assert.equal(set.size, 0);
});

test("a vector: push, pop, at, set, length, iteration, clear", () => {
  const vector = new StorageVector(store(), "v/", PAGE);
  assert.equal(vector.pop(), undefined);
  assert.equal(vector.push("a", "b", "c", "d"), 4);
  assert.equal(vector.length, 4);
  assert.equal(vector.at(-1), "d");
  assert.equal(vector.at(4), undefined);
  vector.set(1, "B");
  assert.deepEqual([...vector], ["a", "B", "c", "d"]);
  assert.throws(() => vector.set(9, "x"), RangeError);
  assert.equal(vector.pop(), "d");
  assert.equal(vector.length, 3);
  vector.clear();
  assert.equal(vector.length, 0);
  assert.deepEqual([...vector], []);
});

test("a queue: FIFO, length, popped slots swept", () => {
  const s = store();
  const queue = new StorageQueue(s, "q/", PAGE);
  for (let index = 0; index < 10; index++) queue.push({ job: index });
  assert.equal(queue.length, 10);
  const popped = [];
  for (let item = queue.pop(); item !== undefined; item = queue.pop()) popped.push(item.job);
  assert.deepEqual(popped, [...Array(10).keys()]);
  assert.equal(queue.length, 0);
  const [left] = s.scan("q/", undefined, 5);
  assert.deepEqual(left.map(([key]) => key), ["q/!head", "q/!tail", "q/>08"]); // slot 9 left: 9 popped slots swept in threes
  const other = new StorageQueue(s, "q/", PAGE); // another handle sees the same queue
  queue.push("x");
  assert.equal(other.pop(), "x");
});

test("a queue emptied under an old handle (its keys deleted) pops undefined, then what comes next", () => {
  const s = store();
  const queue = new StorageQueue(s, "q/", PAGE);
  for (const job of ["x", "y", "z"]) queue.push(job);
  assert.equal(queue.pop(), "x");
  for (const [key] of s.scan("q/", undefined, 5)[0]) s.delete(key); // what delete_prefix or clear does
  assert.equal(queue.pop(), undefined); // was ValueDecodeError: the handle still counted the old tail
  new StorageQueue(s, "q/", PAGE).push("c");
  assert.equal(queue.pop(), "c");
  assert.equal(queue.pop(), undefined);
});

test("the prefix registry refuses overlapping prefixes and other kinds", () => {
  const s = store();
  new StorageMap(s, "users/");
  new StorageMap(s, "users/"); // the same prefix, the same kind: fine
  assert.throws(() => new StorageSet(s, "users/"), (e) => e instanceof PrefixConflict && /holds a map, not a set/.test(e.message));
  assert.throws(() => new StorageMap(s, "users/x", PAGE), (e) => e instanceof PrefixConflict && e.code === "prefix-conflict");
  assert.throws(() => new StorageMap(s, "use"), /is the start of "users\/"/);
  assert.throws(() => new StorageMap(s, "~airssys-collections/x"), PrefixConflict);
  assert.throws(() => new StorageMap(s, ""), InvalidKey);
  assert.throws(() => new StorageMap(s, "p/", { pageSize: 0 }), InvalidArgument);
});

test("values that do not decode, keys that do not fit and values JSON cannot hold are typed errors", () => {
  const s = store();
  const map = new StorageMap(s, "m/");
  s.set("m/'bad ", Buffer.from("{not json"));
  assert.throws(() => map.get("bad"), (e) => e instanceof ValueDecodeError && e.code === "value-decode-error" && /m\/'bad /.test(e.message));
  assert.throws(() => map.set("x".repeat(300), 1), (e) => e instanceof InvalidKey && /the maximum is 256 bytes/.test(e.message));
  assert.throws(() => map.set("nan", NaN), InvalidArgument);
  assert.throws(() => map.set("u", undefined), InvalidArgument);
  assert.throws(() => map.set("big", 1n), InvalidArgument);
  assert.equal(Buffer.from(encodeJson({ a: [1, "é"] })).toString(), '{"a":[1,"é"]}');
  s.set("q/!tail", Buffer.from("two"));
  assert.throws(() => new StorageQueue(s, "q/").push(1), ValueDecodeError);
});

test("Storage (the seed's class): get/set JSON, delete, has, keys, size, entries", () => {
  const s = store();
  const storage = new Storage(s, 2);
  assert.equal(storage.get("user:alice"), null);
  storage.set("user:alice", { name: "Alice", age: 30 });
  storage.set("user:bob", { name: "Bob", age: 25 });
  storage.set("other", 1);
  assert.deepEqual(storage.get("user:alice"), { name: "Alice", age: 30 });
  assert.equal(storage.has("user:bob"), true);
  assert.deepEqual(storage.keys("user:"), ["user:alice", "user:bob"]);
  assert.deepEqual(storage.keys(), ["other", "user:alice", "user:bob"]);
  assert.deepEqual([...storage.entries("user:").keys()], ["user:alice", "user:bob"]);
  assert.equal(storage.size(), Number(s.usedBytes()));
  assert.ok(storage.size() > 0);
  assert.equal(storage.delete("user:bob"), true);
  assert.equal(storage.delete("user:bob"), false);
  s.set("broken", Buffer.from([0xff]));
  assert.throws(() => storage.get("broken"), ValueDecodeError);
});

test("hostile values and stray keys are typed errors, as in the Python SDK", () => {
  const s = store();
  const map = new StorageMap(s, "m/", PAGE);
  let deep = [];
  for (let i = 0; i < 100000; i++) deep = [deep];
  assert.throws(() => map.set("x", deep), InvalidArgument);
  assert.equal(map.has("x"), false);
  map.set("deep", 0);
  s.set("m/'deep ", Buffer.from("[".repeat(200000) + "]".repeat(200000)));
  assert.ok(Array.isArray(map.get("deep"))); // V8's JSON.parse is not recursive: no depth limit to hit
  s.set("m/'deep ", Buffer.from("NaN"));
  assert.throws(() => map.get("deep"), ValueDecodeError);
  s.delete("m/'deep ");
  s.set("m/stray", Buffer.from("1"));
  assert.throws(() => [...map.keys()], (e) => e instanceof ValueDecodeError && /"m\/stray".*delete it or move it out of the prefix/.test(e.message));
});
