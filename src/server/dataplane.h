/*
 * dataplane: what the record operations need beyond the catalog: each shard's runtime state (its storage
 * handle and its throughput limiters), shard iterators (authenticated, expiring tokens) and retention
 * trimming.
 */
#ifndef EDDY_SERVER_DATAPLANE_H
#define EDDY_SERVER_DATAPLANE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "server/server.h"
#include "store/engine.h"

/* Kinesis per-shard limits. */
#define SHARD_WRITE_BYTES_PER_SEC (1024.0 * 1024.0)
#define SHARD_WRITE_RECORDS_PER_SEC 1000.0
#define SHARD_READ_BYTES_PER_SEC (2.0 * 1024.0 * 1024.0)
#define SHARD_READ_CALLS_PER_SEC 5.0
#define SHARD_ITERATOR_CALLS_PER_SEC 5.0
#define ITERATOR_TTL_MS (300 * 1000)

typedef struct shard_runtime {
    engine_shard_t *storage;
    pthread_mutex_t lock; /* guards the limiter state below */
    double write_bytes, write_records;
    int64_t write_ms;
    double read_bytes, read_calls;
    int64_t read_ms;
    double iterator_calls;
    int64_t iterator_ms;
    /* write demand (records offered, throttled or not) since the autoscaler last looked */
    _Atomic uint64_t demand_bytes, demand_records;
    int hot_seconds, cold_seconds; /* the autoscaler's (housekeeping thread) */
    /* Shard-level metrics (enhanced monitoring): counted only while the stream enables them. */
    _Atomic uint64_t m_incoming_bytes, m_incoming_records, m_outgoing_bytes, m_outgoing_records;
    _Atomic uint64_t m_read_throttled, m_write_throttled;
    /* What the last GetRecords on the shard saw: its MillisBehindLatest (the age of the last record it
     * returned, 0 at the tip), and when (wall clock ms; 0: never). Always kept: the stream-level
     * GetRecords.IteratorAgeMilliseconds is the largest of its shards' recent ones. */
    _Atomic int64_t iterator_age_ms, iterator_age_at_ms;
} shard_runtime_t;

/* Adds v to one of a shard's enhanced-monitoring counters when the stream enables `metric` (enum
 * shard_metric in catalog.h). */
static inline void dataplane_count(const stream_t *s, _Atomic uint64_t *counter, uint32_t metric, uint64_t v)
{
    if ((s->cfg.shard_metrics & metric) != 0 && v != 0) {
        atomic_fetch_add_explicit(counter, v, memory_order_relaxed);
    }
}

/* Opens the storage of every shard of s that has none yet (encrypting new records when the stream is
 * encrypted). Requires the catalog write lock. */
int dataplane_attach_stream(server_t *srv, stream_t *s);
/* Makes the storage of every shard of s encrypt the records appended from now on under the stream's KeyId,
 * or store them in clear, as s->cfg says (after Start/StopStreamEncryption). Requires the catalog write
 * lock. Returns 0, or -ENOENT when the KeyId does not resolve any more (logged; puts then fail rather
 * than store records in clear). */
int dataplane_apply_encryption(server_t *srv, stream_t *s);
/* The catalog drop hook: deletes the stream's records and frees the runtime state. */
void dataplane_drop_stream(void *srv, stream_t *s);
/* Frees the runtime state without touching data (shutdown). */
void dataplane_detach_all(server_t *srv);

/* Counts one record of `bytes` offered to the shard (for the on-demand autoscaler). */
void dataplane_note_demand(shard_runtime_t *rt, size_t bytes);
/* Write limiter: takes one record of `bytes` from the shard's budget; false when throttled. */
bool dataplane_take_write(shard_runtime_t *rt, int64_t now_ms, size_t bytes);
/* Read limiter: one GetRecords call; false when throttled. dataplane_charge_read books the bytes read. */
bool dataplane_take_read(shard_runtime_t *rt, int64_t now_ms);
void dataplane_charge_read(shard_runtime_t *rt, size_t bytes);
/* GetShardIterator limiter (5 calls/s per shard); false when throttled. */
bool dataplane_take_iterator(shard_runtime_t *rt, int64_t now_ms);

/* Shard iterators. */
typedef struct iterator_pos {
    char stream[STREAM_NAME_MAX + 1];
    int64_t stream_created_ms;
    uint32_t shard;
    uint64_t position; /* record index of the next record to read */
    int64_t issued_ms;
} iterator_pos_t;

typedef enum iterator_status {
    ITERATOR_OK,
    ITERATOR_INVALID,
    ITERATOR_EXPIRED,
} iterator_status_t;

void iterator_encode(const server_t *srv, const iterator_pos_t *pos, buf_t *out);
iterator_status_t iterator_decode(const server_t *srv, const char *token, size_t len, int64_t now_ms,
                                  iterator_pos_t *pos);

/* Loads or creates the iterator signing key (kept in the catalog so iterators survive restarts). */
int dataplane_init_keys(server_t *srv);

/* Deletes records older than each stream's retention. Takes the catalog read lock itself. */
void dataplane_trim(server_t *srv, int64_t now_ms);

/* First record index still inside the retention period. */
uint64_t dataplane_trim_horizon(server_t *srv, const stream_t *s, shard_runtime_t *rt, int64_t now_ms);

#endif
