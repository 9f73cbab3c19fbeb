/* buf: growable byte buffer (see buf.h for the invariants). */
#include "common/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

void buf_init(buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_dispose(buf_t *b)
{
    free(b->data);
    buf_init(b);
}

int buf_try_reserve(buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void buf_reserve(buf_t *b, size_t extra)
{
    if (buf_try_reserve(b, extra) == 0) {
        return;
    }
    fprintf(stderr, "eddy: out of memory growing a buffer by %zu bytes\n", extra);
    abort();
}

void buf_append(buf_t *b, const void *p, size_t n)
{
    if (n == 0) {
        return;
    }
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void buf_vprintf(buf_t *b, const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    buf_reserve(b, 64);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    if (n >= 0 && (size_t)n >= b->cap - b->len) {
        buf_reserve(b, (size_t)n);
        n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, copy);
    }
    va_end(copy);
    if (n > 0) {
        b->len += (size_t)n;
    }
}

void buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

const char *buf_cstr(buf_t *b)
{
    if (b->cap == 0) {
        buf_reserve(b, 0);
    }
    b->data[b->len] = '\0';
    return b->data;
}

char *buf_release(buf_t *b, size_t *len)
{
    buf_cstr(b);
    char *p = b->data;
    if (len != NULL) {
        *len = b->len;
    }
    buf_init(b);
    return p;
}
