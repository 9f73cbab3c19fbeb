/*
 * eddy/producer.h: a KPL-compatible producer as a library: no daemon, bounded memory, and a clear outcome
 * for every user record.
 *
 * eddy_producer_put() hands over one user record and returns at once; the record then goes through:
 *   1. shard prediction: its hash key (MD5 of the partition key, or the explicit hash key) against the
 *      stream's shard map (ListShards; refreshed after a reshard or a misrouted record);
 *   2. aggregation (optional, on by default): user records for the same predicted shard are packed into one
 *      Kinesis record in the KPL format (eddy/agg.h) until it reaches aggregation_max_bytes or _count, or
 *      the oldest record has waited record_max_buffered_time_ms;
 *   3. rate limiting: per predicted shard, token buckets at the shard limits (1000 records/s, 1 MiB/s)
 *      times rate_limit / 100;
 *   4. collection: Kinesis records into PutRecords requests (at most 500 records and 5 MiB);
 *   5. the request (eddy/client.h); the records that failed in the reply, and only those, are retried
 *      (re-aggregated) until they succeed or their record_ttl_ms passes.
 * The callback of each user record is called exactly once: success with the shard, sequence number and
 * sub-sequence number, or a final error with every attempt listed.
 *
 * Memory is bounded: the bytes of user records not yet completed are counted against
 * max_outstanding_bytes; past it, put blocks until there is room (block_when_full true, the default) or
 * returns EDDY_ERR_WOULD_BLOCK.
 *
 * Threads: put, flush, flush_sync and the readers may be called from any thread. The producer has one
 * thread of its own (deadlines, rate limiting, sending); callbacks run on it or on the client's I/O thread
 * and must not block or call back into the producer except eddy_producer_put with block_when_full false.
 */
#ifndef EDDY_PRODUCER_H
#define EDDY_PRODUCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eddy/client.h"
#include "eddy/error.h"
#include "eddy/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configuration ---- */

typedef struct eddy_producer_config eddy_producer_config_t;

/* The KPL's defaults. NULL only when out of memory. */
EDDY_API eddy_producer_config_t *eddy_producer_config_new(void);
EDDY_API void eddy_producer_config_free(eddy_producer_config_t *cfg);
/* Sets one key (value copied). Returns 0, or EDDY_ERR_INVALID with the reason in err. Keys (KPL name):
 *   aggregation                  true | false (AggregationEnabled; default true)
 *   aggregation_max_bytes        64 .. 10485760 (AggregationMaxSize; 51200)
 *   aggregation_max_count        1 .. (AggregationMaxCount; no limit)
 *   collection_max_count         1 .. 500 (CollectionMaxCount; 500)
 *   collection_max_bytes         52224 .. 5242880 (CollectionMaxSize; 5242880)
 *   record_max_buffered_time_ms  0 .. (RecordMaxBufferedTime; 100)
 *   record_ttl_ms                100 .. (RecordTtl; 30000)
 *   rate_limit                   percent of the shard limits, 1 .. 1000000000 (RateLimit; 150), or "off"
 *   fail_if_throttled            true | false (FailIfThrottled; false)
 *   max_user_record_bytes        64 .. 10485760 (MaxUserRecordSize; 1048576)
 *   max_outstanding_bytes        1048576 .. (default 268435456: 256 MiB)
 *   block_when_full              true | false (default true) */
EDDY_API int eddy_producer_config_set(eddy_producer_config_t *cfg, const char *key, const char *value, char *err,
                                      size_t errlen);

/* ---- the producer ---- */

typedef struct eddy_producer eddy_producer_t;

/* Makes a producer that sends through client (borrowed: it must outlive the producer) with cfg (taken,
 * also on failure). NULL with the reason in err. */
EDDY_API eddy_producer_t *eddy_producer_new(eddy_client_t *client, eddy_producer_config_t *cfg, char *err,
                                            size_t errlen);
/* Sends everything buffered, waits until every record has completed (their callbacks ran), and frees the
 * producer. */
EDDY_API void eddy_producer_destroy(eddy_producer_t *p);

/* One attempt at putting a user record. */
typedef struct eddy_attempt {
    int64_t delay_ms;    /* from the put (or the previous attempt's end) to this attempt's request */
    int64_t duration_ms; /* of the request */
    bool success;
    const char *error_code;    /* "ProvisionedThroughputExceededException", "Expired", ... or NULL */
    const char *error_message; /* or NULL */
} eddy_attempt_t;

