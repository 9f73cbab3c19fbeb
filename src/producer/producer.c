/*
 * producer: the KPL-style producer of libeddy (see include/eddy/producer.h for the contract).
 *
 * State and locking. One mutex guards everything below; user threads hold it for a put, the producer's
 * thread for its rounds, the client's I/O thread for a reply. Callbacks are always called without it.
 *
 *   stream ──┬─ shard map (open shards sorted by starting hash key; ListShards, refreshed when stale)
 *            ├─ unmapped: urecs waiting for the first map
 *            ├─ per predicted shard: its open aggregate (a krec being filled) and a limiter queue of
 *            │  Kinesis records (token buckets: records and bytes)
 *            └─ collector: Kinesis records that passed the limiter, sent as PutRecords
 *
 * Records. With aggregation (the default and the hot path), put copies a user record's keys and data
 * into its stream's stage (STAGE_MAX records; stage_flush): the partition keys' MD5s, which predict the
 * shard, are computed STAGE_MAX at a time side by side (md5_multi: 39 ns a 16-byte key here, against
 * 160 ns alone). Then each staged record is copied into its predicted shard's open aggregate
 * (eddy_agg_t), keeping what completing it needs (callback, argument, arrival time, attempts when there
 * were failures) in a slot, an array beside the aggregate in the same order: no allocation per user
 * record. A put that is not staged (explicit hash key, a record over STAGE_RECORD_MAX, no map) flushes
 * the stage first, so records reach their aggregates in put order; the producer's thread flushes it on
 * every round and wakes for it by its first record's deadline. An aggregate, its slots and its krec
 * are pooled together and reused. A user record is held on its own (urec: one allocation with its keys
 * and data) only when it is sent alone (aggregation off, or no shard holds its key) or put before its
 * stream has a map. A krec is sent in one PutRecords; after the reply each of its user records completes
 * (success: one walk over the slots, outside the lock) or is routed again from the aggregate's bytes (a
 * retry, with deadline now + record_max_buffered_time / 2, as the KPL does) until its record_ttl passes.
 *
 * Requests. One PutRecords per shard at a time keeps each partition key's records in order. A batch takes
 * whole shards (each one's Kinesis records in order), and stops taking shards once it holds a quarter of
 * a request, so that under load requests for different shards are in flight at the same time, and the
 * encoding of one (MD5 and base64 of its aggregates, on the producer's thread) overlaps eddy's or
 * Kinesis's work on another. A batch's aggregates are encoded together, their MD5s side by side
 * (eddy_agg_encode_many). The request body is built in a buffer from a small pool and lent to the client
 * (eddy_client_call_async_borrowed) until the reply, then reused: no 5 MiB allocation per request.
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
#include "common/md5_multi.h"
#include "eddy/agg.h"
#include "producer/put_reply.h"

#define LIMITER_TICK_MS 25
#define MAP_RETRY_MS 1000
#define SHARD_RECORDS_PER_S 1000.0
#define SHARD_BYTES_PER_S (1024.0 * 1024.0)
#define PUT_RECORDS_MAX 500
#define PK_MAX 256
#define ATTEMPTS_KEPT 16 /* the first and the last ones when there were more */
#define SHARD_ID_MAX 64
#define STAGE_MAX 16           /* puts whose partition keys are hashed together (md5_multi's lanes) */
#define STAGE_RECORD_MAX 4096  /* larger records (keys and data) are routed at once, not staged */

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

/* One failed attempt; code and message are heap copies (or NULL). */
typedef struct attempt {
    int64_t start_ms, end_ms;
    char *code;
    char *message;
} attempt_t;

/* The failed attempts of a user record, allocated at its first failure: a record that succeeds at its
 * first attempt (the common case) has none, and its one attempt is the request that carried it. */
typedef struct history {
    int64_t first_sent_ms; /* 0 until a request carried it */
    size_t total;          /* failed attempts made */
    size_t n;              /* kept in list: the first and the latest ones */
    attempt_t list[ATTEMPTS_KEPT];
} history_t;

/* A user record held on its own: sent alone (aggregation off, or a key no shard holds), or waiting for
 * its stream's first shard map. One allocation with its keys and data. */
typedef struct urec {
    struct urec *next;
    eddy_put_fn done;
    void *arg;
    char *pk;
    size_t pk_len;
    char *ehk; /* NULL when none */
    unsigned char *data;
    size_t data_len;
    unsigned char hash[16];
    int64_t arrival_ms, deadline_ms; /* expiration: arrival + record_ttl_ms */
    history_t *history;
    int err; /* the outcome, set before the callback */
    uint32_t size; /* allocated (a multiple of 64); up to UREC_SMALL: goes back to the spares */
} urec_t;

/* A user record in an aggregate: what completing it needs. Its keys and data are in the aggregate's
 * bytes only (copied there once, by put). Expiration: arrival + record_ttl_ms. */
typedef struct slot {
    eddy_put_fn done; /* NULL once the record has moved to another aggregate */
    void *arg;
    int64_t arrival_ms;
    history_t *history;
    int err; /* a failure's outcome, set before the callback */
    uint32_t data_len;
    uint16_t pk_len;
} slot_t;

/* A put waiting in its stream's stage for its partition key's hash; keys and data in the stage's bytes. */
typedef struct staged {
    eddy_put_fn done;
    void *arg;
    int64_t arrival_ms;
    size_t off; /* of its partition key in the stage's bytes; its data follows */
    uint32_t data_len;
    uint16_t pk_len;
} staged_t;

/* A staged put that could not be routed (out of memory): failed by its callback, without the lock. */
typedef struct stage_failure {
    eddy_put_fn done;
    void *arg;
    int64_t arrival_ms;
    size_t pk_len, data_len;
} stage_failure_t;

#define SEQUENCE_NUMBER_MAX 160 /* a sequence number's digits and NUL (Kinesis: up to 129 digits) */

/* A Kinesis record: one urec sent as it is, or an aggregate (eddy_agg_t) with the slots of its user
 * records in the same order; an aggregate of one record is sent as a plain record. Aggregates are filled
 * in place (a shard's open krec) and pooled with their memory, so a user record costs no allocation. */
typedef struct krec {
    struct krec *next;
    urec_t *urec; /* sent alone: its one user record; NULL for an aggregate */
    eddy_agg_t *agg;
    slot_t *slots;
    size_t cap; /* of slots */
    size_t count;
    bool aggregated;           /* count > 1: the data is the encoded aggregate */
    const unsigned char *data; /* not aggregated: a view into urec or agg */
    size_t data_len;           /* not aggregated: of data; aggregated: the exact encoded size */
    const char *pk;            /* "a", or a view */
    size_t pk_len;
    char ehk[EDDY_HASH_KEY_STR_MAX];
    int shard; /* predicted shard (index into the map), -1: none */
    char shard_id[SHARD_ID_MAX];
    uint64_t map_gen; /* the stream's map_gen when shard_id was set */
    int64_t deadline_ms, oldest_arrival_ms; /* expiration: oldest_arrival_ms + record_ttl_ms */
    /* the outcome, for the completion walk */
    /* where it landed: views into the PutRecords reply, valid while on_put_records runs */
    const char *landed_shard, *landed_seq;
    size_t landed_shard_len, landed_seq_len;
    int64_t start_ms, end_ms; /* the request that carried it */
} krec_t;

typedef struct shard {
    unsigned char start[16], end[16];
    char id[SHARD_ID_MAX];
    krec_t *open; /* the aggregate being filled, or NULL */
    /* limiter */
    krec_t *lim_head, *lim_tail;
    double tok_records, tok_bytes;
    int64_t tok_ms;
    /* collection: a PutRecords with records of this shard is in flight; what the collector holds of it */
    bool busy;
    uint64_t batch_mark;
    krec_t *cq_head, *cq_tail; /* its Kinesis records in the collector, in order */
    size_t col_count, col_bytes;
} shard_t;

typedef struct stream {
    struct stream *next;
    char *name;
    shard_t *shards; /* open shards sorted by start */
    size_t nshards;
    /* the shards' hash key ranges side by side, for predict: read for every put on the putting thread,
     * apart from the fields the producer's thread writes (NULL: predict reads the shards) */
    struct key_range {
        unsigned char start[16], end[16];
    } *ranges;
    bool map_valid;
    uint64_t map_gen; /* counts the maps: a krec predicted with this one needs no id comparison */
    bool map_pending;     /* a ListShards is in flight */
    int64_t map_retry_ms; /* next ListShards after a failure (0: now) */
    urec_t *unmapped_head, *unmapped_tail;
    /* the stage: aggregated puts of a mapped stream, hashed STAGE_MAX at a time (see stage_flush) */
    staged_t stage[STAGE_MAX];
    size_t nstaged;
    unsigned char *stage_bytes; /* STAGE_MAX * STAGE_RECORD_MAX bytes, allocated at the first put */
    size_t stage_len;
    /* the collector: a queue per predicted shard (shard_t.cq_head), and this one for records without a
     * prediction; totals over all of them */
    krec_t *nq_head, *nq_tail;
    size_t col_count, col_bytes;
    int64_t col_deadline;
    size_t take_from; /* the shard take_batch looks at first (turns round, so none waits behind others) */
    bool flush; /* send everything without waiting for deadlines */
    bool lim_started; /* a limiter queue got its first record since a put last looked (limiter_wake) */
} stream_t;

#define KREC_POOL_MAX 256 /* emptied krecs kept with their memory (aggregate, slots) under load */
#define KREC_POOL_PLAIN_MAX 1024 /* and without an aggregate (aggregation off: a batch's worth, twice) */
#define UREC_SMALL 512           /* urecs up to this size (rounded up to 64 bytes) are kept for reuse, */
#define UREC_SPARE_MAX 1024      /* this many at most (made on the putting thread, freed on the client's) */
#define KREC_POOL_IDLE 8  /* kept once nothing is outstanding: an idle producer gives the rest back */
#define BODY_POOL_MAX 4   /* request bodies kept for reuse (one per request in flight under load) */

/* A PutRecords request body. The client borrows it (no copy) until the request's callback, which gives
 * it back to the pool: a fresh 5 MiB block per request cost a page fault per page. */
