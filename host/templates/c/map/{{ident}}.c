// `{{ident}}`: a map operator. Every input line, in upper case (ASCII letters), followed by the
// configured `suffix` (the manifest's `config` table).
#include "weir.h"

/// The suffix, kept from `open`; a line, built for each record.
static weir_buf suffix, line;

static bool {{ident}}_open(weir_ctx *ctx, weir_bytes config) {
    // 1: found, 0: absent (no suffix), -1: not a string (the call has failed).
    return weir_config_str(ctx, config, "suffix", &suffix) >= 0;
}

static bool {{ident}}_process_record(weir_ctx *ctx, const weir_record *record) {
    weir_buf_clear(&line);
    weir_buf_push(&line, record->value);
    for (size_t i = 0; i < line.len; i++)
        if (line.ptr[i] >= 'a' && line.ptr[i] <= 'z') line.ptr[i] -= 'a' - 'A';
    weir_buf_push(&line, weir_buf_bytes(&suffix));
    weir_emit(ctx, record->key, weir_buf_bytes(&line));
    return true;
}

WEIR_OPERATOR(.open = {{ident}}_open, .process_record = {{ident}}_process_record);
