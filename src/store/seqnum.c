/* seqnum: 186-bit sequence numbers (layout in seqnum.h). */
#include "store/seqnum.h"

#include <errno.h>
#include <string.h>

__extension__ typedef unsigned __int128 u128_t;

#define P19 10000000000000000000ULL /* 10^19, the largest power of ten below 2^64 */

/* A 192-bit number as three 64-bit words, most significant first. */
typedef struct {
    uint64_t w[3];
} u192;

static void set_bits(u192 *v, unsigned lo, unsigned width, uint64_t value)
{
    for (unsigned i = 0; i < width; i++) {
        if ((value >> i) & 1) {
            unsigned bit = lo + i;
            v->w[2 - bit / 64] |= 1ULL << (bit % 64);
        }
    }
}

static uint64_t get_bits(const u192 *v, unsigned lo, unsigned width)
{
    uint64_t out = 0;
    for (unsigned i = 0; i < width; i++) {
        unsigned bit = lo + i;
        if ((v->w[2 - bit / 64] >> (bit % 64)) & 1) {
            out |= 1ULL << i;
        }
    }
    return out;
}

/* v /= d, returns the remainder. */
static uint64_t div_small(u192 *v, uint64_t d)
{
    u128_t rem = 0;
    for (int i = 0; i < 3; i++) {
        u128_t cur = (rem << 64) | v->w[i];
        v->w[i] = (uint64_t)(cur / d);
        rem = cur % d;
    }
    return (uint64_t)rem;
}

/* v = v * m + a; returns nonzero on overflow past 192 bits. */
static int mul_add(u192 *v, uint64_t m, uint64_t a)
{
    u128_t carry = a;
    for (int i = 2; i >= 0; i--) {
        u128_t cur = (u128_t)v->w[i] * m + carry;
        v->w[i] = (uint64_t)cur;
        carry = cur >> 64;
    }
    return carry != 0;
}

size_t seqnum_format(const seqnum_t *s, char *out)
{
    u192 v = {{0, 0, 0}};
    set_bits(&v, 0, 4, 2);
    set_bits(&v, 4, 32, s->shard_index);
    set_bits(&v, 36, 36, s->arrival_secs);
    set_bits(&v, 80, 64, s->index);
    set_bits(&v, 148, 36, s->shard_created_secs);
    set_bits(&v, 184, 4, 2);
    /* Three chunks of 19 digits cover 57 digits > log10(2^188). */
    uint64_t chunk[3];
    for (int i = 2; i >= 0; i--) {
        chunk[i] = div_small(&v, P19);
    }
    char tmp[SEQNUM_STR_MAX];
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        char digits[20];
        uint64_t c = chunk[i];
        for (int d = 18; d >= 0; d--) {
            digits[d] = (char)('0' + c % 10);
            c /= 10;
        }
        memcpy(tmp + n, digits, 19);
        n += 19;
    }
    size_t skip = 0;
    while (skip + 1 < n && tmp[skip] == '0') {
        skip++;
    }
    memcpy(out, tmp + skip, n - skip);
    out[n - skip] = '\0';
    return n - skip;
}

int seqnum_parse(const char *str, size_t n, seqnum_t *out)
{
    if (n == 0 || n > 57 || (str[0] == '0' && n > 1)) {
        return -EINVAL;
    }
    u192 v = {{0, 0, 0}};
    size_t first = n % 19 ? n % 19 : 19;
    for (size_t pos = 0; pos < n;) {
        size_t len = pos == 0 ? first : 19;
        uint64_t chunk = 0, mul = 1;
        for (size_t i = 0; i < len; i++) {
            unsigned d = (unsigned char)str[pos + i] - '0';
            if (d > 9) {
                return -EINVAL;
            }
            chunk = chunk * 10 + d;
            mul *= 10;
        }
        if (mul_add(&v, mul, chunk)) {
            return -EINVAL;
        }
        pos += len;
    }
    if (v.w[0] >> 60 != 0 || get_bits(&v, 184, 4) != 2 || get_bits(&v, 0, 4) != 2 ||
        get_bits(&v, 144, 4) != 0 || get_bits(&v, 72, 8) != 0) {
        return -EINVAL;
    }
    out->shard_index = (uint32_t)get_bits(&v, 4, 32);
    out->arrival_secs = get_bits(&v, 36, 36);
    out->index = get_bits(&v, 80, 64);
    out->shard_created_secs = get_bits(&v, 148, 36);
    return 0;
}

int seqnum_cmp(const seqnum_t *a, const seqnum_t *b)
{
    if (a->shard_created_secs != b->shard_created_secs) {
        return a->shard_created_secs < b->shard_created_secs ? -1 : 1;
    }
    if (a->index != b->index) {
        return a->index < b->index ? -1 : 1;
    }
    return 0;
}
