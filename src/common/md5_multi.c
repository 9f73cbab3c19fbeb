/*
 * md5_multi: MD5 (RFC 1321) of several independent messages at once (see md5_multi.h).
 *
 * With AVX-512, sixteen messages are hashed side by side, one per 32-bit lane of a 512-bit register: the
 * MD5 rounds are the same operations for every message, so each step runs once for sixteen (a ternary
 * logic instruction for the round's boolean function, adds, one rotate). Each step depends on the one
 * before, so a single message cannot go faster than its chain of 64 steps per block; sixteen chains side by
 * side fill the machine. Per block, the sixteen lanes' 64-byte blocks are loaded as sixteen rows and
 * transposed (16 x 16 words, 64 shuffles) so that register w holds word w of every lane's block.
 *
 * Scheduling: each lane hashes one message at a time: its whole 64-byte blocks straight from the caller's
 * bytes, then its last one or two blocks (the rest of the message, 0x80, zeros, the bit length) from a
 * buffer of the lane's. The lanes run together for as many blocks as the shortest current part has; then
 * each lane whose part ended moves on (to its tail, or to the next message waiting, with a fresh state).
 * Lanes with nothing left hash a block of zeros whose result is dropped.
 *
 * Without AVX-512 (or for a single message) each message goes through OpenSSL's MD5.
 */
/* MD5() is deprecated in OpenSSL 3 but is the one-call scalar digest wanted here (see src/client/agg.c). */
#define OPENSSL_SUPPRESS_DEPRECATED

#include "common/md5_multi.h"

#include <openssl/md5.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MD5_MULTI_AVX512 1
#endif

#ifdef MD5_MULTI_AVX512

#define LANES 16
#define BLOCK 64

/* One lane's message in progress. */
typedef struct lane {
    const unsigned char *p; /* the next block */
    size_t blocks;          /* left in the current part (SIZE_MAX: idle) */
    size_t msg;             /* the message's index */
    bool in_tail;           /* the current part is the tail */
    unsigned char tail[2 * BLOCK];
} lane_t;

static const unsigned char zero_block[BLOCK];

/* The last one or two blocks of a message of len bytes: its bytes after the whole blocks, 0x80, zeros,
 * and the length in bits (64-bit little-endian). Returns the number of blocks. */
static size_t make_tail(unsigned char tail[2 * BLOCK], const unsigned char *data, size_t len)
{
    size_t rest = len % BLOCK;
    size_t blocks = rest < BLOCK - 8 ? 1 : 2;
    memset(tail, 0, blocks * BLOCK);
    if (rest > 0) {
        memcpy(tail, data + len - rest, rest);
    }
    tail[rest] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) {
        tail[blocks * BLOCK - 8 + i] = (unsigned char)(bits >> (8 * i));
    }
    return blocks;
}

/* Starts message msg in lane l: its whole blocks first, or straight its tail when it has none. */
static void lane_start(lane_t *l, size_t msg, const unsigned char *data, size_t len)
{
    l->msg = msg;
    l->blocks = len / BLOCK;
    l->p = data;
    l->in_tail = false;
    if (l->blocks == 0) {
        l->blocks = make_tail(l->tail, data, len);
        l->p = l->tail;
        l->in_tail = true;
    }
}

static void lane_idle(lane_t *l)
{
    l->blocks = SIZE_MAX;
    l->p = zero_block;
}

/* One MD5 step in every lane: a = b + rotl(a + f(b, c, d) + m[w] + k, s), f given as a ternary logic
 * table (0xCA: (b & c) | (~b & d); 0xE4: (b & d) | (c & ~d); 0x96: b ^ c ^ d; 0x39: c ^ (b | ~d)). */
#define STEP(f, a, b, c, d, w, k, s)                                                                          \
    do {                                                                                                      \
        a = _mm512_add_epi32(                                                                                 \
            _mm512_add_epi32(a, _mm512_ternarylogic_epi32(b, c, d, f)),                                       \
            _mm512_add_epi32(m[w], _mm512_set1_epi32((int)(k))));                                             \
        a = _mm512_add_epi32(_mm512_rol_epi32(a, s), b);                                                      \
    } while (0)

/* Hashes blocks blocks of every lane (row i: lane i's pointer, advanced by step[i] per block) into the
 * state. */
