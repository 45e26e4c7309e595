// `count` in JavaScript: the running count of each key, kept in keyed state; emits
// `<key> <count so far>` for every record, as the Rust `examples/wordcount/count` does (and
// stores counts the same way, so the state is the same in every language).
//
// State is read and written once per batch (`getMany`/`setMany`): each state call crosses the
// WASM boundary.

import { Operator, ValueState, U64, exportOperator, utf8 } from "../../guest-sdk/js/weir.js";

/** A string standing for the bytes of a key, to use it as a Map key. */
const id = (key) => String.fromCharCode(...key);

class Count extends Operator {
  open(ctx, config) {
    this.counts = new ValueState("count", U64);
  }

  processBatch(ctx, records) {
    const keys = new Map();
    for (const r of records) if (!keys.has(id(r.key))) keys.set(id(r.key), r.key);
    const counts = new Map();
    const stored = this.counts.getMany([...keys.values()]);
    let i = 0;
    for (const k of keys.keys()) counts.set(k, stored[i++] ?? 0);
    for (const r of records) {
      const k = id(r.key);
      const n = counts.get(k) + 1;
      counts.set(k, n);
      const line = new Uint8Array(r.key.length + 21);
      line.set(r.key);
      const tail = utf8(" " + n);
      line.set(tail, r.key.length);
      ctx.emit(r.key, line.subarray(0, r.key.length + tail.length));
    }
    this.counts.setMany([...keys].map(([k, key]) => [key, counts.get(k)]));
  }
}

export const handler = exportOperator(Count);
