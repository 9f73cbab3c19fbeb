/*
 * The producer (include/eddy/producer.h) against the real eddy binary ($EDDY_BIN):
 * - a million user records with random keys through aggregation and collection, read back with GetRecords
 *   and de-aggregation (eddy/agg.h, with each shard's range as the KCL filters): every record exactly once
 *   per successful callback, in put order per partition key;
 * - with eddy's per-shard limits on, the rate limiter keeps throttles low and retries deliver everything;
 * - eddy killed with SIGKILL and restarted mid-run: every callback is a success (and the record is there)
 *   or a final error;
 * - put_many, with and without aggregation: the same, invalid records refused in place;
 * - destroy drains (every callback ran before it returns); configuration errors are clear.
 * Records carry their number in their data ("<8-byte index>" + padding), which is how they are found.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "eddy/agg.h"
#include "eddy/client.h"
#include "eddy/producer.h"
#include "support/eddy_process.h"

#define KEYS 1000 /* distinct partition keys */

typedef struct outcome {
    _Atomic int state; /* 0 pending, 1 ok, 2 failed */
    char shard[32];
    char seq[64];
    uint64_t sub;
} outcome_t;

typedef struct run {
    outcome_t *outcomes;
    size_t n;
    _Atomic size_t callbacks, failures, expired;
} run_t;

typedef struct put_ctx {
    run_t *run;
    size_t index;
} put_ctx_t;

static void on_done(void *arg, const eddy_put_result_t *r)
{
    put_ctx_t *ctx = arg;
    outcome_t *o = &ctx->run->outcomes[ctx->index];
    cr_assert_eq(atomic_load(&o->state), 0, "callback of record %zu called twice", ctx->index);
    if (r->err == EDDY_OK) {
        snprintf(o->shard, sizeof o->shard, "%s", r->shard_id);
        snprintf(o->seq, sizeof o->seq, "%s", r->sequence_number);
        o->sub = r->sub_sequence_number;
        atomic_store(&o->state, 1);
    } else {
        atomic_store(&o->state, 2);
        atomic_fetch_add(&ctx->run->failures, 1);
        if (r->err == EDDY_ERR_EXPIRED) {
            atomic_fetch_add(&ctx->run->expired, 1);
        } else {
            cr_assert_gt(r->attempt_count, 0);
        }
    }
    atomic_fetch_add(&ctx->run->callbacks, 1);
    free(ctx);
}

static eddy_client_t *client_for(const eddy_process_t *e)
{
    eddy_config_t *cfg = eddy_config_new();
    char err[256];
    cr_assert_eq(eddy_config_set(cfg, "endpoint", e->endpoint, err, sizeof err), 0, "%s", err);
    eddy_config_set(cfg, "region", "us-east-1", err, sizeof err);
    eddy_config_set(cfg, "access_key_id", "test", err, sizeof err);
    eddy_config_set(cfg, "secret_access_key", "test", err, sizeof err);
    eddy_config_set(cfg, "request_timeout_ms", "10000", err, sizeof err);
    eddy_client_t *c = eddy_client_new(cfg, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    return c;
}

/* Calls op; a throttled call (a shard's read limits) is made again, for up to 30 s. */
static cJSON *call(eddy_client_t *c, const char *op, const char *body)
{
    eddy_response_t *resp = NULL;
    int rc;
    int64_t deadline = eddy_process_now_ms() + 30000;
    while ((rc = eddy_client_call(c, op, body, strlen(body), &resp)) != 0 && resp != NULL &&
           resp->error_type != NULL && strcmp(resp->error_type, "ProvisionedThroughputExceededException") == 0 &&
           eddy_process_now_ms() < deadline) {
        eddy_response_free(resp);
        resp = NULL;
        eddy_process_pause_ms(100);
    }
    cr_assert_eq(rc, 0, "%s: %s %s", op, eddy_err_name(rc), resp != NULL ? resp->message : "");
    cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_len);
    eddy_response_free(resp);
    return j;
}

static void create_stream(eddy_client_t *c, const char *name, int shards)
{
    char body[256];
    snprintf(body, sizeof body, "{\"StreamName\":\"%s\",\"ShardCount\":%d}", name, shards);
    cJSON_Delete(call(c, "CreateStream", body));
}

/* ---- reading back ---- */

