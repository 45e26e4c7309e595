// The C SDK's helpers checked inside a real component, for tests/polyglot.rs: `open` runs every
// check and fails the job naming the first one that does not hold; records pass through.
// (What the SDK does with the host — batches, emitting, state, config — probe.c checks.)
#include <stdio.h>

#include "weir.h"

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) return weir_fail(ctx, "selftest: %s (line %d)", #cond, __LINE__);         \
    } while (0)

/// weir_parse_u64 on `text`: the value, or -1 when it refuses, and how many bytes it read.
static bool parses(const char *text, uint64_t want, size_t read) {
    weir_bytes t = weir_str(text);
    uint64_t v = 0;
    if (!weir_parse_u64(&t, &v)) return false;
    return v == want && t.ptr == (const uint8_t *)text + read && t.len == strlen(text) - read;
}

static bool refuses(const char *text) {
    weir_bytes t = weir_str(text);
    uint64_t v;
    return !weir_parse_u64(&t, &v) && t.ptr == (const uint8_t *)text;
}

static bool lowercases(const char *text, const char *want) {
    weir_buf b = {0};
    weir_buf_push_lowercase(&b, weir_str(text));
    bool ok = weir_bytes_eq(weir_buf_bytes(&b), weir_str(want));
    weir_buf_free(&b);
    return ok;
}

