/*
 * producer: the KPL-style producer of libeddy (see include/eddy/producer.h for the contract).
 *
 * State and locking. One mutex guards everything below; user threads hold it for a put, the producer's
 * thread for its rounds, the client's I/O thread for a reply. Callbacks are always called without it.
 *
 *   stream ──┬─ shard map (open shards sorted by starting hash key; ListShards, refreshed when stale)
 *            ├─ unmapped: user records waiting for the first map
 *            ├─ per predicted shard: an aggregator (user records + eddy_agg_t) and a limiter queue of
 *            │  Kinesis records (token buckets: records and bytes)
 *            └─ collector: Kinesis records that passed the limiter, sent as PutRecords
 *
 * A user record (urec) is one allocation holding its keys and data. A Kinesis record (krec) owns the
 * urecs it carries: one (sent as it is) or several (aggregated). A krec is sent in one PutRecords; after
 * the reply each of its urecs completes (success) or goes back to its stream's aggregators (a retry, with
 * deadline now + record_max_buffered_time / 2, as the KPL does) until its record_ttl passes.
 *
 * Time: deadlines in monotonic milliseconds. The producer's thread wakes at the earliest deadline (at least
 * every LIMITER_TICK_MS while a limiter holds records).
 */
#include "eddy/producer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base64.h"
#include "common/buf.h"
#include "common/jsonw.h"
#include "eddy/agg.h"

#define LIMITER_TICK_MS 25
#define MAP_RETRY_MS 1000
#define SHARD_RECORDS_PER_S 1000.0
#define SHARD_BYTES_PER_S (1024.0 * 1024.0)
#define PUT_RECORDS_MAX 500
#define PK_MAX 256
#define ATTEMPTS_KEPT 16 /* the first and the last ones when there were more */
#define SHARD_ID_MAX 64

/* ---- configuration ---- */

struct eddy_producer_config {
    bool aggregation;
    size_t aggregation_max_bytes;
    size_t aggregation_max_count;
    size_t collection_max_count;
    size_t collection_max_bytes;
    int64_t buffered_ms;
    int64_t ttl_ms;
    double rate_limit;
    bool fail_if_throttled;
    size_t max_user_record_bytes;
    size_t max_outstanding_bytes;
    bool block_when_full;
};

eddy_producer_config_t *eddy_producer_config_new(void)
{
    eddy_producer_config_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->aggregation = true;
    c->aggregation_max_bytes = EDDY_AGG_DEFAULT_MAX_BYTES;
    c->aggregation_max_count = 0;
    c->collection_max_count = PUT_RECORDS_MAX;
    c->collection_max_bytes = 5u << 20;
    c->buffered_ms = 100;
    c->ttl_ms = 30000;
    c->rate_limit = 150;
    c->max_user_record_bytes = 1u << 20;
    c->max_outstanding_bytes = 256u << 20;
    c->block_when_full = true;
    return c;
}

void eddy_producer_config_free(eddy_producer_config_t *cfg)
{
    free(cfg);
}

static bool parse_bool(const char *v, bool *out)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
        *out = false;
        return true;
    }
    return false;
}

static bool parse_range(const char *v, long long lo, long long hi, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi) {
        return false;
    }
    *out = n;
    return true;
}

int eddy_producer_config_set(eddy_producer_config_t *cfg, const char *key, const char *value, char *err,
                             size_t errlen)
{
    static const struct {
        const char *key;
        long long lo, hi; /* lo > hi: a boolean */
    } keys[] = {
        {"aggregation", 1, 0},
        {"aggregation_max_bytes", 64, 10485760},
        {"aggregation_max_count", 1, INT64_MAX},
        {"collection_max_count", 1, PUT_RECORDS_MAX},
        {"collection_max_bytes", 52224, 5242880},
        {"record_max_buffered_time_ms", 0, 86400000},
        {"record_ttl_ms", 100, INT64_MAX / 2},
        {"rate_limit", 1, 1000000000},
        {"fail_if_throttled", 1, 0},
        {"max_user_record_bytes", 64, 10485760},
        {"max_outstanding_bytes", 1048576, INT64_MAX / 2},
        {"block_when_full", 1, 0},
    };
    if (cfg == NULL || key == NULL || value == NULL) {
        snprintf(err, errlen, "eddy_producer_config_set: NULL argument");
        return EDDY_ERR_INVALID;
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (strcmp(keys[i].key, key) != 0) {
            continue;
        }
        if (i == 7 && strcmp(value, "off") == 0) {
            cfg->rate_limit = 0; /* no limiter */
            return EDDY_OK;
        }
        long long n = 0;
        bool b = false;
        bool boolean = keys[i].lo > keys[i].hi;
        if (boolean ? !parse_bool(value, &b) : !parse_range(value, keys[i].lo, keys[i].hi, &n)) {
            if (boolean) {
                snprintf(err, errlen, "%s: expected true or false, got \"%s\"", key, value);
            } else {
                snprintf(err, errlen, "%s: expected an integer in %lld..%lld, got \"%s\"", key, keys[i].lo,
                         keys[i].hi, value);
            }
            return EDDY_ERR_INVALID;
        }
        switch (i) {
        case 0: cfg->aggregation = b; break;
        case 1: cfg->aggregation_max_bytes = (size_t)n; break;
        case 2: cfg->aggregation_max_count = (size_t)n; break;
        case 3: cfg->collection_max_count = (size_t)n; break;
        case 4: cfg->collection_max_bytes = (size_t)n; break;
        case 5: cfg->buffered_ms = n; break;
        case 6: cfg->ttl_ms = n; break;
        case 7: cfg->rate_limit = (double)n; break;
        case 8: cfg->fail_if_throttled = b; break;
        case 9: cfg->max_user_record_bytes = (size_t)n; break;
        case 10: cfg->max_outstanding_bytes = (size_t)n; break;
        default: cfg->block_when_full = b; break;
        }
        return EDDY_OK;
    }
    snprintf(err, errlen, "unknown producer setting \"%s\"", key);
    return EDDY_ERR_INVALID;
}

/* ---- records ---- */

/* One attempt; code and message are heap copies (NULL on success). */
typedef struct attempt {
    int64_t start_ms, end_ms;
    bool success;
    char *code;
    char *message;
} attempt_t;

/* Where a Kinesis record landed, shared by its user records (reference counted). */
typedef struct landing {
    _Atomic size_t refs;
    char shard_id[SHARD_ID_MAX];
    char sequence_number[]; /* NUL-terminated */
} landing_t;

typedef struct urec {
    struct urec *next;
    struct stream *stream;
    eddy_put_fn done;
    void *arg;
    char *pk;
    size_t pk_len;
    char *ehk; /* NULL when none */
    unsigned char *data;
    size_t data_len;
    unsigned char hash[16];
    int64_t arrival_ms, deadline_ms, expiration_ms;
    int64_t first_sent_ms; /* 0 until first sent */
    attempt_t first_attempt; /* the common case: one attempt, no allocation */
    attempt_t *attempts;     /* NULL, or ATTEMPTS_KEPT slots once there is a second attempt */
    size_t nattempts;
    size_t total_attempts;
    /* the outcome, filled before the callback */
    int err;
    landing_t *landing; /* on success */
    uint64_t sub_sequence_number;
    bool aggregated;
} urec_t;

