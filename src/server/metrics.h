/*
 * metrics: the Kinesis metrics of streams and consumers (the CloudWatch names: IncomingBytes,
 * PutRecords.Latency, GetRecords.IteratorAgeMilliseconds, ...) and the server's request counters, recorded on
 * the hot path for the cost of a few plain stores and added up when someone reads them (scrape.c).
 *
 * Series. Each stream and each consumer that records anything gets a series in a fixed table of
 * METRICS_SERIES_MAX slots. A series id is slot | generation << 16 (never 0), cached in the stream's or
 * consumer's metrics_id, so that the hot path finds its series without a lookup. metrics_sweep (housekeeping)
 * frees the series whose stream or consumer is gone: their slot's generation moves on and the series
 * disappears from the exposition. A recording that still holds the old id (a put finishing after its stream
 * was deleted) is dropped.
 *
 * Threads. Every thread that records owns a table of blocks, one per series it has touched, and only that
 * thread writes them (relaxed atomic loads and stores: no locked instruction, no shared cache line). A
 * block carries the id of its series; when the slot was reused for another series since, the owner resets
 * the block before writing, and readers skip blocks whose id is stale. Readers add every thread's blocks up.
 *
 * Memory is bounded: at most METRICS_THREADS_MAX thread tables (the server's threads are fixed in number),
 * each with at most one block per live slot. Shard-level metrics (enhanced monitoring) live in the shard's
 * runtime state (dataplane.h), not here.
 */
#ifndef EDDY_SERVER_METRICS_H
#define EDDY_SERVER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/histogram.h"
#include "store/catalog.h"

#define METRICS_SERIES_MAX 4096
#define METRICS_THREADS_MAX 64
#define METRICS_OPS_MAX 64 /* operations (api/ops.c) counted by metrics_request */

/* Counters of a stream series (and, for the SubscribeToShard ones, of a consumer series). Bytes count the
 * record data and partition key, as the shard throughput limits do. */
typedef enum metrics_counter {
    MC_INCOMING_BYTES,
    MC_INCOMING_RECORDS,
    MC_PUT_RECORD_BYTES,
    MC_PUT_RECORD_SUCCESS,
    MC_PUT_RECORDS_BYTES,
    MC_PUT_RECORDS_SUCCESS,
    MC_PUT_RECORDS_SUCCESSFUL_RECORDS,
    MC_PUT_RECORDS_FAILED_RECORDS,
    MC_PUT_RECORDS_THROTTLED_RECORDS,
    MC_PUT_RECORDS_TOTAL_RECORDS,
    MC_GET_RECORDS_BYTES,
    MC_GET_RECORDS_RECORDS,
    MC_GET_RECORDS_SUCCESS,
    MC_READ_THROTTLED,  /* ReadProvisionedThroughputExceeded: GetRecords calls throttled */
    MC_WRITE_THROTTLED, /* WriteProvisionedThroughputExceeded: records throttled (PutRecord and PutRecords) */
    MC_SUBSCRIBE_RATE_EXCEEDED,
    MC_SUBSCRIBE_EVENT_BYTES,
    MC_SUBSCRIBE_EVENT_RECORDS,
    MC_SUBSCRIBE_EVENT_SUCCESS,
    MC_COUNT_,
} metrics_counter_t;

/* Latency histograms of a stream series. */
typedef enum metrics_histogram {
    MH_PUT_RECORD_LATENCY,
    MH_PUT_RECORDS_LATENCY,
    MH_GET_RECORDS_LATENCY,
    MH_COUNT_,
} metrics_histogram_t;

/* HTTP statuses counted apart by metrics_request; others count as "other". */
#define METRICS_STATUSES 8
extern const int metrics_statuses[METRICS_STATUSES - 1]; /* 200, 400, 401, 403, 404, 413, 500; then other */

typedef struct metrics metrics_t;

metrics_t *metrics_new(void);
/* Frees everything; no thread may record any more. */
void metrics_free(metrics_t *m);

/* The series of a stream or consumer, created on first use (and cached in s->metrics_id / c->metrics_id).
 * 0 when the table is full (nothing is recorded then; logged once). Requires the catalog lock (read is
 * enough). */
uint32_t metrics_stream_series(metrics_t *m, stream_t *s);
uint32_t metrics_consumer_series(metrics_t *m, const stream_t *s, consumer_t *c);

/* Recording (any thread; cheap). Ignored when series is 0 or stale. */
void metrics_add(metrics_t *m, uint32_t series, metrics_counter_t k, uint64_t v);
void metrics_observe(metrics_t *m, uint32_t series, metrics_histogram_t h, uint64_t us);
/* One finished request: op is the index of the operation in api_ops() (-1: none, e.g. an unknown
 * operation or a rejected signature), status its HTTP status, us its latency. */
void metrics_request(metrics_t *m, int op, int status, uint64_t us);

/* Reading (any thread). */
typedef struct metrics_series_info {
    uint32_t id;
    bool consumer;
    char stream[STREAM_NAME_MAX + 1];
    int64_t stream_created_ms;
    char consumer_name[CONSUMER_NAME_MAX + 1];
    int64_t consumer_created_ms;
} metrics_series_info_t;
/* The live series, sorted by stream then consumer name; *out is malloc'd (the caller frees it). */
size_t metrics_list_series(metrics_t *m, metrics_series_info_t **out);
/* Adds up a series' counters and histograms over all threads (zeros when it is stale). */
void metrics_read_series(metrics_t *m, uint32_t series, uint64_t counters[MC_COUNT_],
                         histogram_snapshot_t hist[MH_COUNT_]);
/* Adds up the request counters: requests[op + 1][status slot] and latency[op + 1] (row 0: no operation). */
typedef struct metrics_requests {
    uint64_t requests[METRICS_OPS_MAX + 1][METRICS_STATUSES];
    histogram_snapshot_t latency[METRICS_OPS_MAX + 1];
} metrics_requests_t;
void metrics_read_requests(metrics_t *m, metrics_requests_t *out);

/* Frees the series whose stream or consumer no longer exists in cat (compared by name and creation time).
 * Requires the catalog lock (read is enough). */
void metrics_sweep(metrics_t *m, catalog_t *cat);

#endif
