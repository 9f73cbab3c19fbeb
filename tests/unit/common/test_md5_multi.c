/*
 * test_md5_multi: md5_multi against OpenSSL's MD5 for many random messages: every length around the block
 * and padding boundaries, random lengths up to 200 KB, batches of 0 to 100 messages (fewer and more than
 * the sixteen lanes, so that lanes go idle and take new messages mid-way), and messages that share bytes.
 */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <criterion/criterion.h>
#include <openssl/md5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/md5_multi.h"

static uint64_t rng = 0x2545F4914F6CDD1DULL;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Hashes the n messages with md5_multi and checks each against MD5. */
static void check(const unsigned char *const *data, const size_t *len, size_t n)
{
    unsigned char(*got)[MD5_MULTI_LEN] = malloc((n + 1) * MD5_MULTI_LEN);
    cr_assert_not_null(got);
    md5_multi(data, len, n, got);
    for (size_t i = 0; i < n; i++) {
        unsigned char want[MD5_MULTI_LEN];
        MD5(data[i], len[i], want);
        cr_assert(memcmp(got[i], want, MD5_MULTI_LEN) == 0, "message %zu of %zu (%zu bytes) differs", i, n,
                  len[i]);
    }
    free(got);
}

Test(md5_multi, known_answers)
{
    /* RFC 1321's test suite, all in one batch */
    static const char *msgs[] = {"", "a", "abc", "message digest", "abcdefghijklmnopqrstuvwxyz",
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                                 "12345678901234567890123456789012345678901234567890123456789012345678901234567890"};
    static const char *hex[] = {"d41d8cd98f00b204e9800998ecf8427e", "0cc175b9c0f1b6a831c399e269772661",
                                "900150983cd24fb0d6963f7d28e17f72", "f96b697d7cb7938d525a2f31aaf161d0",
                                "c3fcd3d76192e4007dfb496cca67e13b", "d174ab98d277d9f5a5611c2c9f419d9f",
                                "57edf4a22be3c955ac49da2e2107b67a"};
    size_t n = sizeof msgs / sizeof msgs[0];
    const unsigned char *data[7];
    size_t len[7];
    unsigned char out[7][MD5_MULTI_LEN];
    for (size_t i = 0; i < n; i++) {
        data[i] = (const unsigned char *)msgs[i];
        len[i] = strlen(msgs[i]);
    }
    md5_multi(data, len, n, out);
    for (size_t i = 0; i < n; i++) {
        char text[33];
        for (int k = 0; k < MD5_MULTI_LEN; k++) {
            snprintf(text + 2 * k, 3, "%02x", out[i][k]);
        }
        cr_assert_str_eq(text, hex[i], "\"%s\"", msgs[i]);
    }
}

Test(md5_multi, every_length_to_300)
{
    enum { N = 301 };
    unsigned char *buf = malloc(N * N);
    cr_assert_not_null(buf);
    const unsigned char *data[N];
    size_t len[N];
    for (size_t i = 0; i < N; i++) {
        data[i] = buf + i * N;
        len[i] = i;
        for (size_t k = 0; k < i; k++) {
            buf[i * N + k] = (unsigned char)next();
        }
    }
    check(data, len, N);
    /* the same in batches of every size from 1 to 40 */
    for (size_t batch = 1; batch <= 40; batch++) {
        for (size_t i = 0; i + batch <= N; i += batch * 7) {
            check(data + i, len + i, batch);
        }
    }
    free(buf);
}

Test(md5_multi, random_batches)
{
    for (int round = 0; round < 60; round++) {
        size_t n = next() % 101;
        const unsigned char *data[100];
        size_t len[100];
        unsigned char *owned[100];
        for (size_t i = 0; i < n; i++) {
            /* mostly aggregate-sized messages of similar lengths, some tiny, some large */
            size_t pick = next() % 10;
            len[i] = pick < 6 ? 50000 + next() % 1300 : pick < 8 ? next() % 200 : next() % 200000;
            owned[i] = malloc(len[i] + 1);
            cr_assert_not_null(owned[i]);
            for (size_t k = 0; k < len[i]; k++) {
                owned[i][k] = (unsigned char)next();
            }
            data[i] = owned[i];
        }
        check(data, len, n);
        for (size_t i = 0; i < n; i++) {
            free(owned[i]);
        }
    }
}

Test(md5_multi, shared_and_unaligned_bytes)
{
    /* messages that overlap and start at every alignment within one buffer */
    size_t cap = 70000;
    unsigned char *buf = malloc(cap);
    cr_assert_not_null(buf);
    for (size_t k = 0; k < cap; k++) {
        buf[k] = (unsigned char)next();
    }
    const unsigned char *data[64];
    size_t len[64];
    for (size_t i = 0; i < 64; i++) {
        data[i] = buf + i * 13 % 97;
        len[i] = 1000 + next() % (cap - 2000);
    }
    check(data, len, 64);
    free(buf);
}

Test(md5_multi, scalar_matches_and_reports)
{
    const unsigned char *data[3] = {(const unsigned char *)"x", (const unsigned char *)"yy",
                                    (const unsigned char *)"zzz"};
    size_t len[3] = {1, 2, 3};
    unsigned char a[3][MD5_MULTI_LEN], b[3][MD5_MULTI_LEN];
    md5_multi(data, len, 3, a);
    md5_multi_scalar(data, len, 3, b);
    cr_assert(memcmp(a, b, sizeof a) == 0);
    cr_log_info("md5_multi side by side: %s", md5_multi_vector() ? "yes" : "no");
}
