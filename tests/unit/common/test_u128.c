/* Unit tests for common/u128: parsing, formatting and the even split of the hash key space. */
#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

#include "common/u128.h"

static const char *fmt(u128 v)
{
    static char out[U128_DEC_MAX];
    u128_format(v, out);
    return out;
}

Test(u128, parse_and_format_round_trip)
{
    const char *values[] = {"0", "1", "9", "10", "18446744073709551615", "18446744073709551616",
                            "340282366920938463463374607431768211455"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        u128 v;
        cr_assert_eq(u128_parse(values[i], strlen(values[i]), &v), 0, "%s", values[i]);
        cr_assert_str_eq(fmt(v), values[i]);
    }
}

Test(u128, parse_rejects_malformed_and_out_of_range)
{
    u128 v;
    cr_assert_eq(u128_parse("", 0, &v), -EINVAL);
    cr_assert_eq(u128_parse("01", 2, &v), -EINVAL);
    cr_assert_eq(u128_parse("-1", 2, &v), -EINVAL);
    cr_assert_eq(u128_parse("12a", 3, &v), -EINVAL);
    cr_assert_eq(u128_parse("340282366920938463463374607431768211456", 39, &v), -ERANGE);
    cr_assert_eq(u128_parse("999999999999999999999999999999999999999", 39, &v), -ERANGE);
    cr_assert_eq(u128_parse("1000000000000000000000000000000000000000", 40, &v), -EINVAL);
}

Test(u128, even_split_matches_kinesis)
{
    u128 s, e;
    u128_even_range(0, 1, &s, &e);
    cr_assert_str_eq(fmt(s), "0");
    cr_assert_str_eq(fmt(e), "340282366920938463463374607431768211455");

    u128_even_range(0, 2, &s, &e);
    cr_assert_str_eq(fmt(e), "170141183460469231731687303715884105727");
    u128_even_range(1, 2, &s, &e);
    cr_assert_str_eq(fmt(s), "170141183460469231731687303715884105728");

    /* 3 shards: floor(2^128 / 3) keys each, the last takes the remainder. */
    u128_even_range(0, 3, &s, &e);
    cr_assert_str_eq(fmt(e), "113427455640312821154458202477256070484");
    u128_even_range(1, 3, &s, &e);
    cr_assert_str_eq(fmt(s), "113427455640312821154458202477256070485");
    cr_assert_str_eq(fmt(e), "226854911280625642308916404954512140969");
    u128_even_range(2, 3, &s, &e);
    cr_assert_str_eq(fmt(s), "226854911280625642308916404954512140970");
    cr_assert_str_eq(fmt(e), "340282366920938463463374607431768211455");
}

Test(u128, even_split_is_contiguous_for_many_counts)
{
    for (uint32_t n = 1; n <= 600; n++) {
        u128 prev_end = 0;
        for (uint32_t i = 0; i < n; i++) {
            u128 s, e;
            u128_even_range(i, n, &s, &e);
            if (i == 0) {
                cr_assert(s == 0);
            } else {
                cr_assert(s == prev_end + 1, "gap at shard %u of %u", i, n);
            }
            cr_assert(e >= s);
            prev_end = e;
        }
        cr_assert(prev_end == U128_MAX, "n=%u does not end at 2^128-1", n);
    }
}

Test(u128, md5_of_partition_key_is_big_endian)
{
    unsigned char digest[16];
    cr_assert(EVP_Digest("a", 1, digest, NULL, EVP_md5(), NULL)); /* 0cc175b9c0f1b6a831c399e269772661 */
    u128 v = u128_from_be_bytes(digest);
    cr_assert_eq((uint64_t)(v >> 64), 0x0cc175b9c0f1b6a8ULL);
    cr_assert_eq((uint64_t)v, 0x31c399e269772661ULL);
}
