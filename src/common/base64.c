/*
 * base64: strict base64 (see base64.h).
 *
 * Encoding is the hot path of both sides (a producer's PutRecords body, a GetRecords reply): 24 input
 * bytes at a time with AVX2 where the CPU has it (the method of W. Muła and D. Lemire, "Faster Base64
 * Encoding and Decoding Using AVX2 Instructions", 2018: spread each 3 bytes over 4 lanes of a 32-bit
 * word, pick the four 6-bit fields with one multiply-high and one multiply-low, then turn each value
 * into its character with one table look-up of an offset per range), and OpenSSL's block encoder for
 * the rest and on other CPUs. Both give exactly RFC 4648's output with padding.
 *
 * Decoding is strict (see base64.h) and is eddy's hot path for PutRecords. With AVX2, 32 characters per
 * step (the same paper's decoder: each character's high nibble selects an offset that turns it into its
 * 6-bit value, and a bit test of a per-low-nibble mask against 1 << high nibble checks that it is in the
 * alphabet; two multiply-adds pack four 6-bit values into 3 bytes), then a table for the last quadruples.
 * The accepted inputs and the bytes written are exactly those of the OpenSSL-based decoder that came
 * before it (decode_openssl, kept for CPUs without AVX2 and for its one odd case, below):
 *   - the length is a multiple of 4; '=' only as the last one or two characters;
 *   - every other character is in A-Z a-z 0-9 + /;
 *   - bits left over by the padding need not be zero, as OpenSSL does not check them;
 *   - out receives n / 4 * 3 bytes (the padding decodes as zero bits), the return value excludes them.
 * OpenSSL strips trailing "non-base64" characters (space, tab, CR, LF, '-') before decoding, and the
 * strict check rejected a trailing space but not a trailing '-': input ending in '-' still goes through
 * decode_openssl, so that even that case is answered the same way.
 */
#include "common/base64.h"

#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdint.h>
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

/* The decoder before the AVX2 one: OpenSSL's EVP_DecodeBlock made strict. */
static long decode_openssl(const char *s, size_t n, unsigned char *out)
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

/* The 6-bit value of each character of the alphabet; 0xFF for every other byte. */
static const unsigned char decode_table[256] = {
#define X 0xFF
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  /* 0x00 */
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  /* 0x10 */
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  62, X,  X,  X,  63, /* 0x20: + / */
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X,  X,  X,  X,  X,  X,  /* 0x30: 0-9 */
    X,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, /* 0x40: A-O */
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, X,  X,  X,  X,  X,  /* 0x50: P-Z */
    X,  26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, /* 0x60: a-o */
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X,  X,  X,  X,  X,  /* 0x70: p-z */
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
#undef X
};

#ifdef BASE64_AVX2
/* Decodes 32 characters into 24 bytes per step while at least limit characters are left after the step
 * (so that the last quadruple, which may hold padding, is left to the caller). Returns the characters
 * done, or -1 when a character outside the alphabet was found. */
__attribute__((target("avx2"))) static long decode_avx2(unsigned char *out, const char *in, size_t n)
{
    /* per high nibble: the offset from character to value ('+' 0x2B -> 62: +19; '0'.. -> 52..: +4;
     * 'A'.. -> 0..: -65; 'a'.. -> 26..: -71); index 1 serves '/' (0x2F -> 63: +16), whose index is made
     * 2 - 1 below */
    const __m256i offsets = _mm256_setr_epi8(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 19,
                                             4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
    /* per low nibble: the set of high nibbles (bit h for 0..7) that make a character of the alphabet:
     * 0: 0 P p (3 5 7); 1..9: digits, A-I Q-Y a-i q-y (3..7); 10: J Z j z (4..7); 11: + K k (2 4 6);
     * 12..14: L-N l-n (4 6); 15: / O o (2 4 6) */
    const __m256i allowed = _mm256_setr_epi8(
        (char)0xA8, (char)0xF8, (char)0xF8, (char)0xF8, (char)0xF8, (char)0xF8, (char)0xF8, (char)0xF8, (char)0xF8,
        (char)0xF8, (char)0xF0, 0x54, 0x50, 0x50, 0x50, 0x54, (char)0xA8, (char)0xF8, (char)0xF8, (char)0xF8,
        (char)0xF8, (char)0xF8, (char)0xF8, (char)0xF8, (char)0xF8, (char)0xF8, (char)0xF0, 0x54, 0x50, 0x50, 0x50,
        0x54);
    /* 1 << high nibble for 0..7, nothing for 8..15 (bytes 0x80 and above are never in the alphabet) */
    const __m256i bit = _mm256_setr_epi8(1, 2, 4, 8, 16, 32, 64, (char)0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 8,
                                         16, 32, 64, (char)0x80, 0, 0, 0, 0, 0, 0, 0, 0);
    /* each 32-bit word holds a b c d (6 bits each) -> bytes 2 1 0 of a<<18|b<<12|c<<6|d, in order */
    const __m256i pack = _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1, 2, 1, 0, 6, 5,
                                          4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    size_t done = 0;
    unsigned char *o = out;
    while (n - done >= 32 + 4) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(in + done));
        __m256i hi = _mm256_and_si256(_mm256_srli_epi32(v, 4), nibble);
        __m256i lo = _mm256_and_si256(v, nibble);
        __m256i ok = _mm256_and_si256(_mm256_shuffle_epi8(allowed, lo), _mm256_shuffle_epi8(bit, hi));
        if (_mm256_movemask_epi8(_mm256_cmpeq_epi8(ok, _mm256_setzero_si256())) != 0) {
            return -1;
        }
        __m256i slash = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(0x2f));
        __m256i values = _mm256_add_epi8(v, _mm256_shuffle_epi8(offsets, _mm256_add_epi8(hi, slash)));
        /* a*64 + b and c*64 + d in each 16 bits, then (a*64+b)*4096 + c*64+d in each 32 */
        __m256i pairs = _mm256_maddubs_epi16(values, _mm256_set1_epi32(0x01400140));
        __m256i words = _mm256_madd_epi16(pairs, _mm256_set1_epi32(0x00011000));
        __m256i bytes = _mm256_shuffle_epi8(words, pack);
        /* 12 bytes at the start of each lane: lanes' dwords 0,1,2 and 4,5,6 */
        bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7));
        _mm_storeu_si128((__m128i *)(void *)o, _mm256_castsi256_si128(bytes));
        _mm_storel_epi64((__m128i *)(void *)(o + 16), _mm256_extracti128_si256(bytes, 1));
        o += 24;
        done += 32;
    }
    return (long)done;
}

