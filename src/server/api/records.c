/*
 * api/records: the data plane: PutRecord, PutRecords, GetShardIterator, GetRecords.
 *
 * These run under the catalog's read lock. A put appends each shard's records with one engine call, then
 * waits (asynchronously, never blocking the loop) until the engine says they are durable as --durability
 * promises; only then is the reply sent. A put that spans shards waits for all of them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/hashkey.h"
#include "common/log.h"
#include "server/api/api.h"
#include "server/api/put_parse.h"
#include "server/dataplane.h"
#include "server/metrics.h"
#include "store/seqnum.h"

#define PUT_RECORDS_MAX_BYTES (5u << 20)
#define GET_RECORDS_MAX_BYTES (10u << 20)
#define GET_RECORDS_DEFAULT_LIMIT 10000

/* The status a stream has now, applying a due transition that the control plane has not stored yet. */
static stream_status_t effective_status(const stream_t *s, int64_t now_ms)
{
    if (s->cfg.status != STREAM_ACTIVE && now_ms >= s->cfg.status_due_ms) {
        return s->cfg.status == STREAM_DELETING ? STREAM_DELETING : s->cfg.target_status;
    }
    return s->cfg.status;
}

/* Resolves a stream that accepts reads and writes (ACTIVE or UPDATING). */
static stream_t *data_stream(api_call_t *c)
{
    stream_t *s = api_stream(c);
    if (s == NULL) {
        return NULL;
    }
    stream_status_t st = effective_status(s, c->now_ms);
    if (st == STREAM_CREATING || st == STREAM_DELETING) {
        api_stream_not_found(c, s->name);
        return NULL;
    }
    return s;
}

static shard_t *route(stream_t *s, u128 key)
{
    for (size_t i = 0; i < s->shard_count; i++) {
        shard_t *sh = &s->shards[i];
        if (sh->closed_ms == 0 && key >= sh->start_hash && key <= sh->end_hash) {
            return sh;
        }
    }
    return NULL;
}

static size_t format_seq(seqnum_cursor_t *cur, uint32_t shard_index, int64_t shard_created_ms, uint16_t tag,
                         uint64_t index, int64_t arrival_ms, char out[SEQNUM_STR_MAX])
{
    seqnum_t sn = {
        .shard_created_secs = (uint64_t)(shard_created_ms / 1000),
        .index = index,
        .arrival_secs = (uint64_t)(arrival_ms / 1000),
        .shard_index = shard_index,
        .stream_tag = tag,
    };
    return seqnum_format_next(cur, &sn, out);
}

/* ---- puts ---- */

enum { REC_OK, REC_THROTTLED, REC_FAILED };

typedef struct put_record {
    const char *pk;
    size_t pk_len;
    unsigned char *data; /* decoded; points into put_t.blob */
    size_t data_len;
    shard_t *shard; /* valid only under the catalog lock (routing and appending) */
    uint32_t shard_index;
    int64_t shard_created_ms;
    int group; /* index into groups */
    int state;
    uint64_t index;
    int64_t arrival_ms;
} put_record_t;

typedef struct put_group {
    shard_t *shard;       /* valid only under the catalog lock */
    uint32_t shard_index; /* copy, for notifying subscribers */
    int status; /* written by the engine thread before the pending count drops */
} put_group_t;

typedef struct put {
    api_call_t *c;
    http_loop_t *loop;
    http_guard_t *guard;
    bool orphaned;
    bool single; /* PutRecord */
    char stream_name[STREAM_NAME_MAX + 1];
    uint16_t tag; /* the stream's sequence number tag */
    bool encrypted;
    put_record_t *records;
    size_t count;
    put_group_t *groups;
    size_t ngroups;
    unsigned char *blob;
    uint32_t series; /* the stream's metrics series */
    _Atomic int pending;
} put_t;

static void put_free(put_t *p)
{
    free(p->records);
    free(p->groups);
    free(p->blob);
    free(p);
}

static void throttle_message(put_t *p, uint32_t shard_index, buf_t *out)
{
    char id[32];
    shard_id_format(shard_index, id);
    buf_printf(out, "Rate exceeded for shard %s in stream %s under account %s.", id, p->stream_name,
               p->c->srv->cfg.account_id);
}

