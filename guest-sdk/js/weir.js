// Write weir operators in JavaScript (componentize-qjs: QuickJS inside the component).
//
// An operator is a subclass of `Operator`: `open(ctx, config)` gets the manifest's config (a
// parsed object), `process(ctx, record)` sees one record at a time (the SDK unpacks the batch the
// host passes in one call), records are emitted through the `Context`, and keyed state lives in
// `ValueState` and `MapState` handles that the host stores per key group. The app module exports
// `handler = exportOperator(MyOperator)` (or, for an operator with private state kept in
// checkpoints, `{ handler, checkpointHooks } = exportStateful(MyOperator)`); see README.md
// beside this file. What does not touch keyed state (records, the context, logging, sources) is
// in weir_core.js, which a source imports directly: its world has no state to import.

import stateIface from "weir:operator/state@0.1.0";
import {
  Buffer,
  Context,
  StateError,
  WeirError,
  bytes,
  decodeBatch,
  encodeRecord,
  failure,
  lengths,
  text,
  unlengths,
  utf8,
} from "./weir_core.js";

// What weir_core.js holds, for operators to import from here.
export {
  Context,
  Record,
  Source,
  StateError,
  WeirError,
  decodeBatch,
  exportSource,
  log,
  text,
  utf8,
} from "./weir_core.js";

// Value codecs for state: how a JavaScript value is stored as bytes.

/** Values stored as they are (Uint8Array). */
export const BYTES = { encode: (v) => bytes(v), decode: (b) => b };
/** Text, as UTF-8. */
export const STR = { encode: (s) => utf8(s), decode: (b) => text(b) };
/** JSON values. */
export const JSON_CODEC = { encode: (v) => utf8(JSON.stringify(v)), decode: (b) => JSON.parse(text(b)) };
/** Non-negative integers, as the Rust SDK's `ValueState<u64>` stores them (a LEB128 varint), so
 * that state moves between languages. Numbers up to 2^53 - 1. */
export const U64 = {
  encode(n) {
    if (!Number.isSafeInteger(n) || n < 0) throw new WeirError(n + " is not a u64 below 2^53");
    const out = [];
    while (n >= 0x80) {
      out.push((n % 0x80) | 0x80);
      n = Math.floor(n / 0x80);
    }
    out.push(n);
    return Uint8Array.from(out);
  },
  decode(b) {
    let n = 0;
    let scale = 1;
    for (let i = 0; i < b.length; i++) {
      n += (b[i] & 0x7f) * scale;
      if (b[i] < 0x80) {
        if (i !== b.length - 1) throw new WeirError("a u64 state value has trailing bytes");
        if (!Number.isSafeInteger(n)) throw new WeirError("a u64 state value is above 2^53");
        return n;
      }
      scale *= 0x80;
    }
    throw new WeirError("a u64 state value is truncated");
  },
};

function stateCall(f, ...args) {
  try {
    return f(...args);
  } catch (e) {
    if (e && typeof e === "object" && "tag" in e) throw new StateError(String(e.val));
    throw e;
  }
}

/** One value per key under a state name; `codec` says how values are stored (BYTES by default). */
export class ValueState {
  constructor(name, codec = BYTES) {
    this.name = name;
    this.codec = codec;
  }
  get(key) {
    const raw = stateCall(stateIface.valueGet, this.name, bytes(key));
    return raw === null ? null : this.codec.decode(raw);
  }
  set(key, value) {
    stateCall(stateIface.valueSet, this.name, bytes(key), this.codec.encode(value));
  }
  clear(key) {
    stateCall(stateIface.valueClear, this.name, bytes(key));
  }
  /** The values of many keys (null where unset), in one host call. */
  getMany(keys) {
    const raw = stateCall(stateIface.valueGetMany, this.name, lengths(keys.map(bytes)));
    return unlengths(raw).map((v) => (v === null ? null : this.codec.decode(v)));
  }
  /** Sets (a value) or clears (null) many keys, in one host call; `entries` are [key, value]. */
  setMany(entries) {
    const flat = [];
    for (const [key, value] of entries) {
      flat.push(bytes(key));
      flat.push(value === null ? null : this.codec.encode(value));
    }
    stateCall(stateIface.valueSetMany, this.name, lengths(flat));
  }
}

/** A map per key under a state name; map keys and values are stored by their codecs. */
export class MapState {
  constructor(name, keyCodec = BYTES, valueCodec = BYTES) {
    this.name = name;
    this.keyCodec = keyCodec;
    this.valueCodec = valueCodec;
  }
  get(key, mapKey) {
    const raw = stateCall(stateIface.mapGet, this.name, bytes(key), this.keyCodec.encode(mapKey));
    return raw === null ? null : this.valueCodec.decode(raw);
  }
  put(key, mapKey, value) {
    stateCall(stateIface.mapPut, this.name, bytes(key), this.keyCodec.encode(mapKey), this.valueCodec.encode(value));
  }
  remove(key, mapKey) {
    stateCall(stateIface.mapRemove, this.name, bytes(key), this.keyCodec.encode(mapKey));
  }
  /** All entries of `key`'s map, ordered by encoded map key. */
  entries(key) {
    return stateCall(stateIface.mapEntries, this.name, bytes(key)).map(([k, v]) => [
      this.keyCodec.decode(k),
      this.valueCodec.decode(v),
    ]);
  }
  clear(key) {
    stateCall(stateIface.mapClear, this.name, bytes(key));
  }
}

