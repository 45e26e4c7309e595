"""`{{ident}}`: a source component. Emits `event <i>` for i in 0..count (the manifest's
`config.count`), keyed by i; subtask k of P emits i = k, k+P, k+2P, ...

Its position is the next i. The host checkpoints it, so a job restored from a checkpoint resumes
with exactly the first record not yet emitted."""

import weir


class {{Type}}(weir.Source):
    def open(self, ctx, config, subtask, parallelism):
        self.count = config["count"]
        self.next = subtask
        self.step = parallelism

    def poll(self, ctx, max_records):
        for _ in range(max_records):
            if self.next >= self.count:
                break
            ctx.emit(str(self.next), "event %d" % self.next)
            self.next += self.step
        return self.next < self.count

    def position(self):
        return self.next.to_bytes(8, "little")

    def restore(self, position):
        self.next = int.from_bytes(position, "little")


SourceHandler = weir.export_source({{Type}})