/* The stream-level metrics of a finished put (its latency is recorded when the reply goes out). */
static void count_put(const put_t *p)
{
    uint64_t ok = 0, throttled = 0, failed = 0, bytes = 0;
    for (size_t i = 0; i < p->count; i++) {
        const put_record_t *r = &p->records[i];
        ok += r->state == REC_OK;
        throttled += r->state == REC_THROTTLED;
        failed += r->state == REC_FAILED;
        bytes += r->state == REC_OK ? r->data_len + r->pk_len : 0;
    }
    metrics_t *m = p->c->srv->metrics;
    metrics_add(m, p->series, MC_INCOMING_RECORDS, ok);
    metrics_add(m, p->series, MC_INCOMING_BYTES, bytes);
    metrics_add(m, p->series, MC_WRITE_THROTTLED, throttled);
    if (p->single) {
        metrics_add(m, p->series, MC_PUT_RECORD_SUCCESS, ok);
        metrics_add(m, p->series, MC_PUT_RECORD_BYTES, bytes);
        return;
    }
    metrics_add(m, p->series, MC_PUT_RECORDS_SUCCESS, ok > 0);
    metrics_add(m, p->series, MC_PUT_RECORDS_BYTES, bytes);
    metrics_add(m, p->series, MC_PUT_RECORDS_SUCCESSFUL_RECORDS, ok);
    metrics_add(m, p->series, MC_PUT_RECORDS_FAILED_RECORDS, failed);
    metrics_add(m, p->series, MC_PUT_RECORDS_THROTTLED_RECORDS, throttled);
    metrics_add(m, p->series, MC_PUT_RECORDS_TOTAL_RECORDS, p->count);
}

/* Builds and sends the reply (loop thread). Shards and streams are not touched: only copies. */
static void put_finish(void *arg)
{
    put_t *p = arg;
    api_call_t *c = p->c;
    if (subscribe_any(c->srv)) {
        /* the records are visible now: wake the shards' SubscribeToShard subscriptions */
        for (size_t g = 0; g < p->ngroups; g++) {
            if (p->groups[g].status == 0) {
                subscribe_notify(c->srv, p->stream_name, p->groups[g].shard_index);
            }
        }
    }
    for (size_t i = 0; i < p->count; i++) {
        put_record_t *r = &p->records[i];
        if (r->state == REC_OK && p->groups[r->group].status != 0) {
            r->state = REC_FAILED;
        }
    }
    count_put(p);
    if (p->orphaned) {
        api_abandon(c);
        put_free(p);
        return;
    }
    http_guard_cancel(p->guard);
    char seq[SEQNUM_STR_MAX], id[32];
    seqnum_cursor_t cursor = {0};
    /* one cursor per shard: a request's records alternate between shards, and a cursor only makes the
     * next number of the same shard cheap */
    seqnum_cursor_t *cursors = p->ngroups > 1 ? calloc(p->ngroups, sizeof *cursors) : NULL;
    if (p->single) {
        put_record_t *r = &p->records[0];
        if (r->state == REC_THROTTLED) {
            buf_t msg = BUF_INIT;
            throttle_message(p, r->shard_index, &msg);
            api_error(c, KERR_PROVISIONED_THROUGHPUT_EXCEEDED, "%s", buf_cstr(&msg));
            buf_dispose(&msg);
        } else if (r->state == REC_FAILED && p->ngroups > 0 && p->groups[r->group].status == -ENOKEY) {
            /* the stream's KMS key went missing from the key file (logged when the append failed) */
            api_error(c, KERR_KMS_NOT_FOUND, "The KMS key of stream %s under account %s was not found.",
                      p->stream_name, c->srv->cfg.account_id);
        } else if (r->state == REC_FAILED) {
            api_error(c, KERR_INTERNAL_FAILURE, "Internal service failure.");
        } else {
            shard_id_format(r->shard_index, id);
            format_seq(&cursor, r->shard_index, r->shard_created_ms, p->tag, r->index, r->arrival_ms, seq);
            jsonw_key(&c->w, "ShardId");
            jsonw_str(&c->w, id);
            jsonw_key(&c->w, "SequenceNumber");
            jsonw_str(&c->w, seq);
            jsonw_key(&c->w, "EncryptionType");
            jsonw_str(&c->w, p->encrypted ? "KMS" : "NONE");
            api_ok(c);
        }
        put_free(p);
        return;
    }
    size_t failed = 0;
    for (size_t i = 0; i < p->count; i++) {
        failed += p->records[i].state != REC_OK;
    }
    jsonw_key(&c->w, "FailedRecordCount");
    jsonw_int(&c->w, (int64_t)failed);
    jsonw_key(&c->w, "Records");
    jsonw_arr_begin(&c->w);
    buf_t msg = BUF_INIT;
    for (size_t i = 0; i < p->count; i++) {
        put_record_t *r = &p->records[i];
        jsonw_obj_begin(&c->w);
        if (r->state == REC_OK) {
            shard_id_format(r->shard_index, id);
            seqnum_cursor_t *cur = cursors != NULL ? &cursors[r->group] : &cursor;
            size_t seq_len = format_seq(cur, r->shard_index, r->shard_created_ms, p->tag, r->index, r->arrival_ms, seq);
            jsonw_key(&c->w, "SequenceNumber");
            jsonw_str_plain(&c->w, seq, seq_len);
            jsonw_key(&c->w, "ShardId");
            jsonw_str_plain(&c->w, id, strlen(id));
        } else if (r->state == REC_THROTTLED) {
            buf_reset(&msg);
            throttle_message(p, r->shard_index, &msg);
            jsonw_key(&c->w, "ErrorCode");
            jsonw_str(&c->w, "ProvisionedThroughputExceededException");
            jsonw_key(&c->w, "ErrorMessage");
            jsonw_strn(&c->w, msg.data, msg.len);
        } else {
            jsonw_key(&c->w, "ErrorCode");
            jsonw_str(&c->w, "InternalFailure");
            jsonw_key(&c->w, "ErrorMessage");
            jsonw_str(&c->w, "Internal service failure.");
        }
        jsonw_obj_end(&c->w);
    }
    buf_dispose(&msg);
    free(cursors);
    jsonw_arr_end(&c->w);
    jsonw_key(&c->w, "EncryptionType");
    jsonw_str(&c->w, p->encrypted ? "KMS" : "NONE");
    api_ok(c);
    put_free(p);
}