typedef struct krec {
    struct krec *next;
    urec_t *urecs; /* in order: the sub-sequence numbers */
    size_t count;
    bool aggregated;     /* count > 1: the data is the aggregate */
    eddy_agg_t *agg;     /* the aggregate, until encoded into blob (outside the lock, by send_batch) */
    unsigned char *blob; /* the encoded aggregate */
    size_t blob_len;     /* its exact size, known when sealed */
    const char *pk; /* "a" or the urec's */
    size_t pk_len;
    char ehk[EDDY_HASH_KEY_STR_MAX];
    int shard; /* predicted shard (index into the map), -1: none */
    char shard_id[SHARD_ID_MAX];
    int64_t deadline_ms, expiration_ms;
    landing_t *landing; /* where it landed (set when it succeeded) */
} krec_t;

typedef struct shard {
    unsigned char start[16], end[16];
    char id[SHARD_ID_MAX];
    /* aggregator */
    eddy_agg_t *agg;
    urec_t *agg_head, *agg_tail;
    size_t agg_count;
    int64_t agg_deadline; /* earliest deadline of its urecs; 0 when empty */
    /* limiter */
    krec_t *lim_head, *lim_tail;
    double tok_records, tok_bytes;
    int64_t tok_ms;
    /* collection: a PutRecords with records of this shard is in flight */
    bool busy;
    uint64_t batch_mark;
} shard_t;

typedef struct stream {
    struct stream *next;
    char *name;
    shard_t *shards; /* open shards sorted by start */
    size_t nshards;
    bool map_valid;
    bool map_pending;      /* a ListShards is in flight */
    int64_t map_retry_ms;  /* next ListShards after a failure (0: now) */
    urec_t *unmapped_head, *unmapped_tail;
    krec_t *col_head, *col_tail; /* the collector */
    size_t col_count, col_bytes;
    int64_t col_deadline;
    bool flush; /* send everything without waiting for deadlines */
} stream_t;

struct eddy_producer {
    eddy_client_t *client;
    eddy_producer_config_t cfg;
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* the producer's thread */
    pthread_cond_t room;  /* waiters for outstanding bytes or count to drop */
    pthread_t thread;
    bool stopping, closed;
    stream_t *streams;
    size_t outstanding;
    size_t outstanding_bytes;
    size_t in_flight_requests;
    eddy_producer_metrics_t m;
    double buffering_sum_ms, request_sum_ms;
    uint64_t buffering_n, urecs_in_kinesis_put;
    eddy_agg_t *agg_pool[64]; /* emptied aggregates for reuse */
    size_t agg_pooled;
};

/* Monotonic milliseconds. The coarse clock (a few ms of resolution, no clock read) is plenty for deadlines
 * of tens of milliseconds and is read on every put. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmp_key(const unsigned char a[16], const unsigned char b[16])
{
    return memcmp(a, b, 16);
}

/* The index of the open shard whose range holds key, or -1. */
static int predict(const stream_t *s, const unsigned char key[16])
{
    size_t lo = 0, hi = s->nshards;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cmp_key(s->shards[mid].end, key) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < s->nshards && cmp_key(s->shards[lo].start, key) <= 0) {
        return (int)lo;
    }
    return -1;
}

