/*
 * consumer: the worker of eddy/consumer.h.
 *
 * Threads (fixed): the coordinator (renews held leases every failover/3, syncs shards into leases, takes and
 * steals leases, reaps finished shards) and `threads` processing threads. A held lease is a shard consumer
 * (shard_t) with a state machine run in steps by whichever processing thread is free:
 *
 *   WAITING_ON_PARENTS -> INITIALIZING -> PROCESSING -> SHARD_END -> (finished)
 *   any state -> lease lost (lease_lost) or shutdown (shutdown_requested, lease released) -> (finished)
 *
 * A shard is stepped by one thread at a time (`running`), so its processor's callbacks are serial. Between
 * steps it waits until `due_ms` (polling pace, parent polls, back-off) or until kicked (a fan-out event or
 * a lost lease). Shards are freed only by the coordinator, once finished and not running, and (fan-out)
 * once their stream's done callback ran.
 *
 * Locks: c->lock guards the shard list and every shard's scheduling flags (running, finished, due_ms,
 * kicked, lost, shutdown) and its fan-out event queue; shard->lease_lock serialises the writes that change
 * the lease counter (renew on the coordinator, checkpoint on a processing thread) and guards counter,
 * renewed_ms and the stored checkpoint. Order: lease_lock before c->lock. No DynamoDB or Kinesis call is
 * made under c->lock.
 */
#include "eddy/consumer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/base64.h"
#include "common/clock.h"
#include "consumer/lease.h"
#include "eddy/agg.h"

#define NAME_MAX_LEN 256
#define SEQ_MAX 130
#define EVENT_QUEUE_MAX 3   /* fan-out events buffered per shard before the stream is paused */
#define TASK_BACKOFF_MS 500 /* taskBackoffTimeMillis */
#define FOREVER INT64_MAX

static const char *const SHARD_END = "SHARD_END";

/* ---- configuration ---- */

struct eddy_consumer_config {
    char application[NAME_MAX_LEN];
    char stream[NAME_MAX_LEN];
    char table[NAME_MAX_LEN];
    char worker_id[NAME_MAX_LEN];
    char initial[16]; /* TRIM_HORIZON | LATEST | AT_TIMESTAMP */
    double initial_timestamp;
    long failover_ms, taker_interval_ms, parent_poll_ms, shard_sync_ms, idle_ms, max_records, max_leases,
        threads;
    char fan_out[NAME_MAX_LEN];
    bool call_empty;
};

eddy_consumer_config_t *eddy_consumer_config_new(void)
{
    eddy_consumer_config_t *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL) {
        return NULL;
    }
    strcpy(cfg->initial, "LATEST");
    cfg->failover_ms = 10000;
    cfg->parent_poll_ms = 10000;
    cfg->shard_sync_ms = 60000;
    cfg->idle_ms = 1000;
    cfg->max_records = 10000;
    cfg->threads = 2;
    return cfg;
}

void eddy_consumer_config_free(eddy_consumer_config_t *cfg)
{
    free(cfg);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
}

static int set_name(char *dst, const char *key, const char *value, bool empty_ok, char *err, size_t errlen)
{
    size_t n = strlen(value);
    if ((n == 0 && !empty_ok) || n >= NAME_MAX_LEN) {
        set_err(err, errlen, "%s: 1 to %d characters", key, NAME_MAX_LEN - 1);
        return EDDY_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)value[i] < 0x20) {
            set_err(err, errlen, "%s must not contain control characters", key);
            return EDDY_ERR_INVALID;
        }
    }
    memcpy(dst, value, n + 1);
    return EDDY_OK;
}

static int set_long(long *dst, const char *key, const char *value, long min, long max, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || v < min || v > max) {
        set_err(err, errlen, "%s: an integer from %ld to %ld", key, min, max);
        return EDDY_ERR_INVALID;
    }
    *dst = v;
    return EDDY_OK;
}

int eddy_consumer_config_set(eddy_consumer_config_t *cfg, const char *key, const char *value, char *err,
                             size_t errlen)
{
    if (cfg == NULL || key == NULL || value == NULL) {
        set_err(err, errlen, "eddy_consumer_config_set: NULL argument");
        return EDDY_ERR_INVALID;
    }
    if (strcmp(key, "application") == 0) {
        return set_name(cfg->application, key, value, false, err, errlen);
    }
    if (strcmp(key, "stream") == 0) {
        return set_name(cfg->stream, key, value, false, err, errlen);
    }
    if (strcmp(key, "lease_table") == 0) {
        return set_name(cfg->table, key, value, true, err, errlen);
    }
    if (strcmp(key, "worker_id") == 0) {
        return set_name(cfg->worker_id, key, value, true, err, errlen);
    }
    if (strcmp(key, "fan_out") == 0) {
        return set_name(cfg->fan_out, key, value, true, err, errlen);
    }
    if (strcmp(key, "initial_position") == 0) {
        if (strcmp(value, "TRIM_HORIZON") != 0 && strcmp(value, "LATEST") != 0 && strcmp(value, "AT_TIMESTAMP") != 0) {
            set_err(err, errlen, "initial_position: TRIM_HORIZON, LATEST or AT_TIMESTAMP");
            return EDDY_ERR_INVALID;
        }
        snprintf(cfg->initial, sizeof cfg->initial, "%s", value);
        return EDDY_OK;
    }
    if (strcmp(key, "initial_timestamp") == 0) {
        char *end;
        double t = strtod(value, &end);
        if (end == value || *end != '\0' || !(t >= 0 && t < 1e11)) {
            set_err(err, errlen, "initial_timestamp: seconds since the epoch");
            return EDDY_ERR_INVALID;
        }
        cfg->initial_timestamp = t;
        return EDDY_OK;
    }
    if (strcmp(key, "call_empty") == 0) {
        if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
            set_err(err, errlen, "call_empty: true or false");
            return EDDY_ERR_INVALID;
        }
        cfg->call_empty = strcmp(value, "true") == 0;
        return EDDY_OK;
    }
    static const struct {
        const char *key;
        size_t offset;
        long min, max;
    } longs[] = {
        {"failover_ms", offsetof(eddy_consumer_config_t, failover_ms), 300, 3600000},
        {"taker_interval_ms", offsetof(eddy_consumer_config_t, taker_interval_ms), 100, 3600000},
        {"parent_poll_ms", offsetof(eddy_consumer_config_t, parent_poll_ms), 50, 3600000},
        {"shard_sync_ms", offsetof(eddy_consumer_config_t, shard_sync_ms), 100, 86400000},
        {"idle_between_reads_ms", offsetof(eddy_consumer_config_t, idle_ms), 200, 3600000},
        {"max_records", offsetof(eddy_consumer_config_t, max_records), 1, 10000},
        {"max_leases", offsetof(eddy_consumer_config_t, max_leases), 1, 1000000},
        {"threads", offsetof(eddy_consumer_config_t, threads), 1, 64},
    };
    for (size_t i = 0; i < sizeof longs / sizeof longs[0]; i++) {
        if (strcmp(key, longs[i].key) == 0) {
            return set_long((long *)(void *)((char *)cfg + longs[i].offset), key, value, longs[i].min, longs[i].max,
                            err, errlen);
        }
    }
    set_err(err, errlen, "unknown consumer configuration key '%s'", key);
    return EDDY_ERR_INVALID;
}

/* ---- the worker's state ---- */

typedef enum shard_state {
    WAITING_ON_PARENTS,
    INITIALIZING,
    PROCESSING,
    AT_SHARD_END,
} shard_state_t;

typedef struct event {
    struct event *next;
    size_t len;
    char json[]; /* NUL-terminated */
} event_t;

typedef struct child {
    char id[LEASE_KEY_MAX];
    char parents[LEASE_PARENTS_MAX][LEASE_KEY_MAX];
    int nparents;
    char start_hash[48], end_hash[48];
} child_t;

typedef struct shard shard_t;

struct shard {
    shard_t *next;
    eddy_consumer_t *c;
    char id[LEASE_KEY_MAX];
    char parents[LEASE_PARENTS_MAX][LEASE_KEY_MAX];
    int nparents;
    unsigned char hash_start[16], hash_end[16];
    bool has_range;
    /* under lease_lock */
    pthread_mutex_t lease_lock;
    int64_t counter;
    int64_t renewed_ms; /* monotonic: last successful conditional write */
    char checkpoint[SEQ_MAX];
    uint64_t checkpoint_sub;
    /* under c->lock */
    bool running, finished, kicked, lost, shutdown;
    int64_t due_ms;
    event_t *events, *events_tail;
    size_t nevents;
    bool stream_live, stream_paused;
    int stream_err;
    char stream_message[256];
    eddy_stream_t *stream;
    /* the stepping thread's */
    shard_state_t state;
    void *user;
    bool initialized;
    char *iterator;
    char last_seq[SEQ_MAX]; /* the last user record delivered (or the checkpoint before any) */
    uint64_t last_sub;
    char skip_seq[SEQ_MAX]; /* resuming: records up to (skip_seq, skip_sub) were processed already */
    uint64_t skip_sub;
    char continuation[SEQ_MAX]; /* fan-out: where a new subscription goes on */
    bool resubscribe_now;       /* fan-out: the pause after a failed subscription is over */
    child_t *children;
    size_t nchildren;
    bool shard_end_warned;
    int64_t backoff_ms;
};

