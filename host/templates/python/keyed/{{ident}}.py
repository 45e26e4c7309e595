"""`{{ident}}`: a keyed operator. Counts the records of each key (the `user` field, which the
manifest's source makes the key) in keyed state, and emits `<key> <count so far>`.

Keyed state is held by the host, per key, checkpointed with the job and moved with its key when
the job is rescaled. It is read and written once per batch (`get_many`/`set_many`): each state
call crosses the WASM boundary."""

import weir


class {{Type}}(weir.Operator):
    def open(self, ctx, config):
        self.counts = weir.ValueState("count", weir.U64)

    def process_batch(self, ctx, records):
        keys = list(dict.fromkeys(r.key for r in records))
        counts = dict(zip(keys, (c or 0 for c in self.counts.get_many(keys))))
        for r in records:
            counts[r.key] += 1
            ctx.emit(r.key, b"%s %d" % (r.key, counts[r.key]))
        self.counts.set_many(counts.items())


Handler = weir.export({{Type}})
