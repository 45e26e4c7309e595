"""Version 2 of the count in count_v1.py, which it replaces by a swap, going on from the counts
so far. Keyed state `count` is at version 2: two LEB128 varints, the running count `n`, then how
many of those occurrences this version counted itself, `m` (byte for byte the Rust SDK's postcard
encoding of `struct Tally { n: u64, v2: u64 }`, as in the Rust examples/swap/count-v2). Emits
`{"word":"<key>","count":<n>}` for every record.

A version 1 value (the varint `n`) migrates to `n` and 0: version 2 counted none of those.
"""

import json

import weir


def _encode(tally):
    n, m = tally
    return weir.U64.encode(n) + weir.U64.encode(m)


def _decode(value):
    # The first varint ends with its first byte below 0x80 (no continuation bit).
    end = next((i + 1 for i, b in enumerate(value) if b < 0x80), len(value))
    return weir.U64.decode(value[:end]), weir.U64.decode(value[end:])


TALLY = weir.Codec(_encode, _decode)
"""(n, m) as two varints."""


class Count(weir.Operator):
    def open(self, ctx, config):
        self.tallies = weir.ValueState("count", TALLY)

    @staticmethod
    def state_versions():
        return [("count", 2)]

    @staticmethod
    def migrate(state, from_version, value):
        if state == "count" and from_version == 1:
            return TALLY.encode((weir.U64.decode(value), 0))
        raise weir.Error("no migration of state `%s` from version %d" % (state, from_version))

    def process_batch(self, ctx, records):
        keys = list(dict.fromkeys(r.key for r in records))
        tallies = dict(zip(keys, (t or (0, 0) for t in self.tallies.get_many(keys))))
        for r in records:
            n, m = tallies[r.key]
            n, m = n + 1, m + 1
            tallies[r.key] = (n, m)
            # The word as UTF-8, as the Rust examples/swap/count-v2 writes it (ctx.emit_json
            # would escape non-ASCII).
            row = {"word": r.key_str(), "count": n}
            ctx.emit(r.key, json.dumps(row, separators=(",", ":"), ensure_ascii=False))
        self.tallies.set_many(tallies.items())


Handler, CheckpointHooks, Migration = weir.export_migrating(Count)
