// weir.h: the C guest SDK for weir operators (`wit/operator.wit`). See README.md beside it.
//
// An operator is a C file that defines its hooks and names them with WEIR_OPERATOR:
//
//     #include "weir.h"
//
//     static bool count_process(weir_ctx *ctx, const weir_record *records, size_t n) {
//         for (size_t i = 0; i < n; i++) { ... weir_emit(ctx, records[i].key, value); }
//         return true;
//     }
//
//     WEIR_OPERATOR(.process = count_process);
//
// The SDK unpacks each batch into records, packs what the operator emits into one buffer per
// output (flushed every 64 KiB and at the end of each call), wraps keyed state and reports
// errors. A hook returns false to fail the job; the message is the one given to weir_fail (or
// the first error of an SDK call, such as a refused state call).
//
// Memory: `weir_bytes` borrow (a record's key and value live until the hook returns);
// `weir_buf` owns and is freed with weir_buf_free. An operator keeps its own state between
// calls in globals or in memory it allocates in `open`: one instance of the component serves
// one subtask.
#ifndef WEIR_H
#define WEIR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The SDK's small helpers are inlined: a call costs tens of instructions in WASM.
#define WEIR_INLINE static inline __attribute__((always_inline))

// ---- Bytes --------------------------------------------------------------------------------

/// Borrowed bytes.
typedef struct {
    const uint8_t *ptr;
    size_t len;
} weir_bytes;

static inline weir_bytes weir_bytes_of(const void *ptr, size_t len) {
    weir_bytes b = {(const uint8_t *)ptr, len};
    return b;
}

/// A NUL-terminated string's bytes (without the NUL).
static inline weir_bytes weir_str(const char *s) { return weir_bytes_of(s, strlen(s)); }

/// Owned, growable bytes; starts zeroed (`weir_buf b = {0};`), freed with weir_buf_free. When
/// memory runs out, the current call fails with "out of memory" and further pushes do nothing.
typedef struct {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} weir_buf;

/// Grows `b` for `more` bytes past `len` (weir_buf_reserve's slow path).
bool weir_buf_grow(weir_buf *b, size_t more);
/// Room for `more` bytes past `len`; false when memory ran out.
WEIR_INLINE bool weir_buf_reserve(weir_buf *b, size_t more) {
    return b->cap - b->len >= more || weir_buf_grow(b, more);
}
void weir_buf_free(weir_buf *b);
static inline void weir_buf_clear(weir_buf *b) { b->len = 0; }
static inline weir_bytes weir_buf_bytes(const weir_buf *b) { return weir_bytes_of(b->ptr, b->len); }

/// memcpy, without a call for the short lengths of keys and fields (libc's memcpy costs more
/// than the copy there, in WASM).
WEIR_INLINE void weir_copy(uint8_t *to, const uint8_t *from, size_t n) {
    if (n > 32) {
        memcpy(to, from, n);
        return;
    }
    for (; n >= 8; n -= 8, to += 8, from += 8) __builtin_memcpy(to, from, 8);
    if (n & 4) __builtin_memcpy(to, from, 4), to += 4, from += 4;
    if (n & 2) __builtin_memcpy(to, from, 2), to += 2, from += 2;
    if (n & 1) *to = *from;
}

WEIR_INLINE void weir_buf_push(weir_buf *b, weir_bytes bytes) {
    if (weir_buf_reserve(b, bytes.len)) {
        weir_copy(b->ptr + b->len, bytes.ptr, bytes.len);
        b->len += bytes.len;
    }
}

/// Appends `n` as 8 little-endian bytes.
WEIR_INLINE void weir_buf_push_u64_le(weir_buf *b, uint64_t n) {
    if (weir_buf_reserve(b, 8)) {
        for (int i = 0; i < 8; i++) b->ptr[b->len + i] = (uint8_t)(n >> (8 * i));
        b->len += 8;
    }
}

WEIR_INLINE void weir_buf_push_byte(weir_buf *b, uint8_t byte) {
    if (weir_buf_reserve(b, 1)) b->ptr[b->len++] = byte;
}

static inline void weir_buf_push_str(weir_buf *b, const char *s) { weir_buf_push(b, weir_str(s)); }

