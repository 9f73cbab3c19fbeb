/*
 * api: the Kinesis operations. One file per area (streams.c, shards.c, tags.c, account.c); ops.c holds
 * the table that maps an operation name to its input model and handler.
 *
 * Contract of a handler: it is called on a loop thread with a validated input and must finish the call
 * exactly once, with api_ok() (after writing the reply members through c->w) or api_error().
 */
#ifndef EDDY_SERVER_API_H
#define EDDY_SERVER_API_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/jsonw.h"
#include "common/kinesis_errors.h"
#include "server/http.h"
#include "server/server.h"
#include "server/validate.h"
#include "store/segment.h"
#include "store/seqnum.h"

typedef struct api_op api_op_t;

typedef struct api_call {
    server_t *srv;
    http_request_t *req;
    const cJSON *input; /* the request object (never NULL: an empty body is {}) */
    const char *op;
    int64_t now_ms;
    buf_t out;  /* reply body */
    jsonw_t w;  /* writer over out, with the top-level object already open */
    bool done;
    bool cbor; /* the request came as application/x-amz-cbor-1.1: reply in CBOR (out is converted) */
    /* for metrics and the request log */
    int64_t start_us;    /* monotonic, when the request was received */
    int64_t start_ms;    /* wall clock, the same moment */
    char request_id[37]; /* x-amzn-requestid */
    int op_index;        /* of op in api_ops() */
    char stream[STREAM_NAME_MAX + 1]; /* the stream the call is about, once known ("" until then) */
    uint32_t series;     /* its metrics series (0: none) */
    int latency;         /* metrics_histogram_t to record the call's latency into, or -1 */
} api_call_t;

typedef void (*api_handler_fn)(api_call_t *c);

struct api_op {
    const char *name;
    const vfield_t *input;
    api_handler_fn handler;
    bool data_plane; /* runs under the catalog read lock and may finish later, from another callback */
    /* Optional fast path: handles the raw body and returns true, or returns false (having done nothing) to
     * let the generic parse and validation run. Called under the same lock as handler. */
    bool (*fast)(api_call_t *c, const char *body, size_t len);
};

/* Looks an operation up by name (len bytes). NULL when unknown. */
const api_op_t *api_find_op(const char *name, size_t len);
/* The whole table, sorted by name (api_find_op relies on it). */
const api_op_t *api_ops(size_t *count);