/* The index of the shard of the current map a Kinesis record was predicted for, or -1. */
static int shard_of(const stream_t *s, const krec_t *k)
{
    if (k->shard_id[0] == '\0') {
        return -1;
    }
    if (k->shard >= 0 && (size_t)k->shard < s->nshards && strcmp(s->shards[k->shard].id, k->shard_id) == 0) {
        return k->shard;
    }
    for (size_t i = 0; i < s->nshards; i++) {
        if (strcmp(s->shards[i].id, k->shard_id) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static void wake_thread(eddy_producer_t *p)
{
    pthread_cond_signal(&p->wake);
}

/* ---- completing user records ---- */

/* A list of urecs whose callbacks are due, called once the lock is released. */
typedef struct done_list {
    urec_t *head, *tail;
} done_list_t;

static void append(urec_t **head, urec_t **tail, urec_t *u)
{
    u->next = NULL;
    if (*tail != NULL) {
        (*tail)->next = u;
    } else {
        *head = u;
    }
    *tail = u;
}

static attempt_t *attempt_list(urec_t *u)
{
    return u->attempts != NULL ? u->attempts : &u->first_attempt;
}

static void attempt_dispose(attempt_t *a)
{
    free(a->code);
    free(a->message);
}

static void add_attempt(urec_t *u, int64_t start, int64_t end, bool success, const char *code, const char *message)
{
    u->total_attempts++;
    if (u->nattempts == 1 && u->attempts == NULL) {
        u->attempts = calloc(ATTEMPTS_KEPT, sizeof *u->attempts);
        if (u->attempts == NULL) {
            attempt_dispose(&u->first_attempt); /* keep only the latest one */
            u->nattempts = 0;
        } else {
            u->attempts[0] = u->first_attempt;
        }
    }
    attempt_t *list = attempt_list(u);
    if (u->nattempts == ATTEMPTS_KEPT) {
        /* keep the first and the latest ones */
        attempt_dispose(&list[1]);
        memmove(&list[1], &list[2], (ATTEMPTS_KEPT - 2) * sizeof list[0]);
        u->nattempts--;
    }
    attempt_t *a = &list[u->nattempts++];
    a->start_ms = start;
    a->end_ms = end;
    a->success = success;
    a->code = !success && code != NULL ? strdup(code) : NULL;
    a->message = !success && message != NULL ? strdup(message) : NULL;
}

static void landing_unref(landing_t *l)
{
    if (l != NULL && atomic_fetch_sub(&l->refs, 1) == 1) {
        free(l);
    }
}

/* Queues a completed urec for its callback (its metrics are counted by run_callbacks). */
static void finish_urec(eddy_producer_t *p, done_list_t *dl, urec_t *u, int err)
{
    (void)p;
    u->err = err;
    append(&dl->head, &dl->tail, u);
}

/* Calls the callbacks and frees the urecs (without the lock), then releases their room. */
/* What completing user records adds to the producer's counts (applied under the lock, once per batch). */
typedef struct completion {
    size_t n, bytes;
    eddy_producer_metrics_t m;
    double buffering_sum;
    uint64_t buffering_n;
} completion_t;

/* Calls one urec's callback and frees it (without the lock). */
static void complete_one(urec_t *u, completion_t *acc)
{
    if (u->err == EDDY_OK) {
        acc->m.user_records_put++;
        acc->m.user_bytes_put += u->data_len;
    } else {
        acc->m.user_records_failed++;
        acc->m.user_records_expired += u->err == EDDY_ERR_EXPIRED;
    }
    acc->m.retries += u->total_attempts > 1 ? u->total_attempts - 1 : 0;
    if (u->first_sent_ms != 0) {
        acc->buffering_sum += (double)(u->first_sent_ms - u->arrival_ms);
        acc->buffering_n++;
    }
    eddy_attempt_t attempts[ATTEMPTS_KEPT];
    attempt_t *list = attempt_list(u);
    int64_t prev = u->arrival_ms;
    for (size_t i = 0; i < u->nattempts; i++) {
        const attempt_t *a = &list[i];
        attempts[i] = (eddy_attempt_t){a->start_ms - prev, a->end_ms - a->start_ms, a->success, a->code, a->message};
        prev = a->end_ms;
    }
    const attempt_t *last = u->nattempts > 0 ? &list[u->nattempts - 1] : NULL;
    bool ok = u->err == EDDY_OK && u->landing != NULL;
    eddy_put_result_t r = {
        .err = u->err,
        .shard_id = ok ? u->landing->shard_id : NULL,
        .sequence_number = ok ? u->landing->sequence_number : NULL,
        .sub_sequence_number = u->sub_sequence_number,
        .aggregated = u->aggregated,
        .error_code = u->err != EDDY_OK && last != NULL && last->code != NULL ? last->code
                      : u->err == EDDY_ERR_EXPIRED                           ? "Expired"
                                                                             : NULL,
        .error_message = u->err != EDDY_OK && last != NULL ? last->message : NULL,
        .attempts = attempts,
        .attempt_count = u->nattempts,
    };
    if (u->done != NULL) {
        u->done(u->arg, &r);
    }
    acc->n++;
    acc->bytes += u->pk_len + u->data_len;
    for (size_t i = 0; i < u->nattempts; i++) {
        attempt_dispose(&list[i]);
    }
    free(u->attempts);
    landing_unref(u->landing);
    free(u);
}

/* Applies what completions added and releases their room (takes the lock). */
static void apply_completions(eddy_producer_t *p, const completion_t *acc)
{
    if (acc->n == 0) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->outstanding -= acc->n;
    p->outstanding_bytes -= acc->bytes;
    p->m.user_records_put += acc->m.user_records_put;
    p->m.user_bytes_put += acc->m.user_bytes_put;
    p->m.user_records_failed += acc->m.user_records_failed;
    p->m.user_records_expired += acc->m.user_records_expired;
    p->m.retries += acc->m.retries;
    p->buffering_sum_ms += acc->buffering_sum;
    p->buffering_n += acc->buffering_n;
    pthread_cond_broadcast(&p->room);
    pthread_mutex_unlock(&p->lock);
}

/* Calls the callbacks and frees the urecs (without the lock), then releases their room. */
static void run_callbacks(eddy_producer_t *p, done_list_t *dl)
{
    completion_t acc = {0};
    for (urec_t *u = dl->head, *next; u != NULL; u = next) {
        next = u->next;
        complete_one(u, &acc);
    }
    apply_completions(p, &acc);
}

/* ---- the pipeline (all with the lock held) ---- */

static void request_map(eddy_producer_t *p, stream_t *s);

/* An empty aggregate for a shard (lock held): a pooled one, or a new one; NULL when out of memory. */
static eddy_agg_t *agg_take(eddy_producer_t *p)
{
    if (p->agg_pooled > 0) {
        return p->agg_pool[--p->agg_pooled];
    }
    return eddy_agg_new(p->cfg.aggregation_max_bytes, p->cfg.aggregation_max_count);
}

/* Gives an aggregate back for reuse (lock held). */
static void agg_give(eddy_producer_t *p, eddy_agg_t *a)
{
    if (a == NULL) {
        return;
    }
    if (p->agg_pooled < sizeof p->agg_pool / sizeof p->agg_pool[0]) {
        eddy_agg_reset(a);
        p->agg_pool[p->agg_pooled++] = a;
    } else {
        eddy_agg_free(a);
    }
}

/* Frees a Kinesis record (not its urecs); lock held. */
static void krec_free(eddy_producer_t *p, krec_t *k)
{
    agg_give(p, k->agg);
    free(k->blob);
    free(k);
}

static size_t krec_bytes(const krec_t *k)
{
    return k->pk_len + (k->aggregated ? k->blob_len : k->urecs->data_len);
}

/* Appends a Kinesis record to the stream's collector. */
static void to_collector(stream_t *s, krec_t *k)
{
    k->next = NULL;
    if (s->col_tail != NULL) {
        s->col_tail->next = k;
    } else {
        s->col_head = k;
    }
    s->col_tail = k;
    s->col_count++;
    s->col_bytes += krec_bytes(k);
    if (s->col_deadline == 0 || k->deadline_ms < s->col_deadline) {
        s->col_deadline = k->deadline_ms;
    }
}

/* Hands a Kinesis record to its shard's limiter, or straight to the collector without a prediction (or
 * with the limiter off). */
static void to_limiter(eddy_producer_t *p, stream_t *s, krec_t *k)
{
    k->next = NULL;
    if (k->shard < 0 || p->cfg.rate_limit == 0) {
        to_collector(s, k);
        return;
    }
    shard_t *sh = &s->shards[k->shard];
    if (sh->lim_tail != NULL) {
        sh->lim_tail->next = k;
    } else {
        sh->lim_head = k;
    }
    sh->lim_tail = k;
}

/* Turns a shard's aggregator into a Kinesis record (one urec: sent as it is). */
static int seal_aggregate(eddy_producer_t *p, stream_t *s, int shard_index)
{
    shard_t *sh = &s->shards[shard_index];
    if (sh->agg_count == 0) {
        return 0;
    }
    krec_t *k = calloc(1, sizeof *k);
    if (k == NULL) {
        return EDDY_ERR_NOMEM;
    }
    k->urecs = sh->agg_head;
    k->count = sh->agg_count;
    k->shard = shard_index;
    snprintf(k->shard_id, sizeof k->shard_id, "%s", sh->id);
    k->deadline_ms = INT64_MAX;
    k->expiration_ms = INT64_MAX;
    for (urec_t *u = k->urecs; u != NULL; u = u->next) {
        k->deadline_ms = u->deadline_ms < k->deadline_ms ? u->deadline_ms : k->deadline_ms;
        k->expiration_ms = u->expiration_ms < k->expiration_ms ? u->expiration_ms : k->expiration_ms;
    }
    if (k->count == 1) {
        urec_t *u = k->urecs;
        k->pk = u->pk;
        k->pk_len = u->pk_len;
        eddy_hash_key_format(u->hash, k->ehk);
    } else {
        /* the aggregate itself goes with the record, to be encoded (MD5 and all) outside the lock; the
         * shard gets an empty one */
        eddy_agg_t *fresh = agg_take(p);
        if (fresh == NULL) {
            free(k);
            return EDDY_ERR_NOMEM;
        }
        k->aggregated = true;
        k->agg = sh->agg;
        k->blob_len = eddy_agg_size(k->agg);
        const char *pk;
        eddy_agg_outer_key(k->agg, &pk, k->ehk);
        k->pk = "a";
        k->pk_len = 1;
        sh->agg = fresh;
        /* give the collector a window to batch aggregates (the KPL's rule) */
        int64_t extra = p->cfg.buffered_ms / 5 < 50 ? p->cfg.buffered_ms / 5 : 50;
        k->deadline_ms += extra;
    }
    eddy_agg_reset(sh->agg);
    sh->agg_head = sh->agg_tail = NULL;
    sh->agg_count = 0;
    sh->agg_deadline = 0;
    to_limiter(p, s, k);
    return 0;
}

/* Sends one urec alone (not aggregated) as a Kinesis record predicted for shard (-1: none). */
static void send_alone(eddy_producer_t *p, stream_t *s, urec_t *u, int shard)
{
    krec_t *k = calloc(1, sizeof *k);
    if (k == NULL) {
        /* keep it for the next round rather than lose it */
        append(&s->unmapped_head, &s->unmapped_tail, u);
        return;
    }
    k->urecs = u;
    k->count = 1;
    k->pk = u->pk;
    k->pk_len = u->pk_len;
    eddy_hash_key_format(u->hash, k->ehk);
    k->shard = shard;
    if (shard >= 0) {
        snprintf(k->shard_id, sizeof k->shard_id, "%s", s->shards[shard].id);
    }
    k->deadline_ms = u->deadline_ms;
    k->expiration_ms = u->expiration_ms;
    to_limiter(p, s, k);
}

/* Routes one urec: to its predicted shard's aggregator, or alone when aggregation is off. */
static void dispatch(eddy_producer_t *p, stream_t *s, urec_t *u)
{
    u->next = NULL;
    if (!s->map_valid) {
        append(&s->unmapped_head, &s->unmapped_tail, u);
        request_map(p, s);
        return;
    }
    int shard = predict(s, u->hash);
    if (!p->cfg.aggregation || shard < 0) {
        send_alone(p, s, u, shard);
        return;
    }
    shard_t *sh = &s->shards[shard];
    const char *ehk_text = u->ehk;
    int rc = eddy_agg_add(sh->agg, u->pk, u->pk_len, ehk_text, u->data, u->data_len);
    if (rc == EDDY_ERR_TOO_LARGE) {
        seal_aggregate(p, s, shard);
        rc = eddy_agg_add(sh->agg, u->pk, u->pk_len, ehk_text, u->data, u->data_len);
    }
    if (rc == EDDY_ERR_NOMEM) {
        append(&s->unmapped_head, &s->unmapped_tail, u); /* out of memory: try again next round */
        return;
    }
    if (rc != 0 && rc != EDDY_ERR_TOO_LARGE) {
        /* cannot happen for keys put checked; never loop on it: alone, unaggregated, the service judges it */
        send_alone(p, s, u, shard);
        return;
    }
    append(&sh->agg_head, &sh->agg_tail, u);
    sh->agg_count++;
    if (sh->agg_deadline == 0 || u->deadline_ms < sh->agg_deadline) {
        sh->agg_deadline = u->deadline_ms;
    }
    if (rc == EDDY_ERR_TOO_LARGE) {
        seal_aggregate(p, s, shard); /* a record too big to share an aggregate goes alone */
    }
}

/* ---- the shard map ---- */

typedef struct map_call {
    eddy_producer_t *p;
    stream_t *s;
    shard_t *shards;
    size_t nshards, cap;
} map_call_t;

static int cmp_shards(const void *a, const void *b)
{
    return cmp_key(((const shard_t *)a)->start, ((const shard_t *)b)->start);
}

static void install_map(eddy_producer_t *p, stream_t *s, shard_t *fresh, size_t n);

static void on_list_shards(void *arg, const eddy_response_t *resp)
{
    map_call_t *mc = arg;
    eddy_producer_t *p = mc->p;
    const char *next_token = NULL;
    cJSON *root = NULL;
    bool ok = resp->err == EDDY_OK;
    if (ok) {
        root = cJSON_ParseWithLength(resp->body, resp->body_len);
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "Shards");
        ok = cJSON_IsArray(list);
        const cJSON *sh;
        const cJSON *shards = ok ? list : NULL;
        cJSON_ArrayForEach(sh, shards)
        {
            const cJSON *range = cJSON_GetObjectItemCaseSensitive(sh, "HashKeyRange");
            const cJSON *start = cJSON_GetObjectItemCaseSensitive(range, "StartingHashKey");
            const cJSON *end = cJSON_GetObjectItemCaseSensitive(range, "EndingHashKey");
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(sh, "ShardId");
            const cJSON *seq = cJSON_GetObjectItemCaseSensitive(sh, "SequenceNumberRange");
            if (cJSON_GetObjectItemCaseSensitive(seq, "EndingSequenceNumber") != NULL) {
                continue; /* closed */
            }
            if (!cJSON_IsString(start) || !cJSON_IsString(end) || !cJSON_IsString(id)) {
                ok = false;
                break;
            }
            if (mc->nshards == mc->cap) {
                size_t cap = mc->cap ? mc->cap * 2 : 16;
                shard_t *grown = realloc(mc->shards, cap * sizeof *grown);
                if (grown == NULL) {
                    ok = false;
                    break;
                }
                mc->shards = grown;
                mc->cap = cap;
            }
            shard_t *x = &mc->shards[mc->nshards];
            memset(x, 0, sizeof *x);
            if (!eddy_hash_key_parse(start->valuestring, strlen(start->valuestring), x->start) ||
                !eddy_hash_key_parse(end->valuestring, strlen(end->valuestring), x->end)) {
                ok = false;
                break;
            }
            snprintf(x->id, sizeof x->id, "%s", id->valuestring);
            mc->nshards++;
        }
        const cJSON *nt = cJSON_GetObjectItemCaseSensitive(root, "NextToken");
        next_token = ok && cJSON_IsString(nt) ? nt->valuestring : NULL;
    }
    if (ok && next_token != NULL) {
        buf_t body = BUF_INIT;
        if (buf_try_reserve(&body, strlen(next_token) * 6 + 32) == 0) {
            jsonw_t w;
            jsonw_init(&w, &body);
            jsonw_obj_begin(&w);
            jsonw_key(&w, "NextToken");
            jsonw_str(&w, next_token);
            jsonw_obj_end(&w);
            cJSON_Delete(root);
            int rc = eddy_client_call_async(p->client, "ListShards", body.data, body.len, on_list_shards, mc);
            buf_dispose(&body);
            if (rc == 0) {
                return;
            }
            root = NULL;
        }
        buf_dispose(&body);
        ok = false;
    }
    cJSON_Delete(root);
    done_list_t dl = {0};
    pthread_mutex_lock(&p->lock);
    stream_t *s = mc->s;
    s->map_pending = false;
    if (ok && mc->nshards > 0) {
        qsort(mc->shards, mc->nshards, sizeof *mc->shards, cmp_shards);
        install_map(p, s, mc->shards, mc->nshards);
        mc->shards = NULL;
        p->m.shard_map_refreshes++;
    } else {
        s->map_retry_ms = now_ms() + MAP_RETRY_MS;
        if (resp->err == EDDY_ERR_SERVICE && !resp->retriable) {
            /* the stream does not exist (or may not be listed): the records waiting for it fail now */
            int64_t now = now_ms();
            for (urec_t *u = s->unmapped_head, *next; u != NULL; u = next) {
                next = u->next;
                add_attempt(u, now, now, false, resp->error_type, resp->message);
                finish_urec(p, &dl, u, EDDY_ERR_SERVICE);
            }
            s->unmapped_head = s->unmapped_tail = NULL;
        }
    }
    wake_thread(p);
    pthread_mutex_unlock(&p->lock);
    free(mc->shards);
    free(mc);
    run_callbacks(p, &dl);
}

/* Replaces the stream's map: what its aggregators and limiters held is routed again. */
static void install_map(eddy_producer_t *p, stream_t *s, shard_t *fresh, size_t n)
{
    urec_t *again_head = NULL, *again_tail = NULL;
    krec_t *kagain = NULL;
    for (size_t i = 0; i < s->nshards; i++) {
        shard_t *sh = &s->shards[i];
        for (urec_t *u = sh->agg_head, *next; u != NULL; u = next) {
            next = u->next;
            append(&again_head, &again_tail, u);
        }
        for (krec_t *k = sh->lim_head, *next; k != NULL; k = next) {
            next = k->next;
            k->next = kagain;
            kagain = k;
        }
        eddy_agg_free(sh->agg);
    }
    free(s->shards);
    s->shards = fresh;
    s->nshards = n;
    for (size_t i = 0; i < n; i++) {
        fresh[i].agg = eddy_agg_new(p->cfg.aggregation_max_bytes, p->cfg.aggregation_max_count);
        fresh[i].tok_ms = now_ms();
    }
    s->map_valid = true;
    /* Kinesis records queued in old limiters: their urecs are routed again (re-aggregated) */
    for (krec_t *k = kagain, *next; k != NULL; k = next) {
        next = k->next;
        for (urec_t *u = k->urecs, *un; u != NULL; u = un) {
            un = u->next;
            append(&again_head, &again_tail, u);
        }
        krec_free(p, k);
    }
    for (urec_t *u = s->unmapped_head, *next; u != NULL; u = next) {
        next = u->next;
        append(&again_head, &again_tail, u);
    }
    s->unmapped_head = s->unmapped_tail = NULL;
    for (urec_t *u = again_head, *next; u != NULL; u = next) {
        next = u->next;
        dispatch(p, s, u);
    }
}

static void request_map(eddy_producer_t *p, stream_t *s)
{
    if (s->map_pending || now_ms() < s->map_retry_ms) {
        return;
    }
    map_call_t *mc = calloc(1, sizeof *mc);
    buf_t body = BUF_INIT;
    if (mc == NULL || buf_try_reserve(&body, strlen(s->name) + 32) != 0) {
        free(mc);
        s->map_retry_ms = now_ms() + MAP_RETRY_MS;
        return;
    }
    mc->p = p;
    mc->s = s;
    jsonw_t w;
    jsonw_init(&w, &body);
    jsonw_obj_begin(&w);
    jsonw_key(&w, "StreamName");
    jsonw_str(&w, s->name);
    jsonw_obj_end(&w);
    s->map_pending = true;
    s->map_valid = false;
    /* the client may call back on its thread at once: it takes the lock we hold, so it waits */
    if (eddy_client_call_async(p->client, "ListShards", body.data, body.len, on_list_shards, mc) != 0) {
        s->map_pending = false;
        s->map_retry_ms = now_ms() + MAP_RETRY_MS;
        free(mc);
    }
    buf_dispose(&body);
}

/* ---- sending ---- */

typedef struct send_call {
    eddy_producer_t *p;
    stream_t *s;
    krec_t *krecs;
    size_t count;
    int64_t start_ms;
} send_call_t;

static void retry_or_fail(eddy_producer_t *p, stream_t *s, urec_t *u, int64_t now, bool throttled, int err,
                          bool final, done_list_t *dl)
{
    if (final || (throttled && p->cfg.fail_if_throttled)) {
        finish_urec(p, dl, u, err);
        return;
    }
    if (now >= u->expiration_ms) {
        add_attempt(u, now, now, false, "Expired", "Record has reached expiration");
        finish_urec(p, dl, u, EDDY_ERR_EXPIRED);
        return;
    }
    u->deadline_ms = now + p->cfg.buffered_ms / 2;
    dispatch(p, s, u);
}

static const char *str_field(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Whether every urec of k hashes into the shard named shard_id in the current map (unknown: false). */
static bool lands_in(const stream_t *s, const krec_t *k, const char *shard_id)
{
    for (size_t i = 0; i < s->nshards; i++) {
        if (strcmp(s->shards[i].id, shard_id) != 0) {
            continue;
        }
        for (const urec_t *u = k->urecs; u != NULL; u = u->next) {
            if (cmp_key(u->hash, s->shards[i].start) < 0 || cmp_key(u->hash, s->shards[i].end) > 0) {
                return false;
            }
        }
        return true;
    }
    return false;
}

static void on_put_records(void *arg, const eddy_response_t *resp)
{
    send_call_t *sc = arg;
    eddy_producer_t *p = sc->p;
    cJSON *root = resp->err == EDDY_OK ? cJSON_ParseWithLength(resp->body, resp->body_len) : NULL;
    const cJSON *records = cJSON_GetObjectItemCaseSensitive(root, "Records");
    bool whole_ok = resp->err == EDDY_OK && cJSON_IsArray(records) && (size_t)cJSON_GetArraySize(records) == sc->count;
    const char *whole_code = resp->err == EDDY_OK ? "Record Count Mismatch"
                             : resp->error_type != NULL && resp->error_type[0] ? resp->error_type
                                                                                : eddy_err_name(resp->err);
    int whole_err = resp->err == EDDY_OK ? EDDY_ERR_PROTOCOL : resp->err;
    int64_t now = now_ms();
    done_list_t dl = {0};
    krec_t *landed = NULL; /* succeeded: their urecs are completed after the lock is released */
    pthread_mutex_lock(&p->lock);
    stream_t *s = sc->s;
    p->in_flight_requests--;
    p->m.put_records_requests++;
    p->request_sum_ms += (double)(now - sc->start_ms);
    for (krec_t *k = sc->krecs; k != NULL; k = k->next) {
        int sh = shard_of(s, k);
        if (sh >= 0) {
            s->shards[sh].busy = false;
        }
    }
    const cJSON *entry = whole_ok ? records->child : NULL;
    bool stale_map = false;
    for (krec_t *k = sc->krecs, *knext; k != NULL; k = knext, entry = entry != NULL ? entry->next : NULL) {
        knext = k->next;
        const char *seq = entry != NULL ? str_field(entry, "SequenceNumber") : NULL;
        const char *shard_id = entry != NULL ? str_field(entry, "ShardId") : NULL;
        const char *code = entry != NULL ? str_field(entry, "ErrorCode") : whole_code;
        const char *message = entry != NULL ? str_field(entry, "ErrorMessage") : resp->message;
        bool success = seq != NULL && shard_id != NULL;
        if (success && k->shard >= 0 && strcmp(shard_id, k->shard_id) != 0) {
            /* misrouted: the map is stale. An aggregate that did not land where all its records belong
             * would be dropped by KCL readers: put its records again ("Wrong Shard", as the KPL does). */
            stale_map = true;
            if (k->count > 1 && !lands_in(s, k, shard_id)) {
                success = false;
                code = "Wrong Shard";
                message = "the aggregate landed on a shard that does not hold all its records";
            }
        }
        bool throttled = !success && code != NULL && strcmp(code, "ProvisionedThroughputExceededException") == 0;
        if (success) {
            p->m.kinesis_records_put++;
            p->m.kinesis_bytes_put += k->aggregated ? k->blob_len : k->urecs->data_len;
            p->urecs_in_kinesis_put += k->count;
        } else if (throttled) {
            p->m.throttles++;
        } else {
            p->m.errors++;
        }
        if (success) {
            size_t seq_len = strlen(seq);
            k->landing = malloc(sizeof *k->landing + seq_len + 1);
            if (k->landing != NULL) {
                atomic_init(&k->landing->refs, k->count);
                snprintf(k->landing->shard_id, sizeof k->landing->shard_id, "%s", shard_id);
                memcpy(k->landing->sequence_number, seq, seq_len + 1);
            }
            k->next = landed;
            landed = k;
            continue;
        }
        for (urec_t *u = k->urecs, *next; u != NULL; u = next) {
            next = u->next;
            if (u->first_sent_ms == 0) {
                u->first_sent_ms = sc->start_ms;
            }
            add_attempt(u, sc->start_ms, now, false, code, message);
            int err = entry != NULL ? EDDY_ERR_SERVICE : whole_err;
            /* a whole request the service refused for good (a validation error, a missing stream, access
             * denied) fails its records now; everything else is retried until the TTL */
            bool final = entry == NULL && resp->err == EDDY_ERR_SERVICE && !resp->retriable;
            retry_or_fail(p, s, u, now, throttled, err, final, &dl);
        }
        k->urecs = NULL;
        krec_free(p, k);
    }
    if (stale_map) {
        request_map(p, s);
    }
    wake_thread(p);
    pthread_mutex_unlock(&p->lock);
    cJSON_Delete(root);
    /* the user records of the Kinesis records that succeeded, completed outside the lock (puts go on
     * meanwhile) in one walk: each is noted, called back and freed while it is in the cache */
    completion_t acc = {0};
    for (krec_t *k = landed; k != NULL; k = k->next) {
        uint64_t sub = 0;
        for (urec_t *u = k->urecs, *next; u != NULL; u = next, sub++) {
            next = u->next;
            if (u->first_sent_ms == 0) {
                u->first_sent_ms = sc->start_ms;
            }
            add_attempt(u, sc->start_ms, now, true, NULL, NULL);
            u->landing = k->landing; /* shared: it was made with one reference per urec */
            u->sub_sequence_number = k->count > 1 ? sub : 0;
            u->aggregated = k->count > 1;
            u->err = k->landing != NULL ? EDDY_OK : EDDY_ERR_NOMEM;
            complete_one(u, &acc);
        }
        k->urecs = NULL;
    }
    if (landed != NULL) {
        pthread_mutex_lock(&p->lock);
        for (krec_t *k = landed, *next; k != NULL; k = next) {
            next = k->next;
            krec_free(p, k); /* its aggregate goes back to the pool */
        }
        pthread_mutex_unlock(&p->lock);
    }
    free(sc);
    run_callbacks(p, &dl);
    apply_completions(p, &acc);
}

/* Builds and sends one PutRecords of the krecs (taken out of the collector). Called without the lock. */
static void send_batch(eddy_producer_t *p, stream_t *s, const char *stream_name, krec_t *krecs, size_t count)
{
    size_t worst = strlen(stream_name) * 6 + 64;
    for (krec_t *k = krecs; k != NULL; k = k->next) {
        size_t data = k->aggregated ? k->blob_len : k->urecs->data_len;
        worst += BASE64_ENCODED_LEN(data) + k->pk_len * 6 + EDDY_HASH_KEY_STR_MAX + 64;
    }
    buf_t body = BUF_INIT;
    send_call_t *sc = calloc(1, sizeof *sc);
    int rc = sc == NULL || buf_try_reserve(&body, worst) != 0 ? EDDY_ERR_NOMEM : 0;
    /* encode the aggregates: the krecs are ours until the request is handed over */
    for (krec_t *k = krecs; rc == 0 && k != NULL; k = k->next) {
        if (k->agg != NULL && k->blob == NULL) {
            k->blob = malloc(k->blob_len);
            if (k->blob == NULL) {
                rc = EDDY_ERR_NOMEM;
                break;
            }
            eddy_agg_encode(k->agg, k->blob);
        }
    }
    if (rc == 0) {
        jsonw_t w;
        jsonw_init(&w, &body);
        jsonw_obj_begin(&w);
        jsonw_key(&w, "StreamName");
        jsonw_str(&w, stream_name);
        jsonw_key(&w, "Records");
        jsonw_arr_begin(&w);
        for (krec_t *k = krecs; k != NULL; k = k->next) {
            jsonw_obj_begin(&w);
            jsonw_key(&w, "Data");
            /* base64 straight into the reserved room (a string needs no escaping): the opening quote goes
             * through the writer, which then knows a value was written */
            jsonw_raw(&w, "\"", 1);
            if (k->aggregated) {
                base64_encode_into(&body, k->blob, k->blob_len);
            } else {
                base64_encode_into(&body, k->urecs->data, k->urecs->data_len);
            }
            buf_putc(&body, '"');
            jsonw_key(&w, "PartitionKey");
            jsonw_strn(&w, k->pk, k->pk_len);
            jsonw_key(&w, "ExplicitHashKey");
            jsonw_str_plain(&w, k->ehk, strlen(k->ehk));
            jsonw_obj_end(&w);
        }
        jsonw_arr_end(&w);
        jsonw_obj_end(&w);
        *sc = (send_call_t){p, s, krecs, count, now_ms()};
        rc = eddy_client_call_async(p->client, "PutRecords", body.data, body.len, on_put_records, sc);
    }
    buf_dispose(&body);
    if (rc == 0) {
        return;
    }
    /* not sent: a whole-request failure, retried like one */
    eddy_response_t fake = {.err = rc, .message = eddy_err_name(rc), .body = "", .error_type = ""};
    if (sc == NULL) {
        sc = calloc(1, sizeof *sc);
    }
    if (sc != NULL) {
        *sc = (send_call_t){p, s, krecs, count, now_ms()};
        on_put_records(sc, &fake);
    }
}

/* Moves Kinesis records that have tokens from the limiters to the collector. */
static void drain_limiters(eddy_producer_t *p, stream_t *s, int64_t now)
{
    double factor = p->cfg.rate_limit / 100.0;
    for (size_t i = 0; i < s->nshards; i++) {
        shard_t *sh = &s->shards[i];
        if (sh->lim_head == NULL) {
            sh->tok_ms = now;
            continue;
        }
        double secs = (double)(now - sh->tok_ms) / 1000.0;
        sh->tok_ms = now;
        sh->tok_records += secs * SHARD_RECORDS_PER_S * factor;
        sh->tok_bytes += secs * SHARD_BYTES_PER_S * factor;
        double cap_records = SHARD_RECORDS_PER_S * factor, cap_bytes = 10.0 * SHARD_BYTES_PER_S * factor;
        sh->tok_records = sh->tok_records > cap_records ? cap_records : sh->tok_records;
        sh->tok_bytes = sh->tok_bytes > cap_bytes ? cap_bytes : sh->tok_bytes;
        while (sh->lim_head != NULL) {
            krec_t *k = sh->lim_head;
            double bytes = (double)krec_bytes(k);
            if (sh->tok_records < 1.0 || sh->tok_bytes < bytes) {
                /* a record bigger than the bucket can ever hold goes when the bucket is full */
                if (!(sh->tok_records >= 1.0 && sh->tok_bytes >= cap_bytes)) {
                    break;
                }
            }
            sh->tok_records -= 1.0;
            sh->tok_bytes -= bytes;
            sh->lim_head = k->next;
            if (sh->lim_head == NULL) {
                sh->lim_tail = NULL;
            }
            to_collector(s, k);
        }
    }
}

/* Takes the next PutRecords' worth of Kinesis records out of the collector, in order, skipping those of
 * shards that have a request in flight: one request per shard at a time keeps each partition key's
 * records in order. Returns the list (NULL: nothing can go now) and its length in *count. */
static krec_t *take_batch(eddy_producer_t *p, stream_t *s, size_t *count)
{
    static _Atomic uint64_t batches;
    uint64_t mark = atomic_fetch_add(&batches, 1) + 1;
    krec_t *head = NULL, *tail = NULL;
    size_t n = 0, bytes = 0;
    krec_t **pp = &s->col_head;
    krec_t *prev = NULL;
    while (*pp != NULL && n < p->cfg.collection_max_count) {
        krec_t *k = *pp;
        int sh = shard_of(s, k);
        size_t b = krec_bytes(k);
        if ((sh >= 0 && s->shards[sh].busy && s->shards[sh].batch_mark != mark) ||
            (n > 0 && bytes + b > p->cfg.collection_max_bytes)) {
            if (n > 0 && bytes + b > p->cfg.collection_max_bytes) {
                break;
            }
            prev = k;
            pp = &k->next;
            continue;
        }
        *pp = k->next; /* unlink */
        if (s->col_tail == k) {
            s->col_tail = prev;
        }
        k->next = NULL;
        if (tail != NULL) {
            tail->next = k;
        } else {
            head = k;
        }
        tail = k;
        n++;
        bytes += b;
        if (sh >= 0) {
            s->shards[sh].busy = true;
            s->shards[sh].batch_mark = mark;
        }
    }
    s->col_count -= n;
    s->col_bytes -= bytes;
    s->col_deadline = 0;
    for (krec_t *r = s->col_head; r != NULL; r = r->next) {
        s->col_deadline = s->col_deadline == 0 || r->deadline_ms < s->col_deadline ? r->deadline_ms : s->col_deadline;
    }
    *count = n;
    return head;
}

/* One round of the producer's thread: seals due aggregates, drains limiters, sends due batches. Returns
 * the next time something is due. Lock held; released around sends. */
static int64_t round_once(eddy_producer_t *p, int64_t now)
{
    int64_t next = now + 1000;
    for (stream_t *s = p->streams; s != NULL; s = s->next) {
        if (!s->map_valid && (s->unmapped_head != NULL)) {
            request_map(p, s);
            if (!s->map_pending && s->map_retry_ms < next) {
                next = s->map_retry_ms;
            }
            /* records waiting for a map still expire */
            done_list_t dl = {0};
            urec_t *keep_head = NULL, *keep_tail = NULL;
            for (urec_t *u = s->unmapped_head, *n; u != NULL; u = n) {
                n = u->next;
                if (now >= u->expiration_ms) {
                    add_attempt(u, now, now, false, "Expired", "no shard map for the stream (ListShards failed)");
                    finish_urec(p, &dl, u, EDDY_ERR_EXPIRED);
                } else {
                    append(&keep_head, &keep_tail, u);
                }
            }
            s->unmapped_head = keep_head;
            s->unmapped_tail = keep_tail;
            if (dl.head != NULL) {
                pthread_mutex_unlock(&p->lock);
                run_callbacks(p, &dl);
                pthread_mutex_lock(&p->lock);
            }
        } else if (s->map_valid && s->unmapped_head != NULL) {
            urec_t *list = s->unmapped_head;
            s->unmapped_head = s->unmapped_tail = NULL;
            for (urec_t *u = list, *n; u != NULL; u = n) {
                n = u->next;
                dispatch(p, s, u);
            }
        }
        for (size_t i = 0; i < s->nshards; i++) {
            shard_t *sh = &s->shards[i];
            if (sh->agg_count > 0 && (s->flush || sh->agg_deadline <= now)) {
                seal_aggregate(p, s, (int)i);
            }
            if (sh->agg_count > 0 && sh->agg_deadline < next) {
                next = sh->agg_deadline;
            }
        }
        drain_limiters(p, s, now);
        for (size_t i = 0; i < s->nshards; i++) {
            if (s->shards[i].lim_head != NULL && now + LIMITER_TICK_MS < next) {
                next = now + LIMITER_TICK_MS;
            }
        }
        /* send full batches, and the rest when due */
        bool blocked = false;
        while (s->col_head != NULL &&
               (s->flush || s->col_deadline <= now || s->col_count >= p->cfg.collection_max_count ||
                s->col_bytes >= p->cfg.collection_max_bytes)) {
            size_t count = 0;
            krec_t *head = take_batch(p, s, &count);
            if (head == NULL) {
                blocked = true; /* what is left waits for its shards' requests in flight, whose replies wake us */
                break;
            }
            p->in_flight_requests++;
            char *name = s->name; /* streams live as long as the producer */
            pthread_mutex_unlock(&p->lock);
            send_batch(p, s, name, head, count);
            pthread_mutex_lock(&p->lock);
        }
        if (s->col_head != NULL && !blocked && s->col_deadline < next) {
            next = s->col_deadline;
        }
        s->flush = false;
    }
    return next;
}

static void *producer_main(void *arg)
{
    eddy_producer_t *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        int64_t now = now_ms();
        int64_t next = round_once(p, now);
        now = now_ms();
        if (next > now) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t wait = next - now;
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&p->wake, &p->lock, &ts);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- the public functions ---- */

eddy_producer_t *eddy_producer_new(eddy_client_t *client, eddy_producer_config_t *cfg, char *err, size_t errlen)
{
    if (cfg == NULL) {
        snprintf(err, errlen, "eddy_producer_new: no configuration");
        return NULL;
    }
    if (client == NULL) {
        snprintf(err, errlen, "eddy_producer_new: no client");
        free(cfg);
        return NULL;
    }
    eddy_producer_t *p = calloc(1, sizeof *p);
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        free(cfg);
        return NULL;
    }
    p->client = client;
    p->cfg = *cfg;
    free(cfg);
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&p->room, NULL);
    if (pthread_create(&p->thread, NULL, producer_main, p) != 0) {
        snprintf(err, errlen, "cannot start the producer's thread");
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->wake);
        pthread_cond_destroy(&p->room);
        free(p);
        return NULL;
    }
    return p;
}

