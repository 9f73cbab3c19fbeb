/*
 * seqnum: Kinesis sequence numbers, "version 2" shape.
 *
 * A sequence number is a 186-bit unsigned integer written in decimal (56-57 digits), laid out as below
 * (bit 0 is the least significant). The shape is the one Kinesis uses and the KCL's SequenceNumberValidator
 * reads: bit length 186, version 2 in bits 184..187, shard index in bits 4..35.
 *
 *   bits      width  field
 *   184..187    4    version = 2
 *   148..183   36    shard creation time, epoch seconds
 *   144..147    4    stream tag, high 4 bits
 *    80..143   64    record index within the shard (the ordering key)
 *    72..79     8    stream tag, low 8 bits
 *    36..71    36    arrival time of the record, epoch seconds (informational)
 *     4..35    32    shard index (the number in shardId-000000000007)
 *     0..3      4    version again = 2
 *
 * The 12-bit stream tag is a hash of the stream's name and creation time: it tells two streams' numbers apart
 * when their shards were created in the same second (1 in 4096 pairs still collide).
 *
 * Ordering rule: within a shard, numbers compare as (creation time, record index). A child shard's creation
 * time is >= its parents' and its first index is above every parent index, so every child number is larger
 * than every parent number.
 */
#ifndef EDDY_STORE_SEQNUM_H
#define EDDY_STORE_SEQNUM_H

#include <stddef.h>
#include <stdint.h>

#define SEQNUM_STR_MAX 64

typedef struct seqnum {
    uint64_t shard_created_secs; /* < 2^36 */
    uint64_t index;
    uint64_t arrival_secs; /* < 2^36 */
    uint32_t shard_index;
    uint16_t stream_tag; /* < 2^12 */
} seqnum_t;

/* The stream tag of a stream (see above). */
uint16_t seqnum_stream_tag(const char *stream_name, int64_t stream_created_ms);

/* Writes the decimal form into out (SEQNUM_STR_MAX bytes); returns its length. */
size_t seqnum_format(const seqnum_t *s, char *out);
/* Formats runs of numbers fast: the number of the next record (index + 1, same shard, same arrival second)
 * is the previous one plus 2^80, done as decimal addition instead of a full conversion. Start with
 * `seqnum_cursor_t cur = {0};`. */
typedef struct seqnum_cursor {
    seqnum_t last;
    char digits[SEQNUM_STR_MAX]; /* right-aligned in the array, len digits */
    size_t len;
    int valid;
} seqnum_cursor_t;
size_t seqnum_format_next(seqnum_cursor_t *cur, const seqnum_t *s, char *out);

/* Parses a decimal string of n bytes. Returns 0, or -EINVAL when it is not a version-2 number. */
int seqnum_parse(const char *str, size_t n, seqnum_t *out);
/* Orders two numbers of the same shard lineage: <0, 0, >0. */
int seqnum_cmp(const seqnum_t *a, const seqnum_t *b);

#endif
