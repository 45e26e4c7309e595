// An operator that throws on the record whose value is its config's `throw_on`: the job must fail
// naming the operator, with the JavaScript error's message.

import { Operator, exportOperator } from "../../guest-sdk/js/weir.js";

class Throws extends Operator {
  open(ctx, config) {
    this.throwOn = config.throw_on ?? "";
  }
  process(ctx, record) {
    if (record.valueStr() === this.throwOn) {
      throw new RangeError("javascript gave up on record " + JSON.stringify(record.valueStr()));
    }
    ctx.emitRecord(record);
  }
}

export const handler = exportOperator(Throws);