static stream_t *find_stream(eddy_producer_t *p, const char *name)
{
    for (stream_t *s = p->streams; s != NULL; s = s->next) {
        if (strcmp(s->name, name) == 0) {
            return s;
        }
    }
    stream_t *s = calloc(1, sizeof *s);
    if (s == NULL || (s->name = strdup(name)) == NULL) {
        free(s);
        return NULL;
    }
    s->next = p->streams;
    p->streams = s;
    return s;
}

/* Whether s is valid UTF-8 of 1..256 characters (a Kinesis partition key). */
static bool valid_partition_key(const unsigned char *s, size_t len)
{
    size_t chars = 0;
    for (size_t i = 0; i < len; chars++) {
        unsigned char c = s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (n == 0 || i + n > len || (n == 2 && c < 0xc2) || (n == 4 && c > 0xf4)) {
            return false;
        }
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
        }
        if ((n == 3 && c == 0xe0 && s[i + 1] < 0xa0) || (n == 3 && c == 0xed && s[i + 1] >= 0xa0) ||
            (n == 4 && c == 0xf0 && s[i + 1] < 0x90) || (n == 4 && c == 0xf4 && s[i + 1] >= 0x90)) {
            return false; /* overlong forms, surrogates, beyond U+10FFFF */
        }
        i += n;
    }
    return chars >= 1 && chars <= PK_MAX;
}

