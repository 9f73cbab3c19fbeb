/*
 * base64: strict base64 (see base64.h).
 *
 * Encoding is the hot path of both sides (a producer's PutRecords body, a GetRecords reply): 24 input
 * bytes at a time with AVX2 where the CPU has it (the method of W. Muła and D. Lemire, "Faster Base64
 * Encoding and Decoding Using AVX2 Instructions", 2018: spread each 3 bytes over 4 lanes of a 32-bit
 * word, pick the four 6-bit fields with one multiply-high and one multiply-low, then turn each value
 * into its character with one table look-up of an offset per range), and OpenSSL's block encoder for
 * the rest and on other CPUs. Both give exactly RFC 4648's output with padding. Decoding is OpenSSL's,
 * made strict.
 */
#include "common/base64.h"

#include <openssl/evp.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BASE64_AVX2 1
#endif

#ifdef BASE64_AVX2
/* Encodes 24 bytes per step while 32 can be read (the load is 32 bytes wide); returns the bytes done. */
__attribute__((target("avx2"))) static size_t encode_avx2(unsigned char *out, const unsigned char *in, size_t n)
{
    /* each 128-bit lane gets 12 input bytes at its bytes 4..15: input dwords 0,1,2 and 3,4,5 */
    const __m256i spread = _mm256_setr_epi32(0, 0, 1, 2, 0, 3, 4, 5);
    /* per lane, the 4 bytes of each output word are input bytes b1 b0 b2 b1 of its 3 (big-endian
     * order of the 24 bits, so the fields come out in place) */
    const __m256i shuffle = _mm256_setr_epi8(5, 4, 6, 5, 8, 7, 9, 8, 11, 10, 12, 11, 14, 13, 15, 14, 5, 4, 6, 5, 8,
                                             7, 9, 8, 11, 10, 12, 11, 14, 13, 15, 14);
    /* characters: 'A'+v for 0..25, 'a'-26+v for 26..51, '0'-52+v for 52..61, '+' for 62, '/' for 63;
     * the offset is looked up by (v - 51 saturated, minus one more when v > 25) */
    const __m256i offsets = _mm256_setr_epi8(65, 71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 0, 0, 65,
                                             71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 0, 0);
    size_t done = 0;
    while (n - done >= 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(in + done));
        v = _mm256_permutevar8x32_epi32(v, spread);
        v = _mm256_shuffle_epi8(v, shuffle);
        /* fields a (bits 10..15 of the high 16), c (bits 0..5 of the low 16) by multiply-high, and b, d
         * by multiply-low: each lands in its own byte */
        __m256i ac = _mm256_mulhi_epu16(_mm256_and_si256(v, _mm256_set1_epi32(0x0fc0fc00)),
                                        _mm256_set1_epi32(0x04000040));
        __m256i bd = _mm256_mullo_epi16(_mm256_and_si256(v, _mm256_set1_epi32(0x003f03f0)),
                                        _mm256_set1_epi32(0x01000010));
        __m256i sextets = _mm256_or_si256(ac, bd);
        __m256i index = _mm256_subs_epu8(sextets, _mm256_set1_epi8(51));
        index = _mm256_sub_epi8(index, _mm256_cmpgt_epi8(sextets, _mm256_set1_epi8(25)));
        __m256i chars = _mm256_add_epi8(sextets, _mm256_shuffle_epi8(offsets, index));
        _mm256_storeu_si256((__m256i *)(void *)(out + done / 3 * 4), chars);
        done += 24;
    }
    return done;
}

static bool have_avx2(void)
{
    static _Atomic int known = -1; /* two threads at once only work out the same answer twice */
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k < 0) {
        __builtin_cpu_init();
        k = __builtin_cpu_supports("avx2") ? 1 : 0;
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k == 1;
}
#endif

void base64_encode_into(buf_t *out, const void *data, size_t n)
{
    size_t len = BASE64_ENCODED_LEN(n);
    buf_reserve(out, len + 1);
    unsigned char *dst = (unsigned char *)out->data + out->len;
    const unsigned char *src = data;
    size_t done = 0;
#ifdef BASE64_AVX2
    if (n >= 32 && have_avx2()) {
        done = encode_avx2(dst, src, n);
    }
#endif
    /* the rest (a multiple of 3 was done, so the output so far is whole quadruples); EVP_EncodeBlock
     * writes a NUL after, which the reserved byte takes */
    EVP_EncodeBlock(dst + done / 3 * 4, src + done, (int)(n - done));
    out->len += len;
}

long base64_decode(const char *s, size_t n, unsigned char *out)
{
    if (n % 4 != 0) {
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    size_t pad = 0;
    if (s[n - 1] == '=') {
        pad = s[n - 2] == '=' ? 2 : 1;
    }
    /* EVP_DecodeBlock rejects characters outside the alphabet but skips surrounding whitespace and is lax
     * about '='; the service is not: whitespace at either end or '=' before the padding is an error. */
    unsigned char first = (unsigned char)s[0], last = (unsigned char)s[n - 1 - pad];
    if (first <= ' ' || last <= ' ' || memchr(s, '=', n - pad) != NULL) {
        return -1;
    }
    int len = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (len < 0) {
        return -1;
    }
    return (long)len - (long)pad;
}