/// Appends `n` in decimal.
void weir_buf_push_u64(weir_buf *b, uint64_t n);
/// Appends `n` in decimal, with a minus sign when negative.
void weir_buf_push_i64(weir_buf *b, int64_t n);
/// Appends printf-style formatted text.
void weir_buf_printf(weir_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---- Records ------------------------------------------------------------------------------

typedef struct {
    weir_bytes key;
    weir_bytes value;
    bool has_timestamp;
    /// Milliseconds since the epoch, when has_timestamp.
    int64_t timestamp;
} weir_record;

// ---- The operator -------------------------------------------------------------------------

/// The call in progress: emitting and errors go through it.
typedef struct weir_ctx weir_ctx;

/// An operator's hooks; any may be NULL. Each returns false to fail the job.
typedef struct {
    /// Once per subtask, before any record. `config` is the operator's `config` table from the
    /// manifest as JSON (read it with weir_config_*), borrowed until `open` returns.
    bool (*open)(weir_ctx *ctx, weir_bytes config);
    /// One batch of records.
    bool (*process)(weir_ctx *ctx, const weir_record *records, size_t n);
    /// One record, when `process` is NULL.
    bool (*process_record)(weir_ctx *ctx, const weir_record *record);
    /// At the end of input; may still emit.
    bool (*close)(weir_ctx *ctx);
    /// At a checkpoint barrier: appends the operator's private state (what it keeps in its own
    /// variables) to `state`, which is empty on entry; left empty, there is none to keep.
    bool (*snapshot)(weir_ctx *ctx, weir_buf *state);
    /// After a restore, after `open` and before the first batch: one private state `snapshot`
    /// gave, called once per state this subtask takes over (its own when the parallelism is
    /// unchanged; after a change, several, to merge).
    bool (*restore)(weir_ctx *ctx, weir_bytes state);
} weir_operator;

/// How many times the job has restarted before this run of it: 0 on its first attempt.
uint32_t weir_attempt(void);

/// Names the operator's hooks, with designated initializers:
/// `WEIR_OPERATOR(.open = my_open, .process = my_process);`. Exactly one per component.
#define WEIR_OPERATOR(...) const weir_operator weir_operator_def = {__VA_ARGS__}

// ---- Window functions ---------------------------------------------------------------------
//
// A component is either an operator (WEIR_OPERATOR) or a window function for a `[windows.X]`
// operator (`wit/window.wit`): one of WEIR_AGGREGATE, WEIR_REDUCE, WEIR_PROCESS_WINDOW. The
// host keeps the windows and decides when they fire; these only compute. Accumulators and
// values are bytes the function chooses.

/// A window: from `start` (included) to `end` (excluded), in milliseconds.
typedef struct {
    int64_t start, end;
} weir_window;

/// Folds a window's records into an accumulator, as Flink's `AggregateFunction`.
typedef struct {
    bool (*open)(weir_ctx *ctx, weir_bytes config);
    /// Writes a new, empty accumulator into `acc` (empty on entry).
    bool (*create)(weir_ctx *ctx, weir_buf *acc);
    /// Adds `record` to the accumulator in `acc`, in place.
    bool (*add)(weir_ctx *ctx, weir_buf *acc, const weir_record *record);
    /// Folds the accumulator `other` into `acc` (session windows that merge); may be NULL
    /// when the function is not used with session windows.
    bool (*merge)(weir_ctx *ctx, weir_buf *acc, weir_bytes other);
    /// Appends the window's value, when it fires, to `out` (empty on entry).
    bool (*result)(weir_ctx *ctx, weir_bytes key, weir_window window, weir_bytes acc, weir_buf *out);
} weir_aggregate;

/// Folds a window's records into one value of their own type, as Flink's `ReduceFunction`.
typedef struct {
    bool (*open)(weir_ctx *ctx, weir_bytes config);
    /// Folds `record` into `value` (which starts as the first record's value), in place.
    bool (*reduce)(weir_ctx *ctx, weir_buf *value, const weir_record *record);
} weir_reduce;

/// Computes a window's output from all its records at once, as Flink's
/// `ProcessWindowFunction`: emit with weir_window_emit into `out`.
typedef struct {
    bool (*open)(weir_ctx *ctx, weir_bytes config);
    bool (*process)(weir_ctx *ctx, weir_bytes key, weir_window window, const weir_record *records,
                    size_t n, weir_buf *out);
} weir_process_window;

/// Appends a record to a process window's output (without a timestamp: it gets the window's
/// end - 1; `timestamp` may be NULL).
void weir_window_emit(weir_buf *out, weir_bytes key, weir_bytes value, const int64_t *timestamp);

/// Name a window function's hooks, as WEIR_OPERATOR does an operator's.
#define WEIR_AGGREGATE(...) const weir_aggregate weir_aggregate_def = {__VA_ARGS__}
#define WEIR_REDUCE(...) const weir_reduce weir_reduce_def = {__VA_ARGS__}
#define WEIR_PROCESS_WINDOW(...) const weir_process_window weir_process_window_def = {__VA_ARGS__}

/// Fails the current call with a printf-style message (the first failure of a call wins) and
/// returns false, so that a hook can `return weir_fail(ctx, "...", ...);`.
bool weir_fail(weir_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/// Whether the current call has failed (by weir_fail or a failed SDK call).
bool weir_failed(const weir_ctx *ctx);
/// The current call's failure message (empty when it has not failed).
weir_bytes weir_failure(const weir_ctx *ctx);
/// Forgets the current call's failure, for an operator that handles it itself (say, a config
/// member of the wrong type that it replaces with a default).
void weir_recover(weir_ctx *ctx);

// ---- Emitting -----------------------------------------------------------------------------

/// Emits a record to the main output.
void weir_emit(weir_ctx *ctx, weir_bytes key, weir_bytes value);
/// Emits a record with a timestamp (milliseconds) to the main output.
void weir_emit_at(weir_ctx *ctx, weir_bytes key, weir_bytes value, int64_t timestamp);
/// Emits a record to `output`: NULL for the main output, or a side output's name (wired in the
/// manifest as `operator.name -> ...`); with `timestamp` when not NULL.
void weir_emit_to(weir_ctx *ctx, const char *output, weir_bytes key, weir_bytes value,
                  const int64_t *timestamp);
/// Emits a record unchanged (key, value and timestamp) to the main output.
void weir_emit_record(weir_ctx *ctx, const weir_record *record);

/// Builds a record's value in place, without a copy: returns the buffer to append the value to;
/// weir_emit_end completes the record. Nothing else may be emitted in between.
///
///     weir_buf *v = weir_emit_begin(ctx, NULL, key, NULL);
///     weir_buf_push(v, key); weir_buf_push_byte(v, ' '); weir_buf_push_u64(v, count);
///     weir_emit_end(ctx);
weir_buf *weir_emit_begin(weir_ctx *ctx, const char *output, weir_bytes key,
                          const int64_t *timestamp);
void weir_emit_end(weir_ctx *ctx);

// ---- Distinct keys -----------------------------------------------------------------------

/// A batch's distinct keys, in order of first appearance, and each record's index among them:
/// what a keyed operator reads and writes state for once per batch (weir_value_get_many_u64 and
/// weir_value_set_many_u64) instead of once per record. Start it zeroed and reuse it across
/// batches; free it with weir_distinct_free.
typedef struct {
    /// The distinct keys (borrowed from the records).
    weir_bytes *keys;
    size_t len;
    /// `positions[i]` is the index in `keys` of `records[i].key`.
    uint32_t *positions;
    // Internal: an open-addressing table and capacities.
    uint32_t *slots;
    size_t slots_cap, keys_cap, positions_cap;
} weir_distinct;

/// Fills `d` with the distinct keys of `records`; false (and the call fails) when memory runs
/// out.
bool weir_distinct_of(weir_ctx *ctx, weir_distinct *d, const weir_record *records, size_t n);
void weir_distinct_free(weir_distinct *d);

// ---- Keyed state --------------------------------------------------------------------------
// State is per key (and per state name), kept by the host in the key's key group; the
// operator's input must be partitioned by `hash` for it to read a key's state. A refused call
// fails the current call (weir_failed) and returns false (or -1).

/// The value of value-state `state` for `key`, into `value` (replacing its contents): 1 when
/// set, 0 when not, -1 on error.
int weir_value_get(weir_ctx *ctx, const char *state, weir_bytes key, weir_buf *value);
bool weir_value_set(weir_ctx *ctx, const char *state, weir_bytes key, weir_bytes value);
bool weir_value_clear(weir_ctx *ctx, const char *state, weir_bytes key);

/// Many keys in one call (one crossing of the sandbox boundary, not one per key). `values[i]`
/// points into `storage` (replaced; keep it until done with the values), or has a NULL `ptr`
/// when the key has no value.
bool weir_value_get_many(weir_ctx *ctx, const char *state, const weir_bytes *keys, size_t n,
                         weir_bytes *values, weir_buf *storage);
/// Sets `keys[i]` to `values[i]`, or clears it when `values[i].ptr` is NULL.
bool weir_value_set_many(weir_ctx *ctx, const char *state, const weir_bytes *keys,
                         const weir_bytes *values, size_t n);

/// Unsigned integers, stored as the Rust SDK's `ValueState<u64>` stores them (a LEB128 varint),
/// so that C, Rust, Python and JavaScript operators read each other's state. 1 when set (into
/// `*n`), 0 when not (`*n` = 0), -1 on error or when the stored value is not a u64.
int weir_value_get_u64(weir_ctx *ctx, const char *state, weir_bytes key, uint64_t *n);
bool weir_value_set_u64(weir_ctx *ctx, const char *state, weir_bytes key, uint64_t n);
/// `values[i]` = the u64 of `keys[i]`, 0 when not set; `found[i]` (if `found` is not NULL)
/// whether it was set.
bool weir_value_get_many_u64(weir_ctx *ctx, const char *state, const weir_bytes *keys, size_t n,
                             uint64_t *values, bool *found);
bool weir_value_set_many_u64(weir_ctx *ctx, const char *state, const weir_bytes *keys,
                             const uint64_t *values, size_t n);

/// The LEB128 varint of `n` into `out` (at most 10 bytes); returns its length.
size_t weir_varint_put(uint8_t out[10], uint64_t n);
/// Reads `bytes` as exactly one varint; false when it is not one.
bool weir_varint_get(weir_bytes bytes, uint64_t *n);

/// The entry `map_key` of map-state `state` for `key`: 1 when present (into `value`), 0 when
/// not, -1 on error.
int weir_map_get(weir_ctx *ctx, const char *state, weir_bytes key, weir_bytes map_key,
                 weir_buf *value);
bool weir_map_put(weir_ctx *ctx, const char *state, weir_bytes key, weir_bytes map_key,
                  weir_bytes value);
bool weir_map_remove(weir_ctx *ctx, const char *state, weir_bytes key, weir_bytes map_key);
bool weir_map_clear(weir_ctx *ctx, const char *state, weir_bytes key);

typedef struct {
    weir_bytes key;
    weir_bytes value;
} weir_entry;

/// A map state's entries, ordered by map key bytes; freed with weir_entries_free.
typedef struct {
    weir_entry *ptr;
    size_t len;
} weir_entries;

/// All entries of map-state `state` for `key`, into `entries` (replacing, and freeing, what it
/// held; start it zeroed).
bool weir_map_entries(weir_ctx *ctx, const char *state, weir_bytes key, weir_entries *entries);
void weir_entries_free(weir_entries *entries);

// ---- Config (JSON) ------------------------------------------------------------------------

/// The top-level string member `name` of the JSON object `config`, unescaped into `out`
/// (replacing its contents): 1 when present, 0 when absent, -1 (and the call fails) when it is
/// not a string or `config` is not a JSON object.
int weir_config_str(weir_ctx *ctx, weir_bytes config, const char *name, weir_buf *out);
/// The top-level member `name` as an unsigned integer: 1, 0 or -1 as weir_config_str.
int weir_config_u64(weir_ctx *ctx, weir_bytes config, const char *name, uint64_t *out);
/// The top-level member `name` as a boolean: 1, 0 or -1 as weir_config_str.
int weir_config_bool(weir_ctx *ctx, weir_bytes config, const char *name, bool *out);

// ---- Logging ------------------------------------------------------------------------------

typedef enum { WEIR_TRACE, WEIR_DEBUG, WEIR_INFO, WEIR_WARN, WEIR_ERROR } weir_level;

/// Writes a printf-style message into the host's log, tagged with the operator and subtask.
void weir_log(weir_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---- Text (Unicode, as Rust's std has it) -------------------------------------------------

// Word-at-a-time helpers (ports of the Rust SDK's `text`): in WASM, a loop iteration costs an
// interruption check and a branch per byte, so these read eight bytes at a time, and short
// inputs take no loop at all.

/// `x` in every byte of a word.
#define WEIR_SPLAT(x) (0x0101010101010101u * (uint8_t)(x))

/// The first min(8, n) bytes at `p` as a little-endian word; the bytes past `n` are `fill`.
WEIR_INLINE uint64_t weir_load(const uint8_t *p, size_t n, uint8_t fill) {
    uint64_t w;
    if (n >= 8) {
        __builtin_memcpy(&w, p, 8);
        return w;
    }
    if (n >= 4) {
        uint32_t lo, hi;
        __builtin_memcpy(&lo, p, 4);
        __builtin_memcpy(&hi, p + n - 4, 4);
        // The loads overlap when n < 8; overlapping bytes are equal, so OR keeps them.
        w = (uint64_t)lo | (uint64_t)hi << (8 * (n - 4));
    } else if (n > 0) {
        w = (uint64_t)p[0] | (uint64_t)p[n / 2] << (8 * (n / 2)) | (uint64_t)p[n - 1] << (8 * (n - 1));
    } else {
        w = 0;
    }
    return w | WEIR_SPLAT(fill) << (8 * n);
}

/// Whether `a` and `b` hold the same bytes.
WEIR_INLINE bool weir_bytes_eq(weir_bytes a, weir_bytes b) {
    if (a.len != b.len) return false;
    size_t at = 0;
    for (; a.len - at > 8; at += 8)
        if (weir_load(a.ptr + at, 8, 0) != weir_load(b.ptr + at, 8, 0)) return false;
    return weir_load(a.ptr + at, a.len - at, 0) == weir_load(b.ptr + at, a.len - at, 0);
}

/// The index of the first `byte` in `bytes`, or -1.
WEIR_INLINE ptrdiff_t weir_find_byte(weir_bytes bytes, uint8_t byte) {
    for (size_t at = 0;;) {
        // Past the end, the word is filled with another byte, which never matches.
        uint64_t x = weir_load(bytes.ptr + at, bytes.len - at, (uint8_t)~byte) ^ WEIR_SPLAT(byte);
        // The classic zero-byte test: exact for the lowest zero byte, the only one read.
        uint64_t zero = (x - WEIR_SPLAT(1)) & ~x & WEIR_SPLAT(0x80);
        if (zero) return (ptrdiff_t)(at + (size_t)__builtin_ctzll(zero) / 8);
        at += 8;
        if (at >= bytes.len) return -1;
    }
}

/// Whether every byte of `bytes` is ASCII.
WEIR_INLINE bool weir_is_ascii(weir_bytes bytes) {
    uint64_t any = 0;
    size_t at = 0;
    for (; bytes.len - at > 8; at += 8) any |= weir_load(bytes.ptr + at, 8, 0);
    any |= weir_load(bytes.ptr + at, bytes.len - at, 0);
    return !(any & WEIR_SPLAT(0x80));
}

/// The leading ASCII digits of a word (up to 8; past them anything): their value and count.
WEIR_INLINE uint64_t weir__digits(uint64_t word, size_t *k) {
    uint64_t t = word ^ WEIR_SPLAT('0');
    // The high bit of each byte that is not a digit 0-9, with no carry between bytes.
    uint64_t non = (((t & WEIR_SPLAT(0x7F)) + WEIR_SPLAT(0x76)) | t) & WEIR_SPLAT(0x80);
    *k = non ? (size_t)__builtin_ctzll(non) / 8 : 8;
    if (*k == 0) return 0;
    // The k digits moved to the top bytes: the zero bytes below them are leading zeros. Each
    // step merges neighbouring lanes (a * 10^j + b).
    t <<= 8 * (8 - *k);
    t = (t * (10 << 8 | 1)) >> 8;
    t = ((t & 0x00FF00FF00FF00FFu) * (100 << 16 | 1)) >> 16;
    return ((t & 0x0000FFFF0000FFFFu) * (10000ull << 32 | 1)) >> 32;
}

/// A decimal u64 at the start of `*text` (advancing it past the digits), as Rust's
/// `u64::from_str` reads digits: false when there is no digit or the number overflows.
WEIR_INLINE bool weir_parse_u64(weir_bytes *text, uint64_t *out) {
    static const uint64_t pow10[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
    uint64_t value = 0;
    size_t digits = 0, k;
    do {
        uint64_t chunk = weir__digits(weir_load(text->ptr + digits, text->len - digits, 0xFF), &k);
        // At most 19 digits always fit; the 20th may not.
        if (digits + k > 19 && value > (UINT64_MAX - chunk) / pow10[k]) return false;
        value = value * pow10[k] + chunk;
        digits += k;
    } while (k == 8);
    if (!digits) return false;
    *out = value;
    text->ptr += digits;
    text->len -= digits;
    return true;
}

/// Whether `bytes` is valid UTF-8.
bool weir_utf8_valid(weir_bytes bytes);
/// The code point at `s[*i]` of valid UTF-8, advancing `*i` past it.
uint32_t weir_utf8_next(const uint8_t *s, size_t *i);
/// Appends code point `c` as UTF-8.
void weir_buf_push_char(weir_buf *b, uint32_t c);
/// Rust's `char::is_alphanumeric`: Unicode Alphabetic or Numeric.
bool weir_is_alphanumeric(uint32_t c);
/// Appends Rust's `str::to_lowercase` of the valid UTF-8 `text`: full Unicode lower-casing,
/// with İ -> i̇ and a final capital sigma -> ς.
void weir_buf_push_lowercase(weir_buf *b, weir_bytes text);

#ifdef __cplusplus
}
#endif

#endif