int eddy_producer_put(eddy_producer_t *p, const char *stream, const char *partition_key, size_t pk_len,
                      const char *explicit_hash_key, const void *data, size_t data_len, eddy_put_fn done, void *arg)
{
    if (p == NULL || stream == NULL || stream[0] == '\0' || partition_key == NULL || pk_len == 0 ||
        pk_len > 4 * PK_MAX || !valid_partition_key((const unsigned char *)partition_key, pk_len) ||
        (data == NULL && data_len > 0)) {
        return EDDY_ERR_INVALID;
    }
    if (data_len > p->cfg.max_user_record_bytes) {
        return EDDY_ERR_TOO_LARGE;
    }
    unsigned char hash[16];
    size_t ehk_len = explicit_hash_key != NULL ? strlen(explicit_hash_key) : 0;
    if (explicit_hash_key != NULL) {
        if (!eddy_hash_key_parse(explicit_hash_key, ehk_len, hash)) {
            return EDDY_ERR_INVALID;
        }
    } else {
        eddy_hash_key(partition_key, pk_len, hash);
    }
    urec_t *u = malloc(sizeof *u + pk_len + 1 + (ehk_len ? ehk_len + 1 : 0) + data_len);
    if (u == NULL) {
        return EDDY_ERR_NOMEM;
    }
    memset(u, 0, sizeof *u);
    char *mem = (char *)(u + 1);
    u->pk = mem;
    memcpy(u->pk, partition_key, pk_len);
    u->pk[pk_len] = '\0';
    u->pk_len = pk_len;
    mem += pk_len + 1;
    if (ehk_len) {
        u->ehk = mem;
        memcpy(u->ehk, explicit_hash_key, ehk_len + 1);
        mem += ehk_len + 1;
    }
    u->data = (unsigned char *)mem;
    if (data_len > 0) {
        memcpy(u->data, data, data_len);
    }
    u->data_len = data_len;
    memcpy(u->hash, hash, 16);
    u->done = done;
    u->arg = arg;
    size_t bytes = pk_len + data_len;

    pthread_mutex_lock(&p->lock);
    while (!p->closed && p->outstanding > 0 && p->outstanding_bytes + bytes > p->cfg.max_outstanding_bytes) {
        if (!p->cfg.block_when_full) {
            pthread_mutex_unlock(&p->lock);
            free(u);
            return EDDY_ERR_WOULD_BLOCK;
        }
        pthread_cond_wait(&p->room, &p->lock);
    }
    if (p->closed) {
        pthread_mutex_unlock(&p->lock);
        free(u);
        return EDDY_ERR_CLOSED;
    }
    stream_t *s = find_stream(p, stream);
    if (s == NULL) {
        pthread_mutex_unlock(&p->lock);
        free(u);
        return EDDY_ERR_NOMEM;
    }
    int64_t now = now_ms();
    u->stream = s;
    u->arrival_ms = now;
    u->deadline_ms = now + p->cfg.buffered_ms;
    u->expiration_ms = now + p->cfg.ttl_ms;
    p->outstanding++;
    p->outstanding_bytes += bytes;
    p->m.user_records_received++;
    size_t col_before = s->col_count;
    krec_t *lim_before = NULL;
    int shard = s->map_valid && p->cfg.aggregation ? predict(s, u->hash) : -1;
    if (shard >= 0) {
        lim_before = s->shards[shard].lim_tail;
    }
    dispatch(p, s, u);
    /* wake the thread only when this put made something due before its next wake-up: a Kinesis record
     * that fills a batch, the first record of a limiter queue, or a stream that needs its map (waking it
     * on every put would make it walk its queues for nothing) */
    bool wake = !s->map_valid || p->cfg.buffered_ms == 0 ||
                (s->col_count > col_before &&
                 (s->col_count >= p->cfg.collection_max_count || s->col_bytes >= p->cfg.collection_max_bytes));
    if (!wake && shard >= 0 && s->map_valid && (size_t)shard < s->nshards) {
        shard_t *sh = &s->shards[shard];
        wake = sh->lim_tail != lim_before && sh->lim_head == sh->lim_tail;
    }
    if (wake) {
        wake_thread(p);
    }
    pthread_mutex_unlock(&p->lock);
    return EDDY_OK;
}