typedef struct seen {
    char key[LEASE_KEY_MAX];
    char owner[LEASE_OWNER_MAX];
    int64_t counter;
    int64_t changed_ms; /* local time the counter was last seen to change; 0: never (unowned when first seen) */
    bool present;
} seen_t;

struct eddy_consumer {
    eddy_client_t *kinesis, *ddb;
    eddy_consumer_config_t cfg;
    const eddy_processor_ops_t *ops;
    void *app;
    char stream_arn[2048];
    char consumer_arn[2048];
    eddy_log_fn log;
    void *log_arg;

    pthread_mutex_t lock;
    pthread_cond_t work;  /* processing threads wait here */
    pthread_cond_t coord; /* the coordinator waits here */
    shard_t *shards;
    bool stopping, graceful, exit_threads;
    bool take_soon; /* a shard ended: its children may be taken now */
    bool started, joined;
    pthread_t coordinator;
    pthread_t *threads;
    long nthreads;

    /* the coordinator's */
    seen_t *seen;
    size_t nseen, seen_cap;
    uint64_t rng;
};

struct eddy_checkpointer {
    shard_t *s;
    bool at_shard_end;
    bool valid;
};

static void logf_(eddy_consumer_t *c, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void logf_(eddy_consumer_t *c, int level, const char *fmt, ...)
{
    if (c->log == NULL) {
        return;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->log(c->log_arg, level, msg);
}

static void log_stderr(void *arg, int level, const char *message)
{
    eddy_consumer_t *c = arg;
    static const char *const names[] = {"error", "warning", "info"};
    fprintf(stderr, "eddy consumer %s: %s: %s\n", c->cfg.worker_id, names[level < 0 ? 0 : level > 2 ? 2 : level],
            message);
}

static int64_t now_ms(void)
{
    return clock_monotonic_ms();
}

/* Waits on cond (a CLOCK_MONOTONIC condition) for at most wait_ms; lock held. */
static void timed_wait(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t wait_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += wait_ms / 1000;
    ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cond, lock, &ts);
}

/* Sequence numbers are decimal integers without leading zeros: shorter is smaller. */
static int seq_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb) {
        return la < lb ? -1 : 1;
    }
    return strcmp(a, b);
}

static bool is_number(const char *s)
{
    return s[0] >= '0' && s[0] <= '9';
}

static int pos_cmp(const char *sa, uint64_t ua, const char *sb, uint64_t ub)
{
    int c = seq_cmp(sa, sb);
    return c != 0 ? c : ua < ub ? -1 : ua > ub ? 1 : 0;
}

static void copy(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s != NULL ? s : "");
}

/* ---- Kinesis calls ---- */

/* Calls a Kinesis operation with the JSON j (freed); *out the parsed reply. Returns 0 or an eddy_err_t;
 * type: the AWS error type on EDDY_ERR_SERVICE. */
static int kcall(eddy_consumer_t *c, const char *op, cJSON *j, cJSON **out, char *type, size_t type_len, char *err,
                 size_t errlen)
{
    *out = NULL;
    if (type != NULL) {
        type[0] = '\0';
    }
    char *body = j != NULL ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (body == NULL) {
        set_err(err, errlen, "%s: out of memory", op);
        return EDDY_ERR_NOMEM;
    }
    eddy_response_t *r = NULL;
    int rc = eddy_client_call(c->kinesis, op, body, strlen(body), &r);
    free(body);
    if (rc == EDDY_OK) {
        *out = cJSON_ParseWithLength(r->body, r->body_len);
        if (*out == NULL) {
            rc = EDDY_ERR_PROTOCOL;
            set_err(err, errlen, "%s: the reply is not JSON", op);
        }
    } else {
        if (type != NULL) {
            copy(type, type_len, r->error_type);
        }
        set_err(err, errlen, "%s: %s%s%s", op, r->error_type[0] ? r->error_type : eddy_err_name(rc),
                r->message[0] ? ": " : "", r->message);
    }
    eddy_response_free(r);
    return rc;
}

/* A JSON number (from the network) as an integer, times scale; dflt when absent or out of range (a cast
 * of an out-of-range double is undefined). */
static int64_t jint(const cJSON *v, double scale, int64_t dflt)
{
    if (!cJSON_IsNumber(v)) {
        return dflt;
    }
    double d = v->valuedouble * scale;
    return d >= -9.0e18 && d <= 9.0e18 ? (int64_t)d : dflt;
}

