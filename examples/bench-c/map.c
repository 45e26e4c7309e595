// `map` of the stateless reference workload in C, for comparing languages (the Rust one is
// examples/bench/map): parses `id,user,amount` and emits, keyed by user, the layout
// `amount: u64 LE | id: u64 LE | user` that filter and tally read.
#include "weir.h"

static bool map_record(weir_ctx *ctx, const weir_record *record) {
    weir_bytes rest = record->value, user = {0};
    uint64_t id, amount;
    ptrdiff_t comma = -1;
    if (weir_parse_u64(&rest, &id) && rest.len && *rest.ptr == ',') {
        user = weir_bytes_of(rest.ptr + 1, rest.len - 1);
        comma = weir_find_byte(user, ',');
    }
    if (comma >= 0) {
        rest = weir_bytes_of(user.ptr + comma + 1, user.len - (size_t)comma - 1);
        user.len = (size_t)comma;
    }
    if (comma < 0 || !weir_parse_u64(&rest, &amount) || rest.len || !weir_utf8_valid(user))
        return weir_fail(ctx, "`%.*s` is not id,user,amount", (int)record->value.len,
                         (const char *)record->value.ptr);
    weir_buf *v = weir_emit_begin(ctx, NULL, user, NULL);
    weir_buf_push_u64_le(v, amount);
    weir_buf_push_u64_le(v, id);
    weir_buf_push(v, user);
    weir_emit_end(ctx);
    return true;
}

WEIR_OPERATOR(.process_record = map_record);
