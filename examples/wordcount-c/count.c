// `count` in C: the running count of each key, kept in keyed state; emits
// `<key> <count so far>` for every record, as the Rust examples/wordcount/count does (and stores
// counts the same way, so the state is the same in every language).
//
// State is read and written once per batch (weir_value_get_many_u64 / set_many_u64), not per
// record: each state call crosses the WASM boundary, and a batch repeats many keys.
#include <stdlib.h>

#include "weir.h"

static weir_distinct distinct;
static uint64_t *counts;
static size_t counts_cap;

static bool count_process(weir_ctx *ctx, const weir_record *records, size_t n) {
    if (!weir_distinct_of(ctx, &distinct, records, n)) return false;
    if (counts_cap < distinct.len) {
        free(counts);
        counts_cap = distinct.len * 2;
        counts = malloc(counts_cap * sizeof *counts);
        if (!counts) {
            counts_cap = 0;
            return weir_fail(ctx, "out of memory");
        }
    }
    if (!weir_value_get_many_u64(ctx, "count", distinct.keys, distinct.len, counts, NULL))
        return false;
    for (size_t i = 0; i < n; i++) {
        uint64_t count = ++counts[distinct.positions[i]];
        weir_bytes key = records[i].key;
        weir_buf *line = weir_emit_begin(ctx, NULL, key, NULL);
        weir_buf_push(line, key);
        weir_buf_push_byte(line, ' ');
        weir_buf_push_u64(line, count);
        weir_emit_end(ctx);
    }
    return weir_value_set_many_u64(ctx, "count", distinct.keys, counts, distinct.len);
}

WEIR_OPERATOR(.process = count_process);