static const char *jstr(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- the checkpointer ---- */

/* Stores (seq, sub) as the shard's checkpoint with a conditional write. @thread the shard's */
static int store_checkpoint(shard_t *s, const char *seq, uint64_t sub, bool with_children)
{
    eddy_consumer_t *c = s->c;
    char err[512];
    pthread_mutex_lock(&s->lease_lock);
    pthread_mutex_lock(&c->lock);
    bool lost = s->lost;
    pthread_mutex_unlock(&c->lock);
    if (lost || now_ms() - s->renewed_ms > c->cfg.failover_ms) {
        pthread_mutex_unlock(&s->lease_lock);
        logf_(c, 1, "checkpoint of %s refused: this worker no longer holds its lease", s->id);
        return EDDY_ERR_LEASE_LOST;
    }
    const char *children[16];
    size_t n = 0;
    for (size_t i = 0; with_children && i < s->nchildren && n < 16; i++) {
        children[n++] = s->children[i].id;
    }
    int rc = lease_checkpoint(c->ddb, c->cfg.table, s->id, c->cfg.worker_id, s->counter, seq, sub, children, n, err,
                              sizeof err);
    if (rc == EDDY_OK) {
        s->counter++;
        s->renewed_ms = now_ms();
        copy(s->checkpoint, sizeof s->checkpoint, seq);
        s->checkpoint_sub = sub;
    }
    pthread_mutex_unlock(&s->lease_lock);
    if (rc == LEASE_CONFLICT) {
        pthread_mutex_lock(&c->lock);
        s->lost = true;
        pthread_mutex_unlock(&c->lock);
        logf_(c, 1, "checkpoint of %s refused: another worker took the lease", s->id);
        return EDDY_ERR_LEASE_LOST;
    }
    if (rc != EDDY_OK) {
        logf_(c, 1, "checkpoint of %s failed: %s", s->id, err);
    }
    return rc;
}

int eddy_checkpoint(eddy_checkpointer_t *cp)
{
    if (cp == NULL) {
        return EDDY_ERR_INVALID;
    }
    if (!cp->valid) {
        return EDDY_ERR_SHUTDOWN;
    }
    shard_t *s = cp->s;
    if (cp->at_shard_end) {
        return store_checkpoint(s, SHARD_END, 0, true);
    }
    if (!is_number(s->last_seq)) {
        return EDDY_OK; /* nothing delivered yet: the checkpoint stands */
    }
    return store_checkpoint(s, s->last_seq, s->last_sub, false);
}

int eddy_checkpoint_at(eddy_checkpointer_t *cp, const char *sequence_number, uint64_t sub_sequence_number)
{
    if (cp == NULL || sequence_number == NULL) {
        return EDDY_ERR_INVALID;
    }
    if (!cp->valid) {
        return EDDY_ERR_SHUTDOWN;
    }
    shard_t *s = cp->s;
    size_t n = strlen(sequence_number);
    if (n == 0 || n >= SEQ_MAX || strspn(sequence_number, "0123456789") != n ||
        (sequence_number[0] == '0' && n > 1)) {
        return EDDY_ERR_INVALID;
    }
    if (is_number(s->checkpoint) &&
        pos_cmp(sequence_number, sub_sequence_number, s->checkpoint, s->checkpoint_sub) < 0) {
        return EDDY_ERR_INVALID; /* before the last checkpoint */
    }
    if (!is_number(s->last_seq) || pos_cmp(sequence_number, sub_sequence_number, s->last_seq, s->last_sub) > 0) {
        return EDDY_ERR_INVALID; /* after the last record delivered */
    }
    return store_checkpoint(s, sequence_number, sub_sequence_number, false);
}

/* ---- delivering records ---- */

typedef struct batch {
    shard_t *s;
    eddy_record_t *recs;
    size_t n, cap;
    /* the Kinesis record being decoded */
    const char *seq;
    int64_t arrival_ms;
    char *strings; /* partition keys and explicit hash keys, NUL-terminated, for the batch */
    size_t slen, scap;
    size_t *pk_off, *ehk_off, *data_off; /* offsets into strings (SIZE_MAX - 1: none); user record views
                                          * last only during their visit, so everything is copied */
    int err;
} batch_t;

static size_t add_string(batch_t *b, const char *p, size_t n)
{
    if (b->slen + n + 1 > b->scap) {
        size_t cap = b->scap ? b->scap : 4096;
        while (cap < b->slen + n + 1) {
            cap *= 2;
        }
        char *bigger = realloc(b->strings, cap);
        if (bigger == NULL) {
            b->err = EDDY_ERR_NOMEM;
            return SIZE_MAX;
        }
        b->strings = bigger;
        b->scap = cap;
    }
    size_t off = b->slen;
    memcpy(b->strings + off, p, n);
    b->strings[off + n] = '\0';
    b->slen += n + 1;
    return off;
}

static int visit_user_record(void *arg, const eddy_user_record_t *u)
{
    batch_t *b = arg;
    shard_t *s = b->s;
    if (s->skip_seq[0] != '\0') {
        int c = pos_cmp(b->seq, u->sub_sequence_number, s->skip_seq, s->skip_sub);
        if (c <= 0) {
            return 0; /* processed before the checkpoint this run resumed from */
        }
        s->skip_seq[0] = '\0';
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        eddy_record_t *r = realloc(b->recs, cap * sizeof *r);
        size_t *pk = realloc(b->pk_off, cap * sizeof *pk);
        if (pk != NULL) {
            b->pk_off = pk;
        }
        size_t *ehk = realloc(b->ehk_off, cap * sizeof *ehk);
        if (ehk != NULL) {
            b->ehk_off = ehk;
        }
        size_t *data = realloc(b->data_off, cap * sizeof *data);
        if (data != NULL) {
            b->data_off = data;
        }
        if (r != NULL) {
            b->recs = r;
        }
        if (r == NULL || pk == NULL || ehk == NULL || data == NULL) {
            b->err = EDDY_ERR_NOMEM;
            return -1;
        }
        b->cap = cap;
    }
    eddy_record_t *r = &b->recs[b->n];
    r->data_len = u->data_len;
    r->data = u->data;
    /* a plain record's data is a view into the decoded blob, which lives until the batch is delivered; an
     * aggregate's user records are views into its unpacked form, which does not: copied */
    b->data_off[b->n] = u->aggregated ? add_string(b, (const char *)u->data, u->data_len) : SIZE_MAX - 1;
    r->sequence_number = b->seq;
    r->sub_sequence_number = u->sub_sequence_number;
    r->aggregated = u->aggregated;
    r->approximate_arrival_ms = b->arrival_ms;
    b->pk_off[b->n] = add_string(b, u->partition_key, u->partition_key_len);
    b->ehk_off[b->n] = u->explicit_hash_key != NULL
                           ? add_string(b, u->explicit_hash_key, u->explicit_hash_key_len)
                           : SIZE_MAX - 1;
    if (b->err != 0) {
        return -1;
    }
    b->n++;
    return 0;
}

/* De-aggregates the Kinesis records (a JSON array as GetRecords and SubscribeToShardEvent give them) and
 * hands the user records to the processor. Returns 0 or EDDY_ERR_NOMEM. @thread the shard's */
static int deliver(shard_t *s, const cJSON *records, int64_t millis_behind)
{
    eddy_consumer_t *c = s->c;
    batch_t b = {.s = s};
    int nrec = cJSON_GetArraySize(records);
    unsigned char **blobs = nrec > 0 ? calloc((size_t)nrec, sizeof *blobs) : NULL;
    if (nrec > 0 && blobs == NULL) {
        return EDDY_ERR_NOMEM;
    }
    int i = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, records)
    {
        const char *data = jstr(r, "Data"), *pk = jstr(r, "PartitionKey"), *seq = jstr(r, "SequenceNumber");
        const char *ehk = jstr(r, "ExplicitHashKey");
        if (data == NULL || pk == NULL || seq == NULL || strlen(seq) >= SEQ_MAX) {
            logf_(c, 1, "%s: a record without Data, PartitionKey or SequenceNumber is skipped", s->id);
            i++;
            continue;
        }
        size_t dlen = strlen(data);
        blobs[i] = malloc(dlen / 4 * 3 + 3);
        if (blobs[i] == NULL) {
            b.err = EDDY_ERR_NOMEM;
            break;
        }
        long n = base64_decode(data, dlen, blobs[i]);
        if (n < 0) {
            logf_(c, 1, "%s: record %s has invalid base64 data; skipped", s->id, seq);
            i++;
            continue;
        }
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(r, "ApproximateArrivalTimestamp");
        b.seq = seq;
        b.arrival_ms = jint(ts, 1000.0, 0);
        int rc = eddy_agg_decode(blobs[i], (size_t)n, pk, strlen(pk), ehk, s->has_range ? s->hash_start : NULL,
                                 s->has_range ? s->hash_end : NULL, visit_user_record, &b);
        if (rc < 0 && b.err == 0) {
            b.err = rc;
        }
        if (b.err != 0) {
            break;
        }
        i++;
    }
    int rc = b.err;
    if (rc == 0) {
        for (size_t k = 0; k < b.n; k++) {
            b.recs[k].partition_key = b.strings + b.pk_off[k];
            b.recs[k].explicit_hash_key = b.ehk_off[k] == SIZE_MAX - 1 ? NULL : b.strings + b.ehk_off[k];
            if (b.data_off[k] != SIZE_MAX - 1) {
                b.recs[k].data = (const unsigned char *)b.strings + b.data_off[k];
            }
        }
        if (b.n > 0) {
            copy(s->last_seq, sizeof s->last_seq, b.recs[b.n - 1].sequence_number);
            s->last_sub = b.recs[b.n - 1].sub_sequence_number;
        }
        if (b.n > 0 || c->cfg.call_empty) {
            eddy_records_input_t in = {
                .records = b.recs, .count = b.n, .millis_behind_latest = millis_behind, .shard_id = s->id};
            eddy_checkpointer_t cp = {.s = s, .at_shard_end = false, .valid = true};
            c->ops->process_records(s->user, &in, &cp);
            cp.valid = false;
        }
    }
    for (int k = 0; k < nrec; k++) {
        free(blobs[k]);
    }
    free(blobs);
    free(b.recs);
    free(b.pk_off);
    free(b.ehk_off);
    free(b.data_off);
    free(b.strings);
    return rc;
}

/* Remembers the child shards of a SHARD_END reply ("ChildShards": [{ShardId, ParentShards, HashKeyRange}]). */
static void note_children(shard_t *s, const cJSON *children)
{
    int n = cJSON_GetArraySize(children);
    if (n <= 0) {
        return;
    }
    child_t *a = calloc((size_t)n, sizeof *a);
    if (a == NULL) {
        return;
    }
    size_t k = 0;
    const cJSON *ch;
    cJSON_ArrayForEach(ch, children)
    {
        const char *id = jstr(ch, "ShardId");
        if (id == NULL || strlen(id) >= LEASE_KEY_MAX) {
            continue;
        }
        child_t *x = &a[k++];
        copy(x->id, sizeof x->id, id);
        const cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(ch, "ParentShards"))
        {
            if (cJSON_IsString(p) && x->nparents < LEASE_PARENTS_MAX && strlen(p->valuestring) < LEASE_KEY_MAX) {
                copy(x->parents[x->nparents++], LEASE_KEY_MAX, p->valuestring);
            }
        }
        const cJSON *range = cJSON_GetObjectItemCaseSensitive(ch, "HashKeyRange");
        copy(x->start_hash, sizeof x->start_hash, jstr(range, "StartingHashKey"));
        copy(x->end_hash, sizeof x->end_hash, jstr(range, "EndingHashKey"));
    }
    free(s->children);
    s->children = a;
    s->nchildren = k;
}

/* ---- retrieval: polling ---- */

static cJSON *starting_position(shard_t *s, bool after, const char *seq)
{
    eddy_consumer_t *c = s->c;
    cJSON *p = cJSON_CreateObject();
    if (seq != NULL && is_number(seq)) {
        cJSON_AddStringToObject(p, "Type", after ? "AFTER_SEQUENCE_NUMBER" : "AT_SEQUENCE_NUMBER");
        cJSON_AddStringToObject(p, "SequenceNumber", seq);
    } else if (seq != NULL && strcmp(seq, "AT_TIMESTAMP") == 0) {
        cJSON_AddStringToObject(p, "Type", "AT_TIMESTAMP");
        cJSON_AddNumberToObject(p, "Timestamp", c->cfg.initial_timestamp);
    } else {
        cJSON_AddStringToObject(p, "Type", seq != NULL && strcmp(seq, "LATEST") == 0 ? "LATEST" : "TRIM_HORIZON");
    }
    return p;
}

