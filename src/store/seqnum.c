/* seqnum: 186-bit sequence numbers (layout in seqnum.h). */
#include "store/seqnum.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

__extension__ typedef unsigned __int128 u128_t;

#define P19 10000000000000000000ULL /* 10^19, the largest power of ten below 2^64 */

/* A 192-bit number as three 64-bit words, most significant first. */
typedef struct {
    uint64_t w[3];
} u192;

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
    /* The layout of seqnum.h packed word by word (w[2] holds bits 0..63). */
    const uint64_t arrival = s->arrival_secs & ((1ULL << 36) - 1);
    const uint64_t created = s->shard_created_secs & ((1ULL << 36) - 1);
    u192 v;
    const uint64_t tag = s->stream_tag & 0xFFF;
    v.w[2] = 2 | (uint64_t)s->shard_index << 4 | (arrival & ((1ULL << 28) - 1)) << 36;
    v.w[1] = arrival >> 28 | (tag & 0xFF) << 8 | (s->index & ((1ULL << 48) - 1)) << 16;
    v.w[0] = s->index >> 48 | (tag >> 8) << 16 | created << 20 | 2ULL << 56;
    /* Three chunks of 19 digits cover 57 digits > log10(2^188). */
    uint64_t chunk[3];
    for (int i = 2; i >= 0; i--) {
        chunk[i] = div_small(&v, P19);
    }
    char tmp[SEQNUM_STR_MAX];
    for (int i = 0; i < 3; i++) {
        uint64_t c = chunk[i];
        for (int d = 18; d >= 0; d--) {
            tmp[i * 19 + d] = (char)('0' + c % 10);
            c /= 10;
        }
    }
    size_t skip = 0;
    while (skip + 1 < 57 && tmp[skip] == '0') {
        skip++;
    }
    memcpy(out, tmp + skip, 57 - skip);
    out[57 - skip] = '\0';
    return 57 - skip;
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
    if (v.w[0] >> 60 != 0 || get_bits(&v, 184, 4) != 2 || get_bits(&v, 0, 4) != 2) {
        return -EINVAL;
    }
    out->stream_tag = (uint16_t)(get_bits(&v, 144, 4) << 8 | get_bits(&v, 72, 8));
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

uint16_t seqnum_stream_tag(const char *stream_name, int64_t stream_created_ms)
{
    /* FNV-1a over the name and the creation time, folded to 12 bits */
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)stream_name; *p; p++) {
        h = (h ^ *p) * 1099511628211ULL;
    }
    for (int i = 0; i < 8; i++) {
        h = (h ^ (unsigned char)((uint64_t)stream_created_ms >> (8 * i))) * 1099511628211ULL;
    }
    return (uint16_t)((h ^ (h >> 12) ^ (h >> 24) ^ (h >> 36) ^ (h >> 48)) & 0xFFF);
}

size_t seqnum_format_next(seqnum_cursor_t *cur, const seqnum_t *s, char *out)
{
    static const char two_80[] = "1208925819614629174706176"; /* 2^80 */
    const size_t cap = sizeof cur->digits;
    bool follows = cur->valid && s->index == cur->last.index + 1 && s->index != 0 &&
                   s->arrival_secs == cur->last.arrival_secs && s->shard_index == cur->last.shard_index &&
                   s->shard_created_secs == cur->last.shard_created_secs && s->stream_tag == cur->last.stream_tag;
    if (follows) {
        char *d = cur->digits;
        size_t k = sizeof two_80 - 1;
        int carry = 0;
        size_t i = 0;
        /* only the low 25 digits and the carry out of them change */
        for (; i < k || carry; i++) {
            int a = i < cur->len ? d[cap - 1 - i] - '0' : 0;
            int b = i < k ? two_80[k - 1 - i] - '0' : 0;
            int sum = a + b + carry;
            carry = sum >= 10;
            d[cap - 1 - i] = (char)('0' + sum - 10 * carry);
        }
        if (i > cur->len) {
            cur->len = i;
        }
    } else {
        char tmp[SEQNUM_STR_MAX];
        cur->len = seqnum_format(s, tmp);
        memcpy(cur->digits + cap - cur->len, tmp, cur->len);
        cur->valid = 1;
    }
    cur->last = *s;
    memcpy(out, cur->digits + cap - cur->len, cur->len);
    out[cur->len] = '\0';
    return cur->len;
}