typedef struct body {
    struct body *next;
    buf_t buf;
} body_t;

struct eddy_producer {
    eddy_client_t *client;
    eddy_producer_config_t cfg;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the producer's thread */
    pthread_cond_t room; /* waiters for outstanding bytes or count to drop */
    pthread_t thread;
    bool stopping, closed;
    stream_t *streams;
    stream_t *last_stream; /* the stream of the last put */
    size_t outstanding;
    size_t outstanding_bytes;
    size_t in_flight_requests;
    int64_t wake_at;     /* when the producer's thread wakes at the latest (its timed wait) */
    uint64_t seal_count; /* aggregates sealed so far: a put that sealed one may have made a batch due */
    eddy_producer_metrics_t m;
    double buffering_sum_ms, request_sum_ms;
    uint64_t buffering_n, urecs_in_kinesis_put;
    krec_t *pool; /* emptied krecs for reuse */
    size_t pooled;
    urec_t *spare; /* small urecs for reuse */
    size_t nspare;
    struct body *bodies; /* request bodies not in use, with their memory */
    size_t bodies_pooled;
    /* the producer's thread only: encoded aggregates are built here */
    unsigned char *scratch;
    size_t scratch_cap;
};

/* Monotonic milliseconds. The coarse clock (a few ms of resolution, no clock read) is plenty for deadlines
 * of tens of milliseconds and is read on every put. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t load_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i]; /* compilers make this one load and a byte swap */
    }
    return v;
}

/* memcmp of two hash keys (16 bytes, big-endian), in two compares: it runs for every put. */
static int cmp_key(const unsigned char a[16], const unsigned char b[16])
{
    uint64_t x = load_be64(a), y = load_be64(b);
    if (x == y) {
        x = load_be64(a + 8);
        y = load_be64(b + 8);
    }
    return x < y ? -1 : x > y;
}