__attribute__((target("avx512f"))) static void run_blocks(__m512i st[4], const unsigned char *ptr[LANES],
                                                        const size_t step[LANES], size_t blocks)
{
    __m512i sa = st[0], sb = st[1], sc = st[2], sd = st[3];
    for (size_t blk = 0; blk < blocks; blk++) {
        __m512i r[LANES], t[LANES], m[LANES];
        for (int i = 0; i < LANES; i++) {
            r[i] = _mm512_loadu_si512((const void *)ptr[i]);
            ptr[i] += step[i];
        }
        /* transpose: after this m[w] holds word w of lane i in its element i */
        for (int i = 0; i < LANES; i += 2) {
            t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
        }
        for (int i = 0; i < LANES; i += 4) {
            r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);     /* words 4L of lanes i..i+3, in 128-bit lane L */
            r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]); /* words 4L+1 */
            r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
            r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
        }
        for (int j = 0; j < 4; j++) {
            __m512i v0 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x44);
            __m512i v1 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xEE);
            __m512i v2 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x44);
            __m512i v3 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xEE);
            m[j] = _mm512_shuffle_i32x4(v0, v2, 0x88);
            m[4 + j] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
            m[8 + j] = _mm512_shuffle_i32x4(v1, v3, 0x88);
            m[12 + j] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
        }
        __m512i a = sa, b = sb, c = sc, d = sd;
    STEP(0xCA, a, b, c, d, 0, 0xd76aa478u, 7);
        STEP(0xCA, d, a, b, c, 1, 0xe8c7b756u, 12);
        STEP(0xCA, c, d, a, b, 2, 0x242070dbu, 17);
        STEP(0xCA, b, c, d, a, 3, 0xc1bdceeeu, 22);
        STEP(0xCA, a, b, c, d, 4, 0xf57c0fafu, 7);
        STEP(0xCA, d, a, b, c, 5, 0x4787c62au, 12);
        STEP(0xCA, c, d, a, b, 6, 0xa8304613u, 17);
        STEP(0xCA, b, c, d, a, 7, 0xfd469501u, 22);
        STEP(0xCA, a, b, c, d, 8, 0x698098d8u, 7);
        STEP(0xCA, d, a, b, c, 9, 0x8b44f7afu, 12);
        STEP(0xCA, c, d, a, b, 10, 0xffff5bb1u, 17);
        STEP(0xCA, b, c, d, a, 11, 0x895cd7beu, 22);
        STEP(0xCA, a, b, c, d, 12, 0x6b901122u, 7);
        STEP(0xCA, d, a, b, c, 13, 0xfd987193u, 12);
        STEP(0xCA, c, d, a, b, 14, 0xa679438eu, 17);
        STEP(0xCA, b, c, d, a, 15, 0x49b40821u, 22);
        STEP(0xE4, a, b, c, d, 1, 0xf61e2562u, 5);
        STEP(0xE4, d, a, b, c, 6, 0xc040b340u, 9);
        STEP(0xE4, c, d, a, b, 11, 0x265e5a51u, 14);
        STEP(0xE4, b, c, d, a, 0, 0xe9b6c7aau, 20);
        STEP(0xE4, a, b, c, d, 5, 0xd62f105du, 5);
        STEP(0xE4, d, a, b, c, 10, 0x02441453u, 9);
        STEP(0xE4, c, d, a, b, 15, 0xd8a1e681u, 14);
        STEP(0xE4, b, c, d, a, 4, 0xe7d3fbc8u, 20);
        STEP(0xE4, a, b, c, d, 9, 0x21e1cde6u, 5);
        STEP(0xE4, d, a, b, c, 14, 0xc33707d6u, 9);
        STEP(0xE4, c, d, a, b, 3, 0xf4d50d87u, 14);
        STEP(0xE4, b, c, d, a, 8, 0x455a14edu, 20);
        STEP(0xE4, a, b, c, d, 13, 0xa9e3e905u, 5);
        STEP(0xE4, d, a, b, c, 2, 0xfcefa3f8u, 9);
        STEP(0xE4, c, d, a, b, 7, 0x676f02d9u, 14);
        STEP(0xE4, b, c, d, a, 12, 0x8d2a4c8au, 20);
        STEP(0x96, a, b, c, d, 5, 0xfffa3942u, 4);
        STEP(0x96, d, a, b, c, 8, 0x8771f681u, 11);
        STEP(0x96, c, d, a, b, 11, 0x6d9d6122u, 16);
        STEP(0x96, b, c, d, a, 14, 0xfde5380cu, 23);
        STEP(0x96, a, b, c, d, 1, 0xa4beea44u, 4);
        STEP(0x96, d, a, b, c, 4, 0x4bdecfa9u, 11);
        STEP(0x96, c, d, a, b, 7, 0xf6bb4b60u, 16);
        STEP(0x96, b, c, d, a, 10, 0xbebfbc70u, 23);
        STEP(0x96, a, b, c, d, 13, 0x289b7ec6u, 4);
        STEP(0x96, d, a, b, c, 0, 0xeaa127fau, 11);
        STEP(0x96, c, d, a, b, 3, 0xd4ef3085u, 16);
        STEP(0x96, b, c, d, a, 6, 0x04881d05u, 23);
        STEP(0x96, a, b, c, d, 9, 0xd9d4d039u, 4);
        STEP(0x96, d, a, b, c, 12, 0xe6db99e5u, 11);
        STEP(0x96, c, d, a, b, 15, 0x1fa27cf8u, 16);
        STEP(0x96, b, c, d, a, 2, 0xc4ac5665u, 23);
        STEP(0x39, a, b, c, d, 0, 0xf4292244u, 6);
        STEP(0x39, d, a, b, c, 7, 0x432aff97u, 10);
        STEP(0x39, c, d, a, b, 14, 0xab9423a7u, 15);
        STEP(0x39, b, c, d, a, 5, 0xfc93a039u, 21);
        STEP(0x39, a, b, c, d, 12, 0x655b59c3u, 6);
        STEP(0x39, d, a, b, c, 3, 0x8f0ccc92u, 10);
        STEP(0x39, c, d, a, b, 10, 0xffeff47du, 15);
        STEP(0x39, b, c, d, a, 1, 0x85845dd1u, 21);
        STEP(0x39, a, b, c, d, 8, 0x6fa87e4fu, 6);
        STEP(0x39, d, a, b, c, 15, 0xfe2ce6e0u, 10);
        STEP(0x39, c, d, a, b, 6, 0xa3014314u, 15);
        STEP(0x39, b, c, d, a, 13, 0x4e0811a1u, 21);
        STEP(0x39, a, b, c, d, 4, 0xf7537e82u, 6);
        STEP(0x39, d, a, b, c, 11, 0xbd3af235u, 10);
        STEP(0x39, c, d, a, b, 2, 0x2ad7d2bbu, 15);
        STEP(0x39, b, c, d, a, 9, 0xeb86d391u, 21);
        sa = _mm512_add_epi32(sa, a);
        sb = _mm512_add_epi32(sb, b);
        sc = _mm512_add_epi32(sc, c);
        sd = _mm512_add_epi32(sd, d);
    }
    st[0] = sa;
    st[1] = sb;
    st[2] = sc;
    st[3] = sd;
}