static bool selftest_open(weir_ctx *ctx, weir_bytes config) {
    // Numbers: every length, the u64 edges, what follows them.
    uint64_t n = 0;
    char text[32];
    for (int digits = 1; digits <= 20; digits++) {
        n = n * 10 + (uint64_t)(digits % 10);
        snprintf(text, sizeof text, "%llu,x", (unsigned long long)n);
        CHECK(parses(text, n, (size_t)digits));
    }
    CHECK(parses("0", 0, 1));
    CHECK(parses("007x", 7, 3));
    CHECK(parses("18446744073709551615", UINT64_MAX, 20));
    CHECK(parses("00000000000000000000018446744073709551615", UINT64_MAX, 41));
    CHECK(refuses("18446744073709551616"));
    CHECK(refuses("99999999999999999999"));
    CHECK(refuses("184467440737095516150"));
    CHECK(refuses(""));
    CHECK(refuses("x1"));
    CHECK(refuses("-1"));
    CHECK(refuses("+1"));

    // Bytes: every position and length around the 8-byte words.
    char buf[40];
    for (size_t len = 0; len <= sizeof buf; len++) {
        memset(buf, 'a', sizeof buf);
        CHECK(weir_find_byte(weir_bytes_of(buf, len), ',') == -1);
        CHECK(weir_is_ascii(weir_bytes_of(buf, len)));
        for (size_t at = 0; at < len; at++) {
            buf[at] = ',';
            if (at + 1 < len) buf[at + 1] = ',';
            CHECK(weir_find_byte(weir_bytes_of(buf, len), ',') == (ptrdiff_t)at);
            memset(buf, 'a', sizeof buf);
            buf[at] = (char)0xC3;
            CHECK(!weir_is_ascii(weir_bytes_of(buf, len)));
            CHECK(weir_is_ascii(weir_bytes_of(buf, at)));
            memset(buf, 'a', sizeof buf);
        }
    }

    // UTF-8: valid and invalid sequences.
    CHECK(weir_utf8_valid(weir_str("plain ascii, long enough for words")));
    CHECK(weir_utf8_valid(weir_str("été 数える 🙂 \xF4\x8F\xBF\xBF")));
    CHECK(!weir_utf8_valid(weir_str("\xC3")));              // truncated
    CHECK(!weir_utf8_valid(weir_str("ab\xC3(")));           // bad continuation
    CHECK(!weir_utf8_valid(weir_str("\xC0\xAF")));          // overlong
    CHECK(!weir_utf8_valid(weir_str("\xE0\x80\xAF")));      // overlong
    CHECK(!weir_utf8_valid(weir_str("\xED\xA0\x80")));      // a surrogate
    CHECK(!weir_utf8_valid(weir_str("\xF4\x90\x80\x80")));  // past U+10FFFF
    CHECK(!weir_utf8_valid(weir_str("\xFF")));
    CHECK(!weir_utf8_valid(weir_str("12345678\x80")));
    size_t i = 0;
    CHECK(weir_utf8_next((const uint8_t *)"\xF0\x9F\x99\x82", &i) == 0x1F642 && i == 4);

    // Unicode, as Rust's str::to_lowercase has it.
    CHECK(lowercases("HeLLo 123", "hello 123"));
    CHECK(lowercases("ÉTÉ", "été"));
    CHECK(lowercases("İstanbul", "i\xCC\x87stanbul"));
    CHECK(lowercases("ΟΔΟΣ", "οδος"));
    CHECK(lowercases("ΣΑ", "σα"));
    CHECK(lowercases("Σ", "σ"));
    CHECK(lowercases("AΣ'", "aς'"));
    CHECK(weir_is_alphanumeric('z') && weir_is_alphanumeric(0x6570) && weir_is_alphanumeric(0x663));
    CHECK(!weir_is_alphanumeric('_') && !weir_is_alphanumeric(0x2014) && !weir_is_alphanumeric(' '));

    // Varints, as Rust's postcard writes a u64.
    uint8_t v[10];
    uint64_t back;
    CHECK(weir_varint_put(v, 0) == 1 && v[0] == 0);
    CHECK(weir_varint_put(v, 300) == 2 && v[0] == 0xAC && v[1] == 0x02);
    CHECK(weir_varint_put(v, UINT64_MAX) == 10 && v[9] == 1);
    CHECK(weir_varint_get(weir_bytes_of(v, 10), &back) && back == UINT64_MAX);
    CHECK(!weir_varint_get(weir_bytes_of(v, 9), &back));  // truncated
    CHECK(!weir_varint_get(weir_bytes_of("\x01\x02", 2), &back)); // trailing bytes
    v[9] = 2;
    CHECK(!weir_varint_get(weir_bytes_of(v, 10), &back));  // past 64 bits

    // State round trips (at parallelism 1 this subtask owns every key group).
    weir_buf got = {0}, storage = {0};
    weir_bytes keys[4] = {weir_str("a"), weir_str("b"), weir_str("c"), weir_str("d")};
    weir_bytes values[3] = {{NULL, 0}, weir_str("xx"), weir_str("")}; // clear a; b = xx; c = ""
    weir_bytes read[4];
    CHECK(weir_value_set(ctx, "s", keys[0], weir_str("1")));
    CHECK(weir_value_get(ctx, "s", keys[0], &got) == 1 && weir_bytes_eq(weir_buf_bytes(&got), weir_str("1")));
    CHECK(weir_value_set_many(ctx, "s", keys, values, 3));
    CHECK(weir_value_get_many(ctx, "s", keys, 4, read, &storage));
    CHECK(!read[0].ptr && weir_bytes_eq(read[1], weir_str("xx")) && read[2].ptr && !read[2].len && !read[3].ptr);
    CHECK(weir_value_get(ctx, "s", keys[2], &got) == 1 && got.len == 0);
    CHECK(weir_value_get(ctx, "s", keys[0], &got) == 0);
    uint64_t counts[2];
    bool found[2];
    CHECK(weir_value_set_many_u64(ctx, "u", keys, (uint64_t[]){0, UINT64_MAX}, 2));
    CHECK(weir_value_get_many_u64(ctx, "u", keys + 1, 2, counts, found) && found[0] && !found[1] && counts[0] == UINT64_MAX && counts[1] == 0);
    CHECK(weir_value_get_u64(ctx, "u", keys[0], &n) == 1 && n == 0);
    CHECK(weir_value_get_u64(ctx, "s", keys[1], &n) == -1); // "xx" is no varint
    CHECK(weir_bytes_eq(weir_failure(ctx), weir_str("state `s`: a stored value of 2 bytes is not a u64")));
    weir_recover(ctx);
    weir_entries entries = {0};
    CHECK(weir_map_put(ctx, "m", keys[0], weir_str("k2"), weir_str("v2")));
    CHECK(weir_map_put(ctx, "m", keys[0], weir_str("k1"), weir_str("")));
    CHECK(weir_map_entries(ctx, "m", keys[0], &entries) && entries.len == 2);
    CHECK(weir_bytes_eq(entries.ptr[0].key, weir_str("k1")) && entries.ptr[0].value.len == 0);
    CHECK(weir_bytes_eq(entries.ptr[1].value, weir_str("v2")));
    CHECK(weir_map_remove(ctx, "m", keys[0], weir_str("k2")));
    CHECK(weir_map_get(ctx, "m", keys[0], weir_str("k2"), &got) == 0);
    CHECK(weir_map_get(ctx, "m", keys[0], weir_str("k1"), &got) == 1 && got.len == 0);
    CHECK(weir_map_clear(ctx, "m", keys[0]));
    CHECK(weir_map_entries(ctx, "m", keys[0], &entries) && entries.len == 0);
    weir_entries_free(&entries);
    CHECK(weir_value_get(ctx, "", keys[0], &got) == -1); // a refused call
    CHECK(weir_failure(ctx).len > 0 && weir_find_byte(weir_failure(ctx), '`') == 6);
    weir_recover(ctx);
    weir_buf_free(&got);
    weir_buf_free(&storage);

    // Config readers on a fixed document, then the test's own config (which has `extra`).
    weir_bytes doc = weir_str("{\"s\": \"a\\\"\\u00e9\\ud83d\\ude42\\n\", \"skip\": [1, {\"x\": [true, null]}, \"}\"],"
                              " \"n\": 18446744073709551615, \"big\": 18446744073709551616, \"b\": false}");
    weir_buf s = {0};
    bool flag = true;
    CHECK(weir_config_str(ctx, doc, "s", &s) == 1 &&
          weir_bytes_eq(weir_buf_bytes(&s), weir_str("a\"é🙂\n")));
    CHECK(weir_config_u64(ctx, doc, "n", &n) == 1 && n == UINT64_MAX);
    CHECK(weir_config_u64(ctx, weir_str("{\"f\": 1.5}"), "f", &n) == -1);
    weir_recover(ctx);
    CHECK(weir_config_u64(ctx, weir_str("{\"f\": 12 }"), "f", &n) == 1 && n == 12);
    CHECK(weir_config_bool(ctx, doc, "b", &flag) == 1 && !flag);
    CHECK(weir_config_str(ctx, doc, "absent", &s) == 0);
    CHECK(weir_config_u64(ctx, doc, "big", &n) == -1 && weir_failed(ctx));
    CHECK(weir_bytes_eq(weir_failure(ctx), weir_str("config `big` is not an unsigned integer")));
    weir_recover(ctx);
    CHECK(weir_config_str(ctx, doc, "n", &s) == -1 && weir_failed(ctx));
    weir_recover(ctx);
    CHECK(weir_config_str(ctx, weir_str("[1]"), "n", &s) == -1);
    weir_recover(ctx);
    CHECK(weir_config_str(ctx, weir_str("{\"n\": 1"), "m", &s) == -1);
    weir_recover(ctx);
    CHECK(!weir_failed(ctx) && weir_failure(ctx).len == 0);
    weir_buf_free(&s);

    // Formatting, short and long (past the SDK's stack buffer), then into the host's log.
    weir_buf text_out = {0};
    weir_buf_printf(&text_out, "%s-%d", "short", 7);
    CHECK(weir_bytes_eq(weir_buf_bytes(&text_out), weir_str("short-7")));
    weir_buf_printf(&text_out, "%0600d|", 5);
    CHECK(text_out.len == 7 + 601 && text_out.ptr[7 + 599] == '5' && text_out.ptr[7 + 600] == '|');
    weir_log(WEIR_WARN, "selftest passed; long: %.*s", (int)text_out.len, (const char *)text_out.ptr);
    weir_buf_free(&text_out);
    return weir_config_str(ctx, config, "extra", &s) == 1 ||
           weir_fail(ctx, "selftest: no `extra` in the config %.*s", (int)config.len, config.ptr);
}

static bool selftest_record(weir_ctx *ctx, const weir_record *record) {
    weir_emit_record(ctx, record);
    return true;
}

WEIR_OPERATOR(.open = selftest_open, .process_record = selftest_record);