void eddy_producer_flush(eddy_producer_t *p, const char *stream)
{
    pthread_mutex_lock(&p->lock);
    for (stream_t *s = p->streams; s != NULL; s = s->next) {
        if (stream == NULL || strcmp(stream, s->name) == 0) {
            s->flush = true;
        }
    }
    wake_thread(p);
    pthread_mutex_unlock(&p->lock);
}

void eddy_producer_flush_sync(eddy_producer_t *p)
{
    pthread_mutex_lock(&p->lock);
    while (p->outstanding > 0) {
        for (stream_t *s = p->streams; s != NULL; s = s->next) {
            s->flush = true;
        }
        wake_thread(p);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->room, &p->lock, &ts);
    }
    pthread_mutex_unlock(&p->lock);
}

size_t eddy_producer_outstanding(const eddy_producer_t *p)
{
    eddy_producer_t *mp = (eddy_producer_t *)p;
    pthread_mutex_lock(&mp->lock);
    size_t n = mp->outstanding;
    pthread_mutex_unlock(&mp->lock);
    return n;
}

void eddy_producer_destroy(eddy_producer_t *p)
{
    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->closed = true;
    pthread_cond_broadcast(&p->room);
    pthread_mutex_unlock(&p->lock);
    eddy_producer_flush_sync(p);
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    wake_thread(p);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    /* a ListShards may still be in flight: wait for it (its callback frees its call) */
    for (;;) {
        pthread_mutex_lock(&p->lock);
        bool pending = false;
        for (stream_t *s = p->streams; s != NULL; s = s->next) {
            pending |= s->map_pending;
        }
        pthread_mutex_unlock(&p->lock);
        if (!pending) {
            break;
        }
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    while (p->agg_pooled > 0) {
        eddy_agg_free(p->agg_pool[--p->agg_pooled]);
    }
    for (stream_t *s = p->streams, *next; s != NULL; s = next) {
        next = s->next;
        for (size_t i = 0; i < s->nshards; i++) {
            eddy_agg_free(s->shards[i].agg);
        }
        free(s->shards);
        free(s->name);
        free(s);
    }
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->room);
    free(p);
}

