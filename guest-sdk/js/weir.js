// Write weir operators in JavaScript (componentize-qjs: QuickJS inside the component).
//
// An operator is a subclass of `Operator`: `open(ctx, config)` gets the manifest's config (a
// parsed object), `process(ctx, record)` sees one record at a time (the SDK unpacks the batch the
// host passes in one call), records are emitted through the `Context`, and keyed state lives in
// `ValueState` and `MapState` handles that the host stores per key group. The app module exports
// `handler = exportOperator(MyOperator)` (or, for an operator with private state kept in
// checkpoints, `{ handler, checkpointHooks } = exportStateful(MyOperator)`); see README.md
// beside this file.

import emitIface from "weir:operator/emit@0.1.0";
import stateIface from "weir:operator/state@0.1.0";
import logIface from "weir:operator/log@0.1.0";
import contextIface from "weir:operator/context@0.1.0";

const FLUSH_BYTES = 64 * 1024;
const ABSENT = 0xffffffff;

/** An error that fails the job with its message alone (any other error adds its stack). */
export class WeirError extends Error {}

/** A state call the host refused (key outside this subtask's key groups, or an invalid name). */
export class StateError extends WeirError {}

// UTF-8 by hand: QuickJS has no TextEncoder/TextDecoder.

/** The UTF-8 bytes of a string. */
export function utf8(text) {
  const out = [];
  for (const ch of text) {
    let c = ch.codePointAt(0);
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) {
      if (c >= 0xd800 && c < 0xe000) c = 0xfffd; // a lone surrogate
      out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    } else {
      out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    }
  }
  return Uint8Array.from(out);
}

/** The text of UTF-8 `bytes`; throws on bytes that are not UTF-8. */
export function text(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    let c, n;
    if (b < 0x80) (c = b), (n = 1);
    else if (b >= 0xc2 && b < 0xe0) (c = b & 31), (n = 2);
    else if (b >= 0xe0 && b < 0xf0) (c = b & 15), (n = 3);
    else if (b >= 0xf0 && b < 0xf5) (c = b & 7), (n = 4);
    else throw new WeirError("bytes are not UTF-8 at " + i);
    if (i + n > bytes.length) throw new WeirError("bytes are not UTF-8 at " + i);
    for (let k = 1; k < n; k++) {
      const t = bytes[i + k];
      if ((t & 0xc0) !== 0x80) throw new WeirError("bytes are not UTF-8 at " + i);
      c = (c << 6) | (t & 63);
    }
    const min = [0, 0, 0x80, 0x800, 0x10000][n];
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c < 0xe000)) {
      throw new WeirError("bytes are not UTF-8 at " + i);
    }
    s += String.fromCodePoint(c);
    i += n;
  }
  return s;
}

function bytes(x) {
  if (x instanceof Uint8Array) return x;
  if (typeof x === "string") return utf8(x);
  throw new TypeError("keys and values are Uint8Array or string, not " + typeof x);
}

/** One record: `key` and `value` are Uint8Array, `timestamp` is milliseconds or null. */
export class Record {
  constructor(key, value, timestamp = null) {
    this.key = bytes(key);
    this.value = bytes(value);
    this.timestamp = timestamp;
  }
  keyStr() {
    return text(this.key);
  }
  valueStr() {
    return text(this.value);
  }
  valueJson() {
    return JSON.parse(text(this.value));
  }
}

/** The records of a batch in the flat format (see wit/operator.wit). */
export function decodeBatch(batch) {
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  const records = [];
  let pos = 0;
  const end = batch.length;
  while (pos < end) {
    if (end - pos < 9) throw new WeirError("malformed batch at byte " + pos + ": truncated header");
    const flags = batch[pos];
    if (flags & ~1) throw new WeirError("malformed batch at byte " + pos + ": unknown flag bits");
    const klen = view.getUint32(pos + 1, true);
    const vlen = view.getUint32(pos + 5, true);
    let at = pos + 9;
    let ts = null;
    if (flags & 1) {
      if (end - at < 8) throw new WeirError("malformed batch at byte " + pos + ": truncated timestamp");
      ts = Number(view.getBigInt64(at, true));
      at += 8;
    }
    if (at + klen + vlen > end) {
      throw new WeirError("malformed batch at byte " + pos + ": key or value runs past the end");
    }
    // Views into the batch, not copies: the batch lives for the whole call.
    records.push(new Record(batch.subarray(at, at + klen), batch.subarray(at + klen, at + klen + vlen), ts));
    pos = at + klen + vlen;
  }
  return records;
}