/* A fresh iterator at the shard's resume point: the last record delivered (records up to it skipped), or
 * the checkpoint's sentinel. */
static int get_iterator(shard_t *s, char *err, size_t errlen)
{
    eddy_consumer_t *c = s->c;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "StreamName", c->cfg.stream);
    cJSON_AddStringToObject(j, "ShardId", s->id);
    cJSON *pos = starting_position(s, false, s->last_seq);
    cJSON_AddItemReferenceToObject(j, "ShardIteratorType", cJSON_GetObjectItemCaseSensitive(pos, "Type"));
    if (cJSON_GetObjectItemCaseSensitive(pos, "SequenceNumber") != NULL) {
        cJSON_AddItemReferenceToObject(j, "StartingSequenceNumber", cJSON_GetObjectItemCaseSensitive(pos, "SequenceNumber"));
    }
    if (cJSON_GetObjectItemCaseSensitive(pos, "Timestamp") != NULL) {
        cJSON_AddItemReferenceToObject(j, "Timestamp", cJSON_GetObjectItemCaseSensitive(pos, "Timestamp"));
    }
    if (is_number(s->last_seq)) {
        copy(s->skip_seq, sizeof s->skip_seq, s->last_seq);
        s->skip_sub = s->last_sub;
    }
    cJSON *reply = NULL;
    int rc = kcall(c, "GetShardIterator", j, &reply, NULL, 0, err, errlen);
    cJSON_Delete(pos);
    if (rc == EDDY_OK) {
        const char *it = jstr(reply, "ShardIterator");
        free(s->iterator);
        s->iterator = it != NULL ? strdup(it) : NULL;
        if (s->iterator == NULL) {
            rc = it == NULL ? EDDY_ERR_PROTOCOL : EDDY_ERR_NOMEM;
            set_err(err, errlen, "GetShardIterator: no iterator");
        }
    }
    cJSON_Delete(reply);
    return rc;
}

/* One GetRecords round. Returns the delay before the next step. */
static int64_t poll_step(shard_t *s)
{
    eddy_consumer_t *c = s->c;
    char err[512], type[128];
    if (s->iterator == NULL && get_iterator(s, err, sizeof err) != EDDY_OK) {
        logf_(c, 1, "%s: %s", s->id, err);
        return 1000;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "ShardIterator", s->iterator);
    cJSON_AddNumberToObject(j, "Limit", (double)c->cfg.max_records);
    cJSON *reply = NULL;
    int rc = kcall(c, "GetRecords", j, &reply, type, sizeof type, err, sizeof err);
    if (rc != EDDY_OK) {
        if (strcmp(type, "ExpiredIteratorException") == 0) {
            free(s->iterator);
            s->iterator = NULL;
            return 0;
        }
        logf_(c, strcmp(type, "ProvisionedThroughputExceededException") == 0 ? 2 : 1, "%s: %s", s->id, err);
        return 1000;
    }
    const cJSON *records = cJSON_GetObjectItemCaseSensitive(reply, "Records");
    const cJSON *behind = cJSON_GetObjectItemCaseSensitive(reply, "MillisBehindLatest");
    int64_t millis = jint(behind, 1.0, -1);
    if (deliver(s, records, millis) != EDDY_OK) {
        cJSON_Delete(reply);
        logf_(c, 0, "%s: out of memory delivering records; retrying", s->id);
        return 1000;
    }
    const char *next = jstr(reply, "NextShardIterator");
    free(s->iterator);
    s->iterator = next != NULL ? strdup(next) : NULL;
    int64_t delay = cJSON_GetArraySize(records) > 0 && millis > 0 ? 200 : c->cfg.idle_ms;
    if (next == NULL) {
        note_children(s, cJSON_GetObjectItemCaseSensitive(reply, "ChildShards"));
        s->state = AT_SHARD_END;
        delay = 0;
    }
    cJSON_Delete(reply);
    return delay;
}

/* ---- retrieval: enhanced fan-out ---- */

static int on_stream_event(void *arg, const char *event_type, const char *payload, size_t len)
{
    shard_t *s = arg;
    if (strcmp(event_type, "SubscribeToShardEvent") != 0) {
        return 0; /* initial-response */
    }
    event_t *e = malloc(sizeof *e + len + 1);
    eddy_consumer_t *c = s->c;
    pthread_mutex_lock(&c->lock);
    if (e != NULL) {
        memcpy(e->json, payload, len);
        e->json[len] = '\0';
        e->len = len;
        e->next = NULL;
        if (s->events_tail != NULL) {
            s->events_tail->next = e;
        } else {
            s->events = e;
        }
        s->events_tail = e;
        s->nevents++;
    } else {
        s->stream_err = EDDY_ERR_NOMEM; /* the stream is cancelled below; it resumes from the continuation */
    }
    s->kicked = true;
    bool pause = s->nevents >= EVENT_QUEUE_MAX || e == NULL;
    if (pause) {
        s->stream_paused = true;
    }
    pthread_cond_broadcast(&c->work);
    pthread_mutex_unlock(&c->lock);
    if (e == NULL) {
        eddy_stream_cancel(s->stream);
    }
    return pause ? 1 : 0;
}

static void on_stream_done(void *arg, const eddy_response_t *resp)
{
    shard_t *s = arg;
    eddy_consumer_t *c = s->c;
    pthread_mutex_lock(&c->lock);
    s->stream_live = false;
    if (s->stream_err == 0) {
        s->stream_err = resp->err;
    }
    snprintf(s->stream_message, sizeof s->stream_message, "%s%s%s", resp->error_type, resp->error_type[0] ? ": " : "",
             resp->message);
    s->kicked = true;
    pthread_cond_broadcast(&c->work);
    pthread_cond_broadcast(&c->coord);
    pthread_mutex_unlock(&c->lock);
}