typedef struct seen {
    size_t index;
    char seq[64];
    uint64_t sub;
    char shard[32];
} seen_t;

typedef struct reader {
    seen_t *seen;
    size_t n, cap;
    const char *shard;
} reader_t;

static int on_user_record(void *arg, const eddy_user_record_t *r)
{
    reader_t *rd = arg;
    cr_assert_geq(r->data_len, 8);
    uint64_t index;
    memcpy(&index, r->data, 8);
    if (rd->n == rd->cap) {
        rd->cap = rd->cap ? rd->cap * 2 : 4096;
        rd->seen = realloc(rd->seen, rd->cap * sizeof *rd->seen);
    }
    seen_t *s = &rd->seen[rd->n++];
    s->index = (size_t)index;
    s->sub = r->sub_sequence_number;
    snprintf(s->shard, sizeof s->shard, "%s", rd->shard);
    return 0;
}

/* Reads every shard from TRIM_HORIZON to the tip, de-aggregating with each shard's range. */
static void read_all(eddy_client_t *c, const char *stream, reader_t *rd)
{
    char body[512];
    snprintf(body, sizeof body, "{\"StreamName\":\"%s\"}", stream);
    cJSON *shards = call(c, "ListShards", body);
    const cJSON *sh;
    cJSON_ArrayForEach(sh, cJSON_GetObjectItem(shards, "Shards"))
    {
        const char *id = cJSON_GetObjectItem(sh, "ShardId")->valuestring;
        const cJSON *range = cJSON_GetObjectItem(sh, "HashKeyRange");
        unsigned char start[16], end[16];
        const char *a = cJSON_GetObjectItem(range, "StartingHashKey")->valuestring;
        const char *b = cJSON_GetObjectItem(range, "EndingHashKey")->valuestring;
        cr_assert(eddy_hash_key_parse(a, strlen(a), start) && eddy_hash_key_parse(b, strlen(b), end));
        snprintf(body, sizeof body,
                 "{\"StreamName\":\"%s\",\"ShardId\":\"%s\",\"ShardIteratorType\":\"TRIM_HORIZON\"}", stream, id);
        cJSON *it = call(c, "GetShardIterator", body);
        char *iterator = strdup(cJSON_GetObjectItem(it, "ShardIterator")->valuestring);
        cJSON_Delete(it);
        rd->shard = id;
        for (;;) {
            char *req = malloc(strlen(iterator) + 64);
            sprintf(req, "{\"ShardIterator\":\"%s\",\"Limit\":10000}", iterator);
            cJSON *got = call(c, "GetRecords", req);
            free(req);
            const cJSON *recs = cJSON_GetObjectItem(got, "Records");
            const cJSON *r;
            cJSON_ArrayForEach(r, recs)
            {
                const char *data64 = cJSON_GetObjectItem(r, "Data")->valuestring;
                const char *pk = cJSON_GetObjectItem(r, "PartitionKey")->valuestring;
                const char *seq = cJSON_GetObjectItem(r, "SequenceNumber")->valuestring;
                size_t len = strlen(data64);
                unsigned char *data = malloc(len / 4 * 3 + 3);
                long n = base64_decode(data64, len, data);
                cr_assert_geq(n, 0);
                size_t before = rd->n;
                int rc = eddy_agg_decode(data, (size_t)n, pk, strlen(pk), NULL, start, end, on_user_record, rd);
                cr_assert_eq(rc, 0, "an aggregate on %s was dropped by the shard filter", id);
                for (size_t k = before; k < rd->n; k++) {
                    snprintf(rd->seen[k].seq, sizeof rd->seen[k].seq, "%s", seq);
                }
                free(data);
            }
            const cJSON *next = cJSON_GetObjectItem(got, "NextShardIterator");
            bool done = cJSON_GetArraySize(recs) == 0 || !cJSON_IsString(next);
            free(iterator);
            iterator = cJSON_IsString(next) ? strdup(next->valuestring) : NULL;
            cJSON_Delete(got);
            if (done || iterator == NULL) {
                break;
            }
        }
        free(iterator);
    }
    cJSON_Delete(shards);
}

/* Compares two decimal sequence numbers. */
static int cmp_seq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return la != lb ? (la < lb ? -1 : 1) : strcmp(a, b);
}

