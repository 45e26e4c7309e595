// weir_window.c: the C guest SDK's glue for window functions (`wit/window.wit`): the exports of
// one window world (chosen when compiling: WEIR_WORLD_AGGREGATE, WEIR_WORLD_REDUCE or
// WEIR_WORLD_PROCESS) over the hooks WEIR_AGGREGATE, WEIR_REDUCE or WEIR_PROCESS_WINDOW name.
// Built with weir.c, whose helpers (buffers, errors, records) it uses, against that world's
// bindings (weir-c-gen names them as the operator world's, so one weir.c serves both).
#include <stdlib.h>

#include "weir_glue.h"

extern const weir_aggregate weir_aggregate_def __attribute__((weak));
extern const weir_reduce weir_reduce_def __attribute__((weak));
extern const weir_process_window weir_process_window_def __attribute__((weak));

#define ABSENT 0xFFFFFFFFu

// The helpers below serve the three worlds; each build uses some of them.

static uint32_t u32_at(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int64_t i64_at(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return (int64_t)v;
}

static void push_u32(weir_buf *b, uint32_t v) {
    if (weir_buf_reserve(b, 4)) {
        for (int i = 0; i < 4; i++) b->ptr[b->len + i] = (uint8_t)(v >> (8 * i));
        b->len += 4;
    }
}

static void push_item(weir_buf *b, weir_bytes item) {
    push_u32(b, (uint32_t)item.len);
    weir_buf_push(b, item);
}

/// The length-prefixed item at `*pos` of `in` (`*absent`: the "none" length); false (the call
/// failed) when it is cut off.
__attribute__((unused)) static bool next_item(weir_ctx *ctx, weir_bytes in, size_t *pos, weir_bytes *item, bool *absent) {
    if (in.len - *pos < 4) return weir_fail(ctx, "the host passed a malformed window batch");
    uint32_t n = u32_at(in.ptr + *pos);
    *pos += 4;
    *absent = n == ABSENT;
    if (*absent) {
        *item = weir_bytes_of(NULL, 0);
        return true;
    }
    if (in.len - *pos < n) return weir_fail(ctx, "the host passed a malformed window batch");
    *item = weir_bytes_of(in.ptr + *pos, n);
    *pos += n;
    return true;
}

/// A key and a window at `*pos` of `in`.
__attribute__((unused)) static bool next_window(weir_ctx *ctx, weir_bytes in, size_t *pos, weir_bytes *key, weir_window *w) {
    bool absent;
    if (!next_item(ctx, in, pos, key, &absent)) return false;
    if (in.len - *pos < 16) return weir_fail(ctx, "the host passed a malformed window batch");
    w->start = i64_at(in.ptr + *pos);
    w->end = i64_at(in.ptr + *pos + 8);
    *pos += 16;
    return true;
}

void weir_window_emit(weir_buf *out, weir_bytes key, weir_bytes value, const int64_t *timestamp) {
    if (!weir_buf_reserve(out, 17 + key.len + value.len)) return;
    weir_buf_push_byte(out, timestamp ? 1 : 0);
    push_u32(out, (uint32_t)key.len);
    push_u32(out, (uint32_t)value.len);
    if (timestamp) weir_buf_push_u64_le(out, (uint64_t)*timestamp);
    weir_buf_push(out, key);
    weir_buf_push(out, value);
}

/// The accumulators (or values) of a call, one per group.
typedef struct {
    weir_buf *items;
    bool *absent;
    size_t n;
} groups;

__attribute__((unused)) static void groups_free(groups *g) {
    for (size_t i = 0; i < g->n; i++) weir_buf_free(&g->items[i]);
    free(g->items);
    free(g->absent);
    *g = (groups){0};
}

/// Reads the length-prefixed items of `in`, copied into buffers of their own.
__attribute__((unused)) static bool groups_of(weir_ctx *ctx, weir_bytes in, groups *g) {
    size_t cap = 0, pos = 0;
    *g = (groups){0};
    while (pos < in.len) {
        weir_bytes item;
        bool absent;
        if (!next_item(ctx, in, &pos, &item, &absent)) return false;
        if (g->n == cap) {
            cap = cap ? cap * 2 : 16;
            weir_buf *items = realloc(g->items, cap * sizeof *items);
            bool *flags = items ? realloc(g->absent, cap * sizeof *flags) : NULL;
            if (items) g->items = items;
            if (flags) g->absent = flags;
            if (!items || !flags) return weir_fail(ctx, "out of memory");
        }
        g->items[g->n] = (weir_buf){0};
        weir_buf_push(&g->items[g->n], item);
        g->absent[g->n++] = absent;
    }
    return true;
}

/// Ends a call: on success `out` moves to the host as its reply, else it is freed.
static bool finish_with(bool ok, const char *hook, weir_buf *out, stateful_operator_list_u8_t *ret,
                        stateful_operator_string_t *err) {
    if (!weir_glue_finish(ok, hook, err)) {
        weir_buf_free(out);
        return false;
    }
    *ret = (stateful_operator_list_u8_t){out->ptr, out->len};
    return true;
}

/// Ends a call whose reply is the groups, length-prefixed.
__attribute__((unused)) static bool finish_groups(bool ok, const char *hook, groups *g,
                                                  stateful_operator_list_u8_t *ret,
                                                  stateful_operator_string_t *err) {
    weir_buf out = {0};
    for (size_t i = 0; ok && i < g->n; i++) push_item(&out, weir_buf_bytes(&g->items[i]));
    return finish_with(ok, hook, &out, ret, err);
}

__attribute__((unused)) static bool open_hook(bool (*open)(weir_ctx *, weir_bytes), stateful_operator_string_t *config,
                      stateful_operator_string_t *err) {
    weir_ctx *ctx = weir_glue_ctx();
    bool ok = open ? open(ctx, weir_bytes_of(config->ptr, config->len)) : true;
    stateful_operator_string_free(config);
    return weir_glue_finish(ok, "open", err);
}

#if defined(WEIR_WORLD_AGGREGATE) || defined(WEIR_WORLD_REDUCE)
/// A call that folds records into the groups' values (aggregate's `add`, `reduce`): each
/// (record, group) pair of `pairs` through `fold(ctx, value, absent, record)`, in order; a
/// group no record reached and that had no value gets one from `fill` (none: the call fails).
/// The reply is the groups' values; the call's lists are freed.
static bool fold_call(stateful_operator_list_u8_t *values, stateful_operator_list_u8_t *records,
                      stateful_operator_list_u32_t *pairs,
                      bool (*fold)(weir_ctx *, weir_buf *, bool *, const weir_record *),
                      bool (*fill)(weir_ctx *, weir_buf *), const char *hook,
                      stateful_operator_list_u8_t *ret, stateful_operator_string_t *err) {
    weir_ctx *ctx = weir_glue_ctx();
    groups g;
    bool ok = groups_of(ctx, weir_bytes_of(values->ptr, values->len), &g);
    const weir_record *batch = NULL;
    size_t count = ok ? weir_glue_unpack(records->ptr, records->len, &batch) : 0;
    ok = ok && count != SIZE_MAX;
    if (ok && pairs->len % 2) ok = weir_fail(ctx, "the host passed an odd number of pair items");
    for (size_t i = 0; ok && i < pairs->len; i += 2) {
        uint32_t r = pairs->ptr[i], k = pairs->ptr[i + 1];
        if (r >= count || k >= g.n) ok = weir_fail(ctx, "the host passed a pair out of range");
        else ok = fold(ctx, &g.items[k], &g.absent[k], &batch[r]);
    }
    for (size_t i = 0; ok && i < g.n; i++) {
        if (!g.absent[i]) continue;
        weir_buf_clear(&g.items[i]);
        ok = fill ? fill(ctx, &g.items[i])
                  : weir_fail(ctx, "the host passed a group with no value and no records");
        g.absent[i] = false;
    }
    ok = finish_groups(ok, hook, &g, ret, err);
    groups_free(&g);
    stateful_operator_list_u8_free(values);
    stateful_operator_list_u8_free(records);
    stateful_operator_list_u32_free(pairs);
    return ok;
}
#endif

#ifdef WEIR_WORLD_AGGREGATE
static bool add_one(weir_ctx *ctx, weir_buf *acc, bool *absent, const weir_record *record) {
    if (*absent) {
        weir_buf_clear(acc);
        if (!weir_aggregate_def.create(ctx, acc)) return false;
        *absent = false;
    }
    return weir_aggregate_def.add(ctx, acc, record);
}

bool exports_weir_operator_aggregate_handler_open(stateful_operator_string_t *config,
                                                  stateful_operator_string_t *err) {
    return open_hook(weir_aggregate_def.open, config, err);
}

bool exports_weir_operator_aggregate_handler_add(stateful_operator_list_u8_t *accumulators,
                                                 stateful_operator_list_u8_t *records,
                                                 stateful_operator_list_u32_t *pairs,
                                                 stateful_operator_list_u8_t *ret,
                                                 stateful_operator_string_t *err) {
    // Every group gets an accumulator, even one no pair names.
    return fold_call(accumulators, records, pairs, add_one, weir_aggregate_def.create, "add", ret,
                     err);
}

bool exports_weir_operator_aggregate_handler_merge(stateful_operator_list_u8_t *sets,
                                                   stateful_operator_list_u8_t *ret,
                                                   stateful_operator_string_t *err) {
    weir_ctx *ctx = weir_glue_ctx();
    weir_bytes in = weir_bytes_of(sets->ptr, sets->len);
    weir_buf out = {0};
    bool ok = weir_aggregate_def.merge != NULL ||
              weir_fail(ctx, "this aggregate function does not merge accumulators (session windows need `merge`)");
    for (size_t pos = 0; ok && pos < in.len;) {
        if (in.len - pos < 4) {
            ok = weir_fail(ctx, "the host passed a malformed window batch");
            break;
        }
        uint32_t n = u32_at(in.ptr + pos);
        pos += 4;
        weir_buf acc = {0};
        for (uint32_t i = 0; ok && i < n; i++) {
            weir_bytes item;
            bool absent;
            ok = next_item(ctx, in, &pos, &item, &absent);
            if (ok && i == 0) weir_buf_push(&acc, item);
            else if (ok) ok = weir_aggregate_def.merge(ctx, &acc, item);
        }
        if (ok && n == 0) ok = weir_aggregate_def.create(ctx, &acc);
        push_item(&out, weir_buf_bytes(&acc));
        weir_buf_free(&acc);
    }
    stateful_operator_list_u8_free(sets);
    return finish_with(ok, "merge", &out, ret, err);
}

bool exports_weir_operator_aggregate_handler_get_result(stateful_operator_list_u8_t *windows,
                                                        stateful_operator_list_u8_t *ret,
                                                        stateful_operator_string_t *err) {
    weir_ctx *ctx = weir_glue_ctx();
    weir_bytes in = weir_bytes_of(windows->ptr, windows->len);
    weir_buf out = {0}, value = {0};
    bool ok = true;
    for (size_t pos = 0; ok && pos < in.len;) {
        weir_bytes key, acc;
        weir_window w;
        bool absent;
        ok = next_window(ctx, in, &pos, &key, &w) && next_item(ctx, in, &pos, &acc, &absent);
        weir_buf_clear(&value);
        if (ok) ok = weir_aggregate_def.result(ctx, key, w, acc, &value);
        if (ok) push_item(&out, weir_buf_bytes(&value));
    }
    weir_buf_free(&value);
    stateful_operator_list_u8_free(windows);
    return finish_with(ok, "get-result", &out, ret, err);
}
#endif

#ifdef WEIR_WORLD_REDUCE
static bool reduce_one(weir_ctx *ctx, weir_buf *value, bool *absent, const weir_record *record) {
    if (*absent) {
        weir_buf_clear(value);
        weir_buf_push(value, record->value);
        *absent = false;
        return true;
    }
    return weir_reduce_def.reduce(ctx, value, record);
}

bool exports_weir_operator_reduce_handler_open(stateful_operator_string_t *config,
                                               stateful_operator_string_t *err) {
    return open_hook(weir_reduce_def.open, config, err);
}

bool exports_weir_operator_reduce_handler_reduce(stateful_operator_list_u8_t *values,
                                                 stateful_operator_list_u8_t *records,
                                                 stateful_operator_list_u32_t *pairs,
                                                 stateful_operator_list_u8_t *ret,
                                                 stateful_operator_string_t *err) {
    return fold_call(values, records, pairs, reduce_one, NULL, "reduce", ret, err);
}
#endif

#ifdef WEIR_WORLD_PROCESS
bool exports_weir_operator_process_handler_open(stateful_operator_string_t *config,
                                                stateful_operator_string_t *err) {
    return open_hook(weir_process_window_def.open, config, err);
}

bool exports_weir_operator_process_handler_process(stateful_operator_list_u8_t *windows,
                                                   stateful_operator_list_u8_t *ret,
                                                   stateful_operator_string_t *err) {
    weir_ctx *ctx = weir_glue_ctx();
    weir_bytes in = weir_bytes_of(windows->ptr, windows->len);
    weir_buf out = {0}, emitted = {0};
    bool ok = true;
    for (size_t pos = 0; ok && pos < in.len;) {
        weir_bytes key;
        weir_window w;
        ok = next_window(ctx, in, &pos, &key, &w);
        if (ok && in.len - pos < 4) ok = weir_fail(ctx, "the host passed a malformed window batch");
        if (!ok) break;
        uint32_t count = u32_at(in.ptr + pos);
        pos += 4;
        // The window's records run to the next window: find where `count` of them end.
        size_t end = pos;
        for (uint32_t i = 0; ok && i < count; i++) {
            if (in.len - end < 9) {
                ok = weir_fail(ctx, "the host passed a malformed window batch");
                break;
            }
            end += 9 + (in.ptr[end] & 1 ? 8 : 0) + (size_t)u32_at(in.ptr + end + 1) +
                   (size_t)u32_at(in.ptr + end + 5);
            if (end > in.len) ok = weir_fail(ctx, "the host passed a malformed window batch");
        }
        const weir_record *records;
        size_t n = ok ? weir_glue_unpack(in.ptr + pos, end - pos, &records) : SIZE_MAX;
        ok = ok && n != SIZE_MAX;
        pos = end;
        weir_buf_clear(&emitted);
        if (ok) ok = weir_process_window_def.process(ctx, key, w, records, n, &emitted);
        if (ok) push_item(&out, weir_buf_bytes(&emitted));
    }
    weir_buf_free(&emitted);
    stateful_operator_list_u8_free(windows);
    return finish_with(ok, "process", &out, ret, err);
}
#endif
