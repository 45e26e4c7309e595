// weir_glue.h: what weir.c shares with the window-function glue (weir_window.c); not for
// operators. The bindings header is the world's being built (weir-c-gen names every world's
// `stateful_operator.h`).
#ifndef WEIR_GLUE_H
#define WEIR_GLUE_H

#include "stateful_operator.h"
#include "weir.h"

/// The call in progress.
weir_ctx *weir_glue_ctx(void);
/// Ends a call as weir.c's exports do: reports its failure (if any) in `err`.
bool weir_glue_finish(bool ok, const char *hook, stateful_operator_string_t *err);
/// The records of a batch (kept until the next unpack), or SIZE_MAX when it is malformed (the
/// call then failed).
size_t weir_glue_unpack(const uint8_t *p, size_t len, const weir_record **out);

#endif
