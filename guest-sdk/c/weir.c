// weir.c: the C guest SDK's glue between the generated bindings (`stateful_operator.h`, from
// `wit/operator.wit` by weir-c-gen) and an operator's hooks (weir.h).
#include "weir.h"

#include <stdio.h>
#include <stdlib.h>

#include "weir_glue.h"

/// The operator's hooks, defined by WEIR_OPERATOR in the operator's file (weak: a window
/// function's component has none, and never calls the operator exports).
extern const weir_operator weir_operator_def __attribute__((weak));

/// Records are flushed to the host when an output's buffer reaches this, and at the end of a
/// call (as the Rust SDK does).
#define FLUSH_BYTES (64 * 1024)

typedef struct {
    char *name; // NULL for the main output
    weir_buf buf;
} output;

struct weir_ctx {
    output *outputs; // [0] is the main output
    size_t n_outputs;
    /// The first failure of the current call.
    weir_buf error;
    bool failed;
    /// The output of a record begun by weir_emit_begin, and where its value-len and value start.
    output *open_record;
    size_t value_len_at, value_at;
};

static output main_output;
static weir_ctx the_ctx = {&main_output, 1, {0}, false, NULL, 0, 0};

// ---- Errors and bytes ---------------------------------------------------------------------

static void vfail(weir_ctx *ctx, const char *fmt, va_list args) {
    if (ctx->failed) return;
    ctx->failed = true;
    char msg[1024];
    int n = vsnprintf(msg, sizeof msg, fmt, args);
    if (n < 0) n = 0;
    size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    // Not weir_buf_push: out of memory here must not recurse into failing.
    uint8_t *p = malloc(len ? len : 1);
    if (p) {
        memcpy(p, msg, len);
        free(ctx->error.ptr);
        ctx->error = (weir_buf){p, len, len ? len : 1};
    }
}

bool weir_fail(weir_ctx *ctx, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vfail(ctx, fmt, args);
    va_end(args);
    return false;
}

bool weir_failed(const weir_ctx *ctx) { return ctx->failed; }

weir_bytes weir_failure(const weir_ctx *ctx) { return weir_buf_bytes(&ctx->error); }

void weir_recover(weir_ctx *ctx) {
    weir_buf_free(&ctx->error);
    ctx->failed = false;
}

bool weir_buf_grow(weir_buf *b, size_t more) {
    if (b->cap - b->len >= more) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < more) {
        if (cap > SIZE_MAX / 2) {
            weir_fail(&the_ctx, "out of memory");
            return false;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(b->ptr, cap);
    if (!p) {
        weir_fail(&the_ctx, "out of memory");
        return false;
    }
    b->ptr = p;
    b->cap = cap;
    return true;
}

void weir_buf_free(weir_buf *b) {
    free(b->ptr);
    *b = (weir_buf){0};
}

void weir_buf_push_u64(weir_buf *b, uint64_t n) {
    uint8_t digits[20];
    size_t i = sizeof digits;
    // WASM has no 64-bit multiply-high, so a 64-bit division by 10 stays a division; below
    // 2^32 the 32-bit one becomes a multiply.
    for (; n > UINT32_MAX; n /= 10) digits[--i] = (uint8_t)('0' + n % 10);
    uint32_t m = (uint32_t)n;
    do {
        digits[--i] = (uint8_t)('0' + m % 10);
        m /= 10;
    } while (m);
    weir_buf_push(b, weir_bytes_of(digits + i, sizeof digits - i));
}

void weir_buf_push_i64(weir_buf *b, int64_t n) {
    if (n < 0) {
        weir_buf_push_byte(b, '-');
        weir_buf_push_u64(b, (uint64_t)0 - (uint64_t)n);
    } else {
        weir_buf_push_u64(b, (uint64_t)n);
    }
}

/// Appends printf-style formatted text: short text through a stack buffer, long text
/// formatted a second time straight into `b`.
static void buf_vprintf(weir_buf *b, const char *fmt, va_list args) {
    va_list again;
    va_copy(again, args);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, args);
    if (n >= 0 && (size_t)n < sizeof small) {
        weir_buf_push(b, weir_bytes_of(small, (size_t)n));
    } else if (n >= 0 && weir_buf_reserve(b, (size_t)n + 1)) {
        vsnprintf((char *)b->ptr + b->len, (size_t)n + 1, fmt, again);
        b->len += (size_t)n;
    }
    va_end(again);
}

void weir_buf_printf(weir_buf *b, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    buf_vprintf(b, fmt, args);
    va_end(args);
}

static inline void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/// A borrowed list for an import's parameter (the host copies it; nothing is freed).
static inline stateful_operator_list_u8_t list_of(weir_bytes b) {
    return (stateful_operator_list_u8_t){(uint8_t *)b.ptr, b.len};
}

static inline stateful_operator_string_t string_of(const char *s) {
    return (stateful_operator_string_t){(uint8_t *)s, strlen(s)};
}

// ---- Emitting -----------------------------------------------------------------------------

static void flush_one(output *o) {
    if (o->buf.len == 0) return;
    stateful_operator_list_u8_t batch = {o->buf.ptr, o->buf.len};
    if (o->name) {
        stateful_operator_string_t name = string_of(o->name);
        weir_operator_emit_emit(&name, &batch);
    } else {
        weir_operator_emit_emit(NULL, &batch);
    }
    o->buf.len = 0;
}