/* The same with AVX-512 VBMI, 64 characters into 48 bytes per step (the method of W. Muła and D. Lemire,
 * "Base64 encoding and decoding at almost the speed of a memory copy", 2019): one two-table byte permute
 * looks every character up (its value, or 0x80 when it is not in the alphabet), and one byte permute
 * gathers the 3 bytes each 32-bit word packs into. */
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) static long decode_vbmi(unsigned char *out, const char *in,
                                                                             size_t n)
{
    /* the value of characters 0..127 (bit 7 of the character selects nothing here: it is checked apart) */
    static const unsigned char values[128] = {
#define X 0x80
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
        X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  62,
        X,  X,  X,  63, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X,  X,  X,  X,  X,  X,  X,  0,
        1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
        23, 24, 25, X,  X,  X,  X,  X,  X,  26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38,
        39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X,  X,  X,  X,  X,
#undef X
    };
    const __m512i lo = _mm512_loadu_si512((const void *)values);
    const __m512i hi = _mm512_loadu_si512((const void *)(values + 64));
    /* bytes 2 1 0 of each 32-bit word, in order */
    static const unsigned char gather[64] = {
        2,  1,  0,  6,  5,  4,  10, 9,  8,  14, 13, 12, 18, 17, 16, 22, 21, 20, 26, 25, 24, 30,
        29, 28, 34, 33, 32, 38, 37, 36, 42, 41, 40, 46, 45, 44, 50, 49, 48, 54, 53, 52, 58, 57,
        56, 62, 61, 60, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    };
    const __m512i pack = _mm512_loadu_si512((const void *)gather);
    size_t done = 0;
    unsigned char *o = out;
    while (n - done >= 64 + 4) {
        __m512i v = _mm512_loadu_si512((const void *)(in + done));
        __m512i val = _mm512_permutex2var_epi8(lo, v, hi);
        if (_mm512_movepi8_mask(_mm512_or_si512(val, v)) != 0) {
            return -1; /* a byte of 0x80 or more, or a character outside the alphabet */
        }
        __m512i pairs = _mm512_maddubs_epi16(val, _mm512_set1_epi32(0x01400140));
        __m512i words = _mm512_madd_epi16(pairs, _mm512_set1_epi32(0x00011000));
        __m512i bytes = _mm512_permutexvar_epi8(pack, words);
        _mm512_mask_storeu_epi8(o, (__mmask64)0xFFFFFFFFFFFFULL, bytes);
        o += 48;
        done += 64;
    }
    return (long)done;
}

static bool have_vbmi(void)
{
    static _Atomic int known = -1; /* as have_avx2 */
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k < 0) {
        __builtin_cpu_init();
        k = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bw") ? 1 : 0;
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k == 1;
}
#endif

/* A vector decoder's first part: decodes whole steps while more than one quadruple is left after them;
 * returns the characters done, or -1 at a character outside the alphabet. */
typedef long (*decode_part_fn)(unsigned char *out, const char *in, size_t n);

/* base64_decode with a given vector decoder (NULL: none) for the bulk. */
static long decode_strict(const char *s, size_t n, unsigned char *out, decode_part_fn part)
{
    if (n % 4 != 0) {
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    if (s[n - 1] == '-') {
        return decode_openssl(s, n, out); /* OpenSSL's trailing strip, see the top of the file */
    }
    size_t done = 0;
    if (part != NULL) {
        long d = part(out, s, n);
        if (d < 0) {
            return -1;
        }
        done = (size_t)d;
    }
    size_t pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    const unsigned char *in = (const unsigned char *)s;
    unsigned char *o = out + done / 4 * 3;
    for (size_t i = done; i < n; i += 4) {
        uint32_t a = decode_table[in[i]], b = decode_table[in[i + 1]];
        uint32_t c = decode_table[in[i + 2]], d = decode_table[in[i + 3]];
        if (i + 4 == n && pad > 0) {
            /* the padding decodes as zero bits (as OpenSSL's does); any other '=' is an error */
            d = 0;
            if (pad == 2) {
                c = 0;
            }
        }
        if ((a | b | c | d) & 0x80) {
            return -1;
        }
        uint32_t w = a << 18 | b << 12 | c << 6 | d;
        o[0] = (unsigned char)(w >> 16);
        o[1] = (unsigned char)(w >> 8);
        o[2] = (unsigned char)w;
        o += 3;
    }
    return (long)(n / 4 * 3) - (long)pad;
}

long base64_decode(const char *s, size_t n, unsigned char *out)
{
#ifdef BASE64_AVX2
    if (n >= 68 && have_vbmi()) {
        return decode_strict(s, n, out, decode_vbmi);
    }
    if (n >= 36) {
        if (!have_avx2()) {
            return decode_openssl(s, n, out);
        }
        return decode_strict(s, n, out, decode_avx2);
    }
#endif
    return decode_strict(s, n, out, NULL);
}