static void put_orphaned(void *arg)
{
    ((put_t *)arg)->orphaned = true;
}

/* Engine thread: one shard group is durable (or failed). */
typedef struct group_wait {
    put_t *put;
    size_t group;
} group_wait_t;

static void group_done(void *arg, int status)
{
    group_wait_t *w = arg;
    put_t *p = w->put;
    p->groups[w->group].status = status;
    free(w);
    if (atomic_fetch_sub(&p->pending, 1) == 1) {
        http_loop_run_later(p->loop, put_finish, p);
    }
}

/* Decodes one record into r; replies with the error and returns false when invalid. */
static bool read_record(api_call_t *c, const put_entry_in_t *in, size_t member, put_record_t *r,
                        unsigned char *dst, size_t max_record, u128 *key)
{
    long n = base64_decode(in->data, in->data_len, dst);
    if (n < 0) {
        api_error(c, KERR_SERIALIZATION, "'%.*s' can not be converted to a Blob: %s",
                  (int)(in->data_len < 64 ? in->data_len : 64), in->data,
                  in->data_len % 4 ? "Base64 encoded length is expected a multiple of 4 bytes"
                                   : "Invalid Base64 character");
        return false;
    }
    r->data = dst;
    r->data_len = (size_t)n;
    r->pk = in->pk;
    r->pk_len = in->pk_len;
    if (r->data_len > max_record) {
        /* where the record sits, as the service names it: "records.N.member." (PutRecords) or nothing */
        char path[48] = "";
        if (member > 0) {
            snprintf(path, sizeof path, "records.%zu.member.", member);
        }
        api_error(c, KERR_VALIDATION,
                  "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=%zu cap=%zu]' at '%sdata' "
                  "failed to satisfy constraint: Member must have length less than or equal to %zu",
                  r->data_len, r->data_len, path, max_record);
        return false;
    }
    if (r->data_len + r->pk_len > max_record) {
        api_error(c, KERR_INVALID_ARGUMENT,
                  "Record size (%zu bytes of data and partition key) exceeds the maximum record size of %zu bytes.",
                  r->data_len + r->pk_len, max_record);
        return false;
    }
    if (in->ehk != NULL) {
        if (u128_parse(in->ehk, in->ehk_len, key) != 0) {
            api_error(c, KERR_INVALID_ARGUMENT,
                      "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value "
                      "was %.*s",
                      (int)in->ehk_len, in->ehk);
            return false;
        }
    } else {
        *key = hashkey_of_partition_key(r->pk, r->pk_len);
    }
    return true;
}

/* Fills a put_body_t from a validated cJSON request (the generic path). Views point into the tree. */
static void body_from_json(const cJSON *input, bool single, put_body_t *out)
{
    out->count = 0;
    const cJSON *list = single ? NULL : cJSON_GetObjectItemCaseSensitive(input, "Records");
    const cJSON *e = single ? input : list->child;
    for (; e != NULL && out->count < PUT_RECORDS_MAX; e = single ? NULL : e->next) {
        put_entry_in_t *in = &out->entries[out->count++];
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(e, "Data");
        const cJSON *pk = cJSON_GetObjectItemCaseSensitive(e, "PartitionKey");
        const cJSON *ehk = cJSON_GetObjectItemCaseSensitive(e, "ExplicitHashKey");
        in->data = data->valuestring;
        in->data_len = strlen(data->valuestring);
        in->pk = pk->valuestring;
        in->pk_len = strlen(pk->valuestring);
        in->ehk = cJSON_IsString(ehk) ? ehk->valuestring : NULL;
        in->ehk_len = in->ehk ? strlen(in->ehk) : 0;
    }
}