void eddy_producer_metrics(const eddy_producer_t *p, eddy_producer_metrics_t *out)
{
    eddy_producer_t *mp = (eddy_producer_t *)p;
    pthread_mutex_lock(&mp->lock);
    *out = mp->m;
    out->user_records_pending = mp->outstanding;
    out->outstanding_bytes = mp->outstanding_bytes;
    out->buffering_ms_avg = mp->buffering_n ? mp->buffering_sum_ms / (double)mp->buffering_n : 0;
    out->request_ms_avg = mp->m.put_records_requests ? mp->request_sum_ms / (double)mp->m.put_records_requests : 0;
    out->user_records_per_kinesis_record =
        mp->m.kinesis_records_put ? (double)mp->urecs_in_kinesis_put / (double)mp->m.kinesis_records_put : 0;
    out->kinesis_records_per_request =
        mp->m.put_records_requests ? (double)mp->m.kinesis_records_put / (double)mp->m.put_records_requests : 0;
    pthread_mutex_unlock(&mp->lock);
}

void eddy_producer_metrics_print(const eddy_producer_t *p, FILE *out)
{
    eddy_producer_metrics_t m;
    eddy_producer_metrics(p, &m);
    fprintf(out,
            "user_records_received %" PRIu64 "\nuser_records_put %" PRIu64 "\nuser_records_failed %" PRIu64
            "\nuser_records_expired %" PRIu64 "\nuser_records_pending %" PRIu64 "\nuser_bytes_put %" PRIu64
            "\nkinesis_records_put %" PRIu64 "\nkinesis_bytes_put %" PRIu64 "\nput_records_requests %" PRIu64
            "\nretries %" PRIu64 "\nthrottles %" PRIu64 "\nerrors %" PRIu64 "\nshard_map_refreshes %" PRIu64
            "\nbuffering_ms_avg %.2f\nrequest_ms_avg %.2f\nuser_records_per_kinesis_record %.2f"
            "\nkinesis_records_per_request %.2f\noutstanding_bytes %" PRIu64 "\n",
            m.user_records_received, m.user_records_put, m.user_records_failed, m.user_records_expired,
            m.user_records_pending, m.user_bytes_put, m.kinesis_records_put, m.kinesis_bytes_put,
            m.put_records_requests, m.retries, m.throttles, m.errors, m.shard_map_refreshes, m.buffering_ms_avg,
            m.request_ms_avg, m.user_records_per_kinesis_record, m.kinesis_records_per_request,
            m.outstanding_bytes);
}
