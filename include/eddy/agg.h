/*
 * eddy/agg.h: the KPL aggregated record format, encoded and decoded exactly as the KPL and the KCL do.
 *
 * An aggregated record is one Kinesis record whose data is
 *     F3 89 9A C2 | protobuf AggregatedRecord | MD5(protobuf), 16 bytes
 * where AggregatedRecord holds a table of partition keys, a table of explicit hash keys (decimal strings)
 * and the user records (index into each table, data). Its outer partition key is "a" and its explicit
 * hash key the hash key of its first user record, so that it lands on the shard its records were meant
 * for (the KPL's rule); eddy_agg_outer_key gives both.
 *
 * Decoding follows the KCL (AggregatorUtil): data that is not an aggregate (too short, no magic, a bad MD5,
 * a protobuf that does not parse) is passed through as one user record (aggregated false, sub-sequence 0);
 * otherwise each user record gets its index as sub-sequence number, its own partition key, its explicit hash
 * key when it has one, and its effective hash key (the explicit one, else MD5 of the partition key). With a
 * shard range given, an aggregate any of whose records falls outside it is dropped whole, as the KCL does.
 *
 * Hash keys are 16-byte big-endian unsigned integers (0 .. 2^128-1).
 *
 * Threads: an eddy_agg_t is used by one thread at a time; the decoder is pure.
 */
#ifndef EDDY_AGG_H
#define EDDY_AGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy/error.h"
#include "eddy/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EDDY_AGG_MAGIC_LEN 4
#define EDDY_AGG_OVERHEAD 20 /* magic + MD5 */
#define EDDY_AGG_DEFAULT_MAX_BYTES 51200 /* the KPL's AggregationMaxSize */
#define EDDY_HASH_KEY_STR_MAX 40 /* decimal digits of 2^128-1, and the NUL */

/* The Kinesis hash key of a partition key: MD5 of its bytes, big-endian. */
EDDY_API void eddy_hash_key(const char *partition_key, size_t len, unsigned char out[16]);
/* Decimal text of a hash key (out: EDDY_HASH_KEY_STR_MAX bytes); returns its length. */
EDDY_API size_t eddy_hash_key_format(const unsigned char key[16], char *out);
/* Parses a decimal hash key; false when it is not an integer in 0 .. 2^128-1 written as Kinesis takes an
 * ExplicitHashKey (digits only, no leading zero). */
EDDY_API bool eddy_hash_key_parse(const char *s, size_t len, unsigned char out[16]);

/* ---- encoding ---- */

typedef struct eddy_agg eddy_agg_t;

/* An empty aggregate that will hold at most max_bytes encoded (0: EDDY_AGG_DEFAULT_MAX_BYTES; at least 64)
 * and at most max_count user records (0: no limit). NULL when out of memory. */
EDDY_API eddy_agg_t *eddy_agg_new(size_t max_bytes, size_t max_count);
EDDY_API void eddy_agg_free(eddy_agg_t *a);
/* Empties it for reuse (keeps its memory). */
EDDY_API void eddy_agg_reset(eddy_agg_t *a);

/* Adds a user record (all copied): partition key (1..256 characters of valid UTF-8, as Kinesis counts them),
 * explicit hash key as decimal text (0 .. 2^128-1, no sign or leading zero, as Kinesis takes it) or NULL,
 * data. Returns 0; EDDY_ERR_TOO_LARGE (aggregate unchanged) when the record would take it over its size or
 * count and it is not empty (encode it, reset, add again); a record too large even for an empty aggregate
 * is added alone, and the caller sends it as a plain record (eddy_agg_size says how big it is);
 * EDDY_ERR_INVALID for a bad key; EDDY_ERR_NOMEM. */
EDDY_API int eddy_agg_add(eddy_agg_t *a, const char *partition_key, size_t pk_len, const char *explicit_hash_key,
                 const void *data, size_t data_len);
/* User records held. */
EDDY_API size_t eddy_agg_count(const eddy_agg_t *a);
/* The exact size of the encoded aggregate (magic, protobuf and MD5) were it encoded now. */
EDDY_API size_t eddy_agg_size(const eddy_agg_t *a);
/* Encodes into out (at least eddy_agg_size bytes). Returns the length written. */
EDDY_API size_t eddy_agg_encode(const eddy_agg_t *a, unsigned char *out);
/* Encodes n aggregates at once: the same bytes as eddy_agg_encode(aggs[i], out[i]) for each (out[i]: at
 * least eddy_agg_size(aggs[i]) bytes, not overlapping), with their MD5s computed side by side, several
 * times faster on CPUs with AVX-512. lens[i] gets the length written. Aggregates and outputs borrowed. */
EDDY_API void eddy_agg_encode_many(const eddy_agg_t *const *aggs, size_t n, unsigned char *const *out,
                                   size_t *lens);
/* The outer record's keys by the KPL's rule: partition key "a" and, as explicit hash key, the decimal hash
 * key of the first user record (ehk: EDDY_HASH_KEY_STR_MAX bytes). Requires at least one record. */
EDDY_API void eddy_agg_outer_key(const eddy_agg_t *a, const char **partition_key, char *ehk);

/* ---- decoding ---- */

/* One user record. Views into the blob (or the outer record's keys), valid during the visit only. */
typedef struct eddy_user_record {
    const unsigned char *data;
    size_t data_len;
    const char *partition_key; /* not NUL-terminated */
    size_t partition_key_len;
    const char *explicit_hash_key; /* decimal text, or NULL when the record has none */
    size_t explicit_hash_key_len;
    unsigned char hash_key[16]; /* effective: the explicit one, else MD5 of the partition key */
    uint64_t sub_sequence_number; /* index in the aggregate; 0 when not aggregated */
    bool aggregated;
} eddy_user_record_t;

/* Returns 0 to go on, anything else to stop (eddy_agg_decode then returns it). */
typedef int (*eddy_agg_visit_fn)(void *arg, const eddy_user_record_t *rec);

/* Visits the user records an aggregate being built holds, in the order added (sub_sequence_number: the
 * index; aggregated: true; hash_key: effective, as in decoding). Views into the aggregate, valid until it
 * next changes. Returns 0 or what a visit returned. */
EDDY_API int eddy_agg_records(const eddy_agg_t *a, eddy_agg_visit_fn visit, void *arg);

/* Decodes one Kinesis record (its data, partition key and explicit hash key or NULL) into user records.
 * shard_start/shard_end (16 bytes each, or both NULL): the consuming shard's hash key range. Every record is
 * checked before the first visit, so a dropped aggregate visits nothing. Returns 0, what a visit returned,
 * EDDY_AGG_DROPPED when the aggregate was dropped by the shard filter, or EDDY_ERR_NOMEM. */
#define EDDY_AGG_DROPPED 1
EDDY_API int eddy_agg_decode(const void *data, size_t len, const char *partition_key, size_t pk_len,
                    const char *explicit_hash_key, const unsigned char *shard_start,
                    const unsigned char *shard_end, eddy_agg_visit_fn visit, void *arg);

#ifdef __cplusplus
}
#endif

#endif