static void do_put(api_call_t *c, bool single, const put_body_t *body)
{
    server_t *srv = c->srv;
    stream_t *s = data_stream(c);
    if (s == NULL) {
        return;
    }
    size_t count = body->count;
    size_t max_record = (size_t)s->cfg.max_record_kib * 1024;
    api_note_stream(c, s, single ? MH_PUT_RECORD_LATENCY : MH_PUT_RECORDS_LATENCY);

    put_t *p = calloc(1, sizeof *p);
    if (p == NULL) {
        abort();
    }
    p->c = c;
    p->single = single;
    p->series = c->series;
    snprintf(p->stream_name, sizeof p->stream_name, "%s", s->name);
    p->tag = seqnum_stream_tag(s->name, s->created_ms);
    p->encrypted = s->cfg.encrypted;
    p->count = count;
    p->records = calloc(count, sizeof *p->records);
    size_t blob = 0;
    for (size_t i = 0; i < count; i++) {
        blob += body->entries[i].data_len / 4 * 3 + 3;
    }
    p->blob = malloc(blob ? blob : 1);
    if (p->records == NULL || p->blob == NULL) {
        abort();
    }

    /* Decode and check every record before anything is written: a bad one fails the whole request. */
    u128 *keys = calloc(count, sizeof *keys);
    size_t used = 0, total = 0;
    for (size_t i = 0; i < count; i++) {
        if (!read_record(c, &body->entries[i], single ? 0 : i + 1, &p->records[i], p->blob + used, max_record,
                         &keys[i])) {
            free(keys);
            put_free(p);
            return;
        }
        used += p->records[i].data_len;
        total += p->records[i].data_len + p->records[i].pk_len;
    }
    size_t request_max = max_record > PUT_RECORDS_MAX_BYTES ? max_record : PUT_RECORDS_MAX_BYTES;
    if (!single && total > request_max) {
        free(keys);
        put_free(p);
        api_error(c, KERR_INVALID_ARGUMENT, "Records size exceeds %zu MB limit", request_max >> 20);
        return;
    }

    /* Route and rate-limit. Once a shard refused a record of the request for its rate, it refuses the
     * request's later records too (even smaller ones that would fit): a client retrying the refused ones
     * then keeps each shard's order. */
    p->groups = calloc(count, sizeof *p->groups);
    const shard_t **refused = NULL; /* allocated at the first refusal */
    size_t nrefused = 0;
    for (size_t i = 0; i < count; i++) {
        put_record_t *r = &p->records[i];
        r->shard = route(s, keys[i]);
        if (r->shard == NULL || r->shard->rt == NULL) {
            r->state = REC_FAILED;
            continue;
        }
        bool was_refused = false;
        for (size_t k = 0; k < nrefused && !was_refused; k++) {
            was_refused = refused[k] == r->shard;
        }
        /* copies for the reply, which is built after the catalog lock was released */
        r->shard_index = r->shard->index;
        r->shard_created_ms = r->shard->created_ms;
        if (s->cfg.mode == STREAM_ON_DEMAND) {
            dataplane_note_demand(r->shard->rt, r->data_len + r->pk_len);
        }
        if (srv->cfg.shard_limits &&
            (was_refused || !dataplane_take_write(r->shard->rt, c->now_ms, r->data_len + r->pk_len))) {
            r->state = REC_THROTTLED;
            dataplane_count(s, &r->shard->rt->m_write_throttled, METRIC_WRITE_PROVISIONED_THROUGHPUT_EXCEEDED, 1);
            if (!was_refused) {
                if (refused == NULL && (refused = calloc(count, sizeof *refused)) == NULL) {
                    abort();
                }
                refused[nrefused++] = r->shard;
            }
            continue;
        }
        size_t g = 0;
        while (g < p->ngroups && p->groups[g].shard != r->shard) {
            g++;
        }
        if (g == p->ngroups) {
            p->groups[p->ngroups].shard_index = r->shard->index;
            p->groups[p->ngroups++].shard = r->shard;
        }
        r->group = (int)g;
    }
    free(refused);
    free(keys);

    /* Append each shard's records in request order with one call. */
    log_entry_t *entries = calloc(count, sizeof *entries);
    size_t *members = calloc(count, sizeof *members);
    atomic_init(&p->pending, 1);
    p->loop = http_request_loop(c->req);
    p->guard = http_request_guard(c->req, put_orphaned, p);
    for (size_t g = 0; g < p->ngroups; g++) {
        shard_t *sh = p->groups[g].shard;
        size_t n = 0, group_bytes = 0;
        for (size_t i = 0; i < count; i++) {
            put_record_t *r = &p->records[i];
            if (r->state == REC_OK && r->group == (int)g) {
                entries[n] = (log_entry_t){r->pk, r->pk_len, r->data, r->data_len};
                members[n++] = i;
                group_bytes += r->pk_len + r->data_len;
            }
        }
        uint64_t first = 0, ticket = 0;
        int64_t arrival = 0;
        int rc = srv->engine->ops->append(srv->engine, sh->rt->storage, entries, n, c->now_ms, &first, &arrival,
                                          &ticket);
        if (rc != 0) {
            log_error("append to %s shard %" PRIu32 " failed: %s", s->name, sh->index, strerror(-rc));
            p->groups[g].status = rc;
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            p->records[members[k]].index = first + k;
            p->records[members[k]].arrival_ms = arrival;
        }
        dataplane_count(s, &sh->rt->m_incoming_records, METRIC_INCOMING_RECORDS, n);
        dataplane_count(s, &sh->rt->m_incoming_bytes, METRIC_INCOMING_BYTES, group_bytes);
        group_wait_t *w = malloc(sizeof *w);
        if (w == NULL) {
            abort();
        }
        *w = (group_wait_t){p, g};
        atomic_fetch_add(&p->pending, 1);
        if (srv->engine->ops->when_durable(srv->engine, sh->rt->storage, ticket, group_done, w) != 0) {
            atomic_fetch_sub(&p->pending, 1);
            free(w);
        }
    }
    free(entries);
    free(members);
    if (atomic_fetch_sub(&p->pending, 1) == 1) {
        put_finish(p);
    }
}

