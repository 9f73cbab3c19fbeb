/*
 * api/subscribe: SubscribeToShard, enhanced fan-out's push delivery.
 *
 * A subscription is a streaming HTTP reply (http_stream_*) in the AWS event-stream framing
 * (common/eventstream.h): an `initial-response` event at once, then `SubscribeToShardEvent`s whose JSON
 * payload holds Records, ContinuationSequenceNumber, MillisBehindLatest and, at the end of a closed shard,
 * ChildShards (after which the stream ends). A subscription ends after --subscription-seconds (300, as on AWS).
 *
 * Delivery is event-driven, with no thread of its own:
 * - PutRecord(s) call subscribe_notify() once their records are visible (after the group commit in fsync
 *   mode); it schedules a wake-up on each matching subscription's loop thread (at most one queued per
 *   subscription).
 * - A wake-up reads from the subscription's position and writes events while the HTTP stream has less than
 *   SUBSCRIPTION_BUFFER bytes waiting; a slow reader therefore stops the reading (flow control), and the
 *   stream's on_drain wakes it again. Nothing is buffered without bound.
 * - The housekeeping thread calls subscribe_tick() every second: subscriptions that sent nothing for
 *   HEARTBEAT_MS get an empty event (with MillisBehindLatest), and expired ones are ended.
 *
 * Ownership: a subscription is shared by its loop thread and the registry. It is reference counted: one
 * reference for the open HTTP stream, one per queued wake-up. Only its loop thread touches the stream.
 * A second subscription for the same consumer and shard within 5 seconds is refused with
 * ResourceInUseException; a later one replaces the older, which ends.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/eventstream.h"
#include "common/log.h"
#include "server/api/api.h"
#include "server/cbor_json.h"
#include "server/dataplane.h"
#include "server/metrics.h"

#define RESUBSCRIBE_MS 5000
#define HEARTBEAT_MS 5000
#define SUBSCRIPTION_BUFFER (1024 * 1024) /* stop reading while this much waits for the socket */
#define EVENT_MAX_RECORDS 10000
#define EVENT_MAX_BYTES (1024 * 1024)
#define EVENTS_PER_WAKE 4 /* then yield to the loop's other work */

typedef struct sub {
    struct sub *next; /* registry list */
    server_t *srv;
    http_loop_t *loop;
    http_stream_t *hs; /* NULL once the stream closed (loop thread) */
    char stream[STREAM_NAME_MAX + 1];
    int64_t stream_created_ms;
    char consumer[CONSUMER_NAME_MAX + 1];
    int64_t consumer_created_ms;
    uint32_t shard;
    uint64_t position; /* next record index to deliver */
    int64_t last_arrival_ms; /* of the last record delivered (0: none yet) */
    int64_t started_ms;
    _Atomic int64_t last_event_ms;
    _Atomic int64_t millis_behind; /* MillisBehindLatest of the last event */
    _Atomic int refs;
    atomic_bool wake_queued;
    atomic_bool end_requested; /* replaced by a newer subscription */
    bool ending;               /* http_stream_end called */
    bool cbor;                 /* event payloads in CBOR (the request was CBOR) */
} sub_t;

/* When a consumer last subscribed to a shard: the 5-second rule holds even after that subscription ended
 * (the client may have cancelled it). Entries older than RESUBSCRIBE_MS are dropped. */
typedef struct recent_start {
    char stream[STREAM_NAME_MAX + 1];
    char consumer[CONSUMER_NAME_MAX + 1];
    int64_t consumer_created_ms;
    uint32_t shard;
    int64_t started_ms;
} recent_start_t;

struct fanout {
    pthread_mutex_t lock;
    sub_t *head;
    _Atomic size_t count;
    recent_start_t *recent;
    size_t nrecent, recent_cap;
};

static struct fanout *registry(server_t *srv)
{
    return srv->fanout;
}

void subscribe_init(server_t *srv)
{
    struct fanout *f = calloc(1, sizeof *f);
    if (f == NULL) {
        abort();
    }
    pthread_mutex_init(&f->lock, NULL);
    srv->fanout = f;
}

void subscribe_dispose(server_t *srv)
{
    struct fanout *f = srv->fanout;
    if (f == NULL) {
        return;
    }
    /* the loops are stopped: what is left was never closed by h2o (the process is ending) */
    free(f->recent);
    pthread_mutex_destroy(&f->lock);
    free(f);
    srv->fanout = NULL;
}