__attribute__((target("avx512f"))) static void md5_multi_avx512(const unsigned char *const *data,
                                                              const size_t *len, size_t n,
                                                              unsigned char (*out)[MD5_MULTI_LEN])
{
    static const uint32_t iv[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};
    lane_t lanes[LANES];
    __m512i st[4];
    for (int k = 0; k < 4; k++) {
        st[k] = _mm512_set1_epi32((int)iv[k]);
    }
    size_t next = 0, active = 0;
    for (int i = 0; i < LANES; i++) {
        if (next < n) {
            lane_start(&lanes[i], next, data[next], len[next]);
            next++;
            active++;
        } else {
            lane_idle(&lanes[i]);
        }
    }
    while (active > 0) {
        const unsigned char *ptr[LANES];
        size_t step[LANES], run = SIZE_MAX;
        for (int i = 0; i < LANES; i++) {
            ptr[i] = lanes[i].p;
            step[i] = lanes[i].blocks == SIZE_MAX ? 0 : BLOCK;
            run = lanes[i].blocks < run ? lanes[i].blocks : run;
        }
        run_blocks(st, ptr, step, run);
        uint32_t words[4][LANES];
        bool stored = false;
        __mmask16 fresh = 0;
        for (int i = 0; i < LANES; i++) {
            lane_t *l = &lanes[i];
            if (l->blocks == SIZE_MAX) {
                continue;
            }
            l->blocks -= run;
            l->p = ptr[i];
            if (l->blocks > 0) {
                continue;
            }
            if (!l->in_tail) {
                l->blocks = make_tail(l->tail, data[l->msg], len[l->msg]);
                l->p = l->tail;
                l->in_tail = true;
                continue;
            }
            /* done: the digest is A B C D, each little-endian (this lane's element of each) */
            if (!stored) {
                for (int k = 0; k < 4; k++) {
                    _mm512_storeu_si512((void *)words[k], st[k]);
                }
                stored = true;
            }
            for (int k = 0; k < 4; k++) {
                uint32_t w = words[k][i];
                for (int b = 0; b < 4; b++) {
                    out[l->msg][4 * k + b] = (unsigned char)(w >> (8 * b));
                }
            }
            if (next < n) {
                lane_start(l, next, data[next], len[next]);
                next++;
                fresh |= (__mmask16)(1u << i);
            } else {
                lane_idle(l);
                active--;
            }
        }
        for (int k = 0; k < 4; k++) {
            st[k] = _mm512_mask_mov_epi32(st[k], fresh, _mm512_set1_epi32((int)iv[k]));
        }
    }
}

static bool have_avx512(void)
{
    static _Atomic int known = -1; /* two threads at once only work out the same answer twice */
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k < 0) {
        __builtin_cpu_init();
        k = __builtin_cpu_supports("avx512f") ? 1 : 0;
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k == 1;
}
#endif

bool md5_multi_vector(void)
{
#ifdef MD5_MULTI_AVX512
    return have_avx512();
#else
    return false;
#endif
}

void md5_multi_scalar(const unsigned char *const *data, const size_t *len, size_t n,
                      unsigned char (*out)[MD5_MULTI_LEN])
{
    for (size_t i = 0; i < n; i++) {
        MD5(data[i], len[i], out[i]);
    }
}

void md5_multi(const unsigned char *const *data, const size_t *len, size_t n, unsigned char (*out)[MD5_MULTI_LEN])
{
#ifdef MD5_MULTI_AVX512
    if (n > 1 && have_avx512()) {
        md5_multi_avx512(data, len, n, out);
        return;
    }
#endif
    md5_multi_scalar(data, len, n, out);
}