static void put_generic(api_call_t *c, bool single)
{
    put_entry_in_t *entries = calloc(PUT_RECORDS_MAX, sizeof *entries);
    if (entries == NULL) {
        abort();
    }
    put_body_t body = {.entries = entries};
    body_from_json(c->input, single, &body);
    do_put(c, single, &body);
    free(entries);
}

void op_put_record(api_call_t *c)
{
    put_generic(c, true);
}

void op_put_records(api_call_t *c)
{
    put_generic(c, false);
}

/* The fast path: a body of the common shape skips cJSON and the generic validator. The call's input gets
 * only the members stream resolution reads. */
static bool put_fast(api_call_t *c, const char *text, size_t len, bool single)
{
    put_entry_in_t one;
    put_entry_in_t *entries = single ? &one : malloc(PUT_RECORDS_MAX * sizeof *entries);
    if (entries == NULL) {
        abort();
    }
    put_body_t body = {.entries = entries};
    bool ok = put_parse_fast(text, len, single, &body);
    if (ok) {
        cJSON *input = cJSON_CreateObject();
        char *name = NULL, *arn = NULL;
        if (body.stream_name != NULL) {
            name = strndup(body.stream_name, body.stream_name_len);
            cJSON_AddStringToObject(input, "StreamName", name);
        }
        if (body.stream_arn != NULL) {
            arn = strndup(body.stream_arn, body.stream_arn_len);
            cJSON_AddStringToObject(input, "StreamARN", arn);
        }
        free(name);
        free(arn);
        c->input = input;
        do_put(c, single, &body);
    }
    if (!single) {
        free(entries);
    }
    return ok;
}

bool op_put_record_fast(api_call_t *c, const char *body, size_t len)
{
    return put_fast(c, body, len, true);
}

bool op_put_records_fast(api_call_t *c, const char *body, size_t len)
{
    return put_fast(c, body, len, false);
}

/* ---- iterators ---- */

shard_t *api_find_shard(api_call_t *c, stream_t *s, const char *shard_id)
{
    uint32_t index;
    shard_t *sh = NULL;
    if (shard_id_parse(shard_id, &index)) {
        sh = (shard_t *)stream_find_shard(s, index);
    }
    if (sh == NULL || sh->rt == NULL) {
        api_error(c, KERR_RESOURCE_NOT_FOUND, "Shard %s in stream %s under account %s does not exist", shard_id,
                  s->name, c->srv->cfg.account_id);
        return NULL;
    }
    return sh;
}

