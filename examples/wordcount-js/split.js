// `split` in JavaScript: a line of text -> one record per word, keyed by the word.
//
// Words are the runs of alphanumeric characters (Unicode Alphabetic or Number, as Rust's
// `char::is_alphanumeric`), lower-cased; every other character separates words. The same rules
// as the Rust `examples/wordcount/split`.

import { Operator, exportOperator, utf8 } from "../../guest-sdk/js/weir.js";

const WORD = /[\p{Alphabetic}\p{N}]+/gu;

class Split extends Operator {
  process(ctx, record) {
    for (const word of record.valueStr().match(WORD) ?? []) {
      const lower = utf8(word.toLowerCase());
      ctx.emit(lower, lower);
    }
  }
}

export const handler = exportOperator(Split);
