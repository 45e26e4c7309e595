"""An operator that raises on the record whose value is its config's `raise_on`: the job must fail
naming the operator, with Python's error message."""

import weir


class Raises(weir.Operator):
    def open(self, ctx, config):
        self.raise_on = config.get("raise_on", "").encode()

    def process(self, ctx, record):
        if record.value == self.raise_on:
            raise ValueError("python gave up on record %r" % record.value_str())
        ctx.emit_record(record)


Handler = weir.export(Raises)