bool api_start_position(api_call_t *c, const char *op, stream_t *s, shard_t *sh, const char *type, const char *seq,
                        bool has_ts, int64_t ts, uint64_t *position)
{
    server_t *srv = c->srv;
    bool by_seq = strcmp(type, "AT_SEQUENCE_NUMBER") == 0 || strcmp(type, "AFTER_SEQUENCE_NUMBER") == 0;
    bool by_time = strcmp(type, "AT_TIMESTAMP") == 0;
    char id[32];
    shard_id_format(sh->index, id);
    if (by_seq && seq == NULL) {
        api_error(c, KERR_INVALID_ARGUMENT, "You must specify a starting sequence number with %s.", type);
        return false;
    }
    if (!by_seq && seq != NULL) {
        api_error(c, KERR_INVALID_ARGUMENT,
                  "Request must not contain a starting sequence number for shard iterator type %s.", type);
        return false;
    }
    if (by_time && !has_ts) {
        api_error(c, KERR_INVALID_ARGUMENT,
                  "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has "
                  "no timestamp parameter.");
        return false;
    }
    if (!by_time && has_ts) {
        api_error(c, KERR_INVALID_ARGUMENT,
                  "Request must not contain a timestamp for shard iterator type %s.", type);
        return false;
    }
    engine_t *eng = srv->engine;
    uint64_t first = 0, end = 0;
    eng->ops->bounds(eng, sh->rt->storage, &first, &end, NULL);
    uint64_t horizon = dataplane_trim_horizon(srv, s, sh->rt, c->now_ms);
    *position = 0;
    if (strcmp(type, "TRIM_HORIZON") == 0) {
        *position = horizon;
    } else if (strcmp(type, "LATEST") == 0) {
        *position = end;
    } else if (by_time) {
        if (ts > c->now_ms) {
            *position = end;
        } else if (eng->ops->seek_time(eng, sh->rt->storage, ts, position) != 0) {
            api_error(c, KERR_INTERNAL_FAILURE, "Internal service failure.");
            return false;
        }
        if (*position < horizon) {
            *position = horizon;
        }
    } else {
        seqnum_t sn;
        if (seqnum_parse(seq, strlen(seq), &sn) != 0) {
            api_error(c, KERR_INVALID_ARGUMENT,
                      "StartingSequenceNumber %s used in %s on shard %s in stream %s under account %s "
                      "is invalid.",
                      seq, op, id, s->name, srv->cfg.account_id);
            return false;
        }
        if (sn.shard_index != sh->index) {
            char other[32];
            shard_id_format(sn.shard_index, other);
            api_error(c, KERR_INVALID_ARGUMENT,
                      "Invalid StartingSequenceNumber. It encodes %s, while it was used in a call to a shard with %s",
                      other, id);
            return false;
        }
        if (sn.shard_created_secs != (uint64_t)(sh->created_ms / 1000) ||
            sn.stream_tag != seqnum_stream_tag(s->name, s->created_ms)) {
            api_error(c, KERR_INVALID_ARGUMENT,
                      "StartingSequenceNumber %s used in %s on shard %s in stream %s under account %s "
                      "is invalid because it did not come from this stream.",
                      seq, op, id, s->name, srv->cfg.account_id);
            return false;
        }
        *position = sn.index + (strcmp(type, "AFTER_SEQUENCE_NUMBER") == 0 ? 1 : 0);
        if (*position < horizon) {
            *position = horizon;
        }
    }
    return true;
}

void op_get_shard_iterator(api_call_t *c)
{
    server_t *srv = c->srv;
    stream_t *s = data_stream(c);
    if (s == NULL) {
        return;
    }
    const char *shard_id = api_str(c, "ShardId");
    shard_t *sh = api_find_shard(c, s, shard_id);
    if (sh == NULL) {
        return;
    }
    const char *type = api_str(c, "ShardIteratorType");
    const char *seq = api_str(c, "StartingSequenceNumber");
    int64_t ts = 0;
    bool has_ts = api_timestamp(c, NULL, "Timestamp", &ts);
    uint64_t position = 0;
    if (!api_start_position(c, "GetShardIterator", s, sh, type, seq, has_ts, ts, &position)) {
        return;
    }
    char id[32];
    shard_id_format(sh->index, id);
    /* Only well-formed requests count against the shard's 5 calls per second. */
    if (srv->cfg.shard_limits && !dataplane_take_iterator(sh->rt, c->now_ms)) {
        api_error(c, KERR_PROVISIONED_THROUGHPUT_EXCEEDED, "Rate exceeded for shard %s in stream %s under account %s.",
                  id, s->name, srv->cfg.account_id);
        return;
    }
    iterator_pos_t pos = {.stream_created_ms = s->created_ms, .shard = sh->index, .position = position,
                          .issued_ms = c->now_ms};
    snprintf(pos.stream, sizeof pos.stream, "%s", s->name);
    buf_t token = BUF_INIT;
    iterator_encode(srv, &pos, &token);
    jsonw_key(&c->w, "ShardIterator");
    jsonw_strn(&c->w, token.data, token.len);
    buf_dispose(&token);
    api_ok(c);
}

