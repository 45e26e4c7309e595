// `map` of the stateless reference workload in C, for comparing languages (the Rust one is
// examples/bench/map): parses `id,user,amount` and emits, keyed by user, the layout
// `amount: u64 LE | id: u64 LE | user` that filter and tally read.
#include "weir.h"

/// A decimal u64 at `*p` (advancing it), as Rust's `u64::from_str` takes it: digits only, no
/// overflow.
static bool parse_u64(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    const uint8_t *start = *p;
    uint64_t v = 0;
    for (; *p < end && (uint8_t)(**p - '0') < 10; (*p)++) {
        uint64_t d = (uint64_t)(**p - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return *p > start;
}

static void put_u64(weir_buf *b, uint64_t v) {
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(v >> (8 * i));
    weir_buf_push(b, weir_bytes_of(le, 8));
}

static bool map_record(weir_ctx *ctx, const weir_record *record) {
    const uint8_t *p = record->value.ptr, *end = p + record->value.len;
    uint64_t id, amount;
    const uint8_t *user = NULL, *comma = NULL;
    if (parse_u64(&p, end, &id) && p < end && *p == ',') {
        user = ++p;
        comma = memchr(p, ',', (size_t)(end - p));
    }
    if (comma) p = comma + 1;
    if (!comma || !parse_u64(&p, end, &amount) || p != end ||
        !weir_utf8_valid(weir_bytes_of(user, (size_t)(comma - user))))
        return weir_fail(ctx, "`%.*s` is not id,user,amount", (int)record->value.len,
                         (const char *)record->value.ptr);
    weir_bytes key = weir_bytes_of(user, (size_t)(comma - user));
    weir_buf *v = weir_emit_begin(ctx, NULL, key, NULL);
    put_u64(v, amount);
    put_u64(v, id);
    weir_buf_push(v, key);
    weir_emit_end(ctx);
    return true;
}

WEIR_OPERATOR(.process_record = map_record);
