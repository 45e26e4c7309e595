// `sum_count` in C: the Rust examples/windows/sum-count. An aggregate window function: each
// window's accumulator is the sum and the count of its records' numbers (16 bytes: two u64 LE);
// config `field` reads the number from that top-level JSON field, without it the whole value is
// a decimal number. A window that fires emits `key,window_start,window_end,sum,count`.
#include "weir.h"

static weir_buf field;

static bool sc_open(weir_ctx *ctx, weir_bytes config) {
    return weir_config_str(ctx, config, "field", &field) >= 0;
}

/// The number of a record's value.
static bool number(weir_ctx *ctx, weir_bytes value, uint64_t *n) {
    if (field.len) {
        weir_buf name = {0};
        weir_buf_push(&name, weir_buf_bytes(&field));
        weir_buf_push_byte(&name, 0);
        int found = weir_config_u64(ctx, value, (const char *)name.ptr, n);
        weir_buf_free(&name);
        return found == 1 || weir_fail(ctx, "no number `%.*s` in a record", (int)field.len, field.ptr);
    }
    *n = 0;
    if (value.len == 0) return weir_fail(ctx, "an empty value is not a number");
    for (size_t i = 0; i < value.len; i++) {
        if (value.ptr[i] < '0' || value.ptr[i] > '9') return weir_fail(ctx, "a value is not a number");
        *n = *n * 10 + (value.ptr[i] - '0');
    }
    return true;
}

static uint64_t get(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static bool sc_create(weir_ctx *ctx, weir_buf *acc) {
    weir_buf_push_u64_le(acc, 0);
    weir_buf_push_u64_le(acc, 0);
    return acc->len == 16 || weir_fail(ctx, "out of memory");
}

static bool sc_add(weir_ctx *ctx, weir_buf *acc, const weir_record *record) {
    uint64_t n;
    if (acc->len != 16) return weir_fail(ctx, "an accumulator is not 16 bytes");
    if (!number(ctx, record->value, &n)) return false;
    put(acc->ptr, get(acc->ptr) + n);
    put(acc->ptr + 8, get(acc->ptr + 8) + 1);
    return true;
}

static bool sc_merge(weir_ctx *ctx, weir_buf *acc, weir_bytes other) {
    if (acc->len != 16 || other.len != 16) return weir_fail(ctx, "an accumulator is not 16 bytes");
    put(acc->ptr, get(acc->ptr) + get(other.ptr));
    put(acc->ptr + 8, get(acc->ptr + 8) + get(other.ptr + 8));
    return true;
}

static bool sc_result(weir_ctx *ctx, weir_bytes key, weir_window w, weir_bytes acc, weir_buf *out) {
    if (acc.len != 16) return weir_fail(ctx, "an accumulator is not 16 bytes");
    weir_buf_push(out, key);
    weir_buf_push_byte(out, ',');
    weir_buf_push_i64(out, w.start);
    weir_buf_push_byte(out, ',');
    weir_buf_push_i64(out, w.end);
    weir_buf_push_byte(out, ',');
    weir_buf_push_u64(out, get(acc.ptr));
    weir_buf_push_byte(out, ',');
    weir_buf_push_u64(out, get(acc.ptr + 8));
    return true;
}

WEIR_AGGREGATE(.open = sc_open, .create = sc_create, .add = sc_add, .merge = sc_merge,
               .result = sc_result);
