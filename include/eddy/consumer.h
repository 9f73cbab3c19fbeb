/*
 * eddy/consumer.h: a KCL-style consumer as a library: leases and checkpoints in a DynamoDB table (eddy
 * serves the DynamoDB subset it needs, so eddy alone is enough; real Kinesis with real DynamoDB works too),
 * failover, balancing, and resharding in order.
 *
 * A worker (eddy_consumer_t) of an application:
 *   - keeps the application's lease table (DynamoDB, named after the application) with one lease per shard
 *     in the KCL's schema (leaseKey, leaseOwner, leaseCounter, checkpoint, checkpointSubSequenceNumber,
 *     ownerSwitchesSinceCheckpoint, parentShardId, childShardIds, startingHashKey, endingHashKey), changed only
 *     by conditional writes on leaseCounter and leaseOwner;
 *   - renews the leases it holds every failover_ms / 3; a lease whose counter nobody changed for failover_ms
 *     is expired and may be taken; each taker cycle (every taker_interval_ms) it takes available leases and,
 *     when below its fair share (ceil(leases / workers)), steals from every worker above it, so that a new
 *     worker reaches its share in one or two cycles (the KCL steals one lease per cycle);
 *   - runs a record processor per held shard: a child shard starts only once each parent that has a lease
 *     has been checkpointed at SHARD_END (so per-key order holds across splits and merges);
 *   - reads by polling (GetRecords) or by enhanced fan-out (SubscribeToShard), de-aggregates KPL records by
 *     the KCL's rules (sub-sequence numbers), and resumes after a checkpoint at the next user record, also
 *     in the middle of an aggregate.
 * Guarantees: at-least-once (a record after the last checkpoint may be processed again by the next owner of
 * its shard); in order per shard, and per partition key across reshards.
 *
 * Threads: fixed in number: one coordinator (renew, take, shard sync) and `threads` processing threads that
 * serve every shard (a shard's callbacks are called serially, never concurrently), plus the I/O threads of
 * the two clients. Not one per shard.
 */
#ifndef EDDY_CONSUMER_H
#define EDDY_CONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy/client.h"
#include "eddy/error.h"
#include "eddy/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configuration ---- */

typedef struct eddy_consumer_config eddy_consumer_config_t;

/* NULL only when out of memory. */
EDDY_API eddy_consumer_config_t *eddy_consumer_config_new(void);
EDDY_API void eddy_consumer_config_free(eddy_consumer_config_t *cfg);
/* Sets one key (value copied). Returns 0, or EDDY_ERR_INVALID with the reason in err. Keys (KCL name; default):
 *   application              the application name (applicationName; required): names the lease table
 *   stream                   the stream name (streamName; required)
 *   lease_table              the lease table's name (tableName; the application name)
 *   worker_id                this worker (workerIdentifier; "<hostname>:<pid>:<random>")
 *   initial_position         TRIM_HORIZON | LATEST | AT_TIMESTAMP (initialPositionInStream; LATEST):
 *                            where a new lease starts; later starts go on from the checkpoint
 *   initial_timestamp        AT_TIMESTAMP's time: seconds since the epoch (fractions allowed)
 *   failover_ms              lease duration (failoverTimeMillis; 10000; at least 300)
 *   taker_interval_ms        between taker cycles (2 * (failover + 25))
 *   parent_poll_ms           a child re-checks its parents (parentShardPollIntervalMillis; 10000)
 *   shard_sync_ms            between shard syncs (shardSyncIntervalMillis; 60000)
 *   idle_between_reads_ms    polling: pause after an empty GetRecords (idleTimeBetweenReadsInMillis; 1000)
 *   max_records              polling: GetRecords Limit (maxRecords; 10000)
 *   max_leases               at most this many leases held (maxLeasesForWorker; no limit)
 *   threads                  processing threads (2; 1 .. 64)
 *   fan_out                  the name of a stream consumer for enhanced fan-out (registered when missing);
 *                            empty (the default): polling
 *   call_empty               true | false: call process_records for empty batches too
 *                            (callProcessRecordsEvenForEmptyRecordList; false) */
EDDY_API int eddy_consumer_config_set(eddy_consumer_config_t *cfg, const char *key, const char *value, char *err,
                                      size_t errlen);

/* ---- what a record processor sees ---- */

/* A user record (de-aggregated). Views valid during the process_records call only. */
typedef struct eddy_record {
    const unsigned char *data;
    size_t data_len;
    const char *partition_key; /* NUL-terminated */
    const char *explicit_hash_key; /* NUL-terminated, or NULL */
    const char *sequence_number;   /* the Kinesis record's, NUL-terminated */
    uint64_t sub_sequence_number;  /* index in its aggregate; 0 when not aggregated */
    bool aggregated;
    int64_t approximate_arrival_ms; /* ApproximateArrivalTimestamp, milliseconds since the epoch */
} eddy_record_t;

typedef struct eddy_checkpointer eddy_checkpointer_t;

