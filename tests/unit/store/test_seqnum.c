/* Unit tests for store/seqnum: layout, ordering and parsing of version-2 sequence numbers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "store/seqnum.h"

__extension__ typedef unsigned __int128 u128_t;

Test(seqnum, round_trip)
{
    seqnum_t in = {.shard_created_secs = 1795318191, .index = 123456789, .arrival_secs = 1795318999,
                   .shard_index = 42};
    char s[SEQNUM_STR_MAX];
    size_t n = seqnum_format(&in, s);
    cr_assert_eq(n, strlen(s));
    seqnum_t out;
    cr_assert_eq(seqnum_parse(s, n, &out), 0);
    cr_assert_eq(out.shard_created_secs, in.shard_created_secs);
    cr_assert_eq(out.index, in.index);
    cr_assert_eq(out.arrival_secs, in.arrival_secs);
    cr_assert_eq(out.shard_index, in.shard_index);
}

Test(seqnum, extremes_round_trip)
{
    seqnum_t in = {.shard_created_secs = (1ULL << 36) - 1, .index = UINT64_MAX, .arrival_secs = (1ULL << 36) - 1,
                   .shard_index = UINT32_MAX};
    char s[SEQNUM_STR_MAX];
    size_t n = seqnum_format(&in, s);
    seqnum_t out;
    cr_assert_eq(seqnum_parse(s, n, &out), 0);
    cr_assert_eq(out.index, UINT64_MAX);
    cr_assert_eq(out.shard_index, UINT32_MAX);
}

/* The KCL's SequenceNumberValidator: bit length 186, version 2 at bit 184, shard id in bits 4..35. */
Test(seqnum, kcl_can_read_version_and_shard)
{
    seqnum_t in = {.shard_created_secs = 1795318191, .index = 7, .arrival_secs = 1795318191, .shard_index = 9};
    char s[SEQNUM_STR_MAX];
    size_t n = seqnum_format(&in, s);
    /* Decimal to bits by hand: value = high * 2^128 + low. */
    u128_t high = 0, low = 0;
    for (size_t i = 0; i < n; i++) {
        /* (high:low) = (high:low) * 10 + d, with 128-bit halves */
        u128_t d = (u128_t)(s[i] - '0');
        u128_t lo_lo = (low & (((u128_t)1 << 64) - 1)) * 10 + d;
        u128_t lo_hi = (low >> 64) * 10 + (lo_lo >> 64);
        low = (lo_hi << 64) | (lo_lo & (((u128_t)1 << 64) - 1));
        high = high * 10 + (lo_hi >> 64);
    }
    /* bit length 186 means the highest set bit is bit 185 = bit 57 of high */
    cr_assert(high >> 57 == 1, "bit length is not 186");
    cr_assert_eq((unsigned)((high >> 56) & 0xF), 2u, "version nibble");
    cr_assert_eq((unsigned)((low >> 4) & 0xFFFFFFFFu), 9u, "shard id");
    cr_assert(n >= 56 && n <= 57);
}

Test(seqnum, ordering_within_and_across_shards)
{
    seqnum_t a = {.shard_created_secs = 100, .index = 5, .arrival_secs = 999, .shard_index = 1};
    seqnum_t b = {.shard_created_secs = 100, .index = 6, .arrival_secs = 1, .shard_index = 1};
    seqnum_t child = {.shard_created_secs = 100, .index = 7, .arrival_secs = 1, .shard_index = 2};
    cr_assert_lt(seqnum_cmp(&a, &b), 0);
    cr_assert_lt(seqnum_cmp(&b, &child), 0);
    char sa[SEQNUM_STR_MAX], sb[SEQNUM_STR_MAX], sc[SEQNUM_STR_MAX];
    size_t na = seqnum_format(&a, sa), nb = seqnum_format(&b, sb), nc = seqnum_format(&child, sc);
    /* Numeric order of the decimal strings agrees (equal lengths here, so strcmp orders them). */
    cr_assert_eq(na, nb);
    cr_assert_eq(nb, nc);
    cr_assert_lt(strcmp(sa, sb), 0);
    cr_assert_lt(strcmp(sb, sc), 0);
}

Test(seqnum, rejects_foreign_numbers)
{
    seqnum_t out;
    cr_assert_eq(seqnum_parse("0", 1, &out), -EINVAL);
    cr_assert_eq(seqnum_parse("12345", 5, &out), -EINVAL);
    cr_assert_eq(seqnum_parse("", 0, &out), -EINVAL);
    cr_assert_eq(seqnum_parse("4968044824415289041461213915186808121770147130817013350x", 56, &out), -EINVAL);
    char big[80];
    memset(big, '9', 70);
    cr_assert_eq(seqnum_parse(big, 70, &out), -EINVAL);
}

Test(seqnum, cursor_matches_full_conversion)
{
    seqnum_cursor_t cur = {0};
    uint64_t starts[] = {0, 1, 999999, (1ULL << 48) - 3, UINT64_MAX - 5};
    for (size_t k = 0; k < sizeof starts / sizeof starts[0]; k++) {
        for (uint64_t i = 0; i < 5; i++) {
            seqnum_t sn = {.shard_created_secs = 1795318191, .index = starts[k] + i,
                           .arrival_secs = 1795318191 + (i == 3), .shard_index = 3, .stream_tag = 0xABC};
            char a[SEQNUM_STR_MAX], b[SEQNUM_STR_MAX];
            size_t na = seqnum_format_next(&cur, &sn, a);
            size_t nb = seqnum_format(&sn, b);
            cr_assert_eq(na, nb);
            cr_assert_str_eq(a, b, "index %llu", (unsigned long long)sn.index);
        }
    }
}
