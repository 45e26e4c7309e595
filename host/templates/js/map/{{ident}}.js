// `{{ident}}`: a map operator. Every input line, in upper case, followed by the configured
// `suffix` (the manifest's `config` table).
//
// `weir build` makes the component with componentize-qjs (QuickJS) from "main" in package.json;
// the SDK is the one of the weir that created this project, kept in .weir/sdk by `weir build`.

import { Operator, exportOperator } from "./.weir/sdk/js/weir.js";

class {{Type}} extends Operator {
  open(ctx, config) {
    this.suffix = config.suffix ?? "";
  }

  process(ctx, record) {
    ctx.emit(record.key, record.valueStr().toUpperCase() + this.suffix);
  }
}

export const handler = exportOperator({{Type}});