static void flush_all(weir_ctx *ctx) {
    for (size_t i = 0; i < ctx->n_outputs; i++) flush_one(&ctx->outputs[i]);
}

static output *output_named(weir_ctx *ctx, const char *name) {
    if (!name) return &ctx->outputs[0];
    for (size_t i = 1; i < ctx->n_outputs; i++)
        if (strcmp(ctx->outputs[i].name, name) == 0) return &ctx->outputs[i];
    // A new side output; the main output stays in its static slot.
    output *grown = malloc((ctx->n_outputs + 1) * sizeof *grown);
    char *copy = strdup(name);
    if (!grown || !copy) {
        free(grown);
        free(copy);
        weir_fail(ctx, "out of memory");
        return NULL;
    }
    memcpy(grown, ctx->outputs, ctx->n_outputs * sizeof *grown);
    if (ctx->outputs != &main_output) free(ctx->outputs);
    ctx->outputs = grown;
    grown[ctx->n_outputs] = (output){copy, {0}};
    return &grown[ctx->n_outputs++];
}

/// Writes a record's header and key into `o`, with a placeholder value length; returns where
/// the value length goes, or SIZE_MAX when memory ran out.
static size_t begin_record(output *o, weir_bytes key, const int64_t *timestamp) {
    weir_buf *b = &o->buf;
    if (key.len > UINT32_MAX || !weir_buf_reserve(b, 17 + key.len)) {
        if (key.len > UINT32_MAX) weir_fail(&the_ctx, "a key of %zu bytes is too long", key.len);
        return SIZE_MAX;
    }
    uint8_t *p = b->ptr + b->len;
    p[0] = timestamp ? 1 : 0;
    put_u32(p + 1, (uint32_t)key.len);
    size_t at = b->len + 5;
    p += 9;
    if (timestamp) {
        uint64_t t = (uint64_t)*timestamp;
        for (int i = 0; i < 8; i++) p[i] = (uint8_t)(t >> (8 * i));
        p += 8;
    }
    weir_copy(p, key.ptr, key.len);
    b->len = (size_t)(p - b->ptr) + key.len;
    return at;
}

static void end_record(output *o, size_t value_len_at, size_t value_at) {
    size_t len = o->buf.len - value_at;
    if (len > UINT32_MAX) {
        o->buf.len = value_len_at - 5;
        weir_fail(&the_ctx, "a value of %zu bytes is too long", len);
        return;
    }
    put_u32(o->buf.ptr + value_len_at, (uint32_t)len);
    if (o->buf.len >= FLUSH_BYTES) flush_one(o);
}

weir_buf *weir_emit_begin(weir_ctx *ctx, const char *output_name, weir_bytes key,
                          const int64_t *timestamp) {
    static weir_buf discard;
    output *o = output_name ? output_named(ctx, output_name) : &ctx->outputs[0];
    size_t at = o ? begin_record(o, key, timestamp) : SIZE_MAX;
    if (at == SIZE_MAX) {
        // Failed already; the value goes nowhere.
        ctx->open_record = NULL;
        discard.len = 0;
        return &discard;
    }
    ctx->open_record = o;
    ctx->value_len_at = at;
    ctx->value_at = o->buf.len;
    return &o->buf;
}

void weir_emit_end(weir_ctx *ctx) {
    if (!ctx->open_record) return;
    end_record(ctx->open_record, ctx->value_len_at, ctx->value_at);
    ctx->open_record = NULL;
}

void weir_emit_to(weir_ctx *ctx, const char *output_name, weir_bytes key, weir_bytes value,
                  const int64_t *timestamp) {
    // weir_emit_begin, the value and weir_emit_end in one: this is the per-record path.
    output *o = output_name ? output_named(ctx, output_name) : &ctx->outputs[0];
    if (!o) return;
    if (key.len > UINT32_MAX || value.len > UINT32_MAX) {
        weir_fail(ctx, "a record of %zu + %zu bytes is too long", key.len, value.len);
        return;
    }
    weir_buf *b = &o->buf;
    if (!weir_buf_reserve(b, 17 + key.len + value.len)) return;
    uint8_t *p = b->ptr + b->len;
    p[0] = timestamp ? 1 : 0;
    put_u32(p + 1, (uint32_t)key.len);
    put_u32(p + 5, (uint32_t)value.len);
    p += 9;
    if (timestamp) {
        uint64_t t = (uint64_t)*timestamp;
        __builtin_memcpy(p, &t, 8); // WASM is little-endian
        p += 8;
    }
    weir_copy(p, key.ptr, key.len);
    weir_copy(p + key.len, value.ptr, value.len);
    b->len = (size_t)(p - b->ptr) + key.len + value.len;
    if (b->len >= FLUSH_BYTES) flush_one(o);
}

void weir_emit(weir_ctx *ctx, weir_bytes key, weir_bytes value) {
    weir_emit_to(ctx, NULL, key, value, NULL);
}

void weir_emit_at(weir_ctx *ctx, weir_bytes key, weir_bytes value, int64_t timestamp) {
    weir_emit_to(ctx, NULL, key, value, &timestamp);
}

void weir_emit_record(weir_ctx *ctx, const weir_record *r) {
    weir_emit_to(ctx, NULL, r->key, r->value, r->has_timestamp ? &r->timestamp : NULL);
}

