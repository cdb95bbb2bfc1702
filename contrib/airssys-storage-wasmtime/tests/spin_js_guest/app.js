// A guest written in JavaScript against Spin's fermyon:spin/key-value@2.0.0 WIT only.
//
// Built by the tests with ComponentizeJS (package.json pins it; conftest.py runs
// `npm ci` and `componentize-js app.js --wit wit -n spin-js-guest -d http fetch-event`)
// and run by test_wasmtime_keyvalue.py with the limits below and a manifest allowing
// the store labels "default" and "cache" -- the same checks as spin_guest/app.py.
// A failed check returns err("<what failed>"); success returns the number of checks made.
//
// Bindings (jco's): `Store.open(label)` and the methods are synchronous; an err result
// is thrown as an Error whose `payload` is the variant, e.g. {tag: "other", val: "..."};
// option<list<u8>> is a Uint8Array or undefined; closing a store is store[Symbol.dispose]().

import { Store } from "fermyon:spin/key-value@2.0.0";

// The host's settings and the read-write manifest, as the test configures them.
const MAX_KEYS_PER_QUERY = 10;
const MAX_HANDLES = 1024;

const encoder = new TextEncoder();
const bytes = (text) => encoder.encode(text);

/** A check that failed: run-checks returns err(message). */
class CheckFailed extends Error {}

/** A readable form of a value, also used to compare values (Uint8Array has no deep equality). */
function show(value) {
  if (value === undefined) return "none";
  // Not `instanceof Uint8Array`: the bindings' arrays come from another realm.
  if (ArrayBuffer.isView(value)) return `bytes[${value.length}](${Array.from(value).join(",")})`;
  return JSON.stringify(value);
}

class Checks {
  constructor() {
    this.count = 0;
  }

  equal(what, got, expected) {
    this.count += 1;
    if (show(got) !== show(expected)) throw new CheckFailed(`${what}: got ${show(got)}, expected ${show(expected)}`);
  }

  /** Run `call`; it must fail with the error case `tag` (with `code`: a message starting "<code>:"). */
  error(what, call, tag, code = "") {
    this.count += 1;
    let got;
    try {
      got = call();
    } catch (error) {
      if (error instanceof CheckFailed || error?.payload === undefined) throw error;
      const value = error.payload;
      if (value.tag !== tag) throw new CheckFailed(`${what}: failed with ${show(value)}, expected ${tag}`);
      if (code && !value.val.startsWith(`${code}:`)) {
        throw new CheckFailed(`${what}: failed with ${show(value)}, expected the code ${code}`);
      }
      return value;
    }
    throw new CheckFailed(`${what}: returned ${show(got)}, expected the error ${tag}`);
  }
}

function readWrite(c) {
  const defaultStore = Store.open("default");
  const cache = Store.open("cache");
  c.error("a label the manifest does not list", () => Store.open("secret"), "access-denied");
  c.error("a label that is no store", () => Store.open("No Such/Store"), "no-such-store");
  c.equal("get of a missing key", defaultStore.get("k"), undefined);
  c.equal("exists of a missing key", defaultStore.exists("k"), false);
  defaultStore.set("k", bytes("default value"));
  cache.set("k", bytes("cache value"));
  c.equal("get after set", defaultStore.get("k"), bytes("default value"));
  c.equal("stores are separate", cache.get("k"), bytes("cache value"));
  c.equal("exists after set", defaultStore.exists("k"), true);
  defaultStore.delete("k");
  c.equal("delete removes", defaultStore.exists("k"), false);
  defaultStore.delete("k"); // deleting a missing key does nothing
  c.error("an empty key", () => defaultStore.set("", bytes("x")), "other", "invalid-key");
  const names = Array.from({ length: MAX_KEYS_PER_QUERY - 1 }, (_, i) => `item-${i}`);
  for (const name of names) cache.set(name, new Uint8Array());
  c.equal("get-keys: every key, sorted", cache.getKeys(), [...names, "k"].sort());
  c.equal("get-keys of the other store", defaultStore.getKeys(), []);
  cache.set("one-too-many", new Uint8Array());
  c.error("get-keys beyond the query maximum", () => cache.getKeys(), "other", "too-many-keys");
  for (const name of [...names, "one-too-many", "k"]) cache.delete(name);
  for (let i = 0; i < 4; i++) defaultStore.set(`q${i}`, new Uint8Array(1000)); // 4 x (1000 + 14) of the 4096 bytes
  c.error("a set beyond the quota", () => cache.set("q", new Uint8Array(1000)), "other", "quota-exceeded");
  c.equal("the refused set wrote nothing", cache.exists("q"), false);
  for (let i = 0; i < 4; i++) defaultStore.delete(`q${i}`);
  // A guest that keeps opening stores without closing them runs out of handles, not the host of memory.
  const held = [];
  const openMany = () => {
    for (let i = 0; i < MAX_HANDLES; i++) held.push(Store.open("default"));
    return `${held.length} stores opened`;
  };
  c.error("store-table-full", openMany, "store-table-full");
  for (const store of held) store[Symbol.dispose]();
  c.equal("a store opens again once others are closed", Store.open("default").exists("k"), false);
  defaultStore.set("kept", bytes("for the host to see"));
}

function readOnly(c) {
  const defaultStore = Store.open("default");
  c.equal("a reader sees the data", defaultStore.get("shared"), bytes("written by the host"));
  c.equal("exists", defaultStore.exists("shared"), true);
  c.equal("get-keys", defaultStore.getKeys(), ["shared"]);
  c.error("set", () => defaultStore.set("k", bytes("v")), "access-denied");
  c.error("delete", () => defaultStore.delete("shared"), "access-denied");
  c.error("a label the manifest does not list", () => Store.open("cache"), "access-denied");
}

function noAccess(c) {
  const defaultStore = Store.open("default");
  c.error("get", () => defaultStore.get("k"), "access-denied");
  c.error("exists", () => defaultStore.exists("k"), "access-denied");
  c.error("get-keys", () => defaultStore.getKeys(), "access-denied");
}

const SCENARIOS = { "read-write": readWrite, "read-only": readOnly, none: noAccess };

/** The export run-checks: run `scenario`; print and return how many checks passed, or throw the failure. */
export function runChecks(scenario) {
  const run = SCENARIOS[scenario];
  if (run === undefined) throw `no scenario ${scenario} (${Object.keys(SCENARIOS).join(", ")})`;
  const checks = new Checks();
  try {
    run(checks);
  } catch (error) {
    if (error instanceof CheckFailed) throw error.message;
    if (error?.payload !== undefined) throw `unexpected error ${show(error.payload)} after ${checks.count} checks`;
    throw `${error} after ${checks.count} checks`;
  }
  console.log(`${scenario}: ${checks.count} checks passed`);
  return checks.count;
}