/* Stores a checkpoint at the last record delivered so far (in shard_ended: SHARD_END, which lets the
 * children start). Synchronous. Returns 0; EDDY_ERR_LEASE_LOST when this worker no longer holds the lease
 * (another worker took it, or it could not be renewed within failover_ms: a zombie's checkpoint never
 * lands); EDDY_ERR_SHUTDOWN after the shard's last callback; or a transport/service error (retriable: try
 * again). The checkpointer is valid during the callback it was given to. @thread the callback's */
EDDY_API int eddy_checkpoint(eddy_checkpointer_t *cp);
/* Stores a checkpoint at (sequence_number, sub_sequence_number): it must lie between the last checkpoint
 * and the last record delivered, else EDDY_ERR_INVALID. Otherwise as eddy_checkpoint. */
EDDY_API int eddy_checkpoint_at(eddy_checkpointer_t *cp, const char *sequence_number, uint64_t sub_sequence_number);

typedef struct eddy_records_input {
    const eddy_record_t *records;
    size_t count;
    int64_t millis_behind_latest; /* -1 when unknown */
    const char *shard_id;
} eddy_records_input_t;

/* The record processor. One instance per shard lease: `initialize` makes its state; then process_records
 * (serially); the instance ends with exactly one of lease_lost, shard_ended or shutdown_requested, after
 * which the library never uses the state again (free it there). Every function is called on a processing
 * thread, may block (it holds up only its own shard), and must not call eddy_consumer_free. */
typedef struct eddy_processor_ops {
    /* shard_id; the checkpoint the shard starts after ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP" or a
     * sequence number with its sub-sequence number). Returns the shard's state (may be NULL). */
    void *(*initialize)(void *app, const char *shard_id, const char *sequence_number, uint64_t sub_sequence_number);
    void (*process_records)(void *state, const eddy_records_input_t *input, eddy_checkpointer_t *cp);
    /* Another worker took the lease (or it could not be renewed): checkpointing is no longer possible. */
    void (*lease_lost)(void *state);
    /* The shard is closed and every record was delivered: call eddy_checkpoint(cp), which stores SHARD_END
     * and lets the children start. Once that checkpoint succeeded the state is final. Without it the library
     * logs the error "the processor of SHARD did not checkpoint at the end of the shard" and calls
     * shard_ended again (same state) every 500 ms, until it does or the lease is lost (lease_lost). */
    void (*shard_ended)(void *state, eddy_checkpointer_t *cp);
    /* The worker is shutting down gracefully and still holds the lease: checkpoint now if wanted. */
    void (*shutdown_requested)(void *state, eddy_checkpointer_t *cp);
} eddy_processor_ops_t;

/* ---- the worker ---- */

typedef struct eddy_consumer eddy_consumer_t;

/* Makes a worker. kinesis and dynamodb are borrowed clients that must outlive it (dynamodb: a client with
 * service "dynamodb", e.g. the same eddy endpoint); cfg is borrowed (copied); ops is borrowed and must stay
 * valid; app is passed to initialize. Creates the lease table when missing (PAY_PER_REQUEST) and, for
 * fan-out, registers the stream consumer. Returns NULL with the reason in err. */
EDDY_API eddy_consumer_t *eddy_consumer_new(eddy_client_t *kinesis, eddy_client_t *dynamodb,
                                            const eddy_consumer_config_t *cfg, const eddy_processor_ops_t *ops,
                                            void *app, char *err, size_t errlen);
/* Starts the worker's threads. Returns 0 or an error. */
EDDY_API int eddy_consumer_start(eddy_consumer_t *c);
/* Asks the worker to stop. graceful: each held shard gets shutdown_requested (its chance to checkpoint) and
 * its lease is released for others at once; otherwise processors get lease_lost and the leases expire.
 * Returns at once; any thread (also a callback's). */
EDDY_API void eddy_consumer_shutdown(eddy_consumer_t *c, bool graceful);
/* Waits until the worker stopped (after eddy_consumer_shutdown: every shard's last callback ran). Returns 0,
or EDDY_ERR_INVALID for a NULL worker. */
EDDY_API int eddy_consumer_wait(eddy_consumer_t *c);
/* Shuts down (gracefully) when still running, waits, and frees. */
EDDY_API void eddy_consumer_free(eddy_consumer_t *c);

/* The worker's identity (static for its lifetime) and the number of leases it holds now. */
EDDY_API const char *eddy_consumer_worker_id(const eddy_consumer_t *c);
EDDY_API size_t eddy_consumer_lease_count(eddy_consumer_t *c);

/* Where the worker logs (default: stderr, lines "eddy consumer <worker>: ..."); NULL: nowhere. level 0 error,
 * 1 warning, 2 info. Set before eddy_consumer_start. */
typedef void (*eddy_log_fn)(void *arg, int level, const char *message);
EDDY_API void eddy_consumer_set_log(eddy_consumer_t *c, eddy_log_fn log, void *arg);

#ifdef __cplusplus
}
#endif

#endif
