// `{{ident}}`: a source component. Emits `event <i>` for i in 0..count (the manifest's
// `config.count`), keyed by i; subtask k of P emits i = k, k+P, k+2P, ...
//
// Its position is the next i (8 bytes, little endian). The host checkpoints it, so a job
// restored from a checkpoint resumes with exactly the first record not yet emitted.
//
// `weir build` makes the component with componentize-qjs (QuickJS) from "main" in package.json;
// the SDK is the one of the weir that created this project, kept in .weir/sdk by `weir build`.

import { Source, exportSource } from "./.weir/sdk/js/weir_core.js";

class {{Type}} extends Source {
  open(ctx, config, subtask, parallelism) {
    this.count = config.count;
    this.next = subtask;
    this.step = parallelism;
  }

  poll(ctx, maxRecords) {
    for (let n = 0; n < maxRecords && this.next < this.count; n++) {
      ctx.emit(String(this.next), "event " + this.next);
      this.next += this.step;
    }
    return this.next < this.count;
  }

  position() {
    const position = new Uint8Array(8);
    new DataView(position.buffer).setBigUint64(0, BigInt(this.next), true);
    return position;
  }

  restore(position) {
    const view = new DataView(position.buffer, position.byteOffset, position.byteLength);
    this.next = Number(view.getBigUint64(0, true));
  }
}

export const sourceHandler = exportSource({{Type}});
