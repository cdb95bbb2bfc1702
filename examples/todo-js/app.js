// A to-do list kept in airssys-storage by a JavaScript component: a sorted map
// of items and a counter for their ids -- the layout of
// examples/todo-python/todo.py, so both read and write the same list.
//
// Ids come from an atomic counter (`increment` of "next-id"), so two runs at
// once never share an id; the items live in a StorageTreeMap keyed by id, so
// `list` pages through them in order.

import { GuestStore, StorageError, StorageTreeMap } from "@airssys/storage-sdk/guest";

const store = new GuestStore();
const items = () => new StorageTreeMap(store, "items/");

/** Run a command; an SDK error becomes err("<code>: <message>"). */
function command(work) {
  try {
    return work();
  } catch (error) {
    throw error instanceof StorageError ? `${error.code}: ${error.message}` : `${error}`;
  }
}

export function add(text) {
  return command(() => {
    const number = Number(store.increment("next-id", 1n));
    items().set(number, { text, done: false });
    return `added ${number}: ${text}`;
  });
}

export function done(id) {
  return command(() => {
    const list = items();
    const item = /^\d+$/.test(id) ? list.get(Number(id)) : undefined;
    if (item === undefined) throw `no item ${id}`;
    list.set(Number(id), { ...item, done: true });
    return `done ${id}: ${item.text}`;
  });
}

export function list() {
  return command(() => {
    const list = items();
    const lines = [];
    for (const [number, item] of list) lines.push(`[${item.done ? "x" : " "}] ${number} ${item.text}`);
    const last = list.last();
    lines.push(`${list.size} items, last id ${last === undefined ? 0 : last[0]}`);
    return lines.join("\n");
  });
}