bool api_write_record(void *arg, const seg_record_t *rec)
{
    record_writer_t *rc = arg;
    jsonw_t *w = rc->w;
    char seq[SEQNUM_STR_MAX];
    size_t seq_len = format_seq(&rc->cursor, rc->shard_index, rc->shard_created_ms, rc->tag, rec->index,
                                rec->arrival_ms, seq);
    jsonw_obj_begin(w);
    jsonw_key(w, "SequenceNumber");
    jsonw_str_plain(w, seq, seq_len);
    jsonw_key(w, "ApproximateArrivalTimestamp");
    jsonw_timestamp_ms(w, rec->arrival_ms);
    jsonw_key(w, "Data");
    buf_t *out = rc->out;
    buf_reserve(out, BASE64_ENCODED_LEN(rec->data_len) + 2);
    jsonw_raw(w, "\"", 1);
    base64_encode_into(out, rec->data, rec->data_len);
    buf_putc(out, '"');
    jsonw_key(w, "PartitionKey");
    jsonw_strn(w, rec->pk, rec->pk_len);
    if (rec->flags & SEG_FLAG_SEALED) {
        jsonw_key(w, "EncryptionType");
        jsonw_str(w, "KMS");
    }
    jsonw_obj_end(w);
    rc->last_arrival = rec->arrival_ms;
    rc->last_index = rec->index;
    rc->count++;
    rc->bytes += rec->data_len + rec->pk_len;
    return true;
}

void api_format_seq(uint32_t shard_index, int64_t shard_created_ms, uint16_t tag, uint64_t index,
                    int64_t arrival_ms, char out[SEQNUM_STR_MAX])
{
    seqnum_cursor_t cursor = {0};
    format_seq(&cursor, shard_index, shard_created_ms, tag, index, arrival_ms, out);
}

/* ChildShards of a closed shard: every shard that names it as parent or adjacent parent. */
void api_write_child_shards(jsonw_t *w, const stream_t *s, const shard_t *parent)
{
    char id[32], key[U128_DEC_MAX];
    jsonw_key(w, "ChildShards");
    jsonw_arr_begin(w);
    for (size_t i = 0; i < s->shard_count; i++) {
        const shard_t *child = &s->shards[i];
        if (child->parent != (int64_t)parent->index && child->adjacent_parent != (int64_t)parent->index) {
            continue;
        }
        jsonw_obj_begin(w);
        jsonw_key(w, "ShardId");
        shard_id_format(child->index, id);
        jsonw_str(w, id);
        jsonw_key(w, "ParentShards");
        jsonw_arr_begin(w);
        shard_id_format((uint32_t)child->parent, id);
        jsonw_str(w, id);
        if (child->adjacent_parent >= 0) {
            shard_id_format((uint32_t)child->adjacent_parent, id);
            jsonw_str(w, id);
        }
        jsonw_arr_end(w);
        jsonw_key(w, "HashKeyRange");
        jsonw_obj_begin(w);
        jsonw_key(w, "StartingHashKey");
        u128_format(child->start_hash, key);
        jsonw_str(w, key);
        jsonw_key(w, "EndingHashKey");
        u128_format(child->end_hash, key);
        jsonw_str(w, key);
        jsonw_obj_end(w);
        jsonw_obj_end(w);
    }
    jsonw_arr_end(w);
}