/* Every success is read back where its callback said; nothing else is there; per key the (sequence,
 * sub-sequence) order is the put order. A success is read back exactly once, unless eddy was killed: a
 * request in flight then may have been written before the kill and written again by the retry, so a
 * success may have extra copies (at-least-once, as with the KPL), of which one is where its callback said.
 * Returns the number of extra copies. */
static size_t verify(const run_t *run, reader_t *rd, bool eddy_was_killed, bool check_order)
{
    unsigned char *count = calloc(run->n, 1);
    unsigned char *matched = calloc(run->n, 1);
    size_t extra = 0;
    for (size_t k = 0; k < rd->n; k++) {
        seen_t *s = &rd->seen[k];
        cr_assert_lt(s->index, run->n, "unknown record %zu read back", s->index);
        count[s->index]++;
        const outcome_t *o = &run->outcomes[s->index];
        if (atomic_load(&o->state) == 1) {
            bool here = strcmp(o->shard, s->shard) == 0 && strcmp(o->seq, s->seq) == 0 && o->sub == s->sub;
            if (!eddy_was_killed) {
                cr_assert_str_eq(o->shard, s->shard, "record %zu: callback said %s, read on %s", s->index,
                                 o->shard, s->shard);
                cr_assert_str_eq(o->seq, s->seq, "record %zu: callback seq %s, read %s", s->index, o->seq,
                                 s->seq);
                cr_assert_eq(o->sub, s->sub, "record %zu: sub-sequence", s->index);
            }
            matched[s->index] |= here;
        } else {
            cr_assert(eddy_was_killed, "record %zu failed but was read back", s->index);
        }
    }
    for (size_t i = 0; i < run->n; i++) {
        if (atomic_load(&run->outcomes[i].state) == 1) {
            if (eddy_was_killed) {
                cr_assert(matched[i], "record %zu: succeeded, not read back where its callback said (%s %s)", i,
                          run->outcomes[i].shard, run->outcomes[i].seq);
                extra += count[i] - 1u;
            } else {
                cr_assert_eq(count[i], 1, "record %zu: succeeded, read back %d times", i, count[i]);
            }
        } else if (!eddy_was_killed) {
            cr_assert_eq(count[i], 0);
        }
    }
    /* per partition key (index % KEYS), put order = (seq, sub) order (retries may reorder, as in the KPL) */
    for (size_t key = 0; check_order && key < KEYS && key < run->n; key++) {
        const outcome_t *prev = NULL;
        for (size_t i = key; i < run->n; i += KEYS) {
            const outcome_t *o = &run->outcomes[i];
            if (atomic_load(&o->state) != 1) {
                continue;
            }
            if (prev != NULL && strcmp(prev->shard, o->shard) == 0) {
                int c = cmp_seq(prev->seq, o->seq);
                cr_assert(c < 0 || (c == 0 && prev->sub < o->sub), "key %zu: record %zu out of order", key, i);
            }
            prev = o;
        }
    }
    free(count);
    free(matched);
    return extra;
}

