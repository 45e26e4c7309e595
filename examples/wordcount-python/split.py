"""`split` in Python: a line of text -> one record per word, keyed by the word.

Words are the runs of alphanumeric characters (in the Unicode sense), lower-cased; every other
character separates words. The same rules as the Rust `examples/wordcount/split`.
"""

import re

import weir

# Unicode letters and digits: \w without the underscore.
WORD = re.compile(r"[^\W_]+")


class Split(weir.Operator):
    def process(self, ctx, record):
        for word in WORD.findall(record.value_str()):
            lower = word.lower().encode("utf-8")
            ctx.emit(lower, lower)


Handler = weir.export(Split)