/* Finishes the call with 200 and the members written so far. */
void api_ok(api_call_t *c);
/* Finishes the call with 200 and an empty body (operations without output members). */
void api_ok_empty(api_call_t *c);
/* Finishes the call with the error's status and {"__type", "message"}. */
void api_error(api_call_t *c, kerr_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Frees a call whose client went away, without replying. */
void api_abandon(api_call_t *c);
/* Counts a finished request in the metrics and writes its request-log line. finish() does it for calls;
 * protocol.c for the requests that never became one (c NULL: request_id and start_us, monotonic, describe
 * the request, and op the operation when it was known, else NULL: the path stands for it). */
void api_observe(server_t *srv, const api_call_t *c, http_request_t *req, const char *request_id, int64_t start_us,
                 const api_op_t *op, int status, const char *error, size_t bytes_out);
/* The same for a request outside the Kinesis operation table (DynamoDB's): operation names it in the log
 * ("DynamoDB.GetItem"); its metrics count under operation "other". */
void api_observe_named(server_t *srv, http_request_t *req, const char *request_id, int64_t start_us,
                       const char *operation, int status, const char *error, size_t bytes_out);
/* Notes the stream a call is about (for the request log) and its metrics series; latency is the
 * metrics_histogram_t the call's latency counts in, or -1. Requires the catalog lock. */
void api_note_stream(api_call_t *c, stream_t *s, int latency);

/* Input helpers: NULL/false when absent (input is already validated for types). */
const char *api_str(const api_call_t *c, const char *name);
bool api_int(const api_call_t *c, const char *name, int64_t *out);
bool api_bool(const api_call_t *c, const char *name, bool *out);
bool api_timestamp(const api_call_t *c, const cJSON *obj, const char *name, int64_t *ms);

/* Resolves the target stream from StreamName and/or StreamARN. Replies with the error and returns NULL
 * when it does not exist or the two disagree. Requires the catalog lock. */
stream_t *api_stream(api_call_t *c);
/* Writes the stream ARN of name into out. */
void api_stream_arn(const api_call_t *c, const char *name, buf_t *out);
/* Replies ResourceNotFoundException for a stream name. */
void api_stream_not_found(api_call_t *c, const char *name);
/* Replies ResourceInUseException unless the stream is ACTIVE; returns whether it is. */
bool api_require_active(api_call_t *c, const stream_t *s);

/* Handlers, grouped by file. */
void op_create_stream(api_call_t *c);
void op_delete_stream(api_call_t *c);
void op_describe_stream(api_call_t *c);
void op_describe_stream_summary(api_call_t *c);
void op_list_streams(api_call_t *c);
void op_increase_retention(api_call_t *c);
void op_decrease_retention(api_call_t *c);
void op_update_stream_mode(api_call_t *c);
void op_enable_monitoring(api_call_t *c);
void op_disable_monitoring(api_call_t *c);
void op_start_encryption(api_call_t *c);
void op_stop_encryption(api_call_t *c);
void op_update_max_record_size(api_call_t *c);

void op_list_shards(api_call_t *c);
void op_split_shard(api_call_t *c);
void op_register_stream_consumer(api_call_t *c);
void op_deregister_stream_consumer(api_call_t *c);
void op_describe_stream_consumer(api_call_t *c);
void op_list_stream_consumers(api_call_t *c);
/* The consumer named by ConsumerARN, or by StreamARN and ConsumerName; NULL after replying otherwise. */
stream_t *api_consumer(api_call_t *c, consumer_t **out);
/* The consumer of a ConsumerARN; NULL after replying ResourceNotFoundException. */
stream_t *api_consumer_by_arn(api_call_t *c, const char *arn, consumer_t **out);
void api_consumer_arn(const api_call_t *c, const stream_t *s, const consumer_t *con, buf_t *out);
void op_merge_shards(api_call_t *c);
void op_update_shard_count(api_call_t *c);

void op_put_record(api_call_t *c);
void op_put_records(api_call_t *c);
bool op_put_record_fast(api_call_t *c, const char *body, size_t len);
bool op_put_records_fast(api_call_t *c, const char *body, size_t len);
void op_get_shard_iterator(api_call_t *c);
void op_get_records(api_call_t *c);
void op_subscribe_to_shard(api_call_t *c);
/* SubscribeToShard's registry (api/subscribe.c): set up and torn down with the server; notify wakes the
 * subscriptions of a shard whose new records became visible (any thread); tick sends heartbeats and ends
 * expired subscriptions (housekeeping thread). */
void subscribe_init(server_t *srv);
void subscribe_dispose(server_t *srv);
bool subscribe_any(server_t *srv);
void subscribe_notify(server_t *srv, const char *stream, uint32_t shard);
void subscribe_tick(server_t *srv, int64_t now_ms);
/* The open subscriptions (*out malloc'd; the caller frees it). Any thread. */
typedef struct subscribe_info {
    char stream[STREAM_NAME_MAX + 1];
    int64_t stream_created_ms;
    char consumer[CONSUMER_NAME_MAX + 1];
    uint32_t shard;
    int64_t millis_behind; /* of its last event */
    int64_t started_ms;
} subscribe_info_t;
size_t subscribe_list(server_t *srv, subscribe_info_t **out);
/* Ends every subscription (their streams finish cleanly), so that a graceful stop need not wait for them. */
void subscribe_end_all(server_t *srv);
/* Wakes every subscription of a stream (after a reshard, a deregistration or a deletion, so that they
 * send ChildShards or end without waiting for the next heartbeat). */
void subscribe_wake_stream(server_t *srv, const char *stream);

/* Shared by GetShardIterator, GetRecords and SubscribeToShard (records.c). */
/* The shard named shard_id (with storage); NULL after replying ResourceNotFoundException. */
shard_t *api_find_shard(api_call_t *c, stream_t *s, const char *shard_id);
/* The record index a reader starting at (type, seq or timestamp) reads first; false after replying the
 * error (op names the operation in messages). */
bool api_start_position(api_call_t *c, const char *op, stream_t *s, shard_t *sh, const char *type, const char *seq,
                        bool has_ts, int64_t ts, uint64_t *position);
/* A log_visit_fn writing each record as a Kinesis Record object into w (whose buffer is out), with
 * EncryptionType KMS on the records stored encrypted. */
typedef struct record_writer {
    jsonw_t *w;
    buf_t *out;
    uint32_t shard_index;
    int64_t shard_created_ms;
    uint16_t tag;
    seqnum_cursor_t cursor;
    int64_t last_arrival; /* of the last record written */
    uint64_t last_index;
    size_t count, bytes;
} record_writer_t;
bool api_write_record(void *arg, const seg_record_t *rec);
/* "ChildShards": [...] of a closed shard. */
void api_write_child_shards(jsonw_t *w, const stream_t *s, const shard_t *parent);
/* The decimal sequence number of a record. */
void api_format_seq(uint32_t shard_index, int64_t shard_created_ms, uint16_t tag, uint64_t index,
                    int64_t arrival_ms, char out[SEQNUM_STR_MAX]);

void op_add_tags(api_call_t *c);
void op_remove_tags(api_call_t *c);
void op_list_tags_for_stream(api_call_t *c);
void op_tag_resource(api_call_t *c);
void op_untag_resource(api_call_t *c);
void op_list_tags_for_resource(api_call_t *c);

void op_describe_limits(api_call_t *c);
void op_describe_account_settings(api_call_t *c);
void op_update_account_settings(api_call_t *c);

/* Open shards of a stream. */
size_t stream_open_shards(const stream_t *s);
/* Open shards of all provisioned streams (what the account shard limit counts). */
size_t api_provisioned_open_shards(catalog_t *cat);
/* LimitExceededException for a request that would exceed the account shard limit by `more` shards. */
void api_shard_limit_error(api_call_t *c, size_t current, int64_t more);
/* Applies the configured state delay: the stream goes to status now and to ACTIVE after the delay (or at
 * once when the delay is 0). */
void api_transition(api_call_t *c, stream_config_t *cfg, stream_status_t status);

/* Shared writers. */
void api_write_shard(api_call_t *c, const stream_t *s, const shard_t *sh);
void api_write_enhanced_monitoring(api_call_t *c, uint32_t metrics);

#endif
