"""`sum_count`: the Rust `examples/windows/sum-count` in Python. An aggregate window function:
each window's accumulator is the sum and the count of its records' numbers (config `field`: a
top-level JSON field; without it the whole value is a decimal number); a window that fires
emits `key,window_start,window_end,sum,count`."""

import weir


class SumCount(weir.Aggregate):
    def open(self, config):
        self.field = config.get("field")

    def create(self):
        return [0, 0]

    def add(self, acc, record):
        n = record.value_json()[self.field] if self.field else int(record.value)
        return [acc[0] + n, acc[1] + 1]

    def merge(self, acc, other):
        return [acc[0] + other[0], acc[1] + other[1]]

    def result(self, key, window, acc):
        return b"%s,%d,%d,%d,%d" % (key, window.start, window.end, acc[0], acc[1])


AggregateHandler = weir.export_aggregate(SumCount)
