/*
 * u128: unsigned 128-bit integers for Kinesis hash keys (0 .. 2^128-1), decimal conversion, and the even
 * split of the hash key space into shard ranges as Kinesis does it.
 */
#ifndef EDDY_COMMON_U128_H
#define EDDY_COMMON_U128_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

__extension__ typedef unsigned __int128 u128;

#define U128_MAX (~(u128)0)
#define U128_DEC_MAX 40 /* 39 digits + NUL */

/* Parses a decimal string of exactly n bytes ("0" or no leading zero, digits only, <= 2^128-1).
 * Returns 0, or -EINVAL for a malformed string, -ERANGE for a value above 2^128-1. */
int u128_parse(const char *s, size_t n, u128 *out);
/* Formats v in decimal into out (at least U128_DEC_MAX bytes); returns the length. */
size_t u128_format(u128 v, char *out);

/* The hash key range of shard i of n when the key space is split evenly: every shard gets
 * floor(2^128 / n) keys and the last shard also takes the remainder. */
void u128_even_range(uint32_t i, uint32_t n, u128 *start, u128 *end);

/* The hash key of a partition key: MD5 of its bytes read as a big-endian 128-bit integer. */
u128 u128_from_be_bytes(const unsigned char bytes[16]);

#endif