// ---- Distinct keys -----------------------------------------------------------------------

/// A multiply-xorshift hash over the key's words; the table takes the top bits.
static inline uint32_t key_hash(weir_bytes key) {
    const uint64_t k = 0x9E3779B97F4A7C15u;
    uint64_t h = (key.len + 1) * k;
    size_t at = 0;
    for (; key.len - at > 8; at += 8) {
        h = (h ^ weir_load(key.ptr + at, 8, 0)) * k;
        h ^= h >> 29;
    }
    h = (h ^ weir_load(key.ptr + at, key.len - at, 0)) * k;
    return (uint32_t)((h ^ h >> 29) * k >> 32);
}

/// Grows `*p` (of `*cap` items of `size` bytes) to at least `need` items.
static bool grow(void **p, size_t *cap, size_t need, size_t size) {
    if (*cap >= need) return true;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need) cap2 *= 2;
    void *q = realloc(*p, cap2 * size);
    if (!q) return false;
    *p = q;
    *cap = cap2;
    return true;
}

bool weir_distinct_of(weir_ctx *ctx, weir_distinct *d, const weir_record *records, size_t n) {
    d->len = 0;
    if (n > UINT32_MAX / 2) return weir_fail(ctx, "a batch of %zu records is too large", n);
    size_t slots = 16;
    while (slots < 2 * n) slots *= 2;
    if (!grow((void **)&d->keys, &d->keys_cap, n, sizeof *d->keys) ||
        !grow((void **)&d->positions, &d->positions_cap, n, sizeof *d->positions) ||
        !grow((void **)&d->slots, &d->slots_cap, slots, sizeof *d->slots))
        return weir_fail(ctx, "out of memory");
    // Slots hold a key's index + 1; 0 is empty.
    memset(d->slots, 0, slots * sizeof *d->slots);
    size_t mask = slots - 1;
    for (size_t i = 0; i < n; i++) {
        weir_bytes key = records[i].key;
        size_t s = key_hash(key) & mask;
        for (;;) {
            uint32_t at = d->slots[s];
            if (at == 0) {
                d->keys[d->len] = key;
                d->positions[i] = (uint32_t)d->len;
                d->slots[s] = (uint32_t)++d->len;
                break;
            }
            if (weir_bytes_eq(d->keys[at - 1], key)) {
                d->positions[i] = at - 1;
                break;
            }
            s = (s + 1) & mask;
        }
    }
    return true;
}

void weir_distinct_free(weir_distinct *d) {
    free(d->keys);
    free(d->positions);
    free(d->slots);
    *d = (weir_distinct){0};
}

// ---- Keyed state --------------------------------------------------------------------------

/// Fails the call with a refused state call's reason, and frees it.
static void state_failed(weir_ctx *ctx, const char *what, const char *state,
                         weir_operator_state_state_error_t *e) {
    stateful_operator_string_t *why = e->tag == WEIR_OPERATOR_STATE_STATE_ERROR_KEY_OUTSIDE_KEY_GROUPS
                                 ? &e->val.key_outside_key_groups
                                 : &e->val.invalid;
    weir_fail(ctx, "state `%s`: %s refused: %s%.*s", state, what,
              e->tag == WEIR_OPERATOR_STATE_STATE_ERROR_KEY_OUTSIDE_KEY_GROUPS
                  ? "key outside this subtask's key groups: "
                  : "",
              (int)why->len, (const char *)why->ptr);
    weir_operator_state_state_error_free(e);
}

/// Moves a list the host allocated into `out`, freeing what `out` held. (An empty list's
/// pointer is not an allocation: the bindings' cabi_realloc answers size 0 with the alignment.)
static void take_list(weir_buf *out, stateful_operator_list_u8_t *list) {
    if (list->len == 0) {
        out->len = 0;
        return;
    }
    free(out->ptr);
    *out = (weir_buf){list->ptr, list->len, list->len};
}

/// 1, 0 or -1 from an option returned by a state call.
static int take_option(weir_ctx *ctx, bool ok, stateful_operator_option_list_u8_t *ret,
                       weir_operator_state_state_error_t *err, const char *what,
                       const char *state, weir_buf *value) {
    if (!ok) {
        state_failed(ctx, what, state, err);
        return -1;
    }
    if (!ret->is_some) {
        value->len = 0;
        return 0;
    }
    take_list(value, &ret->val);
    return 1;
}

static bool done(weir_ctx *ctx, bool ok, weir_operator_state_state_error_t *err,
                 const char *what, const char *state) {
    if (!ok) state_failed(ctx, what, state, err);
    return ok;
}

int weir_value_get(weir_ctx *ctx, const char *state, weir_bytes key, weir_buf *value) {
    stateful_operator_string_t name = string_of(state);
    stateful_operator_list_u8_t k = list_of(key);
    stateful_operator_option_list_u8_t ret;
    weir_operator_state_state_error_t err;
    bool ok = weir_operator_state_value_get(&name, &k, &ret, &err);
    return take_option(ctx, ok, &ret, &err, "get", state, value);
}

bool weir_value_set(weir_ctx *ctx, const char *state, weir_bytes key, weir_bytes value) {
    stateful_operator_string_t name = string_of(state);
    stateful_operator_list_u8_t k = list_of(key), v = list_of(value);
    weir_operator_state_state_error_t err;
    return done(ctx, weir_operator_state_value_set(&name, &k, &v, &err), &err, "set", state);
}

