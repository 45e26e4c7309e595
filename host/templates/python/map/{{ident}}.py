"""`{{ident}}`: a map operator. Every input line, in upper case, followed by the configured
`suffix` (the manifest's `config` table)."""

import weir


class {{Type}}(weir.Operator):
    def open(self, ctx, config):
        self.suffix = config.get("suffix", "")

    def process(self, ctx, record):
        ctx.emit(record.key, record.value_str().upper() + self.suffix)


Handler = weir.export({{Type}})
