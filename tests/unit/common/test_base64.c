/*
 * test_base64: src/common/base64 against OpenSSL's encoder, byte for byte, for every length from 0 to 300
 * and for large random inputs (the AVX2 path, where the CPU has it, and its tails), and strict decoding
 * round trips.
 */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/buf.h"

static void check(const unsigned char *in, size_t n)
{
    buf_t got = BUF_INIT;
    buf_append(&got, "prefix", 6); /* encoding appends */
    base64_encode_into(&got, in, n);
    size_t len = BASE64_ENCODED_LEN(n);
    unsigned char *want = malloc(len + 1);
    cr_assert_not_null(want);
    cr_assert_eq((size_t)EVP_EncodeBlock(want, in, (int)n), len);
    cr_assert_eq(got.len, 6 + len);
    cr_assert(memcmp(got.data, "prefix", 6) == 0);
    cr_assert(memcmp(got.data + 6, want, len) == 0, "length %zu differs from OpenSSL", n);
    unsigned char *back = malloc(n + 3);
    cr_assert_not_null(back);
    long m = base64_decode((const char *)want, len, back);
    cr_assert_eq(m, (long)n, "length %zu: decoded %ld", n, m);
    cr_assert(memcmp(back, in, n) == 0);
    free(back);
    free(want);
    buf_dispose(&got);
}

Test(base64, every_short_length_matches_openssl)
{
    unsigned char in[300];
    unsigned int seed = 7;
    for (size_t i = 0; i < sizeof in; i++) {
        in[i] = (unsigned char)rand_r(&seed);
    }
    for (size_t n = 0; n <= sizeof in; n++) {
        check(in, n);
    }
    memset(in, 0xff, sizeof in); /* every sextet 63: '/' */
    check(in, sizeof in);
    memset(in, 0, sizeof in); /* every sextet 0: 'A' */
    check(in, sizeof in);
}

Test(base64, large_random_inputs_match_openssl)
{
    unsigned int seed = 11;
    size_t sizes[] = {1000, 4095, 4096, 65536 + 7, 1 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        unsigned char *in = malloc(sizes[k]);
        cr_assert_not_null(in);
        for (size_t i = 0; i < sizes[k]; i++) {
            in[i] = (unsigned char)rand_r(&seed);
        }
        check(in, sizes[k]);
        free(in);
    }
}

Test(base64, decoding_is_strict)
{
    unsigned char out[16];
    cr_assert_eq(base64_decode("aGVsbG8=", 8, out), 5);
    cr_assert(memcmp(out, "hello", 5) == 0);
    cr_assert_lt(base64_decode("aGVsbG8", 7, out), 0, "missing padding");
    cr_assert_lt(base64_decode("aGV$bG8=", 8, out), 0, "a character outside the alphabet");
}