/** Subclass this: `open(ctx, config)`, `process(ctx, record)` per record, or `processBatch(ctx,
 * records)` to touch state once per batch (`getMany`/`setMany`), and `close(ctx)`. */
export class Operator {
  open(ctx, config) {}
  process(ctx, record) {
    throw new WeirError("an operator implements process");
  }
  processBatch(ctx, records) {
    for (const record of records) this.process(ctx, record);
  }
  close(ctx) {}
  /** The operator's private state at a checkpoint (a Uint8Array; empty: none). */
  snapshot() {
    return new Uint8Array(0);
  }
  /** After a restore, called after `open` with each private state this subtask takes over. */
  restore(state) {}
}

/** The `handler` and `checkpointHooks` exports of an operator class. */
function exportsOf(cls) {
  let op = null;
  let ctx = null;
  const guarded = (f) => {
    try {
      return f();
    } catch (e) {
      throw failure(e);
    }
  };
  const started = () => {
    if (op === null) throw new WeirError("operator called before open");
  };
  const handler = {
    open(config) {
      guarded(() => {
        ctx = new Context();
        op = new cls();
        let parsed;
        try {
          parsed = JSON.parse(config.trim() || "{}");
        } catch (e) {
          throw new WeirError("invalid operator config: " + e.message);
        }
        op.open(ctx, parsed);
        ctx.flush();
      });
    },
    process(batch) {
      guarded(() => {
        started();
        op.processBatch(ctx, decodeBatch(batch));
        ctx.flush();
      });
    },
    close() {
      guarded(() => {
        started();
        op.close(ctx);
        ctx.flush();
      });
    },
  };
  const checkpointHooks = {
    snapshot() {
      return guarded(() => {
        started();
        return bytes(op.snapshot());
      });
    },
    restore(state) {
      guarded(() => {
        started();
        op.restore(state);
      });
    },
  };
  return { handler, checkpointHooks };
}

/** The component's `handler` export for the operator class `cls`:
 *     export const handler = exportOperator(MyOperator);
 * Any error the operator throws fails the job with its message. */
export function exportOperator(cls) {
  return exportsOf(cls).handler;
}

/** The `handler` and `checkpointHooks` exports for an operator class whose `snapshot` and
 * `restore` keep private state in checkpoints (built for the `stateful-operator` world):
 *     export const { handler, checkpointHooks } = exportStateful(MyOperator);
 */
export function exportStateful(cls) {
  return exportsOf(cls);
}

// Window functions (wit/window.wit): what a `[windows.X]` operator runs on its windows. The
// host keeps the windows and decides when they fire; these only compute. Calls carry many
// windows at once in flat buffers of length-prefixed items.

/** A window: from `start` (included) to `end` (excluded), in milliseconds. */
export class Window {
  constructor(start, end) {
    this.start = start;
    this.end = end;
  }
}

/** Folds a window's records into an accumulator, as Flink's `AggregateFunction`. The host
 * keeps accumulators as bytes: `encode` and `decode` (JSON by default) convert them. */
export class Aggregate {
  open(config) {}
  create() {
    throw new WeirError("an Aggregate implements create()");
  }
  /** Returns the accumulator with `record` added. */
  add(acc, record) {
    throw new WeirError("an Aggregate implements add(acc, record)");
  }
  /** Returns the two accumulators as one (session windows that merge). */
  merge(acc, other) {
    throw new WeirError("this aggregate function does not merge accumulators (session windows need merge)");
  }
  /** The value (Uint8Array or string) the window emits when it fires. */
  result(key, window, acc) {
    throw new WeirError("an Aggregate implements result(key, window, acc)");
  }
  encode(acc) {
    return utf8(JSON.stringify(acc));
  }
  decode(data) {
    return JSON.parse(text(data));
  }
}

/** Folds a window's records into one value of their own type, as Flink's `ReduceFunction`. */
export class Reduce {
  open(config) {}
  /** `value` (Uint8Array) with `record` folded in: Uint8Array or string. */
  reduce(value, record) {
    throw new WeirError("a Reduce implements reduce(value, record)");
  }
}

/** What a `ProcessWindow` emits for one window (a record without a timestamp gets the window's
 * end - 1). */
export class WindowOutput {
  constructor() {
    this.buf = new Buffer();
  }
  emit(key, value, timestamp = null) {
    encodeRecord(this.buf, bytes(key), bytes(value), timestamp);
  }
}

/** Computes a window's output from all its records at once, as Flink's
 * `ProcessWindowFunction`. */
export class ProcessWindow {
  open(config) {}
  process(key, window, records, out) {
    throw new WeirError("a ProcessWindow implements process(key, window, records, out)");
  }
}