static void sub_unref(sub_t *sub)
{
    if (atomic_fetch_sub(&sub->refs, 1) == 1) {
        free(sub);
    }
}

static void sub_wake(void *arg);

/* Queues one wake-up unless one is queued already. Any thread (callers keep sub alive meanwhile). */
static void schedule(sub_t *sub)
{
    if (!atomic_exchange(&sub->wake_queued, true)) {
        atomic_fetch_add(&sub->refs, 1);
        http_loop_run_later(sub->loop, sub_wake, sub);
    }
}

static void unregister(sub_t *sub)
{
    struct fanout *f = registry(sub->srv);
    pthread_mutex_lock(&f->lock);
    for (sub_t **pp = &f->head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == sub) {
            *pp = sub->next;
            atomic_fetch_sub(&f->count, 1);
            break;
        }
    }
    pthread_mutex_unlock(&f->lock);
}

void subscribe_notify(server_t *srv, const char *stream, uint32_t shard)
{
    struct fanout *f = registry(srv);
    if (f == NULL || atomic_load_explicit(&f->count, memory_order_relaxed) == 0) {
        return;
    }
    pthread_mutex_lock(&f->lock);
    for (sub_t *sub = f->head; sub != NULL; sub = sub->next) {
        if (sub->shard == shard && strcmp(sub->stream, stream) == 0) {
            schedule(sub);
        }
    }
    pthread_mutex_unlock(&f->lock);
}

void subscribe_wake_stream(server_t *srv, const char *stream)
{
    struct fanout *f = registry(srv);
    if (f == NULL || atomic_load(&f->count) == 0) {
        return;
    }
    pthread_mutex_lock(&f->lock);
    for (sub_t *sub = f->head; sub != NULL; sub = sub->next) {
        if (strcmp(sub->stream, stream) == 0) {
            schedule(sub);
        }
    }
    pthread_mutex_unlock(&f->lock);
}

void subscribe_end_all(server_t *srv)
{
    struct fanout *f = registry(srv);
    if (f == NULL) {
        return;
    }
    pthread_mutex_lock(&f->lock);
    for (sub_t *sub = f->head; sub != NULL; sub = sub->next) {
        atomic_store(&sub->end_requested, true);
        schedule(sub);
    }
    pthread_mutex_unlock(&f->lock);
}

size_t subscribe_list(server_t *srv, subscribe_info_t **out)
{
    struct fanout *f = registry(srv);
    *out = NULL;
    if (f == NULL) {
        return 0;
    }
    pthread_mutex_lock(&f->lock);
    size_t n = 0;
    for (sub_t *sub = f->head; sub != NULL; sub = sub->next) {
        n++;
    }
    subscribe_info_t *list = calloc(n ? n : 1, sizeof *list);
    if (list == NULL) {
        abort();
    }
    n = 0;
    for (sub_t *sub = f->head; sub != NULL; sub = sub->next) {
        subscribe_info_t *i = &list[n++];
        snprintf(i->stream, sizeof i->stream, "%s", sub->stream);
        i->stream_created_ms = sub->stream_created_ms;
        snprintf(i->consumer, sizeof i->consumer, "%s", sub->consumer);
        i->shard = sub->shard;
        i->millis_behind = atomic_load(&sub->millis_behind);
        i->started_ms = sub->started_ms;
    }
    pthread_mutex_unlock(&f->lock);
    *out = list;
    return n;
}

bool subscribe_any(server_t *srv)
{
    struct fanout *f = registry(srv);
    return f != NULL && atomic_load_explicit(&f->count, memory_order_relaxed) > 0;
}

void subscribe_tick(server_t *srv, int64_t now_ms)
{
    struct fanout *f = registry(srv);
    if (f == NULL || atomic_load(&f->count) == 0) {
        return;
    }
    pthread_mutex_lock(&f->lock);
    for (sub_t *sub = f->head; sub != NULL; sub = sub->next) {
        if (now_ms - atomic_load(&sub->last_event_ms) >= HEARTBEAT_MS || now_ms - sub->started_ms >= srv->cfg.subscription_ms) {
            schedule(sub);
        }
    }
    pthread_mutex_unlock(&f->lock);
}

/* ---- delivery (loop thread) ---- */

/* Appends one event (or exception, when exception_type is set) whose payload is the JSON in json, converted
 * to CBOR for a CBOR subscriber. */