/** A growable byte buffer. */
class Buffer {
  constructor() {
    this.data = new Uint8Array(4096);
    this.view = new DataView(this.data.buffer);
    this.length = 0;
  }
  reserve(n) {
    if (this.length + n <= this.data.length) return;
    let size = this.data.length * 2;
    while (size < this.length + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.data.subarray(0, this.length));
    this.data = grown;
    this.view = new DataView(grown.buffer);
  }
  u8(b) {
    this.reserve(1);
    this.data[this.length++] = b;
  }
  u32(n) {
    this.reserve(4);
    this.view.setUint32(this.length, n, true);
    this.length += 4;
  }
  i64(n) {
    this.reserve(8);
    this.view.setBigInt64(this.length, BigInt(n), true);
    this.length += 8;
  }
  bytes(b) {
    this.reserve(b.length);
    this.data.set(b, this.length);
    this.length += b.length;
  }
  take() {
    const out = this.data.slice(0, this.length);
    this.length = 0;
    return out;
  }
}

function encodeRecord(buf, key, value, timestamp) {
  const stamped = timestamp !== null && timestamp !== undefined;
  buf.reserve(17 + key.length + value.length);
  buf.data[buf.length] = stamped ? 1 : 0;
  buf.view.setUint32(buf.length + 1, key.length, true);
  buf.view.setUint32(buf.length + 5, value.length, true);
  buf.length += 9;
  if (stamped) buf.i64(timestamp);
  buf.data.set(key, buf.length);
  buf.data.set(value, buf.length + key.length);
  buf.length += key.length + value.length;
}

/** Where an operator emits records: the main output and named side outputs. */
export class Context {
  constructor() {
    this.main = new Buffer();
    this.side = new Map();
  }
  /** Emits a record to the main output (key and value: Uint8Array or string). */
  emit(key, value, timestamp = null) {
    encodeRecord(this.main, bytes(key), bytes(value), timestamp);
    if (this.main.length >= FLUSH_BYTES) flushOne(null, this.main);
  }
  /** Emits a record unchanged (keeping its timestamp). */
  emitRecord(record) {
    this.emit(record.key, record.value, record.timestamp);
  }
  /** Emits a record whose value is `value` as JSON. */
  emitJson(key, value) {
    this.emit(key, JSON.stringify(value));
  }
  /** Emits a record to the side output `output` (connected as `uid.output`). */
  emitTo(output, key, value, timestamp = null) {
    let buf = this.side.get(output);
    if (!buf) this.side.set(output, (buf = new Buffer()));
    encodeRecord(buf, bytes(key), bytes(value), timestamp);
    if (buf.length >= FLUSH_BYTES) flushOne(output, buf);
  }
  flush() {
    flushOne(null, this.main);
    for (const [name, buf] of this.side) flushOne(name, buf);
  }
  /** How many times the job has restarted before this run of it: 0 on its first. */
  attempt() {
    return contextIface.attempt();
  }
}

function flushOne(output, buf) {
  if (buf.length > 0) emitIface.emit(output, buf.take());
}

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

function lengths(items) {
  const buf = new Buffer();
  for (const item of items) {
    if (item === null) buf.u32(ABSENT);
    else {
      buf.u32(item.length);
      buf.bytes(item);
    }
  }
  return buf.take();
}

function unlengths(b) {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const items = [];
  for (let pos = 0; pos < b.length; ) {
    const n = view.getUint32(pos, true);
    pos += 4;
    if (n === ABSENT) items.push(null);
    else {
      items.push(b.slice(pos, pos + n));
      pos += n;
    }
  }
  return items;
}

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

/** Logs through the host: "trace", "debug", "info", "warn" or "error". */
export function log(level, message) {
  logIface.log(level, String(message));
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

function failure(e) {
  if (e instanceof WeirError) return e.message;
  if (e instanceof Error) return e.name + ": " + e.message + (e.stack ? "\n" + e.stack : "");
  return String(e);
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
