// `{{ident}}`: a keyed operator. Counts the records of each key (the `user` field, which the
// manifest's source makes the key) in keyed state, and emits `<key> <count so far>`.
//
// Keyed state is held by the host, per key, checkpointed with the job and moved with its key
// when the job is rescaled.
#include "weir.h"

static bool {{ident}}_process_record(weir_ctx *ctx, const weir_record *record) {
    uint64_t count = 0;
    // 1: found, 0: none yet, -1: failed (the call has failed).
    if (weir_value_get_u64(ctx, "count", record->key, &count) < 0) return false;
    count++;
    if (!weir_value_set_u64(ctx, "count", record->key, count)) return false;
    weir_buf *line = weir_emit_begin(ctx, NULL, record->key, NULL);
    weir_buf_push(line, record->key);
    weir_buf_push_byte(line, ' ');
    weir_buf_push_u64(line, count);
    weir_emit_end(ctx);
    return true;
}

WEIR_OPERATOR(.process_record = {{ident}}_process_record);