static void write_event(sub_t *sub, const char *event_type, const char *exception_type, const buf_t *json)
{
    buf_t converted = BUF_INIT, msg = BUF_INIT;
    const char *payload = json->data;
    size_t len = json->len;
    if (sub->cbor) {
        json_to_cbor(json->data, json->len, &converted);
        payload = converted.data;
        len = converted.len;
    }
    const char *ctype = sub->cbor ? "application/x-amz-cbor-1.1" : "application/json";
    int rc = exception_type != NULL ? evs_encode_exception(&msg, exception_type, payload, len)
                                    : evs_encode_event(&msg, event_type, ctype, payload, len);
    if (rc == 0) {
        http_stream_write(sub->hs, msg.data, msg.len);
    }
    buf_dispose(&converted);
    buf_dispose(&msg);
}

static void end_stream(sub_t *sub)
{
    if (!sub->ending && sub->hs != NULL) {
        sub->ending = true;
        http_stream_end(sub->hs);
    }
}

static void send_exception(sub_t *sub, kerr_t code, const char *message)
{
    buf_t payload = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &payload);
    jsonw_obj_begin(&w);
    jsonw_key(&w, "message");
    jsonw_str(&w, message);
    jsonw_obj_end(&w);
    write_event(sub, NULL, kerr_info(code)->type, &payload);
    buf_dispose(&payload);
    end_stream(sub);
}

/* One event from the subscription's position. Returns true when it may be worth reading again at once
 * (the event was full). Requires the catalog read lock. */
static bool deliver_one(sub_t *sub, int64_t now_ms, bool *ended)
{
    server_t *srv = sub->srv;
    stream_t *s = catalog_find(srv->catalog, sub->stream);
    if (s == NULL || s->created_ms != sub->stream_created_ms || s->cfg.status == STREAM_DELETING) {
        send_exception(sub, KERR_RESOURCE_NOT_FOUND, "The stream of this subscription no longer exists.");
        *ended = true;
        return false;
    }
    consumer_t *con = catalog_find_consumer(s, sub->consumer);
    if (con == NULL || con->created_ms != sub->consumer_created_ms || con->status == STREAM_DELETING) {
        send_exception(sub, KERR_RESOURCE_NOT_FOUND, "The consumer of this subscription no longer exists.");
        *ended = true;
        return false;
    }
    shard_t *sh = (shard_t *)stream_find_shard(s, sub->shard);
    if (sh == NULL || sh->rt == NULL) {
        send_exception(sub, KERR_RESOURCE_NOT_FOUND, "The shard of this subscription no longer exists.");
        *ended = true;
        return false;
    }
    engine_t *eng = srv->engine;
    uint64_t horizon = dataplane_trim_horizon(srv, s, sh->rt, now_ms);
    if (sub->position < horizon) {
        sub->position = horizon;
    }
    buf_t payload = BUF_INIT;
    jsonw_t w;
    jsonw_init(&w, &payload);
    jsonw_obj_begin(&w);
    record_writer_t rw = {.w = &w, .out = &payload, .shard_index = sh->index, .shard_created_ms = sh->created_ms,
                          .tag = seqnum_stream_tag(s->name, s->created_ms)};
    uint64_t next = sub->position;
    jsonw_key(&w, "Records");
    jsonw_arr_begin(&w);
    int err = eng->ops->read(eng, sh->rt->storage, sub->position, EVENT_MAX_RECORDS, EVENT_MAX_BYTES,
                             api_write_record, &rw, &next);
    jsonw_arr_end(&w);
    if (err != 0) {
        buf_dispose(&payload);
        send_exception(sub, KERR_INTERNAL_FAILURE, "Internal service failure.");
        *ended = true;
        return false;
    }
    uint64_t end = 0;
    int64_t last_arrival = 0;
    eng->ops->bounds(eng, sh->rt->storage, NULL, &end, &last_arrival);
    bool shard_end = sh->closed_ms != 0 && next >= end && eng->ops->written_end(eng, sh->rt->storage) == end;
    bool heartbeat = now_ms - atomic_load(&sub->last_event_ms) >= HEARTBEAT_MS;
    if (rw.count == 0 && !shard_end && !heartbeat) {
        buf_dispose(&payload);
        return false;
    }
    sub->position = next;
    /* the number to resume after: the last record delivered, or the one before the position */
    char seq[SEQNUM_STR_MAX];
    if (rw.count > 0) {
        sub->last_arrival_ms = rw.last_arrival;
    }
    uint64_t resume = rw.count > 0 ? rw.last_index : (next > 0 ? next - 1 : 0);
    /* the arrival part keeps continuation numbers from going backwards after a record was delivered */
    int64_t resume_arrival = sub->last_arrival_ms != 0 ? sub->last_arrival_ms : sh->created_ms;
    api_format_seq(sh->index, sh->created_ms, rw.tag, resume, resume_arrival, seq);
    jsonw_key(&w, "ContinuationSequenceNumber");
    jsonw_str(&w, seq);
    int64_t behind = 0;
    if (next < end) {
        int64_t ref = rw.count > 0 ? rw.last_arrival : last_arrival;
        behind = now_ms > ref ? now_ms - ref : 0;
    }
    jsonw_key(&w, "MillisBehindLatest");
    jsonw_int(&w, behind);
    if (shard_end) {
        api_write_child_shards(&w, s, sh);
    }
    jsonw_obj_end(&w);
    write_event(sub, "SubscribeToShardEvent", NULL, &payload);
    buf_dispose(&payload);
    atomic_store(&sub->millis_behind, behind);
    uint32_t series = metrics_consumer_series(srv->metrics, s, con);
    metrics_add(srv->metrics, series, MC_SUBSCRIBE_EVENT_SUCCESS, 1);
    metrics_add(srv->metrics, series, MC_SUBSCRIBE_EVENT_RECORDS, rw.count);
    metrics_add(srv->metrics, series, MC_SUBSCRIBE_EVENT_BYTES, rw.bytes);
    dataplane_count(s, &sh->rt->m_outgoing_records, METRIC_OUTGOING_RECORDS, rw.count);
    dataplane_count(s, &sh->rt->m_outgoing_bytes, METRIC_OUTGOING_BYTES, rw.bytes);
    atomic_store(&sub->last_event_ms, now_ms);
    if (shard_end) {
        end_stream(sub);
        *ended = true;
        return false;
    }
    return rw.count == EVENT_MAX_RECORDS || rw.bytes >= EVENT_MAX_BYTES / 2;
}

