// `max`: the Rust `examples/windows/max` in JavaScript. A reduce window function: a window's
// value is the record value with the largest number (config `field`: a top-level JSON field).

import { Reduce, exportReduce, text } from "../../guest-sdk/js/weir.js";

class Max extends Reduce {
  open(config) {
    this.field = config.field ?? null;
  }
  number(value) {
    const s = text(value);
    return this.field === null ? Number(s) : JSON.parse(s)[this.field];
  }
  reduce(value, record) {
    return this.number(record.value) > this.number(value) ? record.value : value;
  }
}

export const reduceHandler = exportReduce(Max);
