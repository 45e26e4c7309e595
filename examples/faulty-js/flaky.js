// An operator that fails once: on the first attempt of its job (restart attempt 0) it throws when
// it reaches record `fail_at` of its subtask; after a restart it runs through. It counts the
// records it has seen in a private field, kept across restarts through checkpoints
// (`snapshot`/`restore`), and emits `seen <n>` to its side output `seen` at the end. The
// JavaScript twin of examples/faulty/flaky.

import { Operator, WeirError, exportStateful } from "../../guest-sdk/js/weir.js";

class Flaky extends Operator {
  open(ctx, config) {
    this.failAt = config.fail_at;
    this.attempt = ctx.attempt();
    this.seen = 0;
  }
  process(ctx, record) {
    this.seen += 1;
    if (this.attempt === 0 && this.seen === this.failAt) {
      throw new WeirError("failing on purpose at record " + this.seen + " of attempt 0");
    }
    ctx.emitRecord(record);
  }
  snapshot() {
    const state = new Uint8Array(8);
    new DataView(state.buffer).setFloat64(0, this.seen, true);
    return state;
  }
  restore(state) {
    // After a change of parallelism a subtask may take over several counts: they add up.
    this.seen += new DataView(state.buffer, state.byteOffset, 8).getFloat64(0, true);
  }
  close(ctx) {
    ctx.emitTo("seen", "", "seen " + this.seen);
  }
}

export const { handler, checkpointHooks } = exportStateful(Flaky);
