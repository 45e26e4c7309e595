// `map` of the stateless reference workload in JavaScript, for comparing languages (the Rust one
// is examples/bench/map): parses `id,user,amount` and emits, keyed by user, the layout
// `amount: u64 LE | id: u64 LE | user` that filter and tally read.

import { Operator, WeirError, exportOperator, text } from "../../guest-sdk/js/weir.js";

/** The decimal number in bytes[from, to), or -1 if it is not one (or above 2^53). */
function number(bytes, from, to) {
  if (from >= to) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = bytes[i] - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return Number.isSafeInteger(n) ? n : -1;
}

function putU64(view, at, n) {
  view.setUint32(at, n % 0x100000000, true);
  view.setUint32(at + 4, Math.floor(n / 0x100000000), true);
}

class Map extends Operator {
  process(ctx, record) {
    const v = record.value;
    const c1 = v.indexOf(44);
    const c2 = c1 < 0 ? -1 : v.indexOf(44, c1 + 1);
    const id = c1 < 0 ? -1 : number(v, 0, c1);
    const amount = c2 < 0 ? -1 : number(v, c2 + 1, v.length);
    if (id < 0 || amount < 0 || v.indexOf(44, c2 + 1) >= 0) {
      throw new WeirError("`" + record.valueStr() + "` is not id,user,amount");
    }
    const user = v.subarray(c1 + 1, c2);
    text(user); // must be UTF-8
    const out = new Uint8Array(16 + user.length);
    const view = new DataView(out.buffer);
    putU64(view, 0, amount);
    putU64(view, 8, id);
    out.set(user, 16);
    ctx.emit(user, out);
  }
}

export const handler = exportOperator(Map);