bool weir_value_clear(weir_ctx *ctx, const char *state, weir_bytes key) {
    stateful_operator_string_t name = string_of(state);
    stateful_operator_list_u8_t k = list_of(key);
    weir_operator_state_state_error_t err;
    return done(ctx, weir_operator_state_value_clear(&name, &k, &err), &err, "clear", state);
}

/// Appends a u32 LE length and the bytes; false when memory ran out.
static inline bool push_framed(weir_buf *b, weir_bytes bytes) {
    if (!weir_buf_reserve(b, 4 + bytes.len)) return false;
    put_u32(b->ptr + b->len, (uint32_t)bytes.len);
    weir_copy(b->ptr + b->len + 4, bytes.ptr, bytes.len);
    b->len += 4 + bytes.len;
    return true;
}

/// Appends the length that clears a key in value-set-many; false when memory ran out.
static inline bool push_clear(weir_buf *b) {
    if (!weir_buf_reserve(b, 4)) return false;
    put_u32(b->ptr + b->len, UINT32_MAX);
    b->len += 4;
    return true;
}

/// A batched call's buffer, kept between calls.
static weir_buf scratch;

bool weir_value_get_many(weir_ctx *ctx, const char *state, const weir_bytes *keys, size_t n,
                         weir_bytes *values, weir_buf *storage) {
    scratch.len = 0;
    for (size_t i = 0; i < n; i++)
        if (!push_framed(&scratch, keys[i])) return false;
    stateful_operator_string_t name = string_of(state);
    stateful_operator_list_u8_t ks = {scratch.ptr, scratch.len}, ret;
    weir_operator_state_state_error_t err;
    if (!weir_operator_state_value_get_many(&name, &ks, &ret, &err)) {
        state_failed(ctx, "get_many", state, &err);
        return false;
    }
    take_list(storage, &ret);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (storage->len - at < 4) return weir_fail(ctx, "state `%s`: a short get_many reply", state);
        uint32_t len = get_u32(storage->ptr + at);
        at += 4;
        if (len == UINT32_MAX) {
            values[i] = (weir_bytes){NULL, 0};
            continue;
        }
        if (storage->len - at < len) return weir_fail(ctx, "state `%s`: a short get_many reply", state);
        values[i] = weir_bytes_of(storage->ptr + at, len);
        at += len;
    }
    return true;
}

/// value-set-many with the entries in `scratch`.
static bool set_many_scratch(weir_ctx *ctx, const char *state) {
    stateful_operator_string_t name = string_of(state);
    stateful_operator_list_u8_t entries = {scratch.ptr, scratch.len};
    weir_operator_state_state_error_t err;
    return done(ctx, weir_operator_state_value_set_many(&name, &entries, &err), &err, "set_many",
                state);
}

bool weir_value_set_many(weir_ctx *ctx, const char *state, const weir_bytes *keys,
                         const weir_bytes *values, size_t n) {
    scratch.len = 0;
    for (size_t i = 0; i < n; i++)
        if (!push_framed(&scratch, keys[i]) ||
            !(values[i].ptr ? push_framed(&scratch, values[i]) : push_clear(&scratch)))
            return false;
    return set_many_scratch(ctx, state);
}

size_t weir_varint_put(uint8_t out[10], uint64_t n) {
    size_t i = 0;
    while (n >= 0x80) {
        out[i++] = (uint8_t)(n | 0x80);
        n >>= 7;
    }
    out[i++] = (uint8_t)n;
    return i;
}

bool weir_varint_get(weir_bytes bytes, uint64_t *n) {
    uint64_t v = 0;
    for (size_t i = 0; i < bytes.len && i < 10; i++) {
        uint8_t b = bytes.ptr[i];
        // The tenth byte holds the top bit only.
        if (i == 9 && b > 1) return false;
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *n = v;
            return i + 1 == bytes.len;
        }
    }
    return false;
}

static int u64_of(weir_ctx *ctx, const char *state, int found, weir_bytes value, uint64_t *n) {
    *n = 0;
    if (found != 1) return found;
    if (!weir_varint_get(value, n)) {
        weir_fail(ctx, "state `%s`: a stored value of %zu bytes is not a u64", state, value.len);
        return -1;
    }
    return 1;
}

int weir_value_get_u64(weir_ctx *ctx, const char *state, weir_bytes key, uint64_t *n) {
    weir_buf value = {0};
    int found = weir_value_get(ctx, state, key, &value);
    found = u64_of(ctx, state, found, weir_buf_bytes(&value), n);
    weir_buf_free(&value);
    return found;
}

bool weir_value_set_u64(weir_ctx *ctx, const char *state, weir_bytes key, uint64_t n) {
    uint8_t v[10];
    return weir_value_set(ctx, state, key, weir_bytes_of(v, weir_varint_put(v, n)));
}

bool weir_value_get_many_u64(weir_ctx *ctx, const char *state, const weir_bytes *keys, size_t n,
                             uint64_t *values, bool *found) {
    // Kept between calls: this runs once per batch.
    static weir_buf storage;
    static weir_bytes *raw;
    static size_t raw_cap;
    if (!grow((void **)&raw, &raw_cap, n, sizeof *raw)) return weir_fail(ctx, "out of memory");
    bool ok = weir_value_get_many(ctx, state, keys, n, raw, &storage);
    for (size_t i = 0; ok && i < n; i++) {
        int f = u64_of(ctx, state, raw[i].ptr ? 1 : 0, raw[i], &values[i]);
        if (f < 0) ok = false;
        if (found) found[i] = f == 1;
    }
    return ok;
}

