// The part of the weir JavaScript SDK every component can use, whatever its world: records,
// the context that emits them, logging, errors, and sources (wit/source.wit). It imports no
// keyed state, so that a source (whose world has none) can be built with it; weir.js adds
// state, operators and window functions, and re-exports what is here.

import emitIface from "weir:operator/emit@0.1.0";
import logIface from "weir:operator/log@0.1.0";
import contextIface from "weir:operator/context@0.1.0";

export const FLUSH_BYTES = 64 * 1024;
export const ABSENT = 0xffffffff;

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

export function bytes(x) {
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
export class Buffer {
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

export function encodeRecord(buf, key, value, timestamp) {
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

export function lengths(items) {
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

export function unlengths(b) {
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

/** Logs through the host: "trace", "debug", "info", "warn" or "error". */
export function log(level, message) {
  logIface.log(level, String(message));
}

export function failure(e) {
  if (e instanceof WeirError) return e.message;
  if (e instanceof Error) return e.name + ": " + e.message + (e.stack ? "\n" + e.stack : "");
  return String(e);
}

// Sources (wit/source.wit): records from outside, or generated, with a replayable position the
// host checkpoints.

/** A source subtask: emits records when polled, and can say and restore where it is. Positions
 * must be monotonic (a later position never re-emits what an earlier one covered) and exact:
 * after `restore(p)`, the source emits the first record not emitted before `p` was taken. */
export class Source {
  /** Called once: `config` is the source's `config` table (parsed); this is subtask `subtask`
   * of `parallelism`. */
  open(ctx, config, subtask, parallelism) {}
  /** Emits up to `maxRecords` records through `ctx`; returns false once the source has ended
   * (the host polls no more), true while more may come. */
  poll(ctx, maxRecords) {
    throw new WeirError("the source does not implement poll");
  }
  /** The position after the last record emitted (a Uint8Array). */
  position() {
    return new Uint8Array(0);
  }
  /** Continues from a position `position()` returned (called after open, before polls). */
  restore(position) {}
}

/** The `sourceHandler` export of the `source` world for a `Source` subclass:
 *     export const sourceHandler = exportSource(Numbers);
 */
export function exportSource(cls) {
  let source = null;
  let ctx = null;
  const guarded = (f) => {
    try {
      return f();
    } catch (e) {
      throw failure(e);
    }
  };
  const started = () => {
    if (source === null) throw new WeirError("source called before open");
  };
  return {
    open(config, subtask, parallelism) {
      guarded(() => {
        ctx = new Context();
        source = new cls();
        let parsed;
        try {
          parsed = JSON.parse(config.trim() || "{}");
        } catch (e) {
          throw new WeirError("invalid source config: " + e.message);
        }
        source.open(ctx, parsed, subtask, parallelism);
        ctx.flush();
      });
    },
    poll(maxRecords) {
      return guarded(() => {
        started();
        const more = source.poll(ctx, maxRecords);
        ctx.flush();
        return more ? "more" : "ended";
      });
    },
    position() {
      // No error to return here: a failure traps, which fails the job too.
      started();
      return bytes(source.position());
    },
    restore(position) {
      guarded(() => {
        started();
        source.restore(position);
      });
    },
  };
}
