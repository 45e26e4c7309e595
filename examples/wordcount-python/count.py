"""`count` in Python: the running count of each key, kept in keyed state; emits
`<key> <count so far>` for every record, as the Rust `examples/wordcount/count` does (and stores
counts the same way, so the state is the same in both languages).

State is read and written once per batch (`get_many`/`set_many`): each state call crosses the
WASM boundary.
"""

import weir


class Count(weir.Operator):
    def open(self, ctx, config):
        self.counts = weir.ValueState("count", weir.U64)

    def process_batch(self, ctx, records):
        keys = list(dict.fromkeys(r.key for r in records))
        counts = dict(zip(keys, (c or 0 for c in self.counts.get_many(keys))))
        for r in records:
            n = counts[r.key] + 1
            counts[r.key] = n
            ctx.emit(r.key, b"%s %d" % (r.key, n))
        self.counts.set_many(counts.items())


Handler = weir.export(Count)
