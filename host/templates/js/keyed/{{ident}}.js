// `{{ident}}`: a keyed operator. Counts the records of each key (the `user` field, which the
// manifest's source makes the key) in keyed state, and emits `<key> <count so far>`.
//
// Keyed state is held by the host, per key, checkpointed with the job and moved with its key
// when the job is rescaled.
//
// `weir build` makes the component with componentize-qjs (QuickJS) from "main" in package.json;
// the SDK is the one of the weir that created this project, kept in .weir/sdk by `weir build`.

import { Operator, ValueState, U64, exportOperator } from "./.weir/sdk/js/weir.js";

class {{Type}} extends Operator {
  open(ctx, config) {
    this.counts = new ValueState("count", U64);
  }

  process(ctx, record) {
    const n = (this.counts.get(record.key) ?? 0) + 1;
    this.counts.set(record.key, n);
    ctx.emit(record.key, record.keyStr() + " " + n);
  }
}

export const handler = exportOperator({{Type}});
