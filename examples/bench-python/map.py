"""`map` of the stateless reference workload in Python, for comparing languages (the Rust one is
examples/bench/map): parses `id,user,amount` and emits, keyed by user, the layout
`amount: u64 LE | id: u64 LE | user` that filter and tally read."""

import struct

import weir

ORDER = struct.Struct("<QQ")


class Map(weir.Operator):
    def process(self, ctx, record):
        try:
            id_, user, amount = record.value.split(b",")
            user.decode("utf-8")
            value = ORDER.pack(int(amount), int(id_)) + user
        except (ValueError, struct.error):
            raise weir.Error("`%s` is not id,user,amount" % record.value.decode("utf-8", "replace"))
        ctx.emit(user, value)


Handler = weir.export(Map)