void op_get_records(api_call_t *c)
{
    server_t *srv = c->srv;
    const char *token = api_str(c, "ShardIterator");
    iterator_pos_t pos;
    iterator_status_t st = iterator_decode(srv, token, strlen(token), c->now_ms, &pos);
    if (st == ITERATOR_INVALID) {
        api_error(c, KERR_INVALID_ARGUMENT, "Invalid ShardIterator.");
        return;
    }
    if (st == ITERATOR_EXPIRED) {
        api_error(c, KERR_EXPIRED_ITERATOR,
                  "Iterator expired. The iterator was created at time %" PRId64 " while right now it is %" PRId64
                  " which is further in the future than the tolerated delay of %d milliseconds.",
                  pos.issued_ms, c->now_ms, ITERATOR_TTL_MS);
        return;
    }
    stream_t *s = catalog_find(srv->catalog, pos.stream);
    if (s == NULL || s->created_ms != pos.stream_created_ms ||
        effective_status(s, c->now_ms) == STREAM_DELETING) {
        api_stream_not_found(c, pos.stream);
        return;
    }
    api_note_stream(c, s, MH_GET_RECORDS_LATENCY);
    shard_t *sh = (shard_t *)stream_find_shard(s, pos.shard);
    if (sh == NULL || sh->rt == NULL) {
        char id[32];
        shard_id_format(pos.shard, id);
        api_error(c, KERR_RESOURCE_NOT_FOUND, "Shard %s in stream %s under account %s does not exist", id, s->name,
                  srv->cfg.account_id);
        return;
    }
    if (srv->cfg.shard_limits && !dataplane_take_read(sh->rt, c->now_ms)) {
        metrics_add(srv->metrics, c->series, MC_READ_THROTTLED, 1);
        dataplane_count(s, &sh->rt->m_read_throttled, METRIC_READ_PROVISIONED_THROUGHPUT_EXCEEDED, 1);
        char id[32];
        shard_id_format(sh->index, id);
        api_error(c, KERR_PROVISIONED_THROUGHPUT_EXCEEDED, "Rate exceeded for Shard - %s in stream %s under account %s.",
                  id, s->name, srv->cfg.account_id);
        return;
    }
    int64_t limit = GET_RECORDS_DEFAULT_LIMIT;
    api_int(c, "Limit", &limit);
    engine_t *eng = srv->engine;
    uint64_t horizon = dataplane_trim_horizon(srv, s, sh->rt, c->now_ms);
    uint64_t from = pos.position < horizon ? horizon : pos.position;

    record_writer_t rc = {.w = &c->w, .out = &c->out, .shard_index = sh->index, .shard_created_ms = sh->created_ms,
                          .tag = seqnum_stream_tag(s->name, s->created_ms)};
    uint64_t next = from;
    jsonw_key(&c->w, "Records");
    jsonw_arr_begin(&c->w);
    int err = eng->ops->read(eng, sh->rt->storage, from, (size_t)limit, GET_RECORDS_MAX_BYTES, api_write_record, &rc,
                             &next);
    jsonw_arr_end(&c->w);
    if (err != 0) {
        api_error(c, KERR_INTERNAL_FAILURE, "Internal service failure.");
        return;
    }
    if (srv->cfg.shard_limits) {
        dataplane_charge_read(sh->rt, rc.bytes);
    }
    uint64_t end = 0;
    int64_t last_arrival = 0;
    eng->ops->bounds(eng, sh->rt->storage, NULL, &end, &last_arrival);
    if (sh->closed_ms != 0 && next >= end && eng->ops->written_end(eng, sh->rt->storage) == end) {
        /* the end of a closed shard (nothing appended before it closed is still waiting for its sync): no
         * next iterator; the children to continue with */
        api_write_child_shards(&c->w, s, sh);
    } else {
        pos.position = next;
        pos.issued_ms = c->now_ms;
        buf_t tok = BUF_INIT;
        iterator_encode(srv, &pos, &tok);
        jsonw_key(&c->w, "NextShardIterator");
        jsonw_strn(&c->w, tok.data, tok.len);
        buf_dispose(&tok);
    }
    int64_t behind = 0;
    if (next < end) {
        int64_t ref = rc.last_arrival ? rc.last_arrival : last_arrival;
        behind = c->now_ms > ref ? c->now_ms - ref : 0;
    }
    jsonw_key(&c->w, "MillisBehindLatest");
    jsonw_int(&c->w, behind);
    metrics_add(srv->metrics, c->series, MC_GET_RECORDS_SUCCESS, 1);
    metrics_add(srv->metrics, c->series, MC_GET_RECORDS_RECORDS, rc.count);
    metrics_add(srv->metrics, c->series, MC_GET_RECORDS_BYTES, rc.bytes);
    dataplane_count(s, &sh->rt->m_outgoing_records, METRIC_OUTGOING_RECORDS, rc.count);
    dataplane_count(s, &sh->rt->m_outgoing_bytes, METRIC_OUTGOING_BYTES, rc.bytes);
    /* GetRecords.IteratorAgeMilliseconds: the age of the last record returned (0 at the tip) */
    atomic_store_explicit(&sh->rt->iterator_age_ms, behind, memory_order_relaxed);
    atomic_store_explicit(&sh->rt->iterator_age_at_ms, c->now_ms, memory_order_relaxed);
    api_ok(c);
}
