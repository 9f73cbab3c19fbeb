/*
 * sender: puts the agent's records into their streams through libeddy's producer (include/eddy/producer.h)
 * and keeps each one until the stream acknowledged it.
 *
 * Every record handed over is copied into an inflight_t queued on its source, in file order. The
 * producer's callback (on its thread) only links the record into a completion list and wakes the main
 * thread (an eventfd); the main thread then marks it acknowledged, or schedules it again after
 * min(retryMaxBackoffMillis, retryInitialBackoffMillis * 2^failures) +-30 % when it failed (whatever the
 * error: the stream may be down, deleted and recreated, throttled). Only a record the producer refuses for
 * good (larger than a Kinesis record, an invalid partition key) is dropped, and counted. The acknowledged
 * prefix of a source's queue is popped: its end offset is what the checkpoint may say.
 *
 * Memory is bounded: the bytes of records held (in flight or waiting to be retried) are kept below
 * eddy.maxBufferedBytes; has_room() says whether there is room, and the tailer stops reading while there is
 * none. The producers' own bound is set above it, so they never block the main thread.
 *
 * One producer per distinct (aggregation, maxBufferAgeMillis, maxBufferSizeRecords, maxBufferSizeBytes) of
 * the flows: usually one; all share one client. Threads: the producers' and the client's, fixed in number.
 */
#ifndef EDDY_AGENT_SENDER_H
#define EDDY_AGENT_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/config.h"
#include "agent/tailer.h"

typedef struct sender sender_t;

/* One record held until acknowledged (main thread, except done_next/done_err set by the callback). */
typedef struct inflight {
    struct inflight *next;      /* in its source's queue */
    struct inflight *done_next; /* in the completion list */
    struct sender *owner;
    tail_source_t *src;
    int64_t end_offset;
    int64_t retry_at_ms;
    int done_err;
    int failures;
    enum { INFLIGHT_SENT, INFLIGHT_ACKED, INFLIGHT_WAITING } status;
    size_t producer;
    size_t len;
    size_t pk_len;
    size_t size; /* allocated (a multiple of 64); up to INFLIGHT_SMALL: reused */
    char bytes[]; /* data, then the partition key */
} inflight_t;

/* A sender for cfg's flows (borrowed) through a new client. NULL with the reason in err. */
sender_t *sender_new(const agent_config_t *cfg, char *err, size_t errlen);
/* Sends what is buffered, waits for every record to complete (the producers' record TTL bounds it),
 * applies the outcomes (sender_drain) and frees the sender. Records still unacknowledged stay in their
 * sources' queues, freed here. */
void sender_free(sender_t *s);

/* The eventfd to poll for POLLIN: completions are waiting. */
int sender_fd(const sender_t *s);
bool sender_has_room(const sender_t *s);
/* Copies the record (after processing) of src ending at end_offset, with its partition key worked out from
 * the flow's partitionKeyOption, and queues it for the next sender_submit. 0 (taken), or -EAGAIN (no
 * room). */
int sender_put(sender_t *s, tail_source_t *src, const char *data, size_t len, int64_t end_offset);
/* Applies completions and re-puts what is due. Returns the next time it wants to run (monotonic ms). */
int64_t sender_drain(sender_t *s, int64_t now);
/* Sends every buffered record now (shutdown). */
void sender_flush(sender_t *s);
/* Hands the records sender_put queued to the producers (one call per run of records for a stream): after
 * each round of the tailer, and by sender_drain, sender_flush and sender_free. */
void sender_submit(sender_t *s);

/* Frees the records still queued on src (after sender_free, or when src has none in flight). */
void sender_release_queue(tail_source_t *src);

size_t sender_buffered_bytes(const sender_t *s);
size_t sender_buffered_records(const sender_t *s);
size_t sender_limit_bytes(const sender_t *s);
/* The producers' metrics, added up. */
void sender_producer_metrics(const sender_t *s, uint64_t *retries, uint64_t *throttles, uint64_t *requests);

#endif
