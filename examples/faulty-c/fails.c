// An operator that fails on the record whose value is its config's `fail_on`: the job must fail
// naming the operator, with the C operator's message.
#include "weir.h"

static weir_buf fail_on;

static bool fails_open(weir_ctx *ctx, weir_bytes config) {
    return weir_config_str(ctx, config, "fail_on", &fail_on) >= 0;
}

static bool fails_record(weir_ctx *ctx, const weir_record *record) {
    if (weir_bytes_eq(record->value, weir_buf_bytes(&fail_on)))
        return weir_fail(ctx, "c gave up on record \"%.*s\"", (int)record->value.len,
                         (const char *)record->value.ptr);
    weir_emit_record(ctx, record);
    return true;
}

WEIR_OPERATOR(.open = fails_open, .process_record = fails_record);
