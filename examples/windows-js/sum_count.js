// `sum_count`: the Rust `examples/windows/sum-count` in JavaScript. An aggregate window
// function: each window's accumulator is the sum and the count of its records' numbers (config
// `field`: a top-level JSON field; without it the whole value is a decimal number); a window
// that fires emits `key,window_start,window_end,sum,count`.

import { Aggregate, exportAggregate, text } from "../../guest-sdk/js/weir.js";

class SumCount extends Aggregate {
  open(config) {
    this.field = config.field ?? null;
  }
  create() {
    return [0, 0];
  }
  add(acc, record) {
    const n = this.field === null ? Number(record.valueStr()) : record.valueJson()[this.field];
    return [acc[0] + n, acc[1] + 1];
  }
  merge(acc, other) {
    return [acc[0] + other[0], acc[1] + other[1]];
  }
  result(key, window, acc) {
    return `${text(key)},${window.start},${window.end},${acc[0]},${acc[1]}`;
  }
}

export const aggregateHandler = exportAggregate(SumCount);
