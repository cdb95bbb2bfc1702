// A ComponentizeJS guest using @airssys/storage-sdk: the same collections, in
// the same layout, as the Python host and the Python guest (../guest/app.py).
// Bundled with rolldown and built with componentize-js by ../test_js_sdk.py.
// Every SDK error becomes err("<code>: <message>").

import {
  GuestStore,
  Storage,
  StorageError,
  StorageMap,
  StorageQueue,
  StorageSet,
  StorageTreeMap,
  StorageVector,
} from "@airssys/storage-sdk/guest";

const KINDS = { map: StorageMap, treemap: StorageTreeMap, set: StorageSet, vector: StorageVector, queue: StorageQueue };
const PAGE = 5; // the host's max_batch_ops in the test
const store = new GuestStore();

function guarded(work) {
  try {
    return work();
  } catch (error) {
    if (error instanceof StorageError) throw `${error.code}: ${error.message}`;
    throw `${error}`;
  }
}

export function fillCollections(count) {
  return guarded(() => {
    const users = new StorageTreeMap(store, "users/", { pageSize: PAGE });
    const scores = new StorageMap(store, "scores/", { pageSize: PAGE });
    const jobs = new StorageQueue(store, "jobs/", { pageSize: PAGE });
    for (let index = 0; index < count; index++) {
      users.set(`user-${String(index).padStart(3, "0")}`, { n: index, name: `User ${index}`, tags: ["js", "é"] });
      scores.set([`player-${index % 3}`, index - 5], index * 1.5);
      jobs.push({ job: index });
    }
    return users.size;
  });
}

export function popJobs(n) {
  return guarded(() => {
    const jobs = new StorageQueue(store, "jobs/", { pageSize: PAGE });
    const popped = [];
    for (let index = 0; index < n; index++) {
      const item = jobs.pop();
      if (item === undefined) break;
      popped.push(JSON.stringify(item));
    }
    return popped;
  });
}

export function readUsers() {
  return guarded(() => {
    const users = new StorageTreeMap(store, "users/", { pageSize: PAGE });
    return JSON.stringify([users.size, users.first(), users.last(), users.floor("user-005x")]);
  });
}

/** The SDK error a call throws, as "<class> <code>". */
function refusal(call) {
  try {
    call();
  } catch (error) {
    return `${error.constructor.name} ${error.code}`;
  }
  return "no error";
}

export function seedStorage() {
  return guarded(() => {
    const storage = new Storage(undefined, PAGE); // over the component's own storage (GuestStore); pages of PAGE keys
    storage.set("user:alice", { name: "Alice", age: 30 });
    storage.set("user:bob", { name: "Bob", age: 25 });
    const deleted = storage.delete("user:bob");
    const summary = [
      storage.get("user:alice"),
      deleted && !storage.has("user:bob"),
      storage.keys("user:"),
      Object.fromEntries(storage.entries("user:")),
      storage.size() > 0,
      storage.get("from-host"),
      refusal(() => storage.set("", 1)), // the host refuses the empty key: jco's thrown variant, translated
      refusal(() => store.compareAndSwap("user:alice", new Uint8Array(), 999999n)),
    ];
    return JSON.stringify(summary);
  });
}

export function openCollection(kind, prefix) {
  return guarded(() => {
    new KINDS[kind](store, prefix, { pageSize: PAGE });
    return "";
  });
}
