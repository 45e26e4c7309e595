// Every SDK capability in one operator, for tests/polyglot.rs: the twin of
// examples/sdk-python/probe.py (see there); both must give the same records.

import { Operator, ValueState, MapState, U64, STR, exportOperator } from "../../guest-sdk/js/weir.js";

class Probe extends Operator {
  open(ctx, config) {
    this.prefix = config.prefix;
    this.seen = new ValueState("seen", U64);
    this.last = new MapState("last", STR, U64);
  }

  process(ctx, record) {
    const k = record.key;
    const n = (this.seen.get(k) ?? 0) + 1;
    this.seen.set(k, n);
    this.last.put(k, String(n % 3), n);
    const entries = this.last.entries(k).map(([m, v]) => m + "=" + v).join(",");
    const ts = record.timestamp === null ? "-" : String(record.timestamp);
    ctx.emit(k, this.prefix + record.keyStr() + " " + n + " " + entries + " @" + ts, record.timestamp);
    if (n % 2 === 1) ctx.emitTo("odd", k, record.keyStr() + " " + n);
    if (n === 3) {
      this.seen.clear(k);
      this.last.clear(k);
    }
  }
}

export const handler = exportOperator(Probe);