/* The index of the open shard whose range holds key, or -1. */
static int predict(const stream_t *s, const unsigned char key[16])
{
    size_t lo = 0, hi = s->nshards;
    const struct key_range *r = s->ranges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cmp_key(r != NULL ? r[mid].end : s->shards[mid].end, key) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < s->nshards && cmp_key(r != NULL ? r[lo].start : s->shards[lo].start, key) <= 0) {
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
    if (k->shard >= 0 && (size_t)k->shard < s->nshards &&
        (k->map_gen == s->map_gen || strcmp(s->shards[k->shard].id, k->shard_id) == 0)) {
        return k->shard; /* predicted with this map: no need to compare the ids */
    }
    for (size_t i = 0; i < s->nshards; i++) {
        if (strcmp(s->shards[i].id, k->shard_id) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Copies the len bytes of an id at src, cut to cap - 1 bytes, NUL-terminated (snprintf's "%s" costs more
 * than the rest of a record's path). */
static void copy_id_n(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* The same for a NUL-terminated id. */
static void copy_id(char *dst, size_t cap, const char *src)
{
    copy_id_n(dst, cap, src, strnlen(src, cap - 1));
}

/* Whether the NUL-terminated id is the len bytes at other. */
static bool same_id(const char *id, const char *other, size_t len)
{
    return strncmp(id, other, len) == 0 && id[len] == '\0';
}

/* Where k landed: views into the reply (copied out, NUL-terminated, when its records complete). */
static void set_landing(krec_t *k, const char *shard_id, size_t shard_id_len, const char *seq, size_t seq_len)
{
    k->landed_shard = shard_id;
    k->landed_shard_len = shard_id_len;
    k->landed_seq = seq;
    k->landed_seq_len = seq_len;
}

static void wake_thread(eddy_producer_t *p)
{
    pthread_cond_signal(&p->wake);
}

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

/* The bytes of a urec with these keys and data, rounded up to 64 (so that spares fit the next ones). */
static size_t urec_size(size_t pk_len, const char *ehk, size_t ehk_len, size_t data_len)
{
    return (sizeof(urec_t) + pk_len + 1 + (ehk != NULL ? ehk_len + 1 : 0) + data_len + 63) & ~(size_t)63;
}

/* A urec holding copies of the keys and data (ehk: NUL-terminated, or NULL); the rest is zero: u (at least
 * urec_size) or, when NULL, a new one. NULL when out of memory. */
static urec_t *urec_new_in(urec_t *u, const char *pk, size_t pk_len, const char *ehk, size_t ehk_len,
                           const void *data, size_t data_len)
{
    size_t size = u != NULL ? u->size : urec_size(pk_len, ehk, ehk_len, data_len);
    if (u == NULL && (u = malloc(size)) == NULL) {
        return NULL;
    }
    memset(u, 0, sizeof *u);
    u->size = size <= UINT32_MAX ? (uint32_t)size : UINT32_MAX;
    char *mem = (char *)(u + 1);
    u->pk = mem;
    memcpy(u->pk, pk, pk_len);
    u->pk[pk_len] = '\0';
    u->pk_len = pk_len;
    mem += pk_len + 1;
    if (ehk != NULL) {
        u->ehk = mem;
        memcpy(u->ehk, ehk, ehk_len);
        u->ehk[ehk_len] = '\0';
        mem += ehk_len + 1;
    }
    u->data = (unsigned char *)mem;
    if (data_len > 0) {
        memcpy(u->data, data, data_len);
    }
    u->data_len = data_len;
    return u;
}

static urec_t *urec_new(const char *pk, size_t pk_len, const char *ehk, size_t ehk_len, const void *data,
                        size_t data_len)
{
    return urec_new_in(NULL, pk, pk_len, ehk, ehk_len, data, data_len);
}

/* urec_new from the spares when it is small and there is one (lock held). */
static urec_t *urec_take(eddy_producer_t *p, const char *pk, size_t pk_len, const char *ehk, size_t ehk_len,
                         const void *data, size_t data_len)
{
    urec_t *u = NULL;
    if (p->spare != NULL && p->spare->size >= urec_size(pk_len, ehk, ehk_len, data_len)) {
        u = p->spare;
        p->spare = u->next;
        p->nspare--;
    }
    return urec_new_in(u, pk, pk_len, ehk, ehk_len, data, data_len);
}

/* Gives a urec done with back to the spares, or frees it (lock held). */
static void urec_give(eddy_producer_t *p, urec_t *u)
{
    if (u->size > UREC_SMALL || p->nspare >= UREC_SPARE_MAX) {
        free(u);
        return;
    }
    u->next = p->spare;
    p->spare = u;
    p->nspare++;
}

/* ---- attempts ---- */

static void attempt_dispose(attempt_t *a)
{
    free(a->code);
    free(a->message);
}

static void history_free(history_t *h)
{
    if (h == NULL) {
        return;
    }
    for (size_t i = 0; i < h->n; i++) {
        attempt_dispose(&h->list[i]);
    }
    free(h);
}

/* Notes a failed attempt (sent: a request carried it). Out of memory, the record goes on without it. */
static void history_add(history_t **hp, int64_t start, int64_t end, bool sent, const char *code, const char *message)
{
    history_t *h = *hp;
    if (h == NULL && (h = *hp = calloc(1, sizeof *h)) == NULL) {
        return;
    }
    if (sent && h->first_sent_ms == 0) {
        h->first_sent_ms = start;
    }
    h->total++;
    if (h->n == ATTEMPTS_KEPT) {
        /* keep the first and the latest ones */
        attempt_dispose(&h->list[1]);
        memmove(&h->list[1], &h->list[2], (ATTEMPTS_KEPT - 2) * sizeof h->list[0]);
        h->n--;
    }
    attempt_t *a = &h->list[h->n++];
    a->start_ms = start;
    a->end_ms = end;
    a->code = code != NULL ? strdup(code) : NULL;
    a->message = message != NULL ? strdup(message) : NULL;
}

/* ---- completing user records ---- */

/* Records whose callbacks are due, called once the lock is released: urecs that failed, and krecs whose
 * slots still holding a callback failed. */
typedef struct done_list {
    urec_t *head, *tail;
    krec_t *krecs;
} done_list_t;

/* What completing user records adds to the producer's counts (applied under the lock, once per batch). */
typedef struct completion {
    size_t n, bytes;
    urec_t *spare, *spare_tail; /* small urecs freed: back to the producer's spares */
    size_t nspare;
    eddy_producer_metrics_t m;
    double buffering_sum;
    uint64_t buffering_n;
} completion_t;

/* One user record's outcome, as its callback gets it. */
typedef struct outcome {
    int err;
    const krec_t *k; /* success: the Kinesis record that carried it */
    uint64_t sub;
    const char *shard_id, *seq; /* success: where k landed */
} outcome_t;

/* Calls a user record's callback (without the lock) and frees its history. */
static void call_back(eddy_put_fn done, void *arg, int64_t arrival, history_t *h, size_t pk_len, size_t data_len,
                      const outcome_t *o, completion_t *acc)
{
    bool ok = o->err == EDDY_OK;
    if (ok) {
        acc->m.user_records_put++;
        acc->m.user_bytes_put += data_len;
    } else {
        acc->m.user_records_failed++;
        acc->m.user_records_expired += o->err == EDDY_ERR_EXPIRED;
    }
    size_t total = (h != NULL ? h->total : 0) + ok;
    acc->m.retries += total > 1 ? total - 1 : 0;
    int64_t first_sent = h != NULL && h->first_sent_ms != 0 ? h->first_sent_ms : ok ? o->k->start_ms : 0;
    if (first_sent != 0) {
        acc->buffering_sum += (double)(first_sent - arrival);
        acc->buffering_n++;
    }
    eddy_attempt_t attempts[ATTEMPTS_KEPT];
    size_t n = 0;
    size_t kept = h != NULL ? h->n : 0;
    int64_t prev = arrival;
    for (size_t i = 0; i < kept; i++) {
        if (ok && kept == ATTEMPTS_KEPT && i == 1) {
            continue; /* room for the success: the first and the latest ones */
        }
        const attempt_t *a = &h->list[i];
        attempts[n++] = (eddy_attempt_t){a->start_ms - prev, a->end_ms - a->start_ms, false, a->code, a->message};
        prev = a->end_ms;
    }
    if (ok) {
        attempts[n++] = (eddy_attempt_t){o->k->start_ms - prev, o->k->end_ms - o->k->start_ms, true, NULL, NULL};
    }
    const attempt_t *last = kept > 0 ? &h->list[kept - 1] : NULL;
    eddy_put_result_t r = {
        .err = o->err,
        .shard_id = ok ? o->shard_id : NULL,
        .sequence_number = ok ? o->seq : NULL,
        .sub_sequence_number = ok ? o->sub : 0,
        .aggregated = ok && o->k->aggregated,
        .error_code = !ok && last != NULL && last->code != NULL ? last->code
                      : o->err == EDDY_ERR_EXPIRED              ? "Expired"
                                                                : NULL,
        .error_message = !ok && last != NULL ? last->message : NULL,
        .attempts = attempts,
        .attempt_count = n,
    };
    if (done != NULL) {
        done(arg, &r);
    }
    acc->n++;
    acc->bytes += pk_len + data_len;
    history_free(h);
}

/* Completes a urec (its outcome in o) and frees it (a small one goes to acc's spares). */
static void complete_urec(urec_t *u, const outcome_t *o, completion_t *acc)
{
    call_back(u->done, u->arg, u->arrival_ms, u->history, u->pk_len, u->data_len, o, acc);
    if (u->size > UREC_SMALL) {
        free(u);
        return;
    }
    u->next = NULL;
    if (acc->spare_tail != NULL) {
        acc->spare_tail->next = u;
    } else {
        acc->spare = u;
    }
    acc->spare_tail = u;
    acc->nspare++;
}

/* Completes what a Kinesis record still holds: all its user records when it succeeded (where it landed is
 * copied out of the reply; a sequence number longer than Kinesis's fails them with EDDY_ERR_PROTOCOL), else
 * the slots that still have a callback, with their own error. */
static void complete_krec(krec_t *k, bool landed, completion_t *acc)
{
    char shard_id[SHARD_ID_MAX], seq[SEQUENCE_NUMBER_MAX];
    outcome_t o = {EDDY_OK, k, 0, shard_id, seq};
    if (landed) {
        if (k->landed_seq_len >= sizeof seq) {
            o.err = EDDY_ERR_PROTOCOL;
        } else {
            copy_id_n(shard_id, sizeof shard_id, k->landed_shard, k->landed_shard_len);
            memcpy(seq, k->landed_seq, k->landed_seq_len);
            seq[k->landed_seq_len] = '\0';
        }
    }
    if (k->urec != NULL) {
        if (!landed) {
            o.err = k->urec->err;
        }
        complete_urec(k->urec, &o, acc);
        k->urec = NULL;
        return;
    }
    for (size_t i = 0; i < k->count; i++) {
        slot_t *sl = &k->slots[i];
        if (sl->done == NULL) {
            continue;
        }
        if (!landed) {
            o.err = sl->err;
        }
        o.sub = k->aggregated ? i : 0;
        call_back(sl->done, sl->arg, sl->arrival_ms, sl->history, sl->pk_len, sl->data_len, &o, acc);
        sl->done = NULL;
        sl->history = NULL;
    }
}

/* Applies what completions added and releases their room (takes the lock). */
static void apply_completions(eddy_producer_t *p, const completion_t *acc)
{
    if (acc->n == 0) {
        return;
    }
    urec_t *extra = acc->spare;
    pthread_mutex_lock(&p->lock);
    if (acc->nspare > 0 && p->nspare + acc->nspare <= UREC_SPARE_MAX) {
        acc->spare_tail->next = p->spare;
        p->spare = acc->spare;
        p->nspare += acc->nspare;
        extra = NULL;
    }
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
    if (p->outstanding == 0 && (p->pooled > KREC_POOL_IDLE || p->nspare > 0)) {
        pthread_cond_signal(&p->wake); /* idle now: the producer's thread trims the pools */
    }
    pthread_mutex_unlock(&p->lock);
    for (urec_t *u = extra, *next; u != NULL; u = next) {
        next = u->next;
        free(u);
    }
}

static void krec_give(eddy_producer_t *p, krec_t *k);

/* Calls the callbacks of a done list (without the lock), then gives its krecs back and releases the
 * room. */
static void run_callbacks(eddy_producer_t *p, done_list_t *dl)
{
    completion_t acc = {0};
    for (urec_t *u = dl->head, *next; u != NULL; u = next) {
        next = u->next;
        outcome_t o = {u->err, NULL, 0};
        complete_urec(u, &o, &acc);
    }
    for (krec_t *k = dl->krecs; k != NULL; k = k->next) {
        complete_krec(k, false, &acc);
    }
    if (dl->krecs != NULL) {
        pthread_mutex_lock(&p->lock);
        for (krec_t *k = dl->krecs, *next; k != NULL; k = next) {
            next = k->next;
            krec_give(p, k);
        }
        pthread_mutex_unlock(&p->lock);
    }
    dl->head = dl->tail = NULL;
    dl->krecs = NULL;
    apply_completions(p, &acc);
}

/* ---- Kinesis records (all with the lock held) ---- */

static void request_map(eddy_producer_t *p, stream_t *s);

static void krec_free(krec_t *k)
{
    eddy_agg_free(k->agg);
    free(k->slots);
    free(k);
}

/* An empty krec: a pooled one (with its memory), or a new one. NULL when out of memory. */
static krec_t *krec_take(eddy_producer_t *p)
{
    if (p->pool != NULL) {
        krec_t *k = p->pool;
        p->pool = k->next;
        p->pooled--;
        k->next = NULL;
        return k;
    }
    krec_t *k = calloc(1, sizeof *k);
    if (k != NULL) {
        k->shard = -1;
    }
    return k;
}

/* Empties a krec (its records completed or moved on) and keeps it for reuse. */
static void krec_give(eddy_producer_t *p, krec_t *k)
{
    if (p->pooled >= (k->agg != NULL ? KREC_POOL_MAX : KREC_POOL_PLAIN_MAX)) {
        krec_free(k);
        return;
    }
    if (k->agg != NULL) {
        eddy_agg_reset(k->agg);
    }
    *k = (krec_t){.agg = k->agg, .slots = k->slots, .cap = k->cap, .shard = -1, .next = p->pool};
    p->pool = k;
    p->pooled++;
}

static size_t krec_bytes(const krec_t *k)
{
    return k->pk_len + k->data_len;
}

/* Appends a Kinesis record to the stream's collector: its predicted shard's queue. */
static void to_collector(stream_t *s, krec_t *k)
{
    k->next = NULL;
    int sh = shard_of(s, k);
    krec_t **head = sh >= 0 ? &s->shards[sh].cq_head : &s->nq_head;
    krec_t **tail = sh >= 0 ? &s->shards[sh].cq_tail : &s->nq_tail;
    if (*tail != NULL) {
        (*tail)->next = k;
    } else {
        *head = k;
    }
    *tail = k;
    s->col_count++;
    s->col_bytes += krec_bytes(k);
    if (sh >= 0) {
        s->shards[sh].col_count++;
        s->shards[sh].col_bytes += krec_bytes(k);
    }
    if (s->col_deadline == 0 || k->deadline_ms < s->col_deadline) {
        s->col_deadline = k->deadline_ms;
    }
}

/* Puts Kinesis records that failed back at the head of their shard's queue in the collector, ahead of the
 * records put after them: with one request per shard in flight (take_batch), a retry keeps the shard's
 * order. back holds them in reverse order (the last one of the batch first); their map is the stream's. */
static void to_collector_head(stream_t *s, krec_t *back)
{
    for (krec_t *k = back, *next; k != NULL; k = next) {
        next = k->next;
        shard_t *sh = &s->shards[k->shard];
        k->next = sh->cq_head;
        sh->cq_head = k;
        if (sh->cq_tail == NULL) {
            sh->cq_tail = k;
        }
        sh->col_count++;
        sh->col_bytes += krec_bytes(k);
        s->col_count++;
        s->col_bytes += krec_bytes(k);
        if (s->col_deadline == 0 || k->deadline_ms < s->col_deadline) {
            s->col_deadline = k->deadline_ms;
        }
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
        s->lim_started = true;
    }
    sh->lim_tail = k;
}

/* Whether puts that started a limiter queue must wake the producer's thread: it moves a limiter's records
 * to the collector when it wakes, so it must not sleep past their deadline (a record puts made is due
 * buffered time after now). The thread clears lim_started when it drains the limiters. */
static bool limiter_wake(const eddy_producer_t *p, const stream_t *s, int64_t now)
{
    return s->lim_started && now + p->cfg.buffered_ms < p->wake_at;
}

static int first_record(void *arg, const eddy_user_record_t *r)
{
    krec_t *k = arg;
    k->pk = r->partition_key;
    k->pk_len = r->partition_key_len;
    k->data = r->data;
    k->data_len = r->data_len;
    return 1; /* only the first */
}

/* Closes an aggregate krec (count >= 1) and sends it on: as an aggregate, or alone when it holds one
 * record; the aggregate is encoded (MD5 and all) later, outside the lock, by send_batch. */
static void seal(eddy_producer_t *p, stream_t *s, krec_t *k)
{
    p->seal_count++;
    const char *outer;
    eddy_agg_outer_key(k->agg, &outer, k->ehk);
    if (k->count == 1) {
        eddy_agg_records(k->agg, first_record, k);
    } else {
        k->aggregated = true;
        k->pk = outer;
        k->pk_len = 1;
        k->data = NULL;
        k->data_len = eddy_agg_size(k->agg);
        /* give the collector a window to batch aggregates (the KPL's rule) */
        int64_t extra = p->cfg.buffered_ms / 5 < 50 ? p->cfg.buffered_ms / 5 : 50;
        k->deadline_ms += extra;
    }
    if (k->shard >= 0) {
        copy_id(k->shard_id, sizeof k->shard_id, s->shards[k->shard].id);
        k->map_gen = s->map_gen;
    }
    to_limiter(p, s, k);
}

/* Seals a shard's open aggregate when it holds records. */
static void seal_open(eddy_producer_t *p, stream_t *s, int shard_index)
{
    shard_t *sh = &s->shards[shard_index];
    krec_t *k = sh->open;
    if (k == NULL || k->count == 0) {
        return;
    }
    sh->open = NULL;
    seal(p, s, k);
}

/* An empty krec for an aggregate, with room for one more slot. NULL when out of memory. */
static krec_t *agg_krec_take(eddy_producer_t *p, int shard)
{
    krec_t *k = krec_take(p);
    if (k == NULL) {
        return NULL;
    }
    if (k->agg == NULL && (k->agg = eddy_agg_new(p->cfg.aggregation_max_bytes, p->cfg.aggregation_max_count)) == NULL) {
        krec_give(p, k);
        return NULL;
    }
    k->shard = shard;
    return k;
}

static int slots_reserve(krec_t *k)
{
    if (k->count < k->cap) {
        return 0;
    }
    size_t cap = k->cap ? k->cap * 2 : 64;
    slot_t *grown = realloc(k->slots, cap * sizeof *grown);
    if (grown == NULL) {
        return EDDY_ERR_NOMEM;
    }
    k->slots = grown;
    k->cap = cap;
    return 0;
}

/* A user record to aggregate: views of its keys (ehk NUL-terminated, or NULL) and data. */
typedef struct route {
    const char *pk;
    size_t pk_len;
    const char *ehk;
    const void *data;
    size_t data_len;
    int64_t deadline_ms;
} route_t;

/* Adds a user record (bytes copied, slot kept) to the aggregate of its predicted shard (-1: none, then it
 * goes alone); a full aggregate is sealed first. Returns 0, or an error with nothing changed. */
static int to_aggregate(eddy_producer_t *p, stream_t *s, int shard, const route_t *r, const slot_t *slot)
{
    krec_t *k = shard >= 0 ? s->shards[shard].open : NULL;
    bool alone = shard < 0;
    if (k == NULL) {
        if ((k = agg_krec_take(p, shard)) == NULL) {
            return EDDY_ERR_NOMEM;
        }
        if (!alone) {
            s->shards[shard].open = k;
        }
    }
    int rc = slots_reserve(k);
    if (rc == 0) {
        rc = eddy_agg_add(k->agg, r->pk, r->pk_len, r->ehk, r->data, r->data_len);
    }
    if (rc == EDDY_ERR_TOO_LARGE && !alone) {
        /* full: a fresh one, and this one goes */
        krec_t *fresh = agg_krec_take(p, shard);
        if (fresh == NULL) {
            return EDDY_ERR_NOMEM;
        }
        seal_open(p, s, shard);
        s->shards[shard].open = k = fresh;
        rc = slots_reserve(k);
        if (rc == 0) {
            rc = eddy_agg_add(k->agg, r->pk, r->pk_len, r->ehk, r->data, r->data_len);
        }
    }
    if (rc != 0) {
        if (alone) {
            krec_give(p, k);
        }
        return rc;
    }
    slot_t *sl = &k->slots[k->count++];
    *sl = *slot;
    if (k->count == 1) {
        k->deadline_ms = r->deadline_ms;
        k->oldest_arrival_ms = slot->arrival_ms;
    } else {
        k->deadline_ms = r->deadline_ms < k->deadline_ms ? r->deadline_ms : k->deadline_ms;
        k->oldest_arrival_ms = slot->arrival_ms < k->oldest_arrival_ms ? slot->arrival_ms : k->oldest_arrival_ms;
    }
    if (alone) {
        seal(p, s, k);
    }
    return 0;
}

/* Sends one urec alone (not aggregated) as a Kinesis record predicted for shard (-1: none). */
static void send_alone(eddy_producer_t *p, stream_t *s, urec_t *u, int shard)
{
    krec_t *k = krec_take(p);
    if (k == NULL) {
        /* keep it for the next round rather than lose it */
        append(&s->unmapped_head, &s->unmapped_tail, u);
        return;
    }
    k->urec = u;
    k->count = 1;
    k->pk = u->pk;
    k->pk_len = u->pk_len;
    k->data = u->data;
    k->data_len = u->data_len;
    if (u->ehk != NULL) { /* otherwise none is sent: the service routes by the partition key's MD5 too */
        snprintf(k->ehk, sizeof k->ehk, "%s", u->ehk);
    }
    k->shard = shard;
    if (shard >= 0) {
        copy_id(k->shard_id, sizeof k->shard_id, s->shards[shard].id);
        k->map_gen = s->map_gen;
    }
    k->deadline_ms = u->deadline_ms;
    k->oldest_arrival_ms = u->arrival_ms;
    to_limiter(p, s, k);
}

/* Routes one urec: to its predicted shard's aggregate (its bytes are copied there and the urec freed),
 * alone when aggregation is off or no shard holds its key, or to the unmapped list while the stream has no
 * map (and when memory runs out: it is tried again next round). */
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
    route_t r = {u->pk, u->pk_len, u->ehk, u->data, u->data_len, u->deadline_ms};
    slot_t slot = {u->done, u->arg, u->arrival_ms, u->history, 0, (uint32_t)u->data_len, (uint16_t)u->pk_len};
    int rc = to_aggregate(p, s, shard, &r, &slot);
    if (rc == EDDY_ERR_NOMEM) {
        append(&s->unmapped_head, &s->unmapped_tail, u);
        return;
    }
    if (rc != 0) {
        /* cannot happen for keys put checked; never loop on it: alone, unaggregated, the service judges it */
        send_alone(p, s, u, shard);
        return;
    }
    urec_give(p, u); /* its history went with the slot */
}

/* Routes the stream's staged puts, in the order they were put, as put would have routed them one by one:
 * their partition keys are hashed together (md5_multi: sixteen MD5s side by side cost about what four
 * cost one after the other), then each goes into its predicted shard's aggregate, or (no map any more, or out
 * of memory there) on its own as a urec. A put that cannot even get a urec (out of memory) is added to
 * failed (room for STAGE_MAX), for the caller to fail without the lock (fail_staged). */
static void stage_flush(eddy_producer_t *p, stream_t *s, stage_failure_t *failed, size_t *nfailed)
{
    size_t n = s->nstaged;
    if (n == 0) {
        return;
    }
    const unsigned char *keys[STAGE_MAX];
    size_t lens[STAGE_MAX];
    unsigned char hashes[STAGE_MAX][MD5_MULTI_LEN];
    for (size_t i = 0; i < n; i++) {
        keys[i] = s->stage_bytes + s->stage[i].off;
        lens[i] = s->stage[i].pk_len;
    }
    md5_multi(keys, lens, n, hashes);
    s->nstaged = 0;
    s->stage_len = 0;
    for (size_t i = 0; i < n; i++) {
        const staged_t *st = &s->stage[i];
        const char *pk = (const char *)keys[i];
        const unsigned char *data = keys[i] + st->pk_len;
        int rc = EDDY_ERR_NOMEM;
        if (s->map_valid) {
            route_t r = {pk, st->pk_len, NULL, data, st->data_len, st->arrival_ms + p->cfg.buffered_ms};
            slot_t slot = {st->done, st->arg, st->arrival_ms, NULL, 0, st->data_len, st->pk_len};
            rc = to_aggregate(p, s, predict(s, hashes[i]), &r, &slot);
        }
        if (rc == 0) {
            continue;
        }
        urec_t *u = urec_new(pk, st->pk_len, NULL, 0, data, st->data_len);
        if (u == NULL) {
            failed[(*nfailed)++] = (stage_failure_t){st->done, st->arg, st->arrival_ms, st->pk_len, st->data_len};
            continue;
        }
        memcpy(u->hash, hashes[i], 16);
        u->done = st->done;
        u->arg = st->arg;
        u->arrival_ms = st->arrival_ms;
        u->deadline_ms = st->arrival_ms + p->cfg.buffered_ms;
        dispatch(p, s, u);
    }
}

/* Fails the puts stage_flush could not route (without the lock). */
static void fail_staged(eddy_producer_t *p, const stage_failure_t *failed, size_t n)
{
    completion_t acc = {0};
    for (size_t i = 0; i < n; i++) {
        outcome_t o = {EDDY_ERR_NOMEM, NULL, 0};
        call_back(failed[i].done, failed[i].arg, failed[i].arrival_ms, NULL, failed[i].pk_len, failed[i].data_len,
                  &o, &acc);
    }
    apply_completions(p, &acc);
}

/* Routes a user record of an aggregate krec again (a retry, or a new map): into an aggregate, or as a
 * urec while the stream has no map. Returns 0 (the slot moved on), or an error with nothing changed. */
static int reroute(eddy_producer_t *p, stream_t *s, const eddy_user_record_t *rec, const slot_t *slot,
                   int64_t deadline)
{
    char ehk[EDDY_HASH_KEY_STR_MAX];
    const char *ehk_text = NULL;
    if (rec->explicit_hash_key != NULL && rec->explicit_hash_key_len < sizeof ehk) {
        memcpy(ehk, rec->explicit_hash_key, rec->explicit_hash_key_len);
        ehk[rec->explicit_hash_key_len] = '\0';
        ehk_text = ehk;
    }
    if (s->map_valid) {
        route_t r = {rec->partition_key, rec->partition_key_len, ehk_text, rec->data, rec->data_len, deadline};
        return to_aggregate(p, s, predict(s, rec->hash_key), &r, slot);
    }
    urec_t *u = urec_new(rec->partition_key, rec->partition_key_len, ehk_text, ehk_text ? strlen(ehk_text) : 0,
                         rec->data, rec->data_len);
    if (u == NULL) {
        return EDDY_ERR_NOMEM;
    }
    memcpy(u->hash, rec->hash_key, 16);
    u->done = slot->done;
    u->arg = slot->arg;
    u->arrival_ms = slot->arrival_ms;
    u->deadline_ms = deadline;
    u->history = slot->history;
    append(&s->unmapped_head, &s->unmapped_tail, u);
    request_map(p, s);
    return 0;
}

/* Why the records of a krec are routed again, and what happened to them. */
typedef struct again {
    eddy_producer_t *p;
    stream_t *s;
    krec_t *k;
    bool attempt; /* an attempt failed: noted, and the record may fail or expire */
    int64_t start_ms, now;
    const char *code, *message;
    int err;
    bool final; /* fail rather than retry */
    int64_t deadline;
    bool left; /* some slots keep a callback to call */
} again_t;

static int again_visit(void *arg, const eddy_user_record_t *rec)
{
    again_t *g = arg;
    slot_t *sl = &g->k->slots[rec->sub_sequence_number];
    if (sl->done == NULL) {
        return 0;
    }
    if (g->attempt) {
        history_add(&sl->history, g->start_ms, g->now, true, g->code, g->message);
        if (g->final) {
            sl->err = g->err;
            g->left = true;
            return 0;
        }
        if (g->now >= sl->arrival_ms + g->p->cfg.ttl_ms) {
            history_add(&sl->history, g->now, g->now, false, "Expired", "Record has reached expiration");
            sl->err = EDDY_ERR_EXPIRED;
            g->left = true;
            return 0;
        }
    }
    int rc = reroute(g->p, g->s, rec, sl, g->deadline);
    if (rc == 0) {
        sl->done = NULL; /* moved on, with its history */
        sl->history = NULL;
    } else {
        sl->err = rc;
        g->left = true;
    }
    return 0;
}

/* Routes again the user records of a krec taken out of the pipeline (g->k), and gives it back unless some
 * of its records are to be called back (then it goes on the done list). */
static void route_again(again_t *g, done_list_t *dl)
{
    krec_t *k = g->k;
    if (k->urec != NULL) {
        urec_t *u = k->urec;
        k->urec = NULL;
        if (g->attempt) {
            history_add(&u->history, g->start_ms, g->now, true, g->code, g->message);
            bool expired = !g->final && g->now >= u->arrival_ms + g->p->cfg.ttl_ms;
            if (expired) {
                history_add(&u->history, g->now, g->now, false, "Expired", "Record has reached expiration");
            }
            if (g->final || expired) {
                u->err = expired ? EDDY_ERR_EXPIRED : g->err;
                append(&dl->head, &dl->tail, u);
                krec_give(g->p, k);
                return;
            }
        }
        u->deadline_ms = g->deadline;
        dispatch(g->p, g->s, u);
        krec_give(g->p, k);
        return;
    }
    g->left = false;
    eddy_agg_records(k->agg, again_visit, g);
    if (g->left) {
        k->next = dl->krecs;
        dl->krecs = k;
    } else {
        krec_give(g->p, k);
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

static void install_map(eddy_producer_t *p, stream_t *s, shard_t *fresh, size_t n, done_list_t *dl);

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
        install_map(p, s, mc->shards, mc->nshards, &dl);
        mc->shards = NULL;
        p->m.shard_map_refreshes++;
    } else {
        s->map_retry_ms = now_ms() + MAP_RETRY_MS;
        if (resp->err == EDDY_ERR_SERVICE && !resp->retriable) {
            /* the stream does not exist (or may not be listed): the records waiting for it fail now */
            int64_t now = now_ms();
            for (urec_t *u = s->unmapped_head, *next; u != NULL; u = next) {
                next = u->next;
                history_add(&u->history, now, now, false, resp->error_type, resp->message);
                u->err = EDDY_ERR_SERVICE;
                append(&dl.head, &dl.tail, u);
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

/* Replaces the stream's map: what its aggregates and limiters held is routed again. */
static void install_map(eddy_producer_t *p, stream_t *s, shard_t *fresh, size_t n, done_list_t *dl)
{
    krec_t *again_head = NULL, *again_tail = NULL;
    for (size_t i = 0; i < s->nshards; i++) {
        shard_t *sh = &s->shards[i];
        krec_t *list = sh->lim_head;
        if (sh->open != NULL && sh->open->count > 0) {
            sh->open->next = list;
            list = sh->open;
        } else if (sh->open != NULL) {
            krec_give(p, sh->open);
        }
        for (krec_t *k = list, *next; k != NULL; k = next) {
            next = k->next;
            k->next = NULL;
            if (again_tail != NULL) {
                again_tail->next = k;
            } else {
                again_head = k;
            }
            again_tail = k;
        }
    }
    /* the collector's records go to the new map's queues (each shard's order kept) */
    krec_t *col = s->nq_head, *col_tail = s->nq_tail;
    for (size_t i = 0; i < s->nshards; i++) {
        shard_t *sh = &s->shards[i];
        if (sh->cq_head != NULL) {
            if (col_tail != NULL) {
                col_tail->next = sh->cq_head;
            } else {
                col = sh->cq_head;
            }
            col_tail = sh->cq_tail;
        }
    }
    s->nq_head = s->nq_tail = NULL;
    s->col_count = s->col_bytes = 0;
    s->col_deadline = 0;
    free(s->shards);
    s->shards = fresh;
    s->nshards = n;
    s->map_gen++;
    free(s->ranges);
    s->ranges = malloc((n > 0 ? n : 1) * sizeof *s->ranges);
    for (size_t i = 0; s->ranges != NULL && i < n; i++) {
        memcpy(s->ranges[i].start, fresh[i].start, 16);
        memcpy(s->ranges[i].end, fresh[i].end, 16);
    }
    s->take_from = 0;
    int64_t now = now_ms();
    for (size_t i = 0; i < n; i++) {
        fresh[i].tok_ms = now;
    }
    s->map_valid = true;
    for (krec_t *k = col, *next; k != NULL; k = next) {
        next = k->next;
        to_collector(s, k);
    }
    for (krec_t *k = again_head, *next; k != NULL; k = next) {
        next = k->next;
        again_t g = {.p = p, .s = s, .k = k, .deadline = k->deadline_ms};
        route_again(&g, dl);
    }
    urec_t *list = s->unmapped_head;
    s->unmapped_head = s->unmapped_tail = NULL;
    for (urec_t *u = list, *next; u != NULL; u = next) {
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
    body_t *body; /* borrowed by the client until on_put_records; NULL when none was taken */
    uint64_t mark; /* take_batch's: the shards it made busy */
} send_call_t;

static void body_free(body_t *b)
{
    buf_dispose(&b->buf);
    free(b);
}

/* A request body from the pool, or a new one (NULL when out of memory). Takes the lock. */
static body_t *body_take(eddy_producer_t *p)
{
    pthread_mutex_lock(&p->lock);
    body_t *b = p->bodies;
    if (b != NULL) {
        p->bodies = b->next;
        p->bodies_pooled--;
    }
    pthread_mutex_unlock(&p->lock);
    if (b == NULL && (b = calloc(1, sizeof *b)) != NULL) {
        buf_init(&b->buf);
    }
    return b;
}

/* Gives a request body back (lock held). */
static void body_give(eddy_producer_t *p, body_t *b)
{
    if (b == NULL) {
        return;
    }
    if (p->bodies_pooled >= BODY_POOL_MAX) {
        body_free(b);
        return;
    }
    b->next = p->bodies;
    p->bodies = b;
    p->bodies_pooled++;
}

static const char *str_field(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

typedef struct range_check {
    const shard_t *shard;
    bool inside;
} range_check_t;

static int in_shard_visit(void *arg, const eddy_user_record_t *rec)
{
    range_check_t *rc = arg;
    if (cmp_key(rec->hash_key, rc->shard->start) < 0 || cmp_key(rec->hash_key, rc->shard->end) > 0) {
        rc->inside = false;
        return 1;
    }
    return 0;
}

/* Whether every user record of an aggregate krec hashes into the shard named shard_id in the current map
 * (unknown: false). */
static bool lands_in(const stream_t *s, const krec_t *k, const char *shard_id, size_t shard_id_len)
{
    for (size_t i = 0; i < s->nshards; i++) {
        if (same_id(s->shards[i].id, shard_id, shard_id_len)) {
            range_check_t rc = {&s->shards[i], true};
            eddy_agg_records(k->agg, in_shard_visit, &rc);
            return rc.inside;
        }
    }
    return false;
}

/* Notes a failed attempt in the history of each user record a krec still carries. */
static void note_attempt(krec_t *k, int64_t start_ms, int64_t now, const char *code, const char *message)
{
    if (k->urec != NULL) {
        history_add(&k->urec->history, start_ms, now, true, code, message);
        return;
    }
    for (size_t i = 0; i < k->count; i++) {
        if (k->slots[i].done != NULL) {
            history_add(&k->slots[i].history, start_ms, now, true, code, message);
        }
    }
}

static void on_put_records(void *arg, const eddy_response_t *resp)
{
    send_call_t *sc = arg;
    eddy_producer_t *p = sc->p;
    /* every record succeeded, read without building a tree; anything else by cJSON */
    put_reply_entry_t quick[PUT_RECORDS_MAX];
    bool all_ok = resp->err == EDDY_OK && sc->count <= PUT_RECORDS_MAX &&
                  put_reply_fast(resp->body, resp->body_len, quick, sc->count);
    cJSON *root = resp->err == EDDY_OK && !all_ok ? cJSON_ParseWithLength(resp->body, resp->body_len) : NULL;
    const cJSON *records = cJSON_GetObjectItemCaseSensitive(root, "Records");
    bool whole_ok = all_ok || (resp->err == EDDY_OK && cJSON_IsArray(records) &&
                               (size_t)cJSON_GetArraySize(records) == sc->count);
    const char *whole_code = resp->err == EDDY_OK ? "Record Count Mismatch"
                             : resp->error_type != NULL && resp->error_type[0] ? resp->error_type
                                                                                : eddy_err_name(resp->err);
    int whole_err = resp->err == EDDY_OK ? EDDY_ERR_PROTOCOL : resp->err;
    int64_t now = now_ms();
    done_list_t dl = {0};
    krec_t *landed = NULL, *landed_tail = NULL; /* succeeded: completed after the lock is released */
    krec_t *back = NULL;                        /* retried whole, in reverse order */
    pthread_mutex_lock(&p->lock);
    stream_t *s = sc->s;
    body_give(p, sc->body);
    sc->body = NULL;
    p->in_flight_requests--;
    p->m.put_records_requests++;
    p->request_sum_ms += (double)(now - sc->start_ms);
    for (size_t i = 0; i < s->nshards; i++) {
        if (s->shards[i].busy && s->shards[i].batch_mark == sc->mark) {
            s->shards[i].busy = false; /* a map installed since has none of its shards busy */
        }
    }
    const cJSON *entry = whole_ok && !all_ok ? records->child : NULL;
    bool stale_map = false;
    size_t i = 0;
    for (krec_t *k = sc->krecs, *knext; k != NULL; k = knext, entry = entry != NULL ? entry->next : NULL, i++) {
        knext = k->next;
        bool have = all_ok || entry != NULL;
        const char *seq = all_ok ? quick[i].seq : entry != NULL ? str_field(entry, "SequenceNumber") : NULL;
        const char *shard_id = all_ok ? quick[i].shard_id : entry != NULL ? str_field(entry, "ShardId") : NULL;
        size_t seq_len = all_ok ? quick[i].seq_len : seq != NULL ? strlen(seq) : 0;
        size_t shard_id_len = all_ok ? quick[i].shard_id_len : shard_id != NULL ? strlen(shard_id) : 0;
        const char *code = all_ok ? NULL : entry != NULL ? str_field(entry, "ErrorCode") : whole_code;
        const char *message = all_ok ? NULL : entry != NULL ? str_field(entry, "ErrorMessage") : resp->message;
        bool success = seq != NULL && shard_id != NULL, wrong_shard = false;
        if (success && k->shard >= 0 && !same_id(k->shard_id, shard_id, shard_id_len)) {
            /* misrouted: the map is stale. An aggregate that did not land where all its records belong
             * would be dropped by KCL readers: put its records again ("Wrong Shard", as the KPL does). */
            stale_map = true;
            if (k->count > 1 && !lands_in(s, k, shard_id, shard_id_len)) {
                success = false;
                wrong_shard = true;
                code = "Wrong Shard";
                message = "the aggregate landed on a shard that does not hold all its records";
            }
        }
        bool throttled = !success && code != NULL && strcmp(code, "ProvisionedThroughputExceededException") == 0;
        if (success) {
            p->m.kinesis_records_put++;
            p->m.kinesis_bytes_put += k->data_len;
            p->urecs_in_kinesis_put += k->count;
        } else if (throttled) {
            p->m.throttles++;
        } else {
            p->m.errors++;
        }
        if (success) {
            set_landing(k, shard_id, shard_id_len, seq, seq_len);
            k->start_ms = sc->start_ms;
            k->end_ms = now;
            k->next = NULL;
            if (landed_tail != NULL) {
                landed_tail->next = k;
            } else {
                landed = k;
            }
            landed_tail = k;
            continue;
        }
        /* a whole request the service refused for good (a validation error, a missing stream, access
         * denied) fails its records now; everything else is retried until the TTL (as the KPL does:
         * deadline now + buffered time / 2) */
        bool final = (entry == NULL && resp->err == EDDY_ERR_SERVICE && !resp->retriable) ||
                     (throttled && p->cfg.fail_if_throttled);
        if (!final && !wrong_shard && k->shard >= 0 && k->map_gen == s->map_gen &&
            now < k->oldest_arrival_ms + p->cfg.ttl_ms) {
            /* still where it belongs and none of its records expired: retried whole, ahead of younger
             * records of its shard (to_collector_head), so that the shard's order holds */
            note_attempt(k, sc->start_ms, now, code, message);
            k->deadline_ms = now + p->cfg.buffered_ms / 2;
            k->next = back;
            back = k;
            continue;
        }
        again_t g = {
            .p = p,
            .s = s,
            .k = k,
            .attempt = true,
            .start_ms = sc->start_ms,
            .now = now,
            .code = code,
            .message = message,
            .err = have ? EDDY_ERR_SERVICE : whole_err,
            .final = final,
            .deadline = now + p->cfg.buffered_ms / 2,
        };
        k->next = NULL;
        route_again(&g, &dl);
    }
    to_collector_head(s, back);
    if (stale_map) {
        request_map(p, s);
    }
    wake_thread(p);
    pthread_mutex_unlock(&p->lock);
    /* the user records of the Kinesis records that succeeded, completed outside the lock (puts go on
     * meanwhile) in one walk over each krec's slots; their landings point into the reply (and root) */
    completion_t acc = {0};
    for (krec_t *k = landed; k != NULL; k = k->next) {
        complete_krec(k, true, &acc);
    }
    cJSON_Delete(root);
    if (landed != NULL) {
        pthread_mutex_lock(&p->lock);
        for (krec_t *k = landed, *next; k != NULL; k = next) {
            next = k->next;
            krec_give(p, k); /* with its memory, for the next aggregates */
        }
        pthread_mutex_unlock(&p->lock);
    }
    free(sc);
    run_callbacks(p, &dl);
    apply_completions(p, &acc);
}

/* Builds and sends one PutRecords of the krecs (taken out of the collector). Called without the lock, on
 * the producer's thread (which owns p->scratch). The body comes from the pool and is lent to the client. */
static void send_batch(eddy_producer_t *p, stream_t *s, const char *stream_name, krec_t *krecs, size_t count,
                       uint64_t mark)
{
    size_t worst = strlen(stream_name) * 6 + 64, encoded = 0, naggs = 0;
    for (krec_t *k = krecs; k != NULL; k = k->next) {
        worst += BASE64_ENCODED_LEN(k->data_len) + k->pk_len * 6 + EDDY_HASH_KEY_STR_MAX + 64;
        if (k->aggregated) {
            encoded += k->data_len;
            naggs++;
        }
    }
    body_t *held = body_take(p);
    buf_t *body = held != NULL ? &held->buf : NULL;
    send_call_t *sc = calloc(1, sizeof *sc);
    if (body != NULL) {
        buf_reset(body);
    }
    int rc = sc == NULL || body == NULL || buf_try_reserve(body, worst) != 0 ? EDDY_ERR_NOMEM : 0;
    if (rc == 0 && encoded > p->scratch_cap) {
        unsigned char *grown = realloc(p->scratch, encoded);
        if (grown == NULL) {
            rc = EDDY_ERR_NOMEM;
        } else {
            p->scratch = grown;
            p->scratch_cap = encoded;
        }
    }
    /* the batch's aggregates are encoded together, one after the other in scratch: their MD5s (most of
     * the encoding's cost) are computed side by side */
    const eddy_agg_t **aggs = NULL;
    unsigned char **outs = NULL;
    size_t *lens = NULL;
    if (rc == 0 && naggs > 0) {
        aggs = malloc(naggs * sizeof *aggs);
        outs = malloc(naggs * sizeof *outs);
        lens = malloc(naggs * sizeof *lens);
        if (aggs == NULL || outs == NULL || lens == NULL) {
            rc = EDDY_ERR_NOMEM;
        } else {
            size_t i = 0, off = 0;
            for (krec_t *k = krecs; k != NULL; k = k->next) {
                if (k->aggregated) {
                    aggs[i] = k->agg;
                    outs[i++] = p->scratch + off;
                    off += k->data_len;
                }
            }
            eddy_agg_encode_many(aggs, naggs, outs, lens);
        }
    }
    if (rc == 0) {
        size_t agg_index = 0;
        jsonw_t w;
        jsonw_init(&w, body);
        jsonw_obj_begin(&w);
        jsonw_key(&w, "StreamName");
        jsonw_str(&w, stream_name);
        jsonw_key(&w, "Records");
        jsonw_arr_begin(&w);
        for (krec_t *k = krecs; k != NULL; k = k->next) {
            jsonw_obj_begin(&w);
            jsonw_key(&w, "Data");
            /* base64 straight into the reserved room (a string needs no escaping): the opening quote goes
             * through the writer, which then knows a value was written. The krecs are ours until the
             * request is handed over, so the aggregates were encoded (MD5 and all) above, outside the lock. */
            jsonw_raw(&w, "\"", 1);
            if (k->aggregated) {
                base64_encode_into(body, outs[agg_index], lens[agg_index]);
                agg_index++;
            } else {
                base64_encode_into(body, k->data, k->data_len);
            }
            buf_putc(body, '"');
            jsonw_key(&w, "PartitionKey");
            jsonw_strn(&w, k->pk, k->pk_len);
            if (k->ehk[0] != '\0') {
                jsonw_key(&w, "ExplicitHashKey");
                jsonw_str_plain(&w, k->ehk, strlen(k->ehk));
            }
            jsonw_obj_end(&w);
        }
        jsonw_arr_end(&w);
        jsonw_obj_end(&w);
        *sc = (send_call_t){p, s, krecs, count, now_ms(), held, mark};
        rc = eddy_client_call_async_borrowed(p->client, "PutRecords", body->data, body->len, on_put_records, sc);
    }
    free(aggs);
    free(outs);
    free(lens);
    if (rc == 0) {
        return;
    }
    /* not sent: a whole-request failure, retried like one */
    eddy_response_t fake = {.err = rc, .message = eddy_err_name(rc), .body = "", .error_type = ""};
    if (sc == NULL) {
        sc = calloc(1, sizeof *sc);
    }
    if (sc != NULL) {
        *sc = (send_call_t){p, s, krecs, count, now_ms(), held, mark};
        on_put_records(sc, &fake);
    } else if (held != NULL) {
        pthread_mutex_lock(&p->lock);
        body_give(p, held);
        pthread_mutex_unlock(&p->lock);
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

/* A batch this big takes no further shard (a quarter of a request): under load, requests hold few shards,
 * so that requests for other shards can be in flight at the same time (one per shard keeps the order). */
static bool batch_big(const eddy_producer_t *p, size_t n, size_t bytes)
{
    return n >= p->cfg.collection_max_count / 4 || bytes >= p->cfg.collection_max_bytes / 4;
}

/* Takes the next PutRecords' worth of Kinesis records out of the collector, skipping those of shards that
 * have a request in flight: one request per shard at a time keeps each partition key's records in order.
 * It takes whole shards (each one's records in order, the first shard free first) until the batch is big
 * (batch_big) or full. Returns the list (NULL: nothing can go now) and its length in *count. */
static krec_t *take_batch(eddy_producer_t *p, stream_t *s, size_t *count, uint64_t *mark_out)
{
    static _Atomic uint64_t batches;
    uint64_t mark = atomic_fetch_add(&batches, 1) + 1;
    *mark_out = mark;
    krec_t *head = NULL, *tail = NULL;
    size_t n = 0, bytes = 0;
    bool full = false;
    /* whole shards, each one's records in order, starting at a shard that turns round; then the records
     * without a prediction. O(records taken + shards): the collector can hold many thousands. */
    for (size_t j = 0; j <= s->nshards && !full && !batch_big(p, n, bytes); j++) {
        int sh = j == s->nshards ? -1 : (int)((s->take_from + j) % s->nshards);
        shard_t *x = sh >= 0 ? &s->shards[sh] : NULL;
        krec_t **qh = x != NULL ? &x->cq_head : &s->nq_head;
        krec_t **qt = x != NULL ? &x->cq_tail : &s->nq_tail;
        if (*qh == NULL || (x != NULL && x->busy)) {
            continue;
        }
        while (*qh != NULL) {
            krec_t *k = *qh;
            size_t b = krec_bytes(k);
            if (n >= p->cfg.collection_max_count || (n > 0 && bytes + b > p->cfg.collection_max_bytes)) {
                full = true; /* and the rest of this shard waits: its order is kept */
                break;
            }
            *qh = k->next;
            if (*qh == NULL) {
                *qt = NULL;
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
            if (x != NULL) {
                x->busy = true;
                x->batch_mark = mark;
                x->col_count--;
                x->col_bytes -= b;
            }
        }
    }
    if (s->nshards > 0) {
        s->take_from = (s->take_from + 1) % s->nshards;
    }
    s->col_count -= n;
    s->col_bytes -= bytes;
    /* the earliest deadline of what is left: queues are in arrival order, so their heads' (a retried
     * record behind a younger one waits at most for that one's deadline) */
    s->col_deadline = s->nq_head != NULL ? s->nq_head->deadline_ms : 0;
    for (size_t i = 0; i < s->nshards; i++) {
        const krec_t *r = s->shards[i].cq_head;
        if (r != NULL && (s->col_deadline == 0 || r->deadline_ms < s->col_deadline)) {
            s->col_deadline = r->deadline_ms;
        }
    }
    *count = n;
    return head;
}

/* Whether a batch is due: a flush, a deadline, a full request's worth, or a big batch of a shard that can
 * go now. */
static bool batch_due(const eddy_producer_t *p, const stream_t *s, int64_t now)
{
    if (s->col_count == 0) {
        return false;
    }
    if (s->flush || s->col_deadline <= now || s->col_count >= p->cfg.collection_max_count ||
        s->col_bytes >= p->cfg.collection_max_bytes) {
        return true;
    }
    for (size_t i = 0; i < s->nshards; i++) {
        const shard_t *sh = &s->shards[i];
        if (!sh->busy && batch_big(p, sh->col_count, sh->col_bytes)) {
            return true;
        }
    }
    return false;
}

/* One round of the producer's thread: seals due aggregates, drains limiters, sends due batches. Returns
 * the next time something is due. Lock held; released around sends. */
static int64_t round_once(eddy_producer_t *p, int64_t now)
{
    int64_t next = now + 1000;
    for (stream_t *s = p->streams; s != NULL; s = s->next) {
        if (s->nstaged > 0) {
            stage_failure_t failed[STAGE_MAX];
            size_t nfailed = 0;
            stage_flush(p, s, failed, &nfailed);
            if (nfailed > 0) {
                pthread_mutex_unlock(&p->lock);
                fail_staged(p, failed, nfailed);
                pthread_mutex_lock(&p->lock);
            }
        }
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
                if (now >= u->arrival_ms + p->cfg.ttl_ms) {
                    history_add(&u->history, now, now, false, "Expired",
                                "no shard map for the stream (ListShards failed)");
                    u->err = EDDY_ERR_EXPIRED;
                    append(&dl.head, &dl.tail, u);
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
            const krec_t *open = s->shards[i].open;
            if (open != NULL && open->count > 0 && (s->flush || open->deadline_ms <= now)) {
                seal_open(p, s, (int)i);
            }
            open = s->shards[i].open;
            if (open != NULL && open->count > 0 && open->deadline_ms < next) {
                next = open->deadline_ms;
            }
        }
        s->lim_started = false;
        drain_limiters(p, s, now);
        for (size_t i = 0; i < s->nshards; i++) {
            if (s->shards[i].lim_head != NULL && now + LIMITER_TICK_MS < next) {
                next = now + LIMITER_TICK_MS;
            }
        }
        /* send full batches, and the rest when due */
        bool blocked = false;
        while (batch_due(p, s, now)) {
            size_t count = 0;
            uint64_t mark;
            krec_t *head = take_batch(p, s, &count, &mark);
            if (head == NULL) {
                blocked = true; /* what is left waits for its shards' requests in flight, whose replies wake us */
                break;
            }
            p->in_flight_requests++;
            char *name = s->name; /* streams live as long as the producer */
            pthread_mutex_unlock(&p->lock);
            send_batch(p, s, name, head, count, mark);
            pthread_mutex_lock(&p->lock);
        }
        if (s->col_count > 0 && !blocked && s->col_deadline < next) {
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
        for (stream_t *s = p->streams; s != NULL; s = s->next) {
            /* puts staged while the round had the lock released: due at their first one's deadline */
            if (s->nstaged > 0 && s->stage[0].arrival_ms + p->cfg.buffered_ms < next) {
                next = s->stage[0].arrival_ms + p->cfg.buffered_ms;
            }
            /* and limiter queues they started */
            if (s->lim_started && now + LIMITER_TICK_MS < next) {
                next = now + LIMITER_TICK_MS;
            }
        }
        now = now_ms();
        while (p->outstanding == 0 && p->pooled > KREC_POOL_IDLE) {
            krec_t *k = p->pool;
            p->pool = k->next;
            p->pooled--;
            krec_free(k);
        }
        while (p->outstanding == 0 && p->spare != NULL) {
            urec_t *u = p->spare;
            p->spare = u->next;
            p->nspare--;
            free(u);
        }
        while (p->outstanding == 0 && p->bodies_pooled > 1) {
            body_t *b = p->bodies;
            p->bodies = b->next;
            p->bodies_pooled--;
            body_free(b);
        }
        p->wake_at = next > now ? next : now;
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
    if (p->last_stream != NULL && strcmp(p->last_stream->name, name) == 0) {
        return p->last_stream;
    }
    for (stream_t *s = p->streams; s != NULL; s = s->next) {
        if (strcmp(s->name, name) == 0) {
            p->last_stream = s;
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

/* A user record's keys and size as put checks them: 0, EDDY_ERR_INVALID or EDDY_ERR_TOO_LARGE. */
static int check_record(const eddy_producer_t *p, const char *partition_key, size_t pk_len, const void *data,
                        size_t data_len)
{
    if (partition_key == NULL || pk_len == 0 || pk_len > 4 * PK_MAX ||
        !valid_partition_key((const unsigned char *)partition_key, pk_len) || (data == NULL && data_len > 0)) {
        return EDDY_ERR_INVALID;
    }
    return data_len > p->cfg.max_user_record_bytes ? EDDY_ERR_TOO_LARGE : EDDY_OK;
}

/* Waits (block_when_full) until bytes more fit under max_outstanding_bytes (lock held): 0, or
 * EDDY_ERR_WOULD_BLOCK, or EDDY_ERR_CLOSED. */
static int wait_for_room(eddy_producer_t *p, size_t bytes)
{
    while (!p->closed && p->outstanding > 0 && p->outstanding_bytes + bytes > p->cfg.max_outstanding_bytes) {
        if (!p->cfg.block_when_full) {
            return EDDY_ERR_WOULD_BLOCK;
        }
        pthread_cond_wait(&p->room, &p->lock);
    }
    return p->closed ? EDDY_ERR_CLOSED : EDDY_OK;
}

int eddy_producer_put(eddy_producer_t *p, const char *stream, const char *partition_key, size_t pk_len,
                      const char *explicit_hash_key, const void *data, size_t data_len, eddy_put_fn done, void *arg)
{
    if (p == NULL || stream == NULL || stream[0] == '\0') {
        return EDDY_ERR_INVALID;
    }
    int checked = check_record(p, partition_key, pk_len, data, data_len);
    if (checked != EDDY_OK) {
        return checked;
    }
    unsigned char hash[16];
    size_t ehk_len = explicit_hash_key != NULL ? strlen(explicit_hash_key) : 0;
    /* An aggregated record without an explicit hash key may be staged: its partition key's MD5 is then
     * computed with those of the next puts, side by side (stage_flush). Others are hashed now. */
    bool may_stage = p->cfg.aggregation && explicit_hash_key == NULL && pk_len + data_len <= STAGE_RECORD_MAX;
    bool hashed = !may_stage;
    if (explicit_hash_key != NULL) {
        if (!eddy_hash_key_parse(explicit_hash_key, ehk_len, hash)) {
            return EDDY_ERR_INVALID;
        }
    } else if (!may_stage) {
        eddy_hash_key(partition_key, pk_len, hash);
    }
    size_t bytes = pk_len + data_len;
    /* With aggregation, a record is copied into its stream's stage, then into its shard's aggregate, under
     * the lock. A record sent alone (aggregation off), or put before its stream has a shard map, is held
     * on its own. */
    urec_t *u = NULL;
    pthread_mutex_lock(&p->lock);
    int rc = wait_for_room(p, bytes);
    if (rc == EDDY_OK && !p->cfg.aggregation &&
        (u = urec_take(p, partition_key, pk_len, explicit_hash_key, ehk_len, data, data_len)) == NULL) {
        rc = EDDY_ERR_NOMEM;
    }
    stream_t *s = rc == EDDY_OK ? find_stream(p, stream) : NULL;
    if (rc == EDDY_OK && s == NULL) {
        rc = EDDY_ERR_NOMEM;
    }
    bool staging = rc == EDDY_OK && may_stage && s->map_valid;
    if (staging && s->stage_bytes == NULL && (s->stage_bytes = malloc(STAGE_MAX * STAGE_RECORD_MAX)) == NULL) {
        rc = EDDY_ERR_NOMEM;
    }
    int64_t now = now_ms();
    stage_failure_t failed[STAGE_MAX];
    size_t nfailed = 0;
    uint64_t seals_before = p->seal_count;
    size_t col_before = rc == EDDY_OK ? s->col_count : 0;
    int shard = -1;
    if (rc == EDDY_OK && staging) {
        staged_t *st = &s->stage[s->nstaged++];
        *st = (staged_t){done, arg, now, s->stage_len, (uint32_t)data_len, (uint16_t)pk_len};
        memcpy(s->stage_bytes + s->stage_len, partition_key, pk_len);
        if (data_len > 0) {
            memcpy(s->stage_bytes + s->stage_len + pk_len, data, data_len);
        }
        s->stage_len += pk_len + data_len;
        if (s->nstaged == STAGE_MAX) {
            stage_flush(p, s, failed, &nfailed);
        }
    } else if (rc == EDDY_OK) {
        if (s->nstaged > 0) {
            stage_flush(p, s, failed, &nfailed); /* the puts before this one go first */
        }
        if (!hashed) {
            eddy_hash_key(partition_key, pk_len, hash);
        }
        if (u == NULL && !s->map_valid &&
            (u = urec_new(partition_key, pk_len, explicit_hash_key, ehk_len, data, data_len)) == NULL) {
            rc = EDDY_ERR_NOMEM;
        }
        shard = rc == EDDY_OK && s->map_valid && p->cfg.aggregation ? predict(s, hash) : -1;
    }
    if (rc == EDDY_OK && !staging && u == NULL) {
        route_t r = {partition_key, pk_len, explicit_hash_key, data, data_len, now + p->cfg.buffered_ms};
        slot_t slot = {done, arg, now, NULL, 0, (uint32_t)data_len, (uint16_t)pk_len};
        rc = to_aggregate(p, s, shard, &r, &slot);
    } else if (rc == EDDY_OK && !staging) {
        memcpy(u->hash, hash, 16);
        u->done = done;
        u->arg = arg;
        u->arrival_ms = now;
        u->deadline_ms = now + p->cfg.buffered_ms;
        dispatch(p, s, u);
    }
    if (rc != EDDY_OK) {
        pthread_mutex_unlock(&p->lock);
        free(u);
        if (nfailed > 0) {
            fail_staged(p, failed, nfailed);
        }
        return rc;
    }
    p->outstanding++;
    p->outstanding_bytes += bytes;
    p->m.user_records_received++;
    /* wake the thread only when this put made something due before its next wake-up: a Kinesis record
     * that fills a batch, the first record of a limiter queue, a stage's first record due before the
     * thread's wake-up, or a stream that needs its map (waking it on every put would make it walk its
     * queues for nothing) */
    bool wake = !s->map_valid || p->cfg.buffered_ms == 0 ||
                (s->col_count > col_before &&
                 (s->col_count >= p->cfg.collection_max_count || s->col_bytes >= p->cfg.collection_max_bytes ||
                  (shard >= 0 && !s->shards[shard].busy &&
                   batch_big(p, s->shards[shard].col_count, s->shards[shard].col_bytes))));
    wake = limiter_wake(p, s, now) || wake;
    if (!wake && staging && s->nstaged == 1) {
        wake = now + p->cfg.buffered_ms < p->wake_at;
    }
    if (!wake && p->seal_count != seals_before) {
        /* a stage flush sealed aggregates of any of the shards */
        wake = s->col_count >= p->cfg.collection_max_count || s->col_bytes >= p->cfg.collection_max_bytes;
        for (size_t i = 0; !wake && i < s->nshards; i++) {
            const shard_t *sh = &s->shards[i];
            wake = !sh->busy && batch_big(p, sh->col_count, sh->col_bytes);
        }
    }
    if (wake) {
        wake_thread(p);
    }
    pthread_mutex_unlock(&p->lock);
    if (nfailed > 0) {
        fail_staged(p, failed, nfailed);
    }
    return EDDY_OK;
}

/* The unaggregated puts of put_many, under one lock: their hash keys are computed first, outside it, the
 * partition keys' MD5s side by side (md5_multi). Refusals as eddy_producer_put's; once one is refused for
 * lack of room, so are the rest (their order is kept). */
static size_t put_many_alone(eddy_producer_t *p, const char *stream, eddy_producer_record_t *recs, size_t n)
{
    unsigned char (*hash)[16] = malloc((n > 0 ? n : 1) * sizeof *hash);
    if (hash == NULL) {
        for (size_t i = 0; i < n; i++) {
            recs[i].result = EDDY_ERR_NOMEM;
        }
        return 0;
    }
    const unsigned char *keys[STAGE_MAX];
    size_t lens[STAGE_MAX], at[STAGE_MAX], nk = 0;
    for (size_t i = 0; i < n; i++) {
        eddy_producer_record_t *r = &recs[i];
        r->result = check_record(p, r->partition_key, r->pk_len, r->data, r->data_len);
        if (r->result != EDDY_OK) {
            /* refused in place (the keys gathered so far are still hashed below) */
        } else if (r->explicit_hash_key != NULL) {
            if (!eddy_hash_key_parse(r->explicit_hash_key, strlen(r->explicit_hash_key), hash[i])) {
                r->result = EDDY_ERR_INVALID;
            }
        } else {
            keys[nk] = (const unsigned char *)r->partition_key;
            lens[nk] = r->pk_len;
            at[nk++] = i;
        }
        if (nk == STAGE_MAX || (i + 1 == n && nk > 0)) {
            unsigned char out[STAGE_MAX][16];
            md5_multi(keys, lens, nk, out);
            for (size_t k = 0; k < nk; k++) {
                memcpy(hash[at[k]], out[k], 16);
            }
            nk = 0;
        }
    }
    size_t accepted = 0;
    int refused = EDDY_OK; /* once set, the rest are refused with it */
    pthread_mutex_lock(&p->lock);
    stream_t *s = find_stream(p, stream);
    size_t col_before = s != NULL ? s->col_count : 0;
    int64_t now = now_ms();
    for (size_t i = 0; i < n; i++) {
        eddy_producer_record_t *r = &recs[i];
        if (r->result != EDDY_OK) {
            continue;
        }
        size_t bytes = r->pk_len + r->data_len;
        if (refused == EDDY_OK) {
            refused = wait_for_room(p, bytes);
        }
        if (refused == EDDY_OK && s == NULL) {
            refused = EDDY_ERR_NOMEM;
        }
        const char *ehk = r->explicit_hash_key;
        urec_t *u = refused == EDDY_OK ? urec_take(p, r->partition_key, r->pk_len, ehk, ehk != NULL ? strlen(ehk) : 0,
                                                   r->data, r->data_len)
                                       : NULL;
        if (refused == EDDY_OK && u == NULL) {
            refused = EDDY_ERR_NOMEM;
        }
        if (refused != EDDY_OK) {
            r->result = refused;
            continue;
        }
        memcpy(u->hash, hash[i], 16);
        u->done = r->done;
        u->arg = r->arg;
        u->arrival_ms = now;
        u->deadline_ms = now + p->cfg.buffered_ms;
        dispatch(p, s, u);
        p->outstanding++;
        p->outstanding_bytes += bytes;
        p->m.user_records_received++;
        accepted++;
    }
    /* the same wake-up as for single puts: a stream that needs its map, no buffering, a full collector, a
     * limiter queue started that the thread would drain too late */
    if (accepted > 0 && (limiter_wake(p, s, now) || !s->map_valid || p->cfg.buffered_ms == 0 ||
                         (s->col_count > col_before && (s->col_count >= p->cfg.collection_max_count ||
                                                        s->col_bytes >= p->cfg.collection_max_bytes)))) {
        wake_thread(p);
    }
    pthread_mutex_unlock(&p->lock);
    free(hash);
    return accepted;
}

size_t eddy_producer_put_many(eddy_producer_t *p, const char *stream, eddy_producer_record_t *recs, size_t n)
{
    if (p == NULL || stream == NULL || stream[0] == '\0') {
        for (size_t i = 0; recs != NULL && i < n; i++) {
            recs[i].result = EDDY_ERR_INVALID;
        }
        return 0;
    }
    if (!p->cfg.aggregation) {
        return put_many_alone(p, stream, recs, n);
    }
    /* aggregated puts are staged and hashed side by side by put itself */
    size_t accepted = 0;
    int refused = EDDY_OK;
    for (size_t i = 0; i < n; i++) {
        eddy_producer_record_t *r = &recs[i];
        r->result = refused != EDDY_OK ? refused
                                       : eddy_producer_put(p, stream, r->partition_key, r->pk_len,
                                                           r->explicit_hash_key, r->data, r->data_len, r->done, r->arg);
        if (r->result == EDDY_ERR_WOULD_BLOCK || r->result == EDDY_ERR_CLOSED) {
            refused = r->result;
        }
        accepted += r->result == EDDY_OK;
    }
    return accepted;
}

void eddy_producer_set_record_ttl(eddy_producer_t *p, int64_t ttl_ms)
{
    pthread_mutex_lock(&p->lock);
    p->cfg.ttl_ms = ttl_ms < 0 ? 0 : ttl_ms > INT64_MAX / 2 ? INT64_MAX / 2 : ttl_ms;
    wake_thread(p); /* records waiting for a map may have expired */
    pthread_mutex_unlock(&p->lock);
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
    for (urec_t *u = p->spare, *next; u != NULL; u = next) {
        next = u->next;
        free(u);
    }
    for (krec_t *k = p->pool, *next; k != NULL; k = next) {
        next = k->next;
        krec_free(k);
    }
    for (body_t *b = p->bodies, *next; b != NULL; b = next) {
        next = b->next;
        body_free(b);
    }
    free(p->scratch);
    for (stream_t *s = p->streams, *next; s != NULL; s = next) {
        next = s->next;
        for (size_t i = 0; i < s->nshards; i++) {
            if (s->shards[i].open != NULL) {
                krec_free(s->shards[i].open); /* empty: everything was completed */
            }
        }
        free(s->shards);
        free(s->ranges);
        free(s->stage_bytes);
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
