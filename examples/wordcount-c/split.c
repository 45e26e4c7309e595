// `split` in C: a line of text -> one record per word, keyed by the word.
//
// Words are the runs of alphanumeric characters (in the Unicode sense), lower-cased; every other
// character separates words. The same rules as the Rust examples/wordcount/split: the SDK's
// Unicode tables are Rust's own.
#include "weir.h"

/// A word lower-cased, kept between records.
static weir_buf lower;

static inline bool ascii_alphanumeric(uint8_t c) {
    return (uint8_t)((c | 0x20) - 'a') < 26 || (uint8_t)(c - '0') < 10;
}

/// The common case: on ASCII text, Unicode's alphanumerics are exactly the ASCII ones, and
/// words without capitals are emitted straight from the input.
static void split_ascii(weir_ctx *ctx, weir_bytes text) {
    size_t i = 0;
    while (i < text.len) {
        if (!ascii_alphanumeric(text.ptr[i])) {
            i++;
            continue;
        }
        size_t start = i;
        bool capitals = false;
        for (; i < text.len && ascii_alphanumeric(text.ptr[i]); i++)
            capitals |= (uint8_t)(text.ptr[i] - 'A') < 26;
        weir_bytes word = weir_bytes_of(text.ptr + start, i - start);
        if (capitals) {
            weir_buf_clear(&lower);
            weir_buf_push_lowercase(&lower, word);
            word = weir_buf_bytes(&lower);
        }
        weir_emit(ctx, word, word);
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
