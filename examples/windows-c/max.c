// `max` in C: the Rust examples/windows/max. A reduce window function: a window's value is the
// record value with the largest number (config `field`: a top-level JSON field, whose number is
// an unsigned integer here).
#include "weir.h"

static char field[128];

static bool max_open(weir_ctx *ctx, weir_bytes config) {
    weir_buf f = {0};
    int found = weir_config_str(ctx, config, "field", &f);
    if (found == 1 && f.len < sizeof field) memcpy(field, f.ptr, f.len);
    weir_buf_free(&f);
    return found >= 0 && (found == 0 || field[0]) ? true : weir_fail(ctx, "`field` is too long");
}

static bool number(weir_ctx *ctx, weir_bytes value, uint64_t *n) {
    if (field[0]) {
        return weir_config_u64(ctx, value, field, n) == 1 ||
               weir_fail(ctx, "no number `%s` in a record", field);
    }
    *n = 0;
    for (size_t i = 0; i < value.len; i++) {
        if (value.ptr[i] < '0' || value.ptr[i] > '9') return weir_fail(ctx, "a value is not a number");
        *n = *n * 10 + (value.ptr[i] - '0');
    }
    return value.len > 0 || weir_fail(ctx, "an empty value is not a number");
}

static bool max_reduce(weir_ctx *ctx, weir_buf *value, const weir_record *record) {
    uint64_t mine, theirs;
    if (!number(ctx, weir_buf_bytes(value), &mine) || !number(ctx, record->value, &theirs)) return false;
    if (theirs > mine) {
        weir_buf_clear(value);
        weir_buf_push(value, record->value);
    }
    return true;
}

WEIR_REDUCE(.open = max_open, .reduce = max_reduce);
