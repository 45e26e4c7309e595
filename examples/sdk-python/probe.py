"""Every SDK capability in one operator, for tests/polyglot.rs: config in `open`, one-key value
state, map state, the main output, a side output and timestamps. The JavaScript twin is
examples/sdk-js/probe.js; both must give the same records.

Per record (key k): n = how many times k was seen (value state "seen"); the map state "last"
maps n % 3 to n; the main output gets `<prefix><k> <n> <entries> @<timestamp>`, emitted with
the record's timestamp; odd n also go to the side output "odd" as `<k> <n>`; at n = 3 the key's
state is cleared (so it counts 1, 2, 3, 1, 2, 3, ...).
"""

import weir


class Probe(weir.Operator):
    def open(self, ctx, config):
        self.prefix = config["prefix"]
        self.seen = weir.ValueState("seen", weir.U64)
        self.last = weir.MapState("last", weir.STR, weir.U64)

    def process(self, ctx, record):
        k = record.key
        n = (self.seen.get(k) or 0) + 1
        self.seen.set(k, n)
        self.last.put(k, str(n % 3), n)
        entries = ",".join("%s=%d" % e for e in self.last.entries(k))
        ts = "-" if record.timestamp is None else str(record.timestamp)
        line = "%s%s %d %s @%s" % (self.prefix, record.key_str(), n, entries, ts)
        ctx.emit(k, line, record.timestamp)
        if n % 2 == 1:
            ctx.emit_to("odd", k, "%s %d" % (record.key_str(), n))
        if n == 3:
            self.seen.clear(k)
            self.last.clear(k)


Handler = weir.export(Probe)
