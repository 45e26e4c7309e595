// Every SDK capability in one operator, for tests/polyglot.rs: config in `open`, one-key value
// state, map state, the main output, a side output and timestamps. The Python and JavaScript
// twins are examples/sdk-python/probe.py and examples/sdk-js/probe.js; all must give the same
// records.
//
// Per record (key k): n = how many times k was seen (value state "seen"); the map state "last"
// maps n % 3 to n; the main output gets `<prefix><k> <n> <entries> @<timestamp>`, emitted with
// the record's timestamp; odd n also go to the side output "odd" as `<k> <n>`; at n = 3 the key's
// state is cleared (so it counts 1, 2, 3, 1, 2, 3, ...).
//
// Two config members only C reads, to test the SDK's other config readers: `clear_at` (the 3
// above, by default) and `odd` (whether odd n go to the side output; true by default).
#include "weir.h"

static weir_buf prefix, line, number, stored;
static weir_entries entries;
static uint64_t clear_at = 3;
static bool odd = true;

static bool probe_open(weir_ctx *ctx, weir_bytes config) {
    if (weir_config_str(ctx, config, "prefix", &prefix) != 1)
        return weir_fail(ctx, "config `prefix` is missing or not a string");
    return weir_config_u64(ctx, config, "clear_at", &clear_at) >= 0 &&
           weir_config_bool(ctx, config, "odd", &odd) >= 0;
}

static bool probe_record(weir_ctx *ctx, const weir_record *r) {
    weir_bytes k = r->key;
    uint64_t n;
    if (weir_value_get_u64(ctx, "seen", k, &n) < 0) return false;
    n++;
    if (!weir_value_set_u64(ctx, "seen", k, n)) return false;
    // Map keys are the text of n % 3, values u64 varints (as Python's STR and U64 codecs).
    weir_buf_clear(&number);
    weir_buf_push_u64(&number, n % 3);
    uint8_t v[10];
    if (!weir_map_put(ctx, "last", k, weir_buf_bytes(&number), weir_bytes_of(v, weir_varint_put(v, n))))
        return false;
    if (!weir_map_entries(ctx, "last", k, &entries)) return false;

    weir_buf_clear(&line);
    weir_buf_push(&line, weir_buf_bytes(&prefix));
    weir_buf_push(&line, k);
    weir_buf_printf(&line, " %llu ", (unsigned long long)n);
    for (size_t i = 0; i < entries.len; i++) {
        uint64_t e;
        if (!weir_varint_get(entries.ptr[i].value, &e))
            return weir_fail(ctx, "map state `last` holds a value that is not a u64");
        if (i) weir_buf_push_byte(&line, ',');
        weir_buf_push(&line, entries.ptr[i].key);
        weir_buf_printf(&line, "=%llu", (unsigned long long)e);
    }
    weir_buf_push_str(&line, " @");
    if (r->has_timestamp)
        weir_buf_push_i64(&line, r->timestamp);
    else
        weir_buf_push_byte(&line, '-');
    weir_emit_to(ctx, NULL, k, weir_buf_bytes(&line), r->has_timestamp ? &r->timestamp : NULL);

    if (odd && n % 2 == 1) {
        weir_buf_clear(&line);
        weir_buf_push(&line, k);
        weir_buf_printf(&line, " %llu", (unsigned long long)n);
        weir_emit_to(ctx, "odd", k, weir_buf_bytes(&line), NULL);
    }
    if (n == clear_at) {
        if (!weir_value_clear(ctx, "seen", k) || !weir_map_clear(ctx, "last", k)) return false;
        // Cleared: a get finds nothing.
        if (weir_value_get(ctx, "seen", k, &stored) != 0)
            return weir_fail(ctx, "value state `seen` survived its clear");
    }
    return true;
}

WEIR_OPERATOR(.open = probe_open, .process_record = probe_record);