bool weir_value_set_many_u64(weir_ctx *ctx, const char *state, const weir_bytes *keys,
                             const uint64_t *values, size_t n) {
    scratch.len = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t v[10];
        if (!push_framed(&scratch, keys[i]) ||
            !push_framed(&scratch, weir_bytes_of(v, weir_varint_put(v, values[i]))))
            return false;
    }
    return set_many_scratch(ctx, state);
}

int weir_map_get(weir_ctx *ctx, const char *state, weir_bytes key, weir_bytes map_key,
                 weir_buf *value) {
    stateful_operator_string_t name = string_of(state);
    stateful_operator_list_u8_t k = list_of(key), m = list_of(map_key);
    stateful_operator_option_list_u8_t ret;
    weir_operator_state_state_error_t err;
    bool ok = weir_operator_state_map_get(&name, &k, &m, &ret, &err);
    return take_option(ctx, ok, &ret, &err, "map get", state, value);
}

bool weir_map_put(weir_ctx *ctx, const char *state, weir_bytes key, weir_bytes map_key,
                  weir_bytes value) {
    stateful_operator_string_t name = string_of(state);
    stateful_operator_list_u8_t k = list_of(key), m = list_of(map_key), v = list_of(value);
    weir_operator_state_state_error_t err;
    return done(ctx, weir_operator_state_map_put(&name, &k, &m, &v, &err), &err, "map put", state);
}

bool weir_map_remove(weir_ctx *ctx, const char *state, weir_bytes key, weir_bytes map_key) {
    stateful_operator_string_t name = string_of(state);
    stateful_operator_list_u8_t k = list_of(key), m = list_of(map_key);
    weir_operator_state_state_error_t err;
    return done(ctx, weir_operator_state_map_remove(&name, &k, &m, &err), &err, "map remove",
                state);
}

bool weir_map_clear(weir_ctx *ctx, const char *state, weir_bytes key) {
    stateful_operator_string_t name = string_of(state);
    stateful_operator_list_u8_t k = list_of(key);
    weir_operator_state_state_error_t err;
    return done(ctx, weir_operator_state_map_clear(&name, &k, &err), &err, "map clear", state);
}

void weir_entries_free(weir_entries *entries) {
    // Empty keys and values hold no allocation (see take_list).
    for (size_t i = 0; i < entries->len; i++) {
        if (entries->ptr[i].key.len) free((void *)entries->ptr[i].key.ptr);
        if (entries->ptr[i].value.len) free((void *)entries->ptr[i].value.ptr);
    }
    free(entries->ptr);
    *entries = (weir_entries){0};
}

bool weir_map_entries(weir_ctx *ctx, const char *state, weir_bytes key, weir_entries *entries) {
    weir_entries_free(entries);
    stateful_operator_string_t name = string_of(state);
    stateful_operator_list_u8_t k = list_of(key);
    stateful_operator_list_tuple2_list_u8_list_u8_t ret;
    weir_operator_state_state_error_t err;
    if (!weir_operator_state_map_entries(&name, &k, &ret, &err)) {
        state_failed(ctx, "map entries", state, &err);
        return false;
    }
    weir_entry *items = malloc((ret.len ? ret.len : 1) * sizeof *items);
    if (!items) {
        stateful_operator_list_tuple2_list_u8_list_u8_free(&ret);
        return weir_fail(ctx, "out of memory");
    }
    for (size_t i = 0; i < ret.len; i++)
        items[i] = (weir_entry){weir_bytes_of(ret.ptr[i].f0.ptr, ret.ptr[i].f0.len),
                                weir_bytes_of(ret.ptr[i].f1.ptr, ret.ptr[i].f1.len)};
    *entries = (weir_entries){items, ret.len};
    if (ret.len) free(ret.ptr);
    return true;
}

// ---- Config (JSON) ------------------------------------------------------------------------

typedef struct {
    const uint8_t *p, *end;
} json;

static void json_ws(json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int hex4(const uint8_t *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d = c >= '0' && c <= '9'   ? c - '0'
                          : c >= 'a' && c <= 'f' ? c - 'a' + 10
                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/// A string at `j->p` (at its opening quote), unescaped into `out` when not NULL.
static bool json_string(json *j, weir_buf *out) {
    if (j->p >= j->end || *j->p != '"') return false;
    j->p++;
    while (j->p < j->end) {
        uint8_t c = *j->p++;
        if (c == '"') return true;
        if (c != '\\') {
            if (out) weir_buf_push_byte(out, c);
            continue;
        }
        if (j->p >= j->end) return false;
        uint8_t e = *j->p++;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            if (out) weir_buf_push_byte(out, (uint8_t) "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"]);
            continue;
        }
        if (e != 'u' || j->end - j->p < 4) return false;
        int u = hex4(j->p);
        if (u < 0) return false;
        j->p += 4;
        uint32_t cp = (uint32_t)u;
        if (cp >= 0xD800 && cp < 0xDC00 && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
            int lo = hex4(j->p + 2);
            if (lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                j->p += 6;
            }
        }
        if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD; // a lone surrogate
        if (out) weir_buf_push_char(out, cp);
    }
    return false;
}

