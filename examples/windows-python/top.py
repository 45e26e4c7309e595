"""`top`: the Rust `examples/windows/top` in Python. A process window function: emits the `n`
largest numbers of a window (config `n`, default 3; `field`: a top-level JSON field), one record
each: `key,window_start,window_end,rank,number`."""

import weir


class Top(weir.ProcessWindow):
    def open(self, config):
        self.n = config.get("n", 3)
        self.field = config.get("field")

    def process(self, key, window, records, out):
        numbers = sorted(
            (r.value_json()[self.field] if self.field else int(r.value) for r in records),
            reverse=True,
        )
        for rank, n in enumerate(numbers[: self.n], 1):
            out.emit(key, b"%s,%d,%d,%d,%d" % (key, window.start, window.end, rank, n))


ProcessHandler = weir.export_process_window(Top)