/* The outcome of a user record. Views valid during the callback only. */
typedef struct eddy_put_result {
    int err;                      /* EDDY_OK, or the final error (EDDY_ERR_EXPIRED, EDDY_ERR_SERVICE, ...) */
    const char *shard_id;         /* on success */
    const char *sequence_number;  /* on success: of the Kinesis record that carried it */
    uint64_t sub_sequence_number; /* its index in the aggregate (0 when sent alone) */
    bool aggregated;
    const char *error_code;       /* on failure: the last attempt's code */
    const char *error_message;
    const eddy_attempt_t *attempts;
    size_t attempt_count;
} eddy_put_result_t;

typedef void (*eddy_put_fn)(void *arg, const eddy_put_result_t *result);

/* Puts one user record (all copied): stream name, partition key, explicit hash key as
 * decimal text or NULL, data (up to max_user_record_bytes). The partition key is 1..256 characters of
 * valid UTF-8 (pk_len bytes). done(arg, result) is called exactly once,
 * later (never from within this call). Returns 0; EDDY_ERR_INVALID or EDDY_ERR_TOO_LARGE (not accepted,
 * done not called); EDDY_ERR_WOULD_BLOCK when full and block_when_full is false; EDDY_ERR_CLOSED after
 * destroy began. */
EDDY_API int eddy_producer_put(eddy_producer_t *p, const char *stream, const char *partition_key, size_t pk_len,
                               const char *explicit_hash_key, const void *data, size_t data_len, eddy_put_fn done,
                               void *arg);
/* One user record of eddy_producer_put_many: as eddy_producer_put's arguments; result is set. */
typedef struct eddy_producer_record {
    const char *partition_key;
    size_t pk_len;
    const char *explicit_hash_key; /* decimal text, or NULL */
    const void *data;
    size_t data_len;
    eddy_put_fn done;
    void *arg;
    int result; /* out: 0 (accepted: done will be called), or what eddy_producer_put would have returned */
} eddy_producer_record_t;

/* Puts n user records of one stream, in order, as n calls of eddy_producer_put would, at less cost per
 * record (one lock; without aggregation the partition keys are hashed side by side). Once a record is
 * refused with EDDY_ERR_WOULD_BLOCK or EDDY_ERR_CLOSED, so are the ones after it. Returns how many were
 * accepted. */
EDDY_API size_t eddy_producer_put_many(eddy_producer_t *p, const char *stream, eddy_producer_record_t *recs,
                                       size_t n);
/* Changes record_ttl_ms (0 or more) for the records already put too: a record older than it fails
 * (EDDY_ERR_EXPIRED) at its next failed attempt, or while it waits for its stream's shard map, instead of
 * being retried. For example 0 before eddy_producer_destroy, so that it does not wait for a stream that
 * is down. */
EDDY_API void eddy_producer_set_record_ttl(eddy_producer_t *p, int64_t ttl_ms);
/* Sends what is buffered now, without waiting for deadlines (stream NULL: every stream). */
EDDY_API void eddy_producer_flush(eddy_producer_t *p, const char *stream);
/* Flushes and waits until no record is outstanding. Must not be called from a callback. */
EDDY_API void eddy_producer_flush_sync(eddy_producer_t *p);
/* User records put and not yet completed. */
EDDY_API size_t eddy_producer_outstanding(const eddy_producer_t *p);

/* ---- metrics ---- */

typedef struct eddy_producer_metrics {
    uint64_t user_records_received;   /* accepted by put */
    uint64_t user_records_put;        /* completed successfully */
    uint64_t user_records_failed;     /* completed with an error */
    uint64_t user_records_expired;    /* of which: their record_ttl_ms passed */
    uint64_t user_records_pending;    /* outstanding now */
    uint64_t user_bytes_put;          /* data bytes of the user records put */
    uint64_t kinesis_records_put;     /* Kinesis records (aggregates count once) that succeeded */
    uint64_t kinesis_bytes_put;
    uint64_t put_records_requests;    /* PutRecords requests completed */
    uint64_t retries;                 /* user record attempts after the first */
    uint64_t throttles;               /* Kinesis records refused with ProvisionedThroughputExceeded */
    uint64_t errors;                  /* other per-record or whole-request errors */
    uint64_t shard_map_refreshes;
    double buffering_ms_avg;          /* put to first request, averaged over user records completed */
    double request_ms_avg;            /* PutRecords latency */
    double user_records_per_kinesis_record;
    double kinesis_records_per_request;
    uint64_t outstanding_bytes;
} eddy_producer_metrics_t;

EDDY_API void eddy_producer_metrics(const eddy_producer_t *p, eddy_producer_metrics_t *out);
/* Prints them, one "name value" per line. */
EDDY_API void eddy_producer_metrics_print(const eddy_producer_t *p, FILE *out);

#ifdef __cplusplus
}
#endif

#endif