/// Skips any value, to a bounded depth.
static bool json_skip(json *j, int depth) {
    json_ws(j);
    if (j->p >= j->end || depth > 64) return false;
    uint8_t c = *j->p;
    if (c == '"') return json_string(j, NULL);
    if (c == '{' || c == '[') {
        uint8_t close = c == '{' ? '}' : ']';
        j->p++;
        json_ws(j);
        if (j->p < j->end && *j->p == close) return j->p++, true;
        for (;;) {
            if (c == '{') {
                json_ws(j);
                if (!json_string(j, NULL)) return false;
                json_ws(j);
                if (j->p >= j->end || *j->p++ != ':') return false;
            }
            if (!json_skip(j, depth + 1)) return false;
            json_ws(j);
            if (j->p >= j->end) return false;
            uint8_t d = *j->p++;
            if (d == close) return true;
            if (d != ',') return false;
        }
    }
    // A number or a literal.
    const uint8_t *start = j->p;
    while (j->p < j->end && !strchr(",]} \t\r\n", *j->p)) j->p++;
    return j->p > start;
}

/// Finds the top-level member `name`: 1 with `j->p` at its value, 0 when absent, -1 when
/// `config` is not a JSON object.
static int json_member(weir_bytes config, const char *name, json *j) {
    *j = (json){config.ptr, config.ptr + config.len};
    json_ws(j);
    if (j->p >= j->end || *j->p++ != '{') return -1;
    json_ws(j);
    if (j->p < j->end && *j->p == '}') return 0;
    weir_buf key = {0};
    int result = -1;
    for (;;) {
        json_ws(j);
        key.len = 0;
        if (!json_string(j, &key)) break;
        json_ws(j);
        if (j->p >= j->end || *j->p++ != ':') break;
        json_ws(j);
        if (weir_bytes_eq(weir_buf_bytes(&key), weir_str(name))) {
            result = 1;
            break;
        }
        if (!json_skip(j, 0)) break;
        json_ws(j);
        if (j->p >= j->end) break;
        uint8_t d = *j->p++;
        if (d == '}') {
            result = 0;
            break;
        }
        if (d != ',') break;
    }
    weir_buf_free(&key);
    return result;
}

static int config_member(weir_ctx *ctx, weir_bytes config, const char *name, json *j) {
    int found = json_member(config, name, j);
    if (found < 0) weir_fail(ctx, "the config is not a JSON object: %.*s", (int)config.len, config.ptr);
    return found;
}

/// Fails the call: config member `name` is not `what`; returns -1.
static int config_not(weir_ctx *ctx, const char *name, const char *what) {
    weir_fail(ctx, "config `%s` is not %s", name, what);
    return -1;
}

int weir_config_str(weir_ctx *ctx, weir_bytes config, const char *name, weir_buf *out) {
    json j;
    int found = config_member(ctx, config, name, &j);
    if (found != 1) return found;
    out->len = 0;
    return json_string(&j, out) ? 1 : config_not(ctx, name, "a string");
}

int weir_config_u64(weir_ctx *ctx, weir_bytes config, const char *name, uint64_t *out) {
    json j;
    int found = config_member(ctx, config, name, &j);
    if (found != 1) return found;
    weir_bytes rest = weir_bytes_of(j.p, (size_t)(j.end - j.p));
    bool ok = weir_parse_u64(&rest, out);
    j.p = rest.ptr;
    json_ws(&j);
    // The number must end the member: not 1.5, 1e3 or 12abc.
    if (!ok || (j.p < j.end && *j.p != ',' && *j.p != '}'))
        return config_not(ctx, name, "an unsigned integer");
    return 1;
}

int weir_config_bool(weir_ctx *ctx, weir_bytes config, const char *name, bool *out) {
    json j;
    int found = config_member(ctx, config, name, &j);
    if (found != 1) return found;
    size_t left = (size_t)(j.end - j.p);
    if (left >= 4 && !memcmp(j.p, "true", 4))
        *out = true;
    else if (left >= 5 && !memcmp(j.p, "false", 5))
        *out = false;
    else
        return config_not(ctx, name, "a boolean");
    return 1;
}

// ---- Logging ------------------------------------------------------------------------------

void weir_log(weir_level level, const char *fmt, ...) {
    weir_buf msg = {0};
    va_list args;
    va_start(args, fmt);
    buf_vprintf(&msg, fmt, args);
    va_end(args);
    stateful_operator_string_t s = {msg.ptr, msg.len};
    weir_operator_log_log((weir_operator_log_level_t)level, &s);
    weir_buf_free(&msg);
}

// ---- Text ---------------------------------------------------------------------------------

extern const uint32_t weir_unicode_alphanumeric[][2], weir_unicode_case_ignorable[][2],
    weir_unicode_cased[][2], weir_unicode_lower[][2], weir_unicode_lower_multi[][5];
extern const size_t weir_unicode_alphanumeric_len, weir_unicode_case_ignorable_len,
    weir_unicode_cased_len, weir_unicode_lower_len, weir_unicode_lower_multi_len;

