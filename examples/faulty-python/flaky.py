"""An operator that fails once: on the first attempt of its job (restart attempt 0) it raises
when it reaches record `fail_at` of its subtask; after a restart it runs through. It counts the
records it has seen in a private field, kept across restarts through checkpoints
(`snapshot`/`restore`), and emits `seen <n>` to its side output `seen` at the end. The Python
twin of examples/faulty/flaky."""

import weir


class Flaky(weir.Operator):
    def open(self, ctx, config):
        self.fail_at = config["fail_at"]
        self.attempt = ctx.attempt()
        self.seen = 0

    def process(self, ctx, record):
        self.seen += 1
        if self.attempt == 0 and self.seen == self.fail_at:
            raise weir.Error("failing on purpose at record %d of attempt 0" % self.seen)
        ctx.emit_record(record)

    def snapshot(self):
        return self.seen.to_bytes(8, "little")

    def restore(self, state):
        # After a change of parallelism a subtask may take over several counts: they add up.
        self.seen += int.from_bytes(state, "little")

    def close(self, ctx):
        ctx.emit_to("seen", "", "seen %d" % self.seen)


Handler, CheckpointHooks = weir.export_stateful(Flaky)
