/*
 * jscan: the pieces of the fast JSON readers (the server's PutRecords body, the producer's PutRecords
 * reply). A fast reader accepts only the simple shape it expects, strings without escapes, and returns
 * false on anything else so that its caller falls back to a full parser (cJSON); these helpers never read
 * past end and never allocate.
 */
#ifndef EDDY_COMMON_JSCAN_H
#define EDDY_COMMON_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct jscan {
    const char *p, *end;
} jscan_t;

static inline void jscan_ws(jscan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) {
        s->p++;
    }
}

/* Skips white space, then c if it comes next. */
static inline bool jscan_expect(jscan_t *s, char c)
{
    jscan_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

/* A string without escapes; returns its bytes. Control characters (invalid in JSON strings) are checked
 * only when check_controls is set (a caller whose decoder rejects them anyway may skip the check). */
static inline bool jscan_plain_string(jscan_t *s, const char **str, size_t *len, bool check_controls)
{
    jscan_ws(s);
    if (s->p >= s->end || *s->p != '"') {
        return false;
    }
    const char *start = ++s->p;
    const char *q = memchr(start, '"', (size_t)(s->end - start));
    if (q == NULL || memchr(start, '\\', (size_t)(q - start)) != NULL) {
        return false;
    }
    if (check_controls) {
        for (const char *c = start; c < q; c++) {
            if ((unsigned char)*c < 0x20) {
                return false;
            }
        }
    }
    *str = start;
    *len = (size_t)(q - start);
    s->p = q + 1;
    return true;
}

/* A non-negative integer without sign, fraction or exponent, below 2^53. */
static inline bool jscan_uint(jscan_t *s, uint64_t *v)
{
    jscan_ws(s);
    const char *start = s->p;
    uint64_t n = 0;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9' && s->p - start < 16) {
        n = n * 10 + (uint64_t)(*s->p++ - '0');
    }
    size_t digits = (size_t)(s->p - start);
    if (digits == 0 || (digits > 1 && *start == '0') ||
        (s->p < s->end && ((*s->p >= '0' && *s->p <= '9') || *s->p == '.' || *s->p == 'e' || *s->p == 'E'))) {
        return false;
    }
    *v = n;
    return true;
}

static inline bool jscan_key_is(const char *k, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(k, lit, n) == 0;
}

/* After the value: the end of the whole text (white space only). */
static inline bool jscan_done(jscan_t *s)
{
    jscan_ws(s);
    return s->p == s->end;
}

#endif