bool weir_utf8_valid(weir_bytes bytes) {
    if (weir_is_ascii(bytes)) return true;
    const uint8_t *s = bytes.ptr;
    size_t i = 0, n = bytes.len;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (c < 0xC2 || c > 0xF4 || n - i < len) return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return false;
        uint8_t c1 = s[i + 1];
        // Overlong forms, surrogates, and past U+10FFFF.
        if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0) || (c == 0xF0 && c1 < 0x90) ||
            (c == 0xF4 && c1 >= 0x90))
            return false;
        i += len;
    }
    return true;
}

uint32_t weir_utf8_next(const uint8_t *s, size_t *i) {
    uint8_t c = s[*i];
    if (c < 0x80) {
        *i += 1;
        return c;
    }
    if (c < 0xE0) {
        *i += 2;
        return (uint32_t)(c & 0x1F) << 6 | (s[*i - 1] & 0x3F);
    }
    if (c < 0xF0) {
        *i += 3;
        return (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[*i - 2] & 0x3F) << 6 | (s[*i - 1] & 0x3F);
    }
    *i += 4;
    return (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[*i - 3] & 0x3F) << 12 |
           (uint32_t)(s[*i - 2] & 0x3F) << 6 | (s[*i - 1] & 0x3F);
}

void weir_buf_push_char(weir_buf *b, uint32_t c) {
    if (!weir_buf_reserve(b, 4)) return;
    uint8_t *p = b->ptr + b->len;
    if (c < 0x80) {
        p[0] = (uint8_t)c;
        b->len += 1;
    } else if (c < 0x800) {
        p[0] = (uint8_t)(0xC0 | c >> 6);
        p[1] = (uint8_t)(0x80 | (c & 0x3F));
        b->len += 2;
    } else if (c < 0x10000) {
        p[0] = (uint8_t)(0xE0 | c >> 12);
        p[1] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
        p[2] = (uint8_t)(0x80 | (c & 0x3F));
        b->len += 3;
    } else {
        p[0] = (uint8_t)(0xF0 | c >> 18);
        p[1] = (uint8_t)(0x80 | (c >> 12 & 0x3F));
        p[2] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
        p[3] = (uint8_t)(0x80 | (c & 0x3F));
        b->len += 4;
    }
}

