/* u128: 128-bit hash key arithmetic (see u128.h). */
#include "common/u128.h"

#include <errno.h>

int u128_parse(const char *s, size_t n, u128 *out)
{
    if (n == 0 || n > 39 || (s[0] == '0' && n > 1)) {
        return -EINVAL;
    }
    u128 v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9) {
            return -EINVAL;
        }
        if (v > (U128_MAX - d) / 10) {
            return -ERANGE;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

size_t u128_format(u128 v, char *out)
{
    char tmp[U128_DEC_MAX];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + (unsigned)(v % 10));
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    out[n] = '\0';
    return n;
}

void u128_even_range(uint32_t i, uint32_t n, u128 *start, u128 *end)
{
    /* floor(2^128 / n) computed without 2^128: 2^128 = U128_MAX + 1. */
    u128 size = U128_MAX / n;
    if (U128_MAX % n == (u128)n - 1) {
        size += 1;
    }
    *start = size * i;
    *end = (i + 1 == n) ? U128_MAX : size * (i + 1) - 1;
}

u128 u128_from_be_bytes(const unsigned char bytes[16])
{
    u128 v = 0;
    for (int i = 0; i < 16; i++) {
        v = (v << 8) | bytes[i];
    }
    return v;
}
