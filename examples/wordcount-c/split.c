// `split` in C: a line of text -> one record per word, keyed by the word.
//
// Words are the runs of alphanumeric characters (in the Unicode sense), lower-cased; every other
// character separates words. The same rules as the Rust examples/wordcount/split: the SDK's
// Unicode tables are Rust's own.
#include "weir.h"

/// A word lower-cased, kept between records.
static weir_buf lower;

#define HIGH WEIR_SPLAT(0x80)

/// The high bit of each byte of `x` (all below 0x80) that lies in `lo..=hi`; no carry crosses
/// bytes.
static inline uint64_t in_range(uint64_t x, uint8_t lo, uint8_t hi) {
    return (x + WEIR_SPLAT(0x80 - lo)) & ~(x + WEIR_SPLAT(0x7F - hi)) & HIGH;
}

/// Bytes of an ASCII word that are letters or digits.
static inline uint64_t alphanumeric(uint64_t x) {
    return in_range(x, '0', '9') | in_range(x | WEIR_SPLAT(0x20), 'a', 'z');
}

/// The first eight bytes from `at` (spaces, which separate words, past the end).
static inline uint64_t load(weir_bytes text, size_t at) {
    return weir_load(text.ptr + at, text.len - at, ' ');
}

/// The common case: on ASCII text, Unicode's alphanumerics are exactly the ASCII ones. Eight
/// bytes are classified at a time (as the Rust split does), and words without capitals are
/// emitted straight from the input.
static void split_ascii(weir_ctx *ctx, weir_bytes text) {
    size_t i = 0;
    while (i < text.len) {
        uint64_t starts = alphanumeric(load(text, i));
        if (!starts) {
            i += 8;
            continue;
        }
        size_t start = i + (size_t)__builtin_ctzll(starts) / 8, end = start, k;
        uint64_t capitals = 0;
        do {
            uint64_t x = load(text, end);
            uint64_t stop = ~alphanumeric(x) & HIGH;
            k = stop ? (size_t)__builtin_ctzll(stop) / 8 : 8;
            // Capitals before the stop (all of them when there is none).
            capitals |= in_range(x, 'A', 'Z') & ((stop - 1) | stop);
            end += k;
        } while (k == 8);
        weir_bytes word = weir_bytes_of(text.ptr + start, end - start);
        if (capitals) {
            weir_buf_clear(&lower);
            weir_buf_push_lowercase(&lower, word);
            word = weir_buf_bytes(&lower);
        }
        weir_emit(ctx, word, word);
        i = end;
    }
}

static bool split_record(weir_ctx *ctx, const weir_record *record) {
    weir_bytes text = record->value;
    if (weir_is_ascii(text)) {
        split_ascii(ctx, text);
        return true;
    }
    if (!weir_utf8_valid(text)) return weir_fail(ctx, "a line that is not UTF-8");
    size_t i = 0;
    while (i < text.len) {
        size_t start = i, end = i;
        while (i < text.len && weir_is_alphanumeric(weir_utf8_next(text.ptr, &i))) end = i;
        if (end == start) continue; // a separator
        weir_buf_clear(&lower);
        weir_buf_push_lowercase(&lower, weir_bytes_of(text.ptr + start, end - start));
        weir_emit(ctx, weir_buf_bytes(&lower), weir_buf_bytes(&lower));
    }
    return true;
}

WEIR_OPERATOR(.process_record = split_record);