/* A producer through c with the settings ({key, value, ..., NULL}), each of which must be valid. */
static eddy_producer_t *producer_with(eddy_client_t *c, const char *const settings[])
{
    eddy_producer_config_t *cfg = eddy_producer_config_new();
    char err[256];
    for (size_t i = 0; settings[i] != NULL; i += 2) {
        cr_assert_eq(eddy_producer_config_set(cfg, settings[i], settings[i + 1], err, sizeof err), 0, "%s", err);
    }
    eddy_producer_t *p = eddy_producer_new(c, cfg, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    return p;
}

static void put_range(eddy_producer_t *p, const char *stream, run_t *run, size_t from, size_t to, size_t size)
{
    unsigned char data[1024];
    memset(data, 'x', sizeof data);
    for (size_t i = from; i < to; i++) {
        uint64_t index = i;
        memcpy(data, &index, 8);
        char pk[32];
        int pklen = snprintf(pk, sizeof pk, "key-%zu", i % KEYS);
        put_ctx_t *ctx = malloc(sizeof *ctx);
        *ctx = (put_ctx_t){run, i};
        int rc = eddy_producer_put(p, stream, pk, (size_t)pklen, NULL, data, size, on_done, ctx);
        cr_assert_eq(rc, 0, "put %zu: %s", i, eddy_err_name(rc));
    }
}

static run_t *run_new(size_t n)
{
    run_t *run = calloc(1, sizeof *run);
    run->outcomes = calloc(n, sizeof *run->outcomes);
    run->n = n;
    return run;
}

static void run_free(run_t *run)
{
    free(run->outcomes);
    free(run);
}

/* Reads the stream back and verifies it against the run (read_all, verify); then frees the run. */
static void read_back(eddy_client_t *c, const char *stream, run_t *run, bool check_order)
{
    reader_t rd = {0};
    read_all(c, stream, &rd);
    cr_assert_eq(rd.n, run->n - atomic_load(&run->failures), "%zu records read back", rd.n);
    verify(run, &rd, false, check_order);
    free(rd.seen);
    run_free(run);
}

Test(producer, million_records_aggregated_exactly_once_in_order, .timeout = 300)
{
    const char *flags[] = {"--shard-limits", "off", "--durability", "none", NULL};
    eddy_process_t e;
    cr_assert_eq(eddy_process_start(&e, flags), 0);
    eddy_client_t *c = client_for(&e);
    create_stream(c, "million", 4);
    const char *settings[] = {"rate_limit", "off", NULL};
    eddy_producer_t *p = producer_with(c, settings);
    size_t n = 1000000;
    run_t *run = run_new(n);
    put_range(p, "million", run, 0, n, 100);
    eddy_producer_flush_sync(p);
    cr_assert_eq(atomic_load(&run->callbacks), n);
    cr_assert_eq(atomic_load(&run->failures), 0);
    eddy_producer_metrics_t m;
    eddy_producer_metrics(p, &m);
    cr_assert_eq(m.user_records_put, n);
    cr_assert_gt(m.user_records_per_kinesis_record, 10.0, "aggregation packed %.1f per record",
                 m.user_records_per_kinesis_record);
    eddy_producer_destroy(p);
    read_back(c, "million", run, true);
    eddy_client_free(c);
    eddy_process_cleanup(&e);
}

/* put_many: batches of records (some invalid: refused in place, no callback) land exactly once, in put order
 * per key, the same without aggregation (hashed side by side, one lock) as with it. */
static void put_many_run(const char *aggregation)
{
    const char *flags[] = {"--shard-limits", "off", "--durability", "none", NULL};
    eddy_process_t e;
    cr_assert_eq(eddy_process_start(&e, flags), 0);
    eddy_client_t *c = client_for(&e);
    create_stream(c, "many", 4);
    const char *settings[] = {"aggregation", aggregation, NULL};
    eddy_producer_t *p = producer_with(c, settings);
    size_t n = 20000, batch = 300; /* batches that do not divide md5_multi's lanes evenly */
    run_t *run = run_new(n);
    static unsigned char data[20000][24];
    static char pks[20000][16];
    eddy_producer_record_t recs[302];
    for (size_t from = 0; from < n; from += batch) {
        size_t m = 0;
        for (size_t i = from; i < from + batch && i < n; i++) {
            uint64_t index = i;
            memcpy(data[i], &index, 8);
            memset(data[i] + 8, 'y', sizeof data[i] - 8);
            int pklen = snprintf(pks[i], sizeof pks[i], "key-%zu", i % KEYS);
            put_ctx_t *ctx = malloc(sizeof *ctx);
            *ctx = (put_ctx_t){run, i};
            recs[m++] = (eddy_producer_record_t){.partition_key = pks[i], .pk_len = (size_t)pklen,
                                                 .data = data[i], .data_len = sizeof data[i], .done = on_done,
                                                 .arg = ctx};
            if (i % 1000 == 7) { /* an invalid one among them: an empty partition key */
                recs[m++] = (eddy_producer_record_t){.partition_key = "", .pk_len = 0, .data = "z", .data_len = 1,
                                                     .done = on_done, .arg = NULL};
            }
        }
        if (from % 600 == 0) { /* and one last in its batch: the keys before it are hashed all the same */
            recs[m++] = (eddy_producer_record_t){.partition_key = "", .pk_len = 0, .data = "z", .data_len = 1,
                                                 .done = on_done, .arg = NULL};
        }
        size_t accepted = eddy_producer_put_many(p, "many", recs, m);
        size_t expect = 0;
        for (size_t k = 0; k < m; k++) {
            if (recs[k].pk_len == 0) {
                cr_assert_eq(recs[k].result, EDDY_ERR_INVALID);
            } else {
                cr_assert_eq(recs[k].result, EDDY_OK, "record %zu: %s", k, eddy_err_name(recs[k].result));
                expect++;
            }
        }
        cr_assert_eq(accepted, expect);
    }
    eddy_producer_flush_sync(p);
    cr_assert_eq(atomic_load(&run->callbacks), n);
    cr_assert_eq(atomic_load(&run->failures), 0);
    eddy_producer_destroy(p);
    read_back(c, "many", run, true);
    eddy_client_free(c);
    eddy_process_cleanup(&e);
}

Test(producer, put_many_without_aggregation, .timeout = 300)
{
    put_many_run("false");
}

Test(producer, put_many_with_aggregation, .timeout = 300)
{
    put_many_run("true");
}

Test(producer, rate_limiter_keeps_throttles_low_and_retries_deliver, .timeout = 300)
{
    eddy_process_t e;
    cr_assert_eq(eddy_process_start(&e, NULL), 0); /* per-shard limits on (the default) */
    eddy_client_t *c = client_for(&e);
    create_stream(c, "limited", 2);
    const char *settings[] = {"aggregation", "false", "rate_limit", "100", NULL};
    eddy_producer_t *p = producer_with(c, settings);
    size_t n = 6000; /* 3 s of the 2 shards' 1000 records/s */
    run_t *run = run_new(n);
    put_range(p, "limited", run, 0, n, 200);
    eddy_producer_flush_sync(p);
    eddy_producer_metrics_t m;
    eddy_producer_metrics(p, &m);
    fprintf(stderr, "rate limiter at 100 %%: %" PRIu64 " throttles for %" PRIu64 " records put\n", m.throttles,
            m.kinesis_records_put);
    cr_assert_leq(m.throttles * 20, m.kinesis_records_put, "more than 5 %% throttled: %" PRIu64, m.throttles);
    eddy_producer_destroy(p); /* drains */
    cr_assert_eq(atomic_load(&run->callbacks), n);
    cr_assert_eq(atomic_load(&run->failures), 0);
    read_back(c, "limited", run, true);
    eddy_client_free(c);
    eddy_process_cleanup(&e);
}

/* Without the limiter, one shard is sent more than it takes: the throttled records are retried ahead of the
 * younger ones, so that every key's records land in put order. */
static void throttled_run(const char *aggregation, size_t n, size_t size)
{
    eddy_process_t e;
    cr_assert_eq(eddy_process_start(&e, NULL), 0);
    eddy_client_t *c = client_for(&e);
    create_stream(c, "throttled", 1);
    const char *settings[] = {"aggregation", aggregation, "rate_limit", "off", NULL};
    eddy_producer_t *p = producer_with(c, settings);
    run_t *run = run_new(n);
    put_range(p, "throttled", run, 0, n, size);
    eddy_producer_flush_sync(p);
    eddy_producer_metrics_t m;
    eddy_producer_metrics(p, &m);
    cr_assert_gt(m.throttles, 0, "1 shard must throttle %zu records of %zu bytes sent at once", n, size);
    cr_assert_gt(m.retries, 0);
    eddy_producer_destroy(p);
    cr_assert_eq(atomic_load(&run->failures), 0);
    read_back(c, "throttled", run, true);
    eddy_client_free(c);
    eddy_process_cleanup(&e);
}

Test(producer, without_the_limiter_throttling_is_retried_in_order, .timeout = 300)
{
    throttled_run("false", 3000, 100); /* over the shard's 1000 records/s */
}

Test(producer, without_the_limiter_throttled_aggregates_are_retried_in_order, .timeout = 300)
{
    throttled_run("true", 6000, 600); /* 3.6 MB: over the shard's 1 MB/s */
}

Test(producer, eddy_killed_and_restarted_mid_run, .timeout = 300)
{
    const char *flags[] = {"--shard-limits", "off", NULL};
    eddy_process_t e;
    cr_assert_eq(eddy_process_start(&e, flags), 0);
    eddy_client_t *c = client_for(&e);
    create_stream(c, "restarted", 2);
    const char *settings[] = {"record_ttl_ms", "20000", NULL};
    eddy_producer_t *p = producer_with(c, settings);
    size_t n = 200000;
    run_t *run = run_new(n);
    put_range(p, "restarted", run, 0, n / 2, 100);
    /* kill -9 once some records completed and others are in flight */
    int64_t deadline = eddy_process_now_ms() + 30000;
    while (atomic_load(&run->callbacks) < n / 10 && eddy_process_now_ms() < deadline) {
        eddy_process_pause_ms(5);
    }
    eddy_process_stop(&e, true);
    put_range(p, "restarted", run, n / 2, n, 100);
    cr_assert_eq(eddy_process_restart(&e), 0);
    eddy_producer_destroy(p);
    cr_assert_eq(atomic_load(&run->callbacks), n, "every record completed, one way or the other");
    reader_t rd = {0};
    read_all(c, "restarted", &rd);
    size_t extra = verify(run, &rd, true, false);
    fprintf(stderr, "killed and restarted: %zu of %zu records failed finally, %zu extra copies from retries\n",
            atomic_load(&run->failures), n, extra);
    free(rd.seen);
    run_free(run);
    eddy_client_free(c);
    eddy_process_cleanup(&e);
}

/* With eddy down, records are retried until their TTL; lowered to 0, what cannot be sent fails at its next
 * attempt (or while it waits for a map), and destroy returns. */
Test(producer, a_lowered_ttl_fails_what_cannot_be_sent, .timeout = 120)
{
    eddy_process_t e;
    cr_assert_eq(eddy_process_start(&e, NULL), 0);
    eddy_client_t *c = client_for(&e);
    create_stream(c, "down", 2);
    const char *settings[] = {"record_ttl_ms", "100000000", "record_max_buffered_time_ms", "50", NULL};
    eddy_producer_t *p = producer_with(c, settings);
    run_t *run = run_new(200);
    put_range(p, "down", run, 0, 100, 100);
    eddy_producer_flush_sync(p);
    cr_assert_eq(atomic_load(&run->failures), 0);
    eddy_process_stop(&e, true);
    put_range(p, "down", run, 100, 200, 100);
    eddy_producer_flush(p, NULL);
    eddy_producer_set_record_ttl(p, 0);
    eddy_producer_destroy(p);
    cr_assert_eq(atomic_load(&run->callbacks), 200);
    cr_assert_eq(atomic_load(&run->failures), 100);
    cr_assert_eq(atomic_load(&run->expired), 100);
    run_free(run);
    eddy_client_free(c);
    eddy_process_cleanup(&e);
}

Test(producer, a_missing_stream_fails_its_records_and_bad_input_is_refused)
{
    eddy_process_t e;
    cr_assert_eq(eddy_process_start(&e, NULL), 0);
    eddy_client_t *c = client_for(&e);
    eddy_producer_config_t *cfg = eddy_producer_config_new();
    char err[256];
    cr_assert_eq(eddy_producer_config_set(cfg, "collection_max_count", "501", err, sizeof err), EDDY_ERR_INVALID);
    cr_assert(strstr(err, "collection_max_count") != NULL, "%s", err);
    cr_assert_eq(eddy_producer_config_set(cfg, "nonsense", "1", err, sizeof err), EDDY_ERR_INVALID);
    eddy_producer_t *p = eddy_producer_new(c, cfg, err, sizeof err);
    cr_assert_eq(eddy_producer_put(p, "s", "", 0, NULL, "x", 1, NULL, NULL), EDDY_ERR_INVALID);
    cr_assert_eq(eddy_producer_put(p, "s", "k", 1, "340282366920938463463374607431768211456", "x", 1, NULL, NULL),
                 EDDY_ERR_INVALID);
    static char big[1048577];
    cr_assert_eq(eddy_producer_put(p, "s", "k", 1, NULL, big, sizeof big, NULL, NULL), EDDY_ERR_TOO_LARGE);
    run_t *run = run_new(10);
    put_range(p, "no-such-stream", run, 0, 10, 10);
    eddy_producer_destroy(p);
    cr_assert_eq(atomic_load(&run->callbacks), 10);
    cr_assert_eq(atomic_load(&run->failures), 10);
    run_free(run);
    eddy_client_free(c);
    eddy_process_cleanup(&e);
}

/* ---- the same against kinesalite (npm, a server nobody here wrote) ---- */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

Test(producer, the_same_against_kinesalite, .timeout = 300)
{
    const char *cli = getenv("KINESALITE_CLI");
    if (cli == NULL || access(cli, R_OK) != 0) {
        cr_skip_test("KINESALITE_CLI is not set (scripts/test.sh installs kinesalite with npm ci in bench/peers)");
    }
    int port = free_port();
    char portarg[16];
    snprintf(portarg, sizeof portarg, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 1);
        execlp("node", "node", cli, "--port", portarg, "--createStreamMs", "0", "--deleteStreamMs", "0", NULL);
        _exit(127);
    }
    eddy_process_t fake = {0};
    snprintf(fake.endpoint, sizeof fake.endpoint, "http://127.0.0.1:%d", port); /* traffic to loopback only */
    eddy_client_t *c = client_for(&fake);
    int64_t deadline = eddy_process_now_ms() + 20000;
    for (;;) {
        eddy_response_t *resp = NULL;
        int rc = eddy_client_call(c, "ListStreams", "{}", 2, &resp);
        eddy_response_free(resp);
        if (rc == 0) {
            break;
        }
        cr_assert_lt(eddy_process_now_ms(), deadline, "kinesalite did not start");
        eddy_process_pause_ms(50);
    }
    create_stream(c, "agg", 2);
    deadline = eddy_process_now_ms() + 10000;
    for (;;) {
        cJSON *d = call(c, "DescribeStreamSummary", "{\"StreamName\":\"agg\"}");
        const cJSON *sum = cJSON_GetObjectItem(d, "StreamDescriptionSummary");
        bool active = strcmp(cJSON_GetObjectItem(sum, "StreamStatus")->valuestring, "ACTIVE") == 0;
        cJSON_Delete(d);
        if (active) {
            break;
        }
        cr_assert_lt(eddy_process_now_ms(), deadline, "stream not ACTIVE");
        eddy_process_pause_ms(20);
    }
    eddy_producer_config_t *cfg = eddy_producer_config_new();
    char err[256];
    eddy_producer_t *p = eddy_producer_new(c, cfg, err, sizeof err);
    size_t n = 100000;
    run_t *run = run_new(n);
    put_range(p, "agg", run, 0, n, 100);
    eddy_producer_destroy(p);
    cr_assert_eq(atomic_load(&run->callbacks), n);
    cr_assert_eq(atomic_load(&run->failures), 0);
    read_back(c, "agg", run, true);
    eddy_client_free(c);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* Memory is bounded: with nothing answering, put refuses past max_outstanding_bytes (block_when_full false)
 * and every accepted record still completes once, with a final error after its TTL. */
Test(producer, memory_is_bounded_and_unreachable_records_expire, .timeout = 120)
{
    eddy_process_t nobody = {0};
    snprintf(nobody.endpoint, sizeof nobody.endpoint, "http://127.0.0.1:%d", free_port()); /* nothing listens */
    eddy_client_t *c = client_for(&nobody);
    const char *settings[] = {"max_outstanding_bytes", "1048576", "block_when_full", "false",
                              "record_ttl_ms",         "500",     NULL};
    eddy_producer_t *p = producer_with(c, settings);
    size_t n = 20000;
    run_t *run = run_new(n);
    unsigned char data[100] = {0};
    size_t accepted = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        put_ctx_t *ctx = malloc(sizeof *ctx);
        *ctx = (put_ctx_t){run, i};
        rc = eddy_producer_put(p, "s", "key-0", 5, NULL, data, sizeof data, on_done, ctx);
        if (rc != EDDY_OK) {
            free(ctx);
            break;
        }
        accepted++;
    }
    cr_assert_eq(rc, EDDY_ERR_WOULD_BLOCK, "put went on past the bound (%s)", eddy_err_name(rc));
    cr_assert_leq(accepted * (sizeof data + 5), 1048576 + sizeof data + 5);
    cr_assert_gt(accepted, 1000);
    eddy_producer_destroy(p); /* waits for the TTL: every accepted record fails once */
    cr_assert_eq(atomic_load(&run->callbacks), accepted);
    cr_assert_eq(atomic_load(&run->failures), accepted);
    run_free(run);
    eddy_client_free(c);
}
