// `top` in C: the Rust examples/windows/top. A process window function: emits the `n` largest
// numbers of a window (config `n`, default 3; `field`: a top-level JSON field holding an
// unsigned integer), one record each: `key,window_start,window_end,rank,number`.
#include <stdlib.h>

#include "weir.h"

static uint64_t top_n = 3;
static char field[128];

static bool top_open(weir_ctx *ctx, weir_bytes config) {
    weir_buf f = {0};
    int found = weir_config_str(ctx, config, "field", &f);
    if (found == 1 && f.len < sizeof field) memcpy(field, f.ptr, f.len);
    weir_buf_free(&f);
    if (found < 0 || (found == 1 && !field[0])) return weir_fail(ctx, "a bad `field`");
    return weir_config_u64(ctx, config, "n", &top_n) >= 0;
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

static int descending(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static bool top_process(weir_ctx *ctx, weir_bytes key, weir_window w, const weir_record *records,
                        size_t n, weir_buf *out) {
    uint64_t *numbers = malloc((n ? n : 1) * sizeof *numbers);
    if (!numbers) return weir_fail(ctx, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!number(ctx, records[i].value, &numbers[i])) {
            free(numbers);
            return false;
        }
    }
    qsort(numbers, n, sizeof *numbers, descending);
    weir_buf line = {0};
    for (size_t i = 0; i < n && i < top_n; i++) {
        weir_buf_clear(&line);
        weir_buf_push(&line, key);
        weir_buf_printf(&line, ",%lld,%lld,%zu,", (long long)w.start, (long long)w.end, i + 1);
        weir_buf_push_u64(&line, numbers[i]);
        weir_window_emit(out, key, weir_buf_bytes(&line), NULL);
    }
    weir_buf_free(&line);
    free(numbers);
    return true;
}

WEIR_PROCESS_WINDOW(.open = top_open, .process = top_process);
