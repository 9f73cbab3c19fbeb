/*
 * test_base64_decode: the strict decoder (AVX-512 VBMI or AVX2 where the CPU has them, a table for the
 * tails; each that this CPU runs is checked, and the table alone) against the OpenSSL-based decoder it
 * replaced (decode_openssl, still in base64.c): the same answer (-1 or the
 * decoded length) and the same bytes written, for every byte value at every position of short inputs and
 * for many random valid and damaged inputs of random lengths. Includes the .c to reach decode_openssl.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../../src/common/base64.c"

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* One decoder's answer and bytes against decode_openssl's. */
static void same_as(const char *s, size_t n, const char *name, long (*decode)(const char *, size_t, unsigned char *))
{
    /* exactly n / 4 * 3 bytes of room: ASan catches a write past them */
    size_t cap = n / 4 * 3;
    unsigned char *want = malloc(cap + 1), *got = malloc(cap + 1);
    cr_assert(want != NULL && got != NULL);
    memset(want, 0xAB, cap);
    memset(got, 0xAB, cap);
    long w = decode_openssl(s, n, want);
    long g = decode(s, n, got);
    cr_assert_eq(g, w, "%s, length %zu: got %ld, want %ld (\"%.*s\")", name, n, g, w, (int)(n < 80 ? n : 80), s);
    if (w >= 0) {
        cr_assert(memcmp(got, want, n / 4 * 3) == 0, "%s, length %zu: bytes differ", name, n);
    }
    free(want);
    free(got);
}

static long with_table(const char *s, size_t n, unsigned char *out)
{
    return decode_strict(s, n, out, NULL);
}

#ifdef BASE64_AVX2
static long with_avx2(const char *s, size_t n, unsigned char *out)
{
    return decode_strict(s, n, out, decode_avx2);
}

static long with_vbmi(const char *s, size_t n, unsigned char *out)
{
    return decode_strict(s, n, out, decode_vbmi);
}
#endif

/* Decodes s with every decoder this CPU runs and checks that the answers and the bytes written agree
 * with decode_openssl's. */
static void same(const char *s, size_t n)
{
    same_as(s, n, "base64_decode", base64_decode);
    same_as(s, n, "table", with_table);
#ifdef BASE64_AVX2
    if (have_avx2()) {
        same_as(s, n, "avx2", with_avx2);
    }
    if (have_vbmi()) {
        same_as(s, n, "vbmi", with_vbmi);
    }
#endif
}

/* Random bytes of length len, encoded (valid base64 with its padding) into s; returns its length. */
static size_t valid(char *s, size_t len)
{
    unsigned char *raw = malloc(len + 1);
    cr_assert_not_null(raw);
    for (size_t i = 0; i < len; i++) {
        raw[i] = (unsigned char)next();
    }
    buf_t b = BUF_INIT;
    base64_encode_into(&b, raw, len);
    memcpy(s, b.data, b.len);
    size_t n = b.len;
    buf_dispose(&b);
    free(raw);
    return n;
}

Test(base64_decode, every_byte_at_every_position)
{
    char s[208];
    for (size_t len = 0; len <= 150; len += 13) {
        for (size_t trim = 0; trim < 3; trim++) {
            if (trim > len) {
                continue;
            }
            size_t n = valid(s, len - trim);
            for (size_t pos = 0; pos < n; pos++) {
                char keep = s[pos];
                for (int c = 0; c < 256; c++) {
                    s[pos] = (char)c;
                    same(s, n);
                }
                s[pos] = keep;
            }
            same(s, n);
        }
    }
}

Test(base64_decode, random_valid_inputs)
{
    size_t cap = 8192;
    char *s = malloc(cap / 3 * 4 + 8);
    cr_assert_not_null(s);
    for (int round = 0; round < 20000; round++) {
        size_t len = next() % (round < 10000 ? 200 : cap);
        same(s, valid(s, len));
    }
    free(s);
}

Test(base64_decode, random_damaged_inputs)
{
    static const char odd[] = "=-\n\r\t \\\"\x80\xff\x00:@[`{";
    size_t cap = 4096;
    char *s = malloc(cap / 3 * 4 + 8);
    cr_assert_not_null(s);
    for (int round = 0; round < 40000; round++) {
        size_t n = valid(s, next() % (round < 20000 ? 120 : cap));
        if (n == 0) {
            continue;
        }
        int damage = 1 + (int)(next() % 3);
        for (int d = 0; d < damage; d++) {
            /* mostly near the end, where padding and OpenSSL's trailing strip live */
            size_t pos = next() % 2 ? n - 1 - next() % (n < 6 ? n : 6) : next() % n;
            s[pos] = next() % 2 ? odd[next() % (sizeof odd - 1)] : (char)next();
        }
        same(s, n);
        same(s, n - n % 4 == n && n >= 4 ? n - 4 : n); /* a shorter prefix too */
    }
    free(s);
}

Test(base64_decode, odd_cases)
{
    static const char *cases[] = {
        "",         "A===",     "AA==",     "AB==",     "AAA=",     "AAB=",     "====",     "AAAA----",
        "AAAA   -", "AAAA\n",   " AAA",     "AAA ",     "A=AA",     "AA=A",     "AAAA====", "-AAA",
        "AAA-",     "AA--",     "A---",     "AAAA\n---", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        same(cases[i], strlen(cases[i]));
    }
}