static void deliver(sub_t *sub)
{
    int64_t now = clock_now_ms();
    if (now - sub->started_ms >= sub->srv->cfg.subscription_ms || atomic_load(&sub->end_requested)) {
        end_stream(sub);
        return;
    }
    bool more = false, ended = false;
    catalog_rdlock(sub->srv->catalog);
    for (int i = 0; i < EVENTS_PER_WAKE && !ended && http_stream_pending(sub->hs) < SUBSCRIPTION_BUFFER; i++) {
        more = deliver_one(sub, now, &ended);
        if (!more) {
            break;
        }
    }
    catalog_unlock(sub->srv->catalog);
    if (more && !ended && http_stream_pending(sub->hs) < SUBSCRIPTION_BUFFER) {
        schedule(sub); /* full events: go on after the loop's other work */
    }
}

static void sub_wake(void *arg)
{
    sub_t *sub = arg;
    atomic_store(&sub->wake_queued, false);
    if (sub->hs != NULL && !sub->ending) {
        deliver(sub);
    }
    sub_unref(sub);
}

static void on_drain(void *arg)
{
    sub_t *sub = arg;
    if (!sub->ending) {
        schedule(sub);
    }
}

static void on_close(void *arg)
{
    sub_t *sub = arg;
    sub->hs = NULL;
    unregister(sub);
    sub_unref(sub);
}

/* ---- the operation ---- */

static const char *const position_types[] = {"AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "TRIM_HORIZON",
                                             "LATEST", "AT_TIMESTAMP"};

