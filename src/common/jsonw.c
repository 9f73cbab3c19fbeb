/* jsonw: JSON writer (see jsonw.h). */
#include "common/jsonw.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void jsonw_init(jsonw_t *w, buf_t *out)
{
    w->out = out;
    w->depth = 0;
    w->first[0] = true;
    w->after_key = false;
}

/* Called before any value: writes the separating comma unless a key was just written. */
static void before_value(jsonw_t *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (!w->first[w->depth]) {
        buf_putc(w->out, ',');
    }
    w->first[w->depth] = false;
}

static void open(jsonw_t *w, char c)
{
    before_value(w);
    buf_putc(w->out, c);
    assert(w->depth + 1 < JSONW_MAX_DEPTH);
    w->depth++;
    w->first[w->depth] = true;
}

static void close(jsonw_t *w, char c)
{
    assert(w->depth > 0);
    w->depth--;
    buf_putc(w->out, c);
}

void jsonw_obj_begin(jsonw_t *w)
{
    open(w, '{');
}

void jsonw_obj_end(jsonw_t *w)
{
    close(w, '}');
}

void jsonw_arr_begin(jsonw_t *w)
{
    open(w, '[');
}

void jsonw_arr_end(jsonw_t *w)
{
    close(w, ']');
}

void jsonw_key(jsonw_t *w, const char *key)
{
    /* keys are the API's member names: plain ASCII, never escaped */
    size_t n = strlen(key);
    before_value(w);
    buf_reserve(w->out, n + 3);
    char *p = w->out->data + w->out->len;
    p[0] = '"';
    memcpy(p + 1, key, n);
    p[n + 1] = '"';
    p[n + 2] = ':';
    w->out->len += n + 3;
    w->after_key = true;
}

void jsonw_str(jsonw_t *w, const char *s)
{
    jsonw_strn(w, s, strlen(s));
}

void jsonw_strn(jsonw_t *w, const char *s, size_t n)
{
    before_value(w);
    json_escape_into(w->out, s, n);
}

void jsonw_str_plain(jsonw_t *w, const char *s, size_t n)
{
    before_value(w);
    buf_reserve(w->out, n + 2);
    w->out->data[w->out->len++] = '"';
    memcpy(w->out->data + w->out->len, s, n);
    w->out->len += n;
    w->out->data[w->out->len++] = '"';
}

/* Writes the decimal digits of v (no sign) ending at end; returns the start. */
static char *digits_backwards(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return end;
}

void jsonw_int(jsonw_t *w, int64_t v)
{
    char tmp[24];
    char *end = tmp + sizeof tmp;
    char *p = digits_backwards(end, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    if (v < 0) {
        *--p = '-';
    }
    before_value(w);
    buf_append(w->out, p, (size_t)(end - p));
}

void jsonw_bool(jsonw_t *w, bool v)
{
    before_value(w);
    buf_puts(w->out, v ? "true" : "false");
}

void jsonw_null(jsonw_t *w)
{
    before_value(w);
    buf_puts(w->out, "null");
}

void jsonw_timestamp_ms(jsonw_t *w, int64_t epoch_ms)
{
    int64_t secs = epoch_ms / 1000;
    int64_t ms = epoch_ms % 1000;
    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    char tmp[32];
    char *end = tmp + sizeof tmp;
    char *p = end - 4;
    p[0] = '.';
    p[1] = (char)('0' + ms / 100);
    p[2] = (char)('0' + ms / 10 % 10);
    p[3] = (char)('0' + ms % 10);
    p = digits_backwards(p, secs < 0 ? 0 - (uint64_t)secs : (uint64_t)secs);
    if (secs < 0) {
        *--p = '-';
    }
    before_value(w);
    buf_append(w->out, p, (size_t)(end - p));
}

void jsonw_raw(jsonw_t *w, const char *json, size_t n)
{
    before_value(w);
    buf_append(w->out, json, n);
}

static bool needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

void json_escape_into(buf_t *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* the common case: nothing to escape, one copy */
    size_t clean = 0;
    while (clean < n && !needs_escape((unsigned char)s[clean])) {
        clean++;
    }
    buf_reserve(out, n + 2);
    out->data[out->len++] = '"';
    memcpy(out->data + out->len, s, clean);
    out->len += clean;
    size_t run = clean; /* start of the pending run of bytes that need no escape */
    for (size_t i = clean; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!needs_escape(c)) {
            continue;
        }
        buf_append(out, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"':
            buf_append(out, "\\\"", 2);
            break;
        case '\\':
            buf_append(out, "\\\\", 2);
            break;
        case '\n':
            buf_append(out, "\\n", 2);
            break;
        case '\r':
            buf_append(out, "\\r", 2);
            break;
        case '\t':
            buf_append(out, "\\t", 2);
            break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(out, esc, 6);
        }
        }
    }
    buf_append(out, s + run, n - run);
    buf_putc(out, '"');
}
