// An operator that fails once: on the first attempt of its job (restart attempt 0) it fails when
// it reaches record `fail_at` of its subtask; after a restart it runs through. It counts the
// records it has seen in a private variable, kept across restarts through checkpoints
// (`snapshot`/`restore`), and emits `seen <n>` to its side output `seen` at the end. The C twin
// of examples/faulty/flaky.
#include "weir.h"

static uint64_t fail_at, seen;
static uint32_t attempt;

static bool flaky_open(weir_ctx *ctx, weir_bytes config) {
    attempt = weir_attempt();
    return weir_config_u64(ctx, config, "fail_at", &fail_at) >= 0;
}

static bool flaky_record(weir_ctx *ctx, const weir_record *record) {
    seen++;
    if (attempt == 0 && seen == fail_at)
        return weir_fail(ctx, "failing on purpose at record %llu of attempt 0",
                         (unsigned long long)seen);
    weir_emit_record(ctx, record);
    return true;
}

static bool flaky_snapshot(weir_ctx *ctx, weir_buf *state) {
    (void)ctx;
    for (int i = 0; i < 8; i++) weir_buf_push_byte(state, (uint8_t)(seen >> (8 * i)));
    return true;
}

static bool flaky_restore(weir_ctx *ctx, weir_bytes state) {
    if (state.len != 8) return weir_fail(ctx, "a snapshot of 8 bytes");
    // After a change of parallelism a subtask may take over several counts: they add up.
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)state.ptr[i] << (8 * i);
    seen += n;
    return true;
}

static bool flaky_close(weir_ctx *ctx) {
    weir_buf line = {0};
    weir_buf_push_str(&line, "seen ");
    weir_buf_push_u64(&line, seen);
    weir_emit_to(ctx, "seen", weir_bytes_of("", 0), weir_buf_bytes(&line), NULL);
    weir_buf_free(&line);
    return true;
}

WEIR_OPERATOR(.open = flaky_open, .process_record = flaky_record, .snapshot = flaky_snapshot,
              .restore = flaky_restore, .close = flaky_close);