static int subscribe(shard_t *s)
{
    eddy_consumer_t *c = s->c;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "ConsumerARN", c->consumer_arn);
    cJSON_AddStringToObject(j, "ShardId", s->id);
    if (s->continuation[0] != '\0') {
        cJSON_AddItemToObject(j, "StartingPosition", starting_position(s, true, s->continuation));
    } else {
        if (is_number(s->last_seq)) {
            copy(s->skip_seq, sizeof s->skip_seq, s->last_seq);
            s->skip_sub = s->last_sub;
        }
        cJSON_AddItemToObject(j, "StartingPosition", starting_position(s, false, s->last_seq));
    }
    char *body = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (body == NULL) {
        return EDDY_ERR_NOMEM;
    }
    eddy_stream_free(s->stream); /* the last one has ended (its done ran) */
    s->stream = NULL;
    pthread_mutex_lock(&c->lock);
    s->stream_live = true;
    s->stream_err = 0;
    s->stream_message[0] = '\0';
    pthread_mutex_unlock(&c->lock);
    eddy_stream_t *st = NULL;
    /* the handle is stored before any event can use it: events need s->stream only to cancel */
    int rc = eddy_client_stream_async(c->kinesis, "SubscribeToShard", body, strlen(body), on_stream_event,
                                      on_stream_done, s, &st);
    free(body);
    pthread_mutex_lock(&c->lock);
    if (rc != EDDY_OK) {
        s->stream_live = false;
    } else {
        s->stream = st;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* One fan-out step: deliver one queued event, or (re)subscribe when the stream ended. */
static int64_t fan_out_step(shard_t *s)
{
    eddy_consumer_t *c = s->c;
    pthread_mutex_lock(&c->lock);
    event_t *e = s->events;
    if (e != NULL) {
        s->events = e->next;
        if (s->events == NULL) {
            s->events_tail = NULL;
        }
        s->nevents--;
    }
    bool resume = s->stream_paused && s->nevents < EVENT_QUEUE_MAX - 1 && s->stream_live;
    if (resume) {
        s->stream_paused = false;
    }
    bool live = s->stream_live;
    int stream_err = s->stream_err;
    char message[256];
    copy(message, sizeof message, s->stream_message);
    pthread_mutex_unlock(&c->lock);
    if (resume) {
        eddy_stream_resume(s->stream);
    }
    if (e != NULL) {
        cJSON *ev = cJSON_ParseWithLength(e->json, e->len);
        free(e);
        if (ev == NULL) {
            logf_(c, 1, "%s: an event that is not JSON; resubscribing", s->id);
            eddy_stream_cancel(s->stream);
            return 0;
        }
        const cJSON *behind = cJSON_GetObjectItemCaseSensitive(ev, "MillisBehindLatest");
        int rc = deliver(s, cJSON_GetObjectItemCaseSensitive(ev, "Records"),
                         jint(behind, 1.0, -1));
        if (rc != EDDY_OK) {
            logf_(c, 0, "%s: out of memory delivering records; resubscribing", s->id);
            s->continuation[0] = '\0'; /* from the last record delivered */
            eddy_stream_cancel(s->stream);
            cJSON_Delete(ev);
            return 1000;
        }
        const char *cont = jstr(ev, "ContinuationSequenceNumber");
        if (cont != NULL && strlen(cont) < SEQ_MAX) {
            copy(s->continuation, sizeof s->continuation, cont);
        } else if (cont == NULL) {
            /* the shard is closed and everything was delivered */
            note_children(s, cJSON_GetObjectItemCaseSensitive(ev, "ChildShards"));
            s->state = AT_SHARD_END;
            eddy_stream_cancel(s->stream);
        }
        cJSON_Delete(ev);
        return 0;
    }
    if (live) {
        return FOREVER; /* kicked by the next event or by the end */
    }
    if (s->stream != NULL && stream_err != EDDY_OK && !s->resubscribe_now) {
        /* a failed subscription (throttled, in use, the network) is tried again after a pause */
        logf_(c, stream_err == EDDY_ERR_SERVICE ? 2 : 1, "%s: subscription ended: %s", s->id, message);
        s->resubscribe_now = true;
        return TASK_BACKOFF_MS * 2;
    }
    s->resubscribe_now = false;
    if (subscribe(s) != EDDY_OK) {
        return 1000;
    }
    return FOREVER;
}

/* ---- the shard's steps ---- */

static void finish(shard_t *s)
{
    eddy_consumer_t *c = s->c;
    pthread_mutex_lock(&c->lock);
    s->finished = true;
    pthread_cond_broadcast(&c->coord);
    pthread_mutex_unlock(&c->lock);
    if (s->stream != NULL) {
        eddy_stream_cancel(s->stream);
    }
}

static int64_t check_parents(shard_t *s)
{
    eddy_consumer_t *c = s->c;
    for (int i = 0; i < s->nparents; i++) {
        lease_t p;
        char err[512];
        int rc = lease_get(c->ddb, c->cfg.table, s->parents[i], &p, err, sizeof err);
        if (rc < 0) {
            logf_(c, 1, "%s: cannot read the lease of parent %s: %s", s->id, s->parents[i], err);
            return TASK_BACKOFF_MS;
        }
        if (rc == EDDY_OK && strcmp(p.checkpoint, SHARD_END) != 0) {
            return c->cfg.parent_poll_ms; /* the parent is not done */
        }
    }
    s->state = INITIALIZING;
    return 0;
}

static int64_t initialize(shard_t *s)
{
    eddy_consumer_t *c = s->c;
    pthread_mutex_lock(&s->lease_lock);
    char cp[SEQ_MAX];
    copy(cp, sizeof cp, s->checkpoint);
    uint64_t sub = s->checkpoint_sub;
    pthread_mutex_unlock(&s->lease_lock);
    copy(s->last_seq, sizeof s->last_seq, cp);
    s->last_sub = sub;
    if (c->consumer_arn[0] == '\0' && strcmp(cp, SHARD_END) != 0) {
        /* polling: the iterator first, so that LATEST means "after initialize", as the KCL's InitializeTask */
        char err[512];
        if (get_iterator(s, err, sizeof err) != EDDY_OK) {
            logf_(c, 1, "%s: %s", s->id, err);
            return 1000;
        }
    }
    s->user = c->ops->initialize(c->app, s->id, cp, sub);
    s->initialized = true;
    if (strcmp(cp, SHARD_END) == 0) {
        s->state = AT_SHARD_END; /* finished before: only the children are left to create */
        return 0;
    }
    s->state = PROCESSING;
    return 0;
}

/* Creates the leases of the children (merge children: once per parent, the second finds it there). */
static int create_children(shard_t *s)
{
    eddy_consumer_t *c = s->c;
    for (size_t i = 0; i < s->nchildren; i++) {
        lease_t l;
        memset(&l, 0, sizeof l);
        copy(l.key, sizeof l.key, s->children[i].id);
        copy(l.checkpoint, sizeof l.checkpoint, "TRIM_HORIZON");
        for (int k = 0; k < s->children[i].nparents; k++) {
            copy(l.parents[l.nparents++], LEASE_KEY_MAX, s->children[i].parents[k]);
        }
        copy(l.start_hash, sizeof l.start_hash, s->children[i].start_hash);
        copy(l.end_hash, sizeof l.end_hash, s->children[i].end_hash);
        char err[512];
        int rc = lease_create(c->ddb, c->cfg.table, &l, err, sizeof err);
        if (rc < 0) {
            logf_(c, 1, "%s: cannot create the lease of child %s: %s", s->id, l.key, err);
            return rc;
        }
    }
    return EDDY_OK;
}

static int64_t shard_end_step(shard_t *s)
{
    eddy_consumer_t *c = s->c;
    if (create_children(s) != EDDY_OK) {
        return TASK_BACKOFF_MS;
    }
    pthread_mutex_lock(&s->lease_lock);
    bool done = strcmp(s->checkpoint, SHARD_END) == 0;
    pthread_mutex_unlock(&s->lease_lock);
    if (!done) {
        eddy_checkpointer_t cp = {.s = s, .at_shard_end = true, .valid = true};
        c->ops->shard_ended(s->user, &cp);
        cp.valid = false;
        pthread_mutex_lock(&s->lease_lock);
        done = strcmp(s->checkpoint, SHARD_END) == 0;
        pthread_mutex_unlock(&s->lease_lock);
    }
    if (!done) {
        pthread_mutex_lock(&c->lock);
        bool lost = s->lost;
        pthread_mutex_unlock(&c->lock);
        if (lost) {
            return 0; /* the step sees it and ends the shard */
        }
        logf_(c, 0,
              "the processor of %s did not checkpoint at the end of the shard: its children cannot start until "
              "shard_ended calls eddy_checkpoint (calling it again in %d ms)",
              s->id, TASK_BACKOFF_MS);
        return TASK_BACKOFF_MS;
    }
    logf_(c, 2, "%s reached SHARD_END; children: %zu", s->id, s->nchildren);
    pthread_mutex_lock(&c->lock);
    c->take_soon = true;
    pthread_cond_broadcast(&c->coord);
    pthread_mutex_unlock(&c->lock);
    finish(s);
    return FOREVER;
}

/* Releases the lease for another worker (graceful shutdown). */
static void release(shard_t *s)
{
    eddy_consumer_t *c = s->c;
    char err[512];
    pthread_mutex_lock(&s->lease_lock);
    int rc = lease_release(c->ddb, c->cfg.table, s->id, c->cfg.worker_id, s->counter, err, sizeof err);
    pthread_mutex_unlock(&s->lease_lock);
    if (rc < 0) {
        logf_(c, 1, "%s: the lease could not be released (it will expire): %s", s->id, err);
    }
}

/* One step of shard s. Returns the delay before its next step. @thread processing */
static int64_t step(shard_t *s)
{
    eddy_consumer_t *c = s->c;
    pthread_mutex_lock(&c->lock);
    bool lost = s->lost, shutdown = s->shutdown;
    pthread_mutex_unlock(&c->lock);
    if (lost) {
        if (s->initialized) {
            c->ops->lease_lost(s->user);
        }
        logf_(c, 2, "%s: lease lost", s->id);
        finish(s);
        return FOREVER;
    }
    if (shutdown) {
        if (s->initialized && s->state != AT_SHARD_END) {
            eddy_checkpointer_t cp = {.s = s, .at_shard_end = false, .valid = true};
            c->ops->shutdown_requested(s->user, &cp);
            cp.valid = false;
        } else if (s->initialized) {
            c->ops->lease_lost(s->user); /* shut down before its shard_ended checkpoint */
        }
        release(s);
        finish(s);
        return FOREVER;
    }
    switch (s->state) {
    case WAITING_ON_PARENTS:
        return check_parents(s);
    case INITIALIZING:
        return initialize(s);
    case PROCESSING:
        return c->consumer_arn[0] != '\0' ? fan_out_step(s) : poll_step(s);
    case AT_SHARD_END:
        return shard_end_step(s);
    }
    return FOREVER;
}

static void *processing_main(void *arg)
{
    eddy_consumer_t *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->exit_threads) {
        int64_t now = now_ms(), next = FOREVER;
        shard_t *pick = NULL;
        for (shard_t *s = c->shards; s != NULL; s = s->next) {
            if (s->running || s->finished) {
                continue;
            }
            int64_t due = s->kicked ? now : s->due_ms;
            if (due <= now && (pick == NULL || due < pick->due_ms)) {
                pick = s;
            } else if (due < next) {
                next = due;
            }
        }
        if (pick == NULL) {
            int64_t wait = next == FOREVER ? 1000 : next - now;
            timed_wait(&c->work, &c->lock, wait > 1000 ? 1000 : wait);
            continue;
        }
        pick->running = true;
        pick->kicked = false;
        pthread_mutex_unlock(&c->lock);
        int64_t delay = step(pick);
        pthread_mutex_lock(&c->lock);
        pick->running = false;
        now = now_ms();
        pick->due_ms = pick->kicked ? now : delay == FOREVER ? FOREVER : now + delay;
        if (pick->finished) {
            pthread_cond_broadcast(&c->coord);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- the coordinator ---- */

static void free_shard(shard_t *s)
{
    eddy_stream_free(s->stream);
    while (s->events != NULL) {
        event_t *e = s->events;
        s->events = e->next;
        free(e);
    }
    free(s->iterator);
    free(s->children);
    pthread_mutex_destroy(&s->lease_lock);
    free(s);
}

/* Frees finished shards (not running, stream ended). @thread coordinator, under c->lock */
static void reap(eddy_consumer_t *c)
{
    for (shard_t **p = &c->shards; *p != NULL;) {
        shard_t *s = *p;
        if (s->finished && !s->running && !s->stream_live) {
            *p = s->next;
            free_shard(s);
        } else {
            p = &s->next;
        }
    }
}

static shard_t *find_shard(eddy_consumer_t *c, const char *id)
{
    for (shard_t *s = c->shards; s != NULL; s = s->next) {
        if (!s->finished && strcmp(s->id, id) == 0) {
            return s;
        }
    }
    return NULL;
}

static void renew_all(eddy_consumer_t *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = 0;
    for (shard_t *s = c->shards; s != NULL; s = s->next) {
        n++;
    }
    shard_t **list = n > 0 ? malloc(n * sizeof *list) : NULL;
    n = 0;
    for (shard_t *s = c->shards; list != NULL && s != NULL; s = s->next) {
        if (!s->finished && !s->lost) {
            list[n++] = s;
        }
    }
    pthread_mutex_unlock(&c->lock);
    /* shards are freed only by this thread, so the pointers stay valid */
    for (size_t i = 0; i < n; i++) {
        shard_t *s = list[i];
        char err[512];
        pthread_mutex_lock(&s->lease_lock);
        int rc = EDDY_ERR_TIMEOUT;
        if (now_ms() - s->renewed_ms <= c->cfg.failover_ms) {
            for (int attempt = 0; attempt < 2; attempt++) { /* 2 tries, as the KCL */
                rc = lease_renew(c->ddb, c->cfg.table, s->id, c->cfg.worker_id, s->counter, err, sizeof err);
                if (rc >= 0) {
                    break;
                }
            }
        } else {
            snprintf(err, sizeof err, "not renewed within the lease duration (%ld ms)", c->cfg.failover_ms);
        }
        if (rc == EDDY_OK) {
            s->counter++;
            s->renewed_ms = now_ms();
        }
        bool expired = now_ms() - s->renewed_ms > c->cfg.failover_ms;
        pthread_mutex_unlock(&s->lease_lock);
        if (rc == LEASE_CONFLICT || (rc != EDDY_OK && expired)) {
            logf_(c, 2, "%s: lease lost (%s)", s->id, rc == LEASE_CONFLICT ? "taken by another worker" : err);
            pthread_mutex_lock(&c->lock);
            s->lost = true;
            s->kicked = true;
            if (s->stream != NULL) {
                eddy_stream_cancel(s->stream);
            }
            pthread_cond_broadcast(&c->work);
            pthread_mutex_unlock(&c->lock);
        } else if (rc != EDDY_OK) {
            logf_(c, 1, "%s: renewal failed, retrying: %s", s->id, err);
        }
    }
    free(list);
}

static seen_t *seen_find(eddy_consumer_t *c, const char *key)
{
    for (size_t i = 0; i < c->nseen; i++) {
        if (strcmp(c->seen[i].key, key) == 0) {
            return &c->seen[i];
        }
    }
    if (c->nseen == c->seen_cap) {
        size_t cap = c->seen_cap ? 2 * c->seen_cap : 64;
        seen_t *bigger = realloc(c->seen, cap * sizeof *bigger);
        if (bigger == NULL) {
            return NULL;
        }
        c->seen = bigger;
        c->seen_cap = cap;
    }
    seen_t *s = &c->seen[c->nseen++];
    memset(s, 0, sizeof *s);
    copy(s->key, sizeof s->key, key);
    s->counter = -1;
    return s;
}

static bool parse_hash(const char *s, unsigned char out[16])
{
    return s != NULL && s[0] != '\0' && eddy_hash_key_parse(s, strlen(s), out);
}

static shard_t *new_shard(eddy_consumer_t *c, const lease_t *l, int64_t counter)
{
    shard_t *s = calloc(1, sizeof *s);
    if (s == NULL || pthread_mutex_init(&s->lease_lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    s->c = c;
    copy(s->id, sizeof s->id, l->key);
    for (int i = 0; i < l->nparents; i++) {
        copy(s->parents[i], LEASE_KEY_MAX, l->parents[i]);
    }
    s->nparents = l->nparents;
    s->has_range = parse_hash(l->start_hash, s->hash_start) && parse_hash(l->end_hash, s->hash_end);
    s->counter = counter;
    s->renewed_ms = now_ms();
    copy(s->checkpoint, sizeof s->checkpoint, l->checkpoint[0] ? l->checkpoint : "TRIM_HORIZON");
    s->checkpoint_sub = l->sub_sequence;
    s->state = WAITING_ON_PARENTS;
    return s;
}

/* One taker cycle over a fresh scan (§3.3, with eddy's stealing). */
static void take_leases(eddy_consumer_t *c, lease_t *leases, size_t n)
{
    int64_t now = now_ms();
    for (size_t i = 0; i < c->nseen; i++) {
        c->seen[i].present = false;
    }
    lease_view_t *views = calloc(n + 1, sizeof *views);
    size_t *index = calloc(n + 1, sizeof *index), *pick = calloc(n + 1, sizeof *pick);
    if (views == NULL || index == NULL || pick == NULL) {
        goto out;
    }
    size_t nv = 0;
    pthread_mutex_lock(&c->lock);
    bool stopping = c->stopping;
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < n; i++) {
        lease_t *l = &leases[i];
        seen_t *s = seen_find(c, l->key);
        if (s == NULL) {
            continue;
        }
        s->present = true;
        if (s->counter != l->counter || strcmp(s->owner, l->owner) != 0) {
            s->changed_ms = s->counter < 0 && l->owner[0] == '\0' ? 0 : now;
            s->counter = l->counter;
            copy(s->owner, sizeof s->owner, l->owner);
        }
        if (strcmp(l->checkpoint, SHARD_END) == 0) {
            continue; /* completed: nothing left to process, so not counted in the balance */
        }
        pthread_mutex_lock(&c->lock);
        bool mine = find_shard(c, l->key) != NULL;
        pthread_mutex_unlock(&c->lock);
        bool expired = l->owner[0] != '\0' && now - s->changed_ms > c->cfg.failover_ms;
        views[nv].owner = mine ? c->cfg.worker_id : l->owner;
        views[nv].available = !mine && (l->owner[0] == '\0' || expired || strcmp(l->owner, c->cfg.worker_id) == 0);
        index[nv++] = i;
    }
    /* forget leases that are gone */
    for (size_t i = 0; i < c->nseen;) {
        if (!c->seen[i].present) {
            c->seen[i] = c->seen[--c->nseen];
        } else {
            i++;
        }
    }
    if (stopping) {
        goto out;
    }
    size_t npick = lease_plan_take(views, nv, c->cfg.worker_id, (size_t)c->cfg.max_leases, &c->rng, pick);
    for (size_t k = 0; k < npick; k++) {
        lease_t *l = &leases[index[pick[k]]];
        char err[512];
        int rc = lease_take(c->ddb, c->cfg.table, l->key, l->counter, l->owner, c->cfg.worker_id, err, sizeof err);
        if (rc == LEASE_CONFLICT) {
            continue; /* someone else changed it first */
        }
        if (rc != EDDY_OK) {
            logf_(c, 1, "taking %s failed: %s", l->key, err);
            continue;
        }
        shard_t *s = new_shard(c, l, l->counter + 1);
        if (s == NULL) {
            logf_(c, 0, "out of memory taking %s (it will expire)", l->key);
            continue;
        }
        logf_(c, 2, "took %s%s%s (checkpoint %s)", l->key, l->owner[0] ? " from " : "", l->owner, s->checkpoint);
        pthread_mutex_lock(&c->lock);
        s->next = c->shards;
        c->shards = s;
        s->due_ms = now_ms();
        pthread_cond_broadcast(&c->work);
        pthread_mutex_unlock(&c->lock);
    }
out:
    free(views);
    free(index);
    free(pick);
}

/* ---- shard sync: leases for shards that have none (§3.6) ---- */

typedef struct shard_info {
    char id[LEASE_KEY_MAX];
    char parents[LEASE_PARENTS_MAX][LEASE_KEY_MAX];
    int nparents;
    bool open;
    char start_seq[SEQ_MAX];
    char start_hash[48], end_hash[48];
    bool leased;
} shard_info_t;

static int by_start_seq(const void *a, const void *b)
{
    return seq_cmp(((const shard_info_t *)a)->start_seq, ((const shard_info_t *)b)->start_seq);
}

static int list_shards(eddy_consumer_t *c, shard_info_t **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    shard_info_t *all = NULL;
    size_t count = 0, cap = 0;
    char *token = NULL;
    for (;;) {
        cJSON *j = cJSON_CreateObject();
        if (token != NULL) {
            cJSON_AddStringToObject(j, "NextToken", token);
            free(token);
            token = NULL;
        } else {
            cJSON_AddStringToObject(j, "StreamName", c->cfg.stream);
        }
        cJSON *reply = NULL;
        int rc = kcall(c, "ListShards", j, &reply, NULL, 0, err, errlen);
        if (rc != EDDY_OK) {
            free(all);
            return rc;
        }
        const cJSON *sh;
        cJSON_ArrayForEach(sh, cJSON_GetObjectItemCaseSensitive(reply, "Shards"))
        {
            const char *id = jstr(sh, "ShardId");
            if (id == NULL || strlen(id) >= LEASE_KEY_MAX) {
                continue;
            }
            if (count == cap) {
                size_t bigger = cap ? 2 * cap : 64;
                shard_info_t *a = realloc(all, bigger * sizeof *a);
                if (a == NULL) {
                    free(all);
                    cJSON_Delete(reply);
                    set_err(err, errlen, "out of memory");
                    return EDDY_ERR_NOMEM;
                }
                all = a;
                cap = bigger;
            }
            shard_info_t *x = &all[count++];
            memset(x, 0, sizeof *x);
            copy(x->id, sizeof x->id, id);
            const char *p = jstr(sh, "ParentShardId"), *q = jstr(sh, "AdjacentParentShardId");
            if (p != NULL && strlen(p) < LEASE_KEY_MAX) {
                copy(x->parents[x->nparents++], LEASE_KEY_MAX, p);
            }
            if (q != NULL && strlen(q) < LEASE_KEY_MAX) {
                copy(x->parents[x->nparents++], LEASE_KEY_MAX, q);
            }
            const cJSON *seqs = cJSON_GetObjectItemCaseSensitive(sh, "SequenceNumberRange");
            x->open = jstr(seqs, "EndingSequenceNumber") == NULL;
            copy(x->start_seq, sizeof x->start_seq, jstr(seqs, "StartingSequenceNumber"));
            const cJSON *range = cJSON_GetObjectItemCaseSensitive(sh, "HashKeyRange");
            copy(x->start_hash, sizeof x->start_hash, jstr(range, "StartingHashKey"));
            copy(x->end_hash, sizeof x->end_hash, jstr(range, "EndingHashKey"));
        }
        const char *next = jstr(reply, "NextToken");
        token = next != NULL ? strdup(next) : NULL;
        cJSON_Delete(reply);
        if (token == NULL) {
            break;
        }
    }
    qsort(all, count, sizeof *all, by_start_seq);
    *out = all;
    *n = count;
    return EDDY_OK;
}

static shard_info_t *info_find(shard_info_t *a, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(a[i].id, id) == 0) {
            return &a[i];
        }
    }
    return NULL;
}

/* Creates the missing leases. Empty table: the shards to start from (LATEST: the open ones; otherwise the
 * ones without a parent in the stream), at the initial position. Otherwise: a shard whose parent has a lease
 * gets one at TRIM_HORIZON (it waits for its parents before it starts), and an open shard none of whose
 * parents has a lease gets one at the initial position. Returns how many were created. */
static size_t sync_shards(eddy_consumer_t *c, const lease_t *leases, size_t nleases)
{
    shard_info_t *shards = NULL;
    size_t n = 0, created = 0;
    char err[512];
    if (list_shards(c, &shards, &n, err, sizeof err) != EDDY_OK) {
        logf_(c, 1, "shard sync: %s", err);
        return 0;
    }
    for (size_t i = 0; i < nleases; i++) {
        shard_info_t *x = info_find(shards, n, leases[i].key);
        if (x != NULL) {
            x->leased = true;
        }
    }
    bool latest = strcmp(c->cfg.initial, "LATEST") == 0;
    for (size_t i = 0; i < n; i++) {
        shard_info_t *x = &shards[i];
        if (x->leased) {
            continue;
        }
        bool parent_in_stream = false, parent_leased = false;
        for (int k = 0; k < x->nparents; k++) {
            shard_info_t *p = info_find(shards, n, x->parents[k]);
            parent_in_stream |= p != NULL;
            parent_leased |= p != NULL && p->leased;
        }
        const char *checkpoint = NULL;
        if (nleases == 0) {
            if (latest ? x->open : !parent_in_stream) {
                checkpoint = c->cfg.initial;
            } else if (!latest && parent_leased) {
                checkpoint = "TRIM_HORIZON";
            }
        } else if (parent_leased) {
            checkpoint = "TRIM_HORIZON";
        } else if (x->open) {
            checkpoint = c->cfg.initial;
        }
        if (checkpoint == NULL) {
            continue;
        }
        lease_t l;
        memset(&l, 0, sizeof l);
        copy(l.key, sizeof l.key, x->id);
        copy(l.checkpoint, sizeof l.checkpoint, checkpoint);
        for (int k = 0; k < x->nparents; k++) {
            copy(l.parents[l.nparents++], LEASE_KEY_MAX, x->parents[k]);
        }
        copy(l.start_hash, sizeof l.start_hash, x->start_hash);
        copy(l.end_hash, sizeof l.end_hash, x->end_hash);
        int rc = lease_create(c->ddb, c->cfg.table, &l, err, sizeof err);
        if (rc == EDDY_OK || rc == LEASE_CONFLICT) {
            x->leased = true;
            created += rc == EDDY_OK;
        } else {
            logf_(c, 1, "shard sync: creating the lease of %s: %s", x->id, err);
        }
    }
    free(shards);
    return created;
}

static void wait_coord(eddy_consumer_t *c, int64_t until)
{
    int64_t wait = until - now_ms();
    if (wait > 0) {
        timed_wait(&c->coord, &c->lock, wait);
    }
}

/* Tells the processing threads to exit and joins them. */
static void stop_processing_threads(eddy_consumer_t *c)
{
    pthread_mutex_lock(&c->lock);
    c->exit_threads = true;
    pthread_cond_broadcast(&c->work);
    pthread_mutex_unlock(&c->lock);
    for (long i = 0; i < c->nthreads; i++) {
        pthread_join(c->threads[i], NULL);
    }
}

static void *coordinator_main(void *arg)
{
    eddy_consumer_t *c = arg;
    int64_t renew_every = c->cfg.failover_ms / 3 - 25;
    int64_t next_renew = now_ms() + renew_every, next_take = 0, next_sync = 0;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        reap(c);
        if (c->stopping && c->shards == NULL) {
            pthread_mutex_unlock(&c->lock);
            break;
        }
        bool stopping = c->stopping;
        if (c->take_soon) {
            c->take_soon = false;
            next_take = 0;
            next_sync = 0; /* a shard ended: make sure its children have leases */
        }
        pthread_mutex_unlock(&c->lock);
        int64_t now = now_ms();
        if (now >= next_renew) {
            renew_all(c);
            next_renew = now + renew_every;
        }
        if (!stopping && now >= next_take) {
            lease_t *leases = NULL;
            size_t n = 0;
            char err[512];
            if (lease_scan(c->ddb, c->cfg.table, &leases, &n, err, sizeof err) != EDDY_OK) {
                logf_(c, 1, "lease scan: %s", err);
            } else {
                if (now >= next_sync) {
                    if (sync_shards(c, leases, n) > 0) {
                        free(leases);
                        leases = NULL;
                        if (lease_scan(c->ddb, c->cfg.table, &leases, &n, err, sizeof err) != EDDY_OK) {
                            logf_(c, 1, "lease scan: %s", err);
                            n = 0;
                        }
                    }
                    next_sync = now + c->cfg.shard_sync_ms;
                }
                take_leases(c, leases, n);
            }
            free(leases);
            next_take = now_ms() + c->cfg.taker_interval_ms;
        }
        pthread_mutex_lock(&c->lock);
        int64_t until = next_renew < next_take || stopping ? next_renew : next_take;
        if (!c->take_soon && !(c->stopping && !stopping)) {
            wait_coord(c, until);
        }
        pthread_mutex_unlock(&c->lock);
    }
    stop_processing_threads(c);
    return NULL;
}

/* ---- fan-out consumer registration ---- */

static int register_consumer(eddy_consumer_t *c, char *err, size_t errlen)
{
    cJSON *j = cJSON_CreateObject(), *reply = NULL;
    cJSON_AddStringToObject(j, "StreamName", c->cfg.stream);
    int rc = kcall(c, "DescribeStreamSummary", j, &reply, NULL, 0, err, errlen);
    if (rc != EDDY_OK) {
        return rc;
    }
    const char *arn = jstr(cJSON_GetObjectItemCaseSensitive(reply, "StreamDescriptionSummary"), "StreamARN");
    copy(c->stream_arn, sizeof c->stream_arn, arn);
    cJSON_Delete(reply);
    if (c->stream_arn[0] == '\0') {
        set_err(err, errlen, "DescribeStreamSummary: no StreamARN");
        return EDDY_ERR_PROTOCOL;
    }
    int64_t deadline = now_ms() + 60000;
    bool registered = false;
    for (;;) {
        char type[128];
        j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "StreamARN", c->stream_arn);
        cJSON_AddStringToObject(j, "ConsumerName", c->cfg.fan_out);
        rc = kcall(c, "DescribeStreamConsumer", j, &reply, type, sizeof type, err, errlen);
        if (rc == EDDY_ERR_SERVICE && strcmp(type, "ResourceNotFoundException") == 0 && !registered) {
            j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "StreamARN", c->stream_arn);
            cJSON_AddStringToObject(j, "ConsumerName", c->cfg.fan_out);
            rc = kcall(c, "RegisterStreamConsumer", j, &reply, type, sizeof type, err, errlen);
            cJSON_Delete(reply);
            if (rc != EDDY_OK && strcmp(type, "ResourceInUseException") != 0) {
                return rc;
            }
            registered = true;
            continue;
        }
        if (rc != EDDY_OK) {
            return rc;
        }
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(reply, "ConsumerDescription");
        const char *status = jstr(d, "ConsumerStatus");
        copy(c->consumer_arn, sizeof c->consumer_arn, jstr(d, "ConsumerARN"));
        bool active = status != NULL && strcmp(status, "ACTIVE") == 0;
        cJSON_Delete(reply);
        if (active && c->consumer_arn[0] != '\0') {
            return EDDY_OK;
        }
        c->consumer_arn[0] = '\0';
        if (now_ms() > deadline) {
            set_err(err, errlen, "the stream consumer %s did not become ACTIVE within 60 s", c->cfg.fan_out);
            return EDDY_ERR_TIMEOUT;
        }
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- the public worker ---- */

eddy_consumer_t *eddy_consumer_new(eddy_client_t *kinesis, eddy_client_t *dynamodb,
                                   const eddy_consumer_config_t *cfg, const eddy_processor_ops_t *ops, void *app,
                                   char *err, size_t errlen)
{
    if (kinesis == NULL || dynamodb == NULL || cfg == NULL || ops == NULL || ops->initialize == NULL ||
        ops->process_records == NULL || ops->lease_lost == NULL || ops->shard_ended == NULL ||
        ops->shutdown_requested == NULL) {
        set_err(err, errlen, "eddy_consumer_new: both clients, a configuration and every processor function are "
                             "needed");
        return NULL;
    }
    if (cfg->application[0] == '\0' || cfg->stream[0] == '\0') {
        set_err(err, errlen, "the consumer configuration needs an application and a stream");
        return NULL;
    }
    if (strcmp(cfg->initial, "AT_TIMESTAMP") == 0 && cfg->initial_timestamp <= 0) {
        set_err(err, errlen, "initial_position AT_TIMESTAMP needs initial_timestamp");
        return NULL;
    }
    eddy_consumer_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    c->kinesis = kinesis;
    c->ddb = dynamodb;
    c->cfg = *cfg;
    c->ops = ops;
    c->app = app;
    c->log = log_stderr;
    c->log_arg = c;
    if (c->cfg.table[0] == '\0') {
        copy(c->cfg.table, sizeof c->cfg.table, c->cfg.application);
    }
    if (c->cfg.taker_interval_ms == 0) {
        c->cfg.taker_interval_ms = 2 * (c->cfg.failover_ms + 25);
    }
    if (getrandom(&c->rng, sizeof c->rng, GRND_NONBLOCK) != (ssize_t)sizeof c->rng) {
        c->rng = (uint64_t)clock_monotonic_us() ^ (uint64_t)getpid();
    }
    c->rng |= 1;
    if (c->cfg.worker_id[0] == '\0') {
        char host[128] = "localhost";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        snprintf(c->cfg.worker_id, sizeof c->cfg.worker_id, "%s:%d:%08" PRIx32, host, (int)getpid(),
                 (uint32_t)(c->rng >> 16));
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (pthread_mutex_init(&c->lock, NULL) != 0 || pthread_cond_init(&c->work, &attr) != 0 ||
        pthread_cond_init(&c->coord, &attr) != 0) {
        pthread_condattr_destroy(&attr);
        set_err(err, errlen, "cannot make the worker's locks");
        free(c);
        return NULL;
    }
    pthread_condattr_destroy(&attr);
    int rc = lease_table_ensure(c->ddb, c->cfg.table, err, errlen);
    if (rc == EDDY_OK && c->cfg.fan_out[0] != '\0') {
        rc = register_consumer(c, err, errlen);
    }
    if (rc != EDDY_OK) {
        pthread_cond_destroy(&c->work);
        pthread_cond_destroy(&c->coord);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
    }
    return c;
}

void eddy_consumer_set_log(eddy_consumer_t *c, eddy_log_fn log, void *arg)
{
    c->log = log;
    c->log_arg = arg;
}

int eddy_consumer_start(eddy_consumer_t *c)
{
    if (c == NULL || c->started) {
        return EDDY_ERR_INVALID;
    }
    c->threads = calloc((size_t)c->cfg.threads, sizeof *c->threads);
    if (c->threads == NULL) {
        return EDDY_ERR_NOMEM;
    }
    for (long i = 0; i < c->cfg.threads; i++) {
        if (pthread_create(&c->threads[i], NULL, processing_main, c) != 0) {
            break;
        }
        c->nthreads++;
    }
    if (c->nthreads == 0 || pthread_create(&c->coordinator, NULL, coordinator_main, c) != 0) {
        stop_processing_threads(c);
        c->nthreads = 0;
        return EDDY_ERR_NOMEM;
    }
    c->started = true;
    logf_(c, 2, "started on stream %s, lease table %s (%s)", c->cfg.stream, c->cfg.table,
          c->consumer_arn[0] ? "enhanced fan-out" : "polling");
    return EDDY_OK;
}

void eddy_consumer_shutdown(eddy_consumer_t *c, bool graceful)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    if (!c->stopping) {
        c->stopping = true;
        c->graceful = graceful;
        for (shard_t *s = c->shards; s != NULL; s = s->next) {
            if (graceful) {
                s->shutdown = true;
            } else {
                s->lost = true;
            }
            s->kicked = true;
        }
    }
    pthread_cond_broadcast(&c->work);
    pthread_cond_broadcast(&c->coord);
    pthread_mutex_unlock(&c->lock);
    /* streams hold their shards up: end them (each shard's step finishes it) */
    pthread_mutex_lock(&c->lock);
    for (shard_t *s = c->shards; s != NULL; s = s->next) {
        if (s->stream != NULL) {
            eddy_stream_cancel(s->stream);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

int eddy_consumer_wait(eddy_consumer_t *c)
{
    if (c == NULL) {
        return EDDY_ERR_INVALID;
    }
    if (c->started && !c->joined) {
        pthread_join(c->coordinator, NULL);
        c->joined = true;
    }
    return EDDY_OK;
}

void eddy_consumer_free(eddy_consumer_t *c)
{
    if (c == NULL) {
        return;
    }
    if (c->started) {
        eddy_consumer_shutdown(c, true);
        eddy_consumer_wait(c);
    }
    pthread_mutex_lock(&c->lock);
    reap(c);
    while (c->shards != NULL) { /* never started: nothing runs */
        shard_t *s = c->shards;
        c->shards = s->next;
        free_shard(s);
    }
    pthread_mutex_unlock(&c->lock);
    free(c->threads);
    free(c->seen);
    pthread_cond_destroy(&c->work);
    pthread_cond_destroy(&c->coord);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

const char *eddy_consumer_worker_id(const eddy_consumer_t *c)
{
    return c->cfg.worker_id;
}

size_t eddy_consumer_lease_count(eddy_consumer_t *c)
{
    size_t n = 0;
    pthread_mutex_lock(&c->lock);
    for (shard_t *s = c->shards; s != NULL; s = s->next) {
        n += !s->finished;
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}
