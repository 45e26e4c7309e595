// `top`: the Rust `examples/windows/top` in JavaScript. A process window function: emits the
// `n` largest numbers of a window (config `n`, default 3; `field`: a top-level JSON field), one
// record each: `key,window_start,window_end,rank,number`.

import { ProcessWindow, exportProcessWindow, text } from "../../guest-sdk/js/weir.js";

class Top extends ProcessWindow {
  open(config) {
    this.n = config.n ?? 3;
    this.field = config.field ?? null;
  }
  process(key, window, records, out) {
    const numbers = records
      .map((r) => (this.field === null ? Number(r.valueStr()) : r.valueJson()[this.field]))
      .sort((a, b) => b - a);
    numbers.slice(0, this.n).forEach((n, i) => {
      out.emit(key, `${text(key)},${window.start},${window.end},${i + 1},${n}`);
    });
  }
}

export const processHandler = exportProcessWindow(Top);
