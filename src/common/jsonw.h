/*
 * jsonw: a small, fast JSON writer into a buf_t.
 *
 * The writer tracks nesting so that commas are placed automatically: call jsonw_key() before each member
 * of an object and write values directly inside arrays. Nesting deeper than JSONW_MAX_DEPTH is a
 * programming error (asserted). Strings are escaped per RFC 8259; bytes >= 0x80 pass through unchanged
 * (callers hand in UTF-8).
 */
#ifndef EDDY_COMMON_JSONW_H
#define EDDY_COMMON_JSONW_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"

#define JSONW_MAX_DEPTH 32

typedef struct jsonw {
    buf_t *out;              /* borrowed */
    int depth;
    bool first[JSONW_MAX_DEPTH]; /* no member/element written yet at this depth */
    bool after_key;
} jsonw_t;

void jsonw_init(jsonw_t *w, buf_t *out);
void jsonw_obj_begin(jsonw_t *w);
void jsonw_obj_end(jsonw_t *w);
void jsonw_arr_begin(jsonw_t *w);
void jsonw_arr_end(jsonw_t *w);
void jsonw_key(jsonw_t *w, const char *key);
void jsonw_str(jsonw_t *w, const char *s);
void jsonw_strn(jsonw_t *w, const char *s, size_t n);
void jsonw_int(jsonw_t *w, int64_t v);
void jsonw_bool(jsonw_t *w, bool v);
void jsonw_null(jsonw_t *w);
/* Writes epoch milliseconds as JSON 1.1 timestamp: epoch seconds with a fractional part (1700000000.123). */
void jsonw_timestamp_ms(jsonw_t *w, int64_t epoch_ms);
/* Writes a string known to need no escaping (ASCII letters, digits, '-', '.', ...). */
void jsonw_str_plain(jsonw_t *w, const char *s, size_t n);
/* Writes a pre-encoded JSON fragment as a value. */
void jsonw_raw(jsonw_t *w, const char *json, size_t n);

/* Appends s escaped as a JSON string (with quotes) to out. */
void json_escape_into(buf_t *out, const char *s, size_t n);

#endif
