"""`max`: the Rust `examples/windows/max` in Python. A reduce window function: a window's value
is the record value with the largest number (config `field`: a top-level JSON field)."""

import json

import weir


class Max(weir.Reduce):
    def open(self, config):
        self.field = config.get("field")

    def number(self, value):
        return json.loads(value)[self.field] if self.field else int(value)

    def reduce(self, value, record):
        return record.value if self.number(record.value) > self.number(value) else value


ReduceHandler = weir.export_reduce(Max)
