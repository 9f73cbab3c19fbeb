/*
 * buf: a growable byte buffer used to build replies and to hold decoded data.
 *
 * Invariants: data is NULL or a heap block of cap bytes; len <= cap; when cap > 0 there is always room for
 * a terminating NUL at data[len] (buf_cstr relies on it). Growth aborts on out-of-memory (server policy,
 * see STYLE.md: the server may abort on OOM; libeddy code reserves with buf_try_reserve first, so that its
 * appends never grow the buffer).
 */
#ifndef EDDY_COMMON_BUF_H
#define EDDY_COMMON_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf_t;

#define BUF_INIT {NULL, 0, 0}

void buf_init(buf_t *b);
void buf_dispose(buf_t *b);
/* Makes room for at least extra more bytes (plus the NUL slot). */
void buf_reserve(buf_t *b, size_t extra);
/* The same without aborting: returns 0, or -ENOMEM leaving b as it was. libeddy reserves the worst case
 * with this first, so that the appends that follow never need to grow the buffer. */
int buf_try_reserve(buf_t *b, size_t extra);
void buf_append(buf_t *b, const void *p, size_t n);
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Returns the contents NUL-terminated; valid until the next change to b. */
const char *buf_cstr(buf_t *b);
/* Hands the heap block to the caller (who frees it) and leaves b empty. */
char *buf_release(buf_t *b, size_t *len);

static inline void buf_putc(buf_t *b, char c)
{
    if (b->len + 2 > b->cap) {
        buf_reserve(b, 1);
    }
    b->data[b->len++] = c;
}

static inline void buf_puts(buf_t *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

static inline void buf_reset(buf_t *b)
{
    b->len = 0;
}

#endif