/** (group, record) for each (record index, group index) pair, in order. */
function* paired(records, pairs, groups) {
  const decoded = decodeBatch(records);
  if (pairs.length % 2) throw new WeirError("malformed window batch: an odd number of pair items");
  for (let i = 0; i < pairs.length; i += 2) {
    const [r, g] = [pairs[i], pairs[i + 1]];
    if (r >= decoded.length || g >= groups) {
      throw new WeirError("malformed window batch: pair (" + r + ", " + g + ") is out of range");
    }
    yield [g, decoded[r]];
  }
}

/** A key, a window and what follows them in a window buffer, from `pos`. */
function windowAt(b, view, pos) {
  const n = view.getUint32(pos, true);
  const key = b.subarray(pos + 4, pos + 4 + n);
  pos += 4 + n;
  const window = new Window(Number(view.getBigInt64(pos, true)), Number(view.getBigInt64(pos + 8, true)));
  return [key, window, pos + 16];
}

function windowExports(cls) {
  let fn = null;
  const guarded = (f) => {
    try {
      return f();
    } catch (e) {
      throw failure(e);
    }
  };
  const started = () => {
    if (fn === null) throw new WeirError("window function called before open");
    return fn;
  };
  const open = (config) =>
    guarded(() => {
      fn = new cls();
      fn.open(JSON.parse(config.trim() || "{}"));
    });
  return {
    open,
    add(accumulators, records, pairs) {
      return guarded(() => {
        const f = started();
        const accs = unlengths(accumulators).map((a) => (a === null ? f.create() : f.decode(a)));
        for (const [g, r] of paired(records, pairs, accs.length)) accs[g] = f.add(accs[g], r);
        return lengths(accs.map((a) => bytes(f.encode(a))));
      });
    },
    merge(sets) {
      return guarded(() => {
        const f = started();
        const view = new DataView(sets.buffer, sets.byteOffset, sets.byteLength);
        const out = [];
        for (let pos = 0; pos < sets.length; ) {
          const n = view.getUint32(pos, true);
          pos += 4;
          let acc = null;
          for (let i = 0; i < n; i++) {
            const m = view.getUint32(pos, true);
            const other = f.decode(sets.subarray(pos + 4, pos + 4 + m));
            pos += 4 + m;
            acc = acc === null ? other : f.merge(acc, other);
          }
          out.push(bytes(f.encode(acc === null ? f.create() : acc)));
        }
        return lengths(out);
      });
    },
    getResult(windows) {
      return guarded(() => {
        const f = started();
        const view = new DataView(windows.buffer, windows.byteOffset, windows.byteLength);
        const out = [];
        for (let pos = 0; pos < windows.length; ) {
          const [key, window, at] = windowAt(windows, view, pos);
          const m = view.getUint32(at, true);
          const acc = f.decode(windows.subarray(at + 4, at + 4 + m));
          pos = at + 4 + m;
          out.push(bytes(f.result(key, window, acc)));
        }
        return lengths(out);
      });
    },
    reduce(values, records, pairs) {
      return guarded(() => {
        const f = started();
        const vals = unlengths(values);
        for (const [g, r] of paired(records, pairs, vals.length)) {
          vals[g] = vals[g] === null ? r.value : bytes(f.reduce(vals[g], r));
        }
        if (vals.some((v) => v === null)) {
          throw new WeirError("malformed window batch: a group with no value and no records");
        }
        return lengths(vals);
      });
    },
    process(windows) {
      return guarded(() => {
        const f = started();
        const view = new DataView(windows.buffer, windows.byteOffset, windows.byteLength);
        const out = [];
        for (let pos = 0; pos < windows.length; ) {
          const [key, window, at] = windowAt(windows, view, pos);
          const count = view.getUint32(at, true);
          let end = at + 4;
          for (let i = 0; i < count; i++) {
            const flags = windows[end];
            end += 9 + (flags & 1 ? 8 : 0) + view.getUint32(end + 1, true) + view.getUint32(end + 5, true);
          }
          const records = decodeBatch(windows.subarray(at + 4, end));
          pos = end;
          const emitted = new WindowOutput();
          f.process(key, window, records, emitted);
          out.push(emitted.buf.take());
        }
        return lengths(out);
      });
    },
  };
}

/** The `aggregateHandler` export (the `window-aggregate` world) of an `Aggregate` subclass:
 *     export const aggregateHandler = exportAggregate(SumCount);
 */
export function exportAggregate(cls) {
  const e = windowExports(cls);
  return { open: e.open, add: e.add, merge: e.merge, getResult: e.getResult };
}

/** The `reduceHandler` export (the `window-reduce` world) of a `Reduce` subclass:
 *     export const reduceHandler = exportReduce(Max);
 */
export function exportReduce(cls) {
  const e = windowExports(cls);
  return { open: e.open, reduce: e.reduce };
}

/** The `processHandler` export (the `window-process` world) of a `ProcessWindow` subclass:
 *     export const processHandler = exportProcessWindow(Top);
 */
export function exportProcessWindow(cls) {
  const e = windowExports(cls);
  return { open: e.open, process: e.process };
}