/// The first of `n` pairs, sorted by column `col`, whose `col` is at least `c` (`n` if none).
static size_t lower_bound(const uint32_t pairs[][2], size_t n, int col, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pairs[mid][col] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/// Whether `c` lies in one of `n` sorted inclusive ranges.
static bool in_ranges(const uint32_t ranges[][2], size_t n, uint32_t c) {
    size_t i = lower_bound(ranges, n, 1, c);
    return i < n && ranges[i][0] <= c;
}

bool weir_is_alphanumeric(uint32_t c) {
    if (c < 0x80) return (c | 0x20) - 'a' < 26 || c - '0' < 10;
    return in_ranges(weir_unicode_alphanumeric, weir_unicode_alphanumeric_len, c);
}

/// Rust's Final_Sigma context, one side of it: skipping case-ignorable characters, whether the
/// next character along `text` from byte `i` (backwards when `back`) is cased.
static bool cased_then(weir_bytes text, size_t i, bool back) {
    for (;;) {
        uint32_t c;
        if (back) {
            if (i == 0) return false;
            do i--;
            while (i > 0 && (text.ptr[i] & 0xC0) == 0x80);
            size_t j = i;
            c = weir_utf8_next(text.ptr, &j);
        } else {
            if (i >= text.len) return false;
            c = weir_utf8_next(text.ptr, &i);
        }
        if (!in_ranges(weir_unicode_case_ignorable, weir_unicode_case_ignorable_len, c))
            return in_ranges(weir_unicode_cased, weir_unicode_cased_len, c);
    }
}

void weir_buf_push_lowercase(weir_buf *b, weir_bytes text) {
    size_t i = 0;
    while (i < text.len) {
        size_t at = i;
        uint32_t c = weir_utf8_next(text.ptr, &i);
        if (c < 0x80) {
            weir_buf_push_byte(b, (uint8_t)(c - 'A' < 26 ? c | 0x20 : c));
            continue;
        }
        if (c == 0x3A3) { // Σ
            bool final = cased_then(text, at, true) && !cased_then(text, i, false);
            weir_buf_push_char(b, final ? 0x3C2 : 0x3C3);
            continue;
        }
        size_t lo = lower_bound(weir_unicode_lower, weir_unicode_lower_len, 0, c);
        if (lo < weir_unicode_lower_len && weir_unicode_lower[lo][0] == c) {
            weir_buf_push_char(b, weir_unicode_lower[lo][1]);
            continue;
        }
        bool multi = false;
        for (size_t k = 0; k < weir_unicode_lower_multi_len; k++) {
            if (weir_unicode_lower_multi[k][0] == c) {
                for (uint32_t m = 0; m < weir_unicode_lower_multi[k][1]; m++)
                    weir_buf_push_char(b, weir_unicode_lower_multi[k][2 + m]);
                multi = true;
                break;
            }
        }
        if (!multi) weir_buf_push_char(b, c);
    }
}

// ---- The exports --------------------------------------------------------------------------

/// Ends a call: flushes what was emitted, and reports the call's failure (if any) in `err`.
static bool finish(weir_ctx *ctx, bool ok, const char *hook, stateful_operator_string_t *err) {
    if (ctx->open_record) {
        weir_emit_end(ctx);
        weir_fail(ctx, "weir_emit_begin without weir_emit_end");
    }
    if (!ok && !ctx->failed) weir_fail(ctx, "`%s` returned false without a message (weir_fail)", hook);
    if (!ctx->failed) flush_all(ctx);
    if (!ctx->failed) return true;
    // The job fails: what this call emitted goes nowhere.
    for (size_t i = 0; i < ctx->n_outputs; i++) ctx->outputs[i].buf.len = 0;
    // The message moves to the host, which frees it after the call.
    *err = (stateful_operator_string_t){ctx->error.ptr, ctx->error.len};
    if (!ctx->error.ptr) stateful_operator_string_dup(err, "out of memory");
    ctx->error = (weir_buf){0};
    ctx->failed = false;
    return false;
}

bool exports_weir_operator_handler_open(stateful_operator_string_t *config, stateful_operator_string_t *err) {
    bool ok = true;
    if (weir_operator_def.open)
        ok = weir_operator_def.open(&the_ctx, weir_bytes_of(config->ptr, config->len));
    stateful_operator_string_free(config);
    return finish(&the_ctx, ok, "open", err);
}

/// The records of the current batch, kept between calls.
static weir_record *records;
static size_t records_cap;

/// Unpacks `batch` into `records`; the number of records, or SIZE_MAX when it is malformed.
static size_t unpack(weir_ctx *ctx, const uint8_t *p, size_t len) {
    size_t n = 0, at = 0;
    while (at < len) {
        if (len - at < 9) return weir_fail(ctx, "a truncated record header in the batch"), SIZE_MAX;
        uint8_t flags = p[at];
        uint32_t klen = get_u32(p + at + 1), vlen = get_u32(p + at + 5);
        at += 9;
        weir_record r = {0};
        if (flags & 1) {
            if (len - at < 8) return weir_fail(ctx, "a truncated timestamp in the batch"), SIZE_MAX;
            uint64_t t = 0;
            for (int i = 0; i < 8; i++) t |= (uint64_t)p[at + i] << (8 * i);
            r.has_timestamp = true;
            r.timestamp = (int64_t)t;
            at += 8;
        }
        if (len - at < (size_t)klen || len - at - klen < (size_t)vlen)
            return weir_fail(ctx, "a truncated record in the batch"), SIZE_MAX;
        r.key = weir_bytes_of(p + at, klen);
        r.value = weir_bytes_of(p + at + klen, vlen);
        at += (size_t)klen + vlen;
        if (n == records_cap) {
            size_t cap = records_cap ? records_cap * 2 : 256;
            weir_record *grown = realloc(records, cap * sizeof *grown);
            if (!grown) return weir_fail(ctx, "out of memory"), SIZE_MAX;
            records = grown;
            records_cap = cap;
        }
        records[n++] = r;
    }
    return n;
}

bool exports_weir_operator_handler_process(stateful_operator_list_u8_t *batch, stateful_operator_string_t *err) {
    weir_ctx *ctx = &the_ctx;
    size_t n = unpack(ctx, batch->ptr, batch->len);
    bool ok = n != SIZE_MAX;
    if (ok && weir_operator_def.process) {
        ok = weir_operator_def.process(ctx, records, n);
    } else if (ok && weir_operator_def.process_record) {
        for (size_t i = 0; ok && i < n && !ctx->failed; i++)
            ok = weir_operator_def.process_record(ctx, &records[i]);
    } else if (ok && n > 0) {
        ok = weir_fail(ctx, "the operator has neither `process` nor `process_record`");
    }
    stateful_operator_list_u8_free(batch);
    return finish(ctx, ok, "process", err);
}

bool exports_weir_operator_handler_close(stateful_operator_string_t *err) {
    bool ok = true;
    if (weir_operator_def.close) ok = weir_operator_def.close(&the_ctx);
    return finish(&the_ctx, ok, "close", err);
}

bool exports_weir_operator_checkpoint_hooks_snapshot(stateful_operator_list_u8_t *ret,
                                                     stateful_operator_string_t *err) {
    weir_buf state = {0};
    bool ok = true;
    if (weir_operator_def.snapshot) ok = weir_operator_def.snapshot(&the_ctx, &state);
    if (!finish(&the_ctx, ok, "snapshot", err)) {
        weir_buf_free(&state);
        return false;
    }
    // The buffer moves to the host, which frees it after the call.
    *ret = (stateful_operator_list_u8_t){state.ptr, state.len};
    return true;
}

bool exports_weir_operator_checkpoint_hooks_restore(stateful_operator_list_u8_t *state,
                                                    stateful_operator_string_t *err) {
    bool ok = true;
    if (weir_operator_def.restore)
        ok = weir_operator_def.restore(&the_ctx, weir_bytes_of(state->ptr, state->len));
    stateful_operator_list_u8_free(state);
    return finish(&the_ctx, ok, "restore", err);
}

uint32_t weir_attempt(void) { return weir_operator_context_attempt(); }

// ---- For the window glue (weir_glue.h) -----------------------------------------------------

weir_ctx *weir_glue_ctx(void) { return &the_ctx; }

bool weir_glue_finish(bool ok, const char *hook, stateful_operator_string_t *err) {
    return finish(&the_ctx, ok, hook, err);
}

size_t weir_glue_unpack(const uint8_t *p, size_t len, const weir_record **out) {
    size_t n = unpack(&the_ctx, p, len);
    *out = records;
    return n;
}