void op_subscribe_to_shard(api_call_t *c)
{
    server_t *srv = c->srv;
    consumer_t *con;
    stream_t *s = api_consumer(c, &con);
    if (s == NULL) {
        return;
    }
    char arn[2200];
    snprintf(arn, sizeof arn, "%s", api_str(c, "ConsumerARN"));
    if (con->status != STREAM_ACTIVE) {
        api_error(c, KERR_RESOURCE_IN_USE, "Consumer %s is not in ACTIVE state, instead in state %s.", arn,
                  stream_status_name(con->status));
        return;
    }
    if (s->cfg.status == STREAM_CREATING) {
        api_require_active(c, s);
        return;
    }
    shard_t *sh = api_find_shard(c, s, api_str(c, "ShardId"));
    if (sh == NULL) {
        return;
    }
    const cJSON *start = cJSON_GetObjectItemCaseSensitive(c->input, "StartingPosition");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(start, "Type");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(start, "SequenceNumber");
    int64_t ts = 0;
    bool has_ts = api_timestamp(c, start, "Timestamp", &ts);
    bool known = false;
    for (size_t i = 0; i < sizeof position_types / sizeof position_types[0]; i++) {
        known |= cJSON_IsString(type) && strcmp(type->valuestring, position_types[i]) == 0;
    }
    if (!known) {
        api_error(c, KERR_INVALID_ARGUMENT, "Invalid StartingPosition.");
        return;
    }
    uint64_t position = 0;
    if (!api_start_position(c, "SubscribeToShard", s, sh, type->valuestring,
                            cJSON_IsString(seq) ? seq->valuestring : NULL, has_ts, ts, &position)) {
        return;
    }

    /* one subscription per consumer and shard: refused within 5 s of the last one, else it replaces it */
    struct fanout *f = registry(srv);
    pthread_mutex_lock(&f->lock);
    bool too_soon = false;
    for (size_t i = 0; i < f->nrecent;) {
        recent_start_t *r = &f->recent[i];
        if (c->now_ms - r->started_ms >= RESUBSCRIBE_MS) {
            f->recent[i] = f->recent[--f->nrecent];
            continue;
        }
        too_soon |= r->shard == sh->index && r->consumer_created_ms == con->created_ms &&
                    strcmp(r->stream, s->name) == 0 && strcmp(r->consumer, con->name) == 0;
        i++;
    }
    sub_t *old = NULL;
    for (sub_t *it = f->head; it != NULL; it = it->next) {
        if (it->shard == sh->index && strcmp(it->stream, s->name) == 0 && strcmp(it->consumer, con->name) == 0 &&
            it->consumer_created_ms == con->created_ms && !atomic_load(&it->end_requested)) {
            old = it;
        }
    }
    if (too_soon || (old != NULL && c->now_ms - old->started_ms < RESUBSCRIBE_MS)) {
        pthread_mutex_unlock(&f->lock);
        metrics_add(srv->metrics, metrics_consumer_series(srv->metrics, s, con), MC_SUBSCRIBE_RATE_EXCEEDED, 1);
        char id[32];
        shard_id_format(sh->index, id);
        api_error(c, KERR_RESOURCE_IN_USE,
                  "Another active subscription exists for this consumer: %s and shard %s; a new subscription can "
                  "start 5 seconds after the previous one.",
                  arn, id);
        return;
    }
    if (old != NULL) {
        atomic_store(&old->end_requested, true);
        schedule(old);
    }
    if (f->nrecent == f->recent_cap) {
        f->recent_cap = f->recent_cap ? f->recent_cap * 2 : 16;
        f->recent = realloc(f->recent, f->recent_cap * sizeof *f->recent);
        if (f->recent == NULL) {
            abort();
        }
    }
    recent_start_t *r = &f->recent[f->nrecent++];
    snprintf(r->stream, sizeof r->stream, "%s", s->name);
    snprintf(r->consumer, sizeof r->consumer, "%s", con->name);
    r->consumer_created_ms = con->created_ms;
    r->shard = sh->index;
    r->started_ms = c->now_ms;
    sub_t *sub = calloc(1, sizeof *sub);
    if (sub == NULL) {
        abort();
    }
    sub->srv = srv;
    sub->loop = http_request_loop(c->req);
    snprintf(sub->stream, sizeof sub->stream, "%s", s->name);
    sub->stream_created_ms = s->created_ms;
    snprintf(sub->consumer, sizeof sub->consumer, "%s", con->name);
    sub->consumer_created_ms = con->created_ms;
    sub->shard = sh->index;
    sub->position = position;
    sub->started_ms = c->now_ms;
    atomic_init(&sub->last_event_ms, c->now_ms);
    atomic_init(&sub->refs, 1); /* the HTTP stream's */
    sub->next = f->head;
    f->head = sub;
    atomic_fetch_add(&f->count, 1);
    pthread_mutex_unlock(&f->lock);

    /* logged and counted when it starts (its events have metrics of their own) */
    snprintf(c->stream, sizeof c->stream, "%s", s->name);
    api_observe(srv, c, c->req, NULL, 0, NULL, 200, NULL, 0);
    http_stream_events_t events = {on_drain, on_close, sub};
    sub->hs = http_stream_start(c->req, 200, "application/vnd.amazon.eventstream", &events);
    sub->cbor = c->cbor;
    buf_t empty = BUF_INIT;
    buf_puts(&empty, "{}");
    write_event(sub, "initial-response", NULL, &empty);
    buf_dispose(&empty);
    api_abandon(c);
    schedule(sub); /* records already there go out right after this handler */
}
